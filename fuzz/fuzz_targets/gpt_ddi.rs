#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::ddi::{self, Arch, DataDesignator, RootHash};
use rdext_fuzz::Mem;

// A GPT disk image: the partition table, then the layout systemd-sysext
// would use. Partitions read never lie outside the image.
fuzz_target!(|data: &[u8]| {
    let image = Mem(data);
    let Ok(parts) = ddi::read_partitions(&image, data.len() as u64) else {
        return;
    };
    for native in [Arch::native().unwrap_or(Arch::X86_64), Arch::Arm64] {
        let _ = ddi::select_layout(&image, &parts, native, None);
        let hash = RootHash {
            designator: DataDesignator::Root,
            bytes: data.iter().rev().take(32).copied().collect(),
        };
        let _ = ddi::select_layout(&image, &parts, native, Some(&hash));
    }
    for part in &parts {
        let _ = ddi::read_verity_sig(&image, part);
    }
});
