#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::fetch::openpgp::verify_detached;

// A detached OpenPGP signature, armored or binary, against a keyring
// (armored, binary or keybox), over data: three parts of one input.
fuzz_target!(|data: &[u8]| {
    let [signed, signature, keyring] = rdext_fuzz::split::<3>(data);
    let _ = verify_detached(signed, signature, keyring);
    // The real keyring with a fuzzed signature, and the other way round.
    // (A signature's unhashed subpackets, e.g. the issuer key ID, are not
    // signed and may vary.) The real signature covers the real data only.
    let real_keyring = include_bytes!("../certs/pubring.gpg");
    let real_sig = include_bytes!("../certs/SHA256SUMS.gpg");
    let real_data = include_bytes!("../certs/SHA256SUMS");
    let _ = verify_detached(real_data, data, real_keyring);
    let _ = verify_detached(real_data, real_sig, data);
    if verify_detached(data, real_sig, real_keyring).is_ok() {
        assert_eq!(data, real_data);
    }
});
