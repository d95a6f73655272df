#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::verify::policy::{from_level, ImagePolicy};

// systemd's image-policy grammar: what parses prints in a form that parses
// to the same policy.
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = ImagePolicy::parse(text) {
        let printed = policy.to_string();
        let again = ImagePolicy::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
        assert_eq!(again, policy, "{text:?} printed as {printed:?}");
    }
    let _ = from_level(text, true);
});
