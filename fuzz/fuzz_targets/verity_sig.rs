#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::ddi;

// The JSON of a DDI's verity signature partition.
fuzz_target!(|data: &[u8]| {
    let _ = ddi::parse_verity_sig(data);
});
