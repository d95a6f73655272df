#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use rdext::verify::signature::{load_trusted, verify_root_hash, TrustedCert};

// A root-hash signature (DER PKCS#7) checked against a real trusted
// certificate; the real signature covers the real root hash and no other.
// (Fields outside the signed data, such as the signature algorithm's
// parameters, may vary without changing the verdict.)
fuzz_target!(|data: &[u8]| {
    static TRUSTED: OnceLock<Vec<TrustedCert>> = OnceLock::new();
    let trusted = TRUSTED.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");
        load_trusted(&[dir.into()]).0
    });
    let root_hash = include_str!("../certs/signed.roothash").trim();
    let now = 1_800_000_000;
    let _ = verify_root_hash(data, root_hash, trusted, now);
    let real = include_bytes!("../certs/signed.roothash.p7s");
    if let Ok(text) = std::str::from_utf8(data) {
        if verify_root_hash(real, text, trusted, now).is_ok() {
            assert_eq!(text, root_hash);
        }
    }
    let _ = verify_root_hash(data, "00", &[], now);
});
