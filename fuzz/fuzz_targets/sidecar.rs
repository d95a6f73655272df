#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::ddi;

// Files next to a naked image: .roothash (hex text), .roothash.p7s and
// .verity, as the merge reads them.
fuzz_target!(|data: &[u8]| {
    let [roothash, p7s] = rdext_fuzz::split::<2>(data);
    let dir = rdext_fuzz::scratch("sidecar");
    let image = dir.join("x.raw");
    std::fs::write(&image, b"").unwrap();
    std::fs::write(dir.join("x.roothash"), roothash).unwrap();
    let sig = dir.join("x.roothash.p7s");
    if p7s.is_empty() {
        let _ = std::fs::remove_file(&sig);
    } else {
        std::fs::write(&sig, p7s).unwrap();
    }
    if let Ok(found) = ddi::find_sidecars(&image) {
        if let Some(hash) = found.root_hash {
            assert!(hash.bytes.len() >= 16, "{:?}", hash.bytes);
        }
    }
});
