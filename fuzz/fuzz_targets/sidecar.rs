#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::ddi::{self, DataDesignator};

// A `.roothash` sidecar (hex text) as the merge reads it next to a naked
// image: an accepted one is a hash of at least 128 bits.
fuzz_target!(|data: &[u8]| {
    for designator in [DataDesignator::Root, DataDesignator::Usr] {
        if let Ok(hash) = ddi::parse_root_hash_sidecar(designator, data) {
            assert!(hash.bytes.len() >= 16, "{:?}", hash.bytes);
            assert_eq!(hash.designator, designator);
        }
    }
});
