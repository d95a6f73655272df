#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::fetch::manifest::{parse_retractions, parse_sha256sums};

// SHA256SUMS and retraction lists from the network: an accepted one never
// names a path, an empty name, ".", "..", or a name twice.
fuzz_target!(|data: &[u8]| {
    let plain = |name: &str| {
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0', '\n'])
    };
    if let Ok(entries) = parse_sha256sums(data) {
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert!(names.iter().all(|n| plain(n)), "{names:?}");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), entries.len());
    }
    if let Ok(retractions) = parse_retractions(data) {
        assert!(
            retractions.iter().all(|r| plain(&r.name)),
            "{retractions:?}"
        );
    }
});
