#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::ddi;
use rdext::verify::verity::hash_tree_geometry;

// A verity hash device's superblock: accepted ones give a table line with
// the kernel's field count and a tree size in whole hash blocks.
fuzz_target!(|data: &[u8]| {
    let Ok(sb) = ddi::parse_verity_superblock(data) else {
        return;
    };
    let line = sb.dm_table("7:0", "7:1", "00", 1, &["panic_on_corruption"]);
    assert_eq!(line.split_whitespace().count(), 12, "{line}");
    for digest in [20, 32, 64] {
        if let Some((levels, bytes)) = hash_tree_geometry(&sb, digest) {
            assert_eq!(bytes % u64::from(sb.hash_block_size), 0);
            assert!(bytes >= u64::from(sb.hash_block_size) * (u64::from(levels) + 1));
        }
    }
});
