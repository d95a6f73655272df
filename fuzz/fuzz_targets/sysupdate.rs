#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::fetch::sysupdate::{OsInfo, Pattern, Transfer};

// A sysupdate transfer file with a drop-in, and a pattern matched against
// a name: a name a pattern matches formats back to a name it matches.
fuzz_target!(|data: &[u8]| {
    let [main, dropin, pattern, name] = rdext_fuzz::split::<4>(data);
    let os = OsInfo {
        id: "debian".into(),
        version_id: "13".into(),
        architecture: "x86-64".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        ..OsInfo::default()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let files = [
        ("a.transfer".to_string(), text(main)),
        ("a.transfer.d/b.conf".to_string(), text(dropin)),
    ];
    let _ = Transfer::parse("a.transfer", &files, &os);
    let Ok(pattern) = Pattern::parse(&text(pattern)) else {
        return;
    };
    if let Some(instance) = pattern.matches(&text(name)) {
        if let Ok(formatted) = pattern.format(&instance) {
            let again = pattern.matches(&formatted);
            assert!(
                again.is_some(),
                "{:?} formats {instance:?} as {formatted:?}",
                pattern.as_str()
            );
        }
    }
});
