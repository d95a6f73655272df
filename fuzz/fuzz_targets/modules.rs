#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::mount::modules::{check_layer, merged_metadata};

// An extension's depmod output (modules.dep, .alias, .softdep, .symbols)
// merged with a base's: a layer check_layer accepts merges.
fuzz_target!(|data: &[u8]| {
    let [dep, alias, softdep, symbols] = rdext_fuzz::split::<4>(data);
    let dir = rdext_fuzz::scratch("modules");
    let kver = dir.join("ext/lib/modules/6.1.0");
    std::fs::create_dir_all(&kver).unwrap();
    for (name, content) in [
        ("modules.dep", dep),
        ("modules.alias", alias),
        ("modules.softdep", softdep),
        ("modules.symbols", symbols),
    ] {
        std::fs::write(kver.join(name), content).unwrap();
    }
    let base = dir.join("base");
    std::fs::create_dir_all(base.join("lib/modules/6.1.0")).unwrap();
    std::fs::write(base.join("lib/modules/6.1.0/modules.dep"), "kernel/a.ko:\n").unwrap();
    let layer = dir.join("ext");
    let checked = check_layer(&layer);
    let merged = merged_metadata(&[layer], Some(&base));
    if checked.is_ok() {
        let files = merged.unwrap_or_else(|e| panic!("checked layer failed to merge: {e}"));
        assert!(files.iter().any(|(p, _)| p.ends_with("modules.dep.bin")));
    }
});
