#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::probe::{claimed_size, probe, probe_head, Format};
use rdext_fuzz::Mem;

// The first blocks of an image: the file system found and the size its
// superblock claims. The in-memory reader and the slice agree.
fuzz_target!(|data: &[u8]| {
    let head = &data[..data.len().min(8192)];
    let found = probe_head(head);
    let read = probe(&Mem(data));
    assert_eq!(format!("{found:?}"), format!("{read:?}"));
    if let Ok(Some(format)) = found {
        let _ = claimed_size(head, format);
    }
    for format in [Format::Squashfs, Format::Erofs, Format::Ext4] {
        let _ = claimed_size(head, format);
    }
});
