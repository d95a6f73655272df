#![no_main]
use libfuzzer_sys::fuzz_target;
use rdext::mount::modules::{merge_texts, metadata_text, VersionTexts};

// An extension's depmod output (modules.dep, .alias, .softdep, .symbols)
// merged with a base's, in memory as the merge reads them: a layer whose
// files all pass the check merges, with the kmod indexes.
fuzz_target!(|data: &[u8]| {
    let [dep, alias, softdep, symbols] = rdext_fuzz::split::<4>(data);
    // METADATA_FILES order: dep, alias, symbols, softdep, weakdep, devname.
    let mut layer: VersionTexts = Default::default();
    let mut checked = true;
    for (i, content) in [(0, dep), (1, alias), (2, symbols), (3, softdep)] {
        match metadata_text(content.to_vec()) {
            Ok(text) => layer[i] = Some(text),
            Err(_) => checked = false,
        }
    }
    if !checked {
        return;
    }
    let mut base: VersionTexts = Default::default();
    base[0] = Some("kernel/a.ko:\n".to_string());
    let files = merge_texts(&[layer, base]);
    assert!(files.iter().any(|(name, _)| *name == "modules.dep.bin"));
});
