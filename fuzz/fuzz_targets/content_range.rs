#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::fetch::http::parse_content_range;

// A 206 response's Content-Range header; what it accepts survives a
// rewrite in canonical form.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((start, total)) = parse_content_range(text) {
        let total_text = total.map_or("*".to_string(), |t| t.to_string());
        let again = parse_content_range(&format!("bytes {start}-{}/{total_text}", start));
        assert_eq!(again, Some((start, total)));
    }
});
