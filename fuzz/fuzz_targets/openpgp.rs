#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::fetch::openpgp::verify_detached;

// A detached OpenPGP signature, armored or binary, against a keyring
// (armored, binary or keybox), over data: three parts of one input.
fuzz_target!(|data: &[u8]| {
    let [signed, signature, keyring] = rdext_fuzz::split::<3>(data);
    let _ = verify_detached(signed, signature, keyring);
    // The real keyring with a fuzzed signature, and the other way round.
    let real_keyring = include_bytes!("../certs/pubring.gpg");
    let real_sig = include_bytes!("../certs/SHA256SUMS.gpg");
    let real_data = include_bytes!("../certs/SHA256SUMS");
    if verify_detached(real_data, data, real_keyring).is_ok() {
        assert_eq!(data, real_sig);
    }
    let _ = verify_detached(real_data, real_sig, data);
});
