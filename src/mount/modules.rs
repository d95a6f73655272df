//! Kernel modules, two concerns:
//!
//! * rdext loads the modules it needs itself (loop, overlay, squashfs,
//!   erofs) with `finit_module` before touching images: left to on-demand
//!   autoload, a cold initrd spends seconds in `modprobe` round trips.
//!   libkmod cannot be linked statically, so this reads `modules.dep`
//!   directly.
//! * Extensions that ship modules also ship depmod output, and in an
//!   overlay the top extension's `modules.dep*` would hide everyone else's
//!   (Flatcar#1576). rdext merges the metadata of every layer (top layer
//!   first wins per module) and writes text and kmod index (`.bin`) files
//!   into the metadata layer above all extensions.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cmdline::KernelCmdline;

/// Normalise a module name as the kernel does: `-` and `_` are the same.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// libkmod's alias normalisation: `-` becomes `_` except inside a `[...]`
/// character class of a pattern.
fn normalize_alias(alias: &str) -> Cow<'_, str> {
    if !alias.contains('-') {
        return Cow::Borrowed(alias);
    }
    let mut in_class = false;
    alias
        .chars()
        .map(|c| match c {
            '[' => {
                in_class = true;
                c
            }
            ']' => {
                in_class = false;
                c
            }
            '-' if !in_class => '_',
            _ => c,
        })
        .collect::<String>()
        .into()
}

/// The module name of a `modules.dep` path: `kernel/fs/erofs/erofs.ko.xz`
/// → `erofs`.
fn name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko").map(|(stem, _)| stem)?;
    Some(normalize(stem))
}

/// One `modules.dep` line: the module's path and its dependencies' paths.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DepEntry {
    path: String,
    deps: Vec<String>,
}

fn parse_dep(text: &str) -> Vec<(String, DepEntry)> {
    text.lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            let path = path.trim().to_string();
            let name = name_of(&path)?;
            let deps = deps.split_whitespace().map(str::to_string).collect();
            Some((name, DepEntry { path, deps }))
        })
        .collect()
}

/// Loads modules from the running kernel's `/lib/modules/$(uname -r)` the
/// first time something needs them (a loop device, a file system,
/// dm-verity, overlayfs), with their options from the kernel command line,
/// so a merge loads only what its images use; shared by the threads that
/// open images. Missing modules are not an error: they may be built in, or
/// the kernel may autoload them later.
pub struct OnDemand<'a> {
    dir: &'a Path,
    sys_module: &'a Path,
    cmdline: &'a KernelCmdline,
    state: Mutex<Demanded<'a>>,
}

/// What an [`OnDemand`] has done so far.
#[derive(Default)]
struct Demanded<'a> {
    /// Every name asked for: asking again costs nothing.
    asked: HashSet<String>,
    /// The parsed module tree, once a module had to be loaded; None inside
    /// when there is no `modules.dep`.
    loader: Option<Option<Loader<'a>>>,
}

impl<'a> OnDemand<'a> {
    /// Loading from `modules_dir`, with options from `cmdline`; nothing is
    /// read yet.
    pub fn new(modules_dir: &'a Path, cmdline: &'a KernelCmdline) -> Self {
        Self::with_sys_module(modules_dir, Path::new("/sys/module"), cmdline)
    }

    /// `new` with the kernel's module directory (`/sys/module`) as a flag.
    fn with_sys_module(dir: &'a Path, sys_module: &'a Path, cmdline: &'a KernelCmdline) -> Self {
        OnDemand {
            dir,
            sys_module,
            cmdline,
            state: Mutex::new(Demanded::default()),
        }
    }

    /// Make sure `names` are loaded. Reads only what loading needs: nothing
    /// when every module is loaded or built in, `modules.alias` (megabytes
    /// on a full system) only for a name that is no module's own.
    pub fn need(&self, names: &[&str]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let new: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| state.asked.insert(normalize(n)))
            .collect();
        if new.is_empty() {
            return;
        }
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let mut wanted = not_loaded(&new, self.sys_module);
        if !wanted.is_empty() {
            wanted = not_built_in(wanted, &read("modules.builtin"));
        }
        if wanted.is_empty() {
            log::debug!("modules {} loaded or built in", new.join(", "));
            return;
        }
        let loader = state.loader.get_or_insert_with(|| {
            let Ok(text) = fs::read_to_string(self.dir.join("modules.dep")) else {
                log::debug!(
                    "no {}/modules.dep; relying on the kernel for modules",
                    self.dir.display()
                );
                return None;
            };
            Some(Loader {
                dir: self.dir,
                sys_module: self.sys_module,
                cmdline: self.cmdline,
                index: parse_dep(&text).into_iter().collect(),
                softdeps: parse_softdeps(&read("modules.softdep")),
                aliases: None,
                compression: Path::new("/sys/module/compression").exists(),
                done: HashSet::new(),
            })
        });
        if let Some(loader) = loader {
            for name in &wanted {
                loader.load_name(name);
            }
        }
    }
}

/// The `names` (normalised) that `sys_module` does not list: those not
/// loaded, and built-in ones without parameters.
fn not_loaded(names: &[&str], sys_module: &Path) -> Vec<String> {
    names
        .iter()
        .map(|n| normalize(n))
        .filter(|n| !sys_module.join(n).exists())
        .collect()
}

/// `names` less those `modules.builtin` (paths, one a line) lists.
fn not_built_in(mut names: Vec<String>, builtin: &str) -> Vec<String> {
    let builtin: HashSet<String> = builtin.lines().filter_map(name_of).collect();
    names.retain(|n| !builtin.contains(n));
    names
}

/// State of one `preload`: what modprobe would know, without libkmod.
struct Loader<'a> {
    dir: &'a Path,
    sys_module: &'a Path,
    cmdline: &'a KernelCmdline,
    index: BTreeMap<String, DepEntry>,
    softdeps: BTreeMap<String, Vec<String>>,
    /// Plain aliases, read on the first name that needs one.
    aliases: Option<BTreeMap<String, Vec<String>>>,
    compression: bool,
    done: HashSet<String>,
}

impl Loader<'_> {
    /// Load a module by name or plain alias, soft dependencies (`pre:`)
    /// first, as modprobe does: e.g. libcrc32c fails with ENOENT unless a
    /// crc32c implementation is loaded before it.
    fn load_name(&mut self, name: &str) {
        let name = normalize(name);
        let modules = match self.index.contains_key(&name) {
            true => vec![name.clone()],
            false => self
                .aliases
                .get_or_insert_with(|| {
                    parse_plain_aliases(
                        &fs::read_to_string(self.dir.join("modules.alias")).unwrap_or_default(),
                    )
                })
                .get(&name)
                .cloned()
                .unwrap_or_default(),
        };
        if modules.is_empty() {
            log::debug!("module {name} is not in modules.dep (built in?)");
        }
        for module in modules {
            let Some(entry) = self.index.get(&module).cloned() else {
                continue;
            };
            // modules.dep lists every dependency, the deepest last.
            for path in entry.deps.iter().rev().chain(std::iter::once(&entry.path)) {
                let Some(module) = name_of(path) else {
                    continue;
                };
                if !self.done.insert(module.clone()) || self.sys_module.join(&module).exists() {
                    continue;
                }
                for pre in self.softdeps.get(&module).cloned().unwrap_or_default() {
                    self.load_name(&pre);
                }
                let options = self.cmdline.module_options(&module);
                match load(&self.dir.join(path), self.compression, &options) {
                    Ok(()) => log::debug!("loaded module {module}"),
                    Err(e) => log::debug!("cannot load module {module}: {e}"),
                }
            }
        }
    }
}

/// `softdep MODULE pre: A B post: C` → MODULE → [A, B].
fn parse_softdeps(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let mut pre = Vec::new();
        let mut in_pre = false;
        for word in words {
            match word {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                w if in_pre => pre.push(w.to_string()),
                _ => {}
            }
        }
        map.insert(normalize(module), pre);
    }
    map
}

/// `alias NAME MODULE` lines whose NAME has no wildcard.
fn parse_plain_aliases(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("alias"), Some(alias), Some(module)) =
            (words.next(), words.next(), words.next())
        {
            if !alias.contains(['*', '?', '[']) {
                map.entry(normalize(alias))
                    .or_default()
                    .push(normalize(module));
            }
        }
    }
    map
}

fn load(path: &Path, kernel_decompresses: bool, options: &str) -> io::Result<()> {
    const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
    let compressed = [".xz", ".zst", ".gz"]
        .iter()
        .any(|s| path.to_string_lossy().ends_with(s));
    if compressed && !kernel_decompresses {
        return Err(io::Error::other(
            "compressed module and the kernel cannot decompress it",
        ));
    }
    let file = fs::File::open(path)?;
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    let options = std::ffi::CString::new(options).map_err(io::Error::other)?;
    match rustix::system::finit_module(&file, &options, flags) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Files to place in the `/usr` metadata layer, relative to it.
pub type LayerFiles = Vec<(PathBuf, Vec<u8>)>;

/// Merge the module metadata of the `/usr` layers (top first, base last)
/// for every kernel version an extension ships `modules.dep` for. Empty
/// when no extension carries module metadata.
pub fn merged_metadata(ext_layers: &[PathBuf], base: Option<&Path>) -> io::Result<LayerFiles> {
    let mut versions = Vec::new();
    for layer in ext_layers {
        let Ok(entries) = fs::read_dir(layer.join("lib/modules")) else {
            continue;
        };
        for entry in entries {
            let kver = entry?.file_name().to_string_lossy().into_owned();
            if layer
                .join("lib/modules")
                .join(&kver)
                .join("modules.dep")
                .is_file()
                && !versions.contains(&kver)
            {
                versions.push(kver);
            }
        }
    }
    let mut files = Vec::new();
    for kver in versions {
        let rel = Path::new("lib/modules").join(&kver);
        let dirs: Vec<PathBuf> = ext_layers
            .iter()
            .map(|l| l.join(&rel))
            .chain(base.map(|b| b.join(&rel)))
            .collect();
        for (name, content) in merge_version(&dirs)? {
            files.push((rel.join(name), content));
        }
    }
    Ok(files)
}

/// The depmod files merged across layers.
const METADATA_FILES: [&str; 6] = [
    "modules.dep",
    "modules.alias",
    "modules.symbols",
    "modules.softdep",
    "modules.weakdep",
    "modules.devname",
];

/// Larger than any real kernel's (Debian's biggest, modules.alias, is
/// about 1.5 MB): an extension cannot make the initrd read a huge file.
const METADATA_MAX_BYTES: u64 = 32 << 20;

/// Check that the module metadata one extension's `/usr` layer ships can be
/// merged, so a bad file refuses that extension instead of the merge of
/// all.
pub fn check_layer(layer: &Path) -> Result<(), String> {
    let modules = layer.join("lib/modules");
    let Ok(entries) = fs::read_dir(&modules) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read /usr/lib/modules: {e}"))?;
        let dir = entry.path();
        if !dir.join("modules.dep").is_file() {
            continue;
        }
        let kver = entry.file_name().to_string_lossy().into_owned();
        for name in METADATA_FILES {
            read_metadata(&dir.join(name))
                .map_err(|e| format!("bad module metadata /usr/lib/modules/{kver}/{name}: {e}"))?;
        }
    }
    Ok(())
}

/// One metadata file as text; None when it does not exist.
fn read_metadata(path: &Path) -> io::Result<Option<String>> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(METADATA_MAX_BYTES + 1).read_to_end(&mut bytes)?;
    metadata_text(bytes).map(Some)
}

/// A metadata file's bytes as the text the merge takes: UTF-8, at most
/// [`METADATA_MAX_BYTES`] (a longer file may be given cut at one byte more).
pub fn metadata_text(bytes: Vec<u8>) -> io::Result<String> {
    if bytes.len() as u64 > METADATA_MAX_BYTES {
        return Err(io::Error::other(format!(
            "larger than {} MiB",
            METADATA_MAX_BYTES >> 20
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// One kernel version's metadata files in one layer, in [`METADATA_FILES`]
/// order; None for a file the layer does not have.
pub type VersionTexts = [Option<String>; METADATA_FILES.len()];

/// Read the metadata files of `dirs` (one kernel version's directory per
/// layer), file by file.
fn read_version(dirs: &[PathBuf]) -> io::Result<Vec<VersionTexts>> {
    let mut layers: Vec<VersionTexts> = vec![Default::default(); dirs.len()];
    for (i, name) in METADATA_FILES.iter().enumerate() {
        for (layer, dir) in layers.iter_mut().zip(dirs) {
            let path = dir.join(name);
            layer[i] = read_metadata(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
    }
    Ok(layers)
}

/// The texts of file `name` in the layers that have it, top first.
fn texts_of<'t>(layers: &'t [VersionTexts], name: &str) -> Vec<&'t str> {
    let i = METADATA_FILES
        .iter()
        .position(|n| *n == name)
        .expect("a metadata file");
    layers.iter().filter_map(|l| l[i].as_deref()).collect()
}

/// Lines of all layers, first occurrence kept, top layer first.
fn union_lines<'t>(texts: &[&'t str]) -> Vec<&'t str> {
    let mut seen = HashSet::new();
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter(|l| seen.insert(*l))
        .collect()
}

fn merge_version(dirs: &[PathBuf]) -> io::Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(merge_texts(&read_version(dirs)?))
}

/// Merge one kernel version's metadata of the layers (top first): the
/// depmod text files and the kmod indexes, by file name.
pub fn merge_texts(layers: &[VersionTexts]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let mut modules: Vec<(String, DepEntry)> = Vec::new();
    let mut seen = HashSet::new();
    for text in texts_of(layers, "modules.dep") {
        for (name, entry) in parse_dep(text) {
            if seen.insert(name.clone()) {
                modules.push((name, entry));
            }
        }
    }
    let dep_line = |e: &DepEntry| {
        let mut line = format!("{}:", e.path);
        for d in &e.deps {
            line.push(' ');
            line.push_str(d);
        }
        line
    };
    let dep_text: String = modules.iter().map(|(_, e)| dep_line(e) + "\n").collect();
    let mut dep_index = Index::default();
    for (priority, (name, entry)) in modules.iter().enumerate() {
        dep_index.insert(name.as_str(), dep_line(entry), priority as u32);
    }
    out.push(("modules.dep", dep_text.into_bytes()));
    out.push(("modules.dep.bin", dep_index.to_bytes()));

    // "alias PATTERN MODULE" lines; the symbols file has the same shape.
    // libkmod looks aliases up with '-' folded to '_', as depmod stores them.
    for (text_name, bin_name, fold) in [
        ("modules.alias", "modules.alias.bin", true),
        ("modules.symbols", "modules.symbols.bin", false),
    ] {
        let texts = texts_of(layers, text_name);
        let lines = union_lines(&texts);
        let mut index = Index::default();
        for (priority, line) in lines.iter().enumerate() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                let key = if fold {
                    normalize_alias(pattern)
                } else {
                    Cow::Borrowed(pattern)
                };
                index.insert(key, module, priority as u32);
            }
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        out.push((text_name, text.into_bytes()));
        out.push((bin_name, index.to_bytes()));
    }
    for name in ["modules.softdep", "modules.weakdep", "modules.devname"] {
        let texts = texts_of(layers, name);
        let lines = union_lines(&texts);
        if !lines.is_empty() {
            out.push((
                name,
                lines
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .into_bytes(),
            ));
        }
    }
    out
}

/// A kmod index file (`modules.*.bin`): a byte trie of keys, each leaf
/// holding prioritised string values. libkmod only reads these, never the
/// text files, so merged metadata must include them.
#[derive(Default, Debug)]
struct Index<'a> {
    entries: Vec<(Cow<'a, str>, u32, Cow<'a, str>)>,
}

const INDEX_MAGIC: u32 = 0xB007_F457;
const INDEX_VERSION: u32 = 0x0002_0001;
const NODE_PREFIX: u32 = 0x8000_0000;
const NODE_VALUES: u32 = 0x4000_0000;
const NODE_CHILDS: u32 = 0x2000_0000;

impl<'a> Index<'a> {
    fn insert(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
        priority: u32,
    ) {
        self.entries.push((key.into(), priority, value.into()));
    }

    /// Serialise. Built from the sorted keys in one pass (no node objects):
    /// the initrd runs this over tens of thousands of aliases and symbols.
    fn to_bytes(&self) -> Vec<u8> {
        let mut entries: Vec<(&[u8], u32, &str)> = self
            .entries
            .iter()
            .map(|(k, p, v)| (k.as_bytes(), *p, v.as_ref()))
            .collect();
        entries.sort();
        entries.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
        let mut out = Vec::with_capacity(entries.len() * 48 + 12);
        out.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
        out.extend_from_slice(&INDEX_VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let root = if entries.is_empty() {
            out.len() as u32
        } else {
            write_node(&entries, 0, &mut out)
        };
        out[8..12].copy_from_slice(&root.to_be_bytes());
        out
    }
}

/// Write the node for `entries` (sorted, all sharing their first `depth`
/// bytes), children first, and return its tagged offset. The bytes all
/// keys share beyond `depth` become the node's prefix, as depmod folds them.
fn write_node(entries: &[(&[u8], u32, &str)], depth: usize, out: &mut Vec<u8>) -> u32 {
    let first = entries[0].0;
    let last = entries[entries.len() - 1].0;
    let mut end = depth;
    while end < first.len() && end < last.len() && first[end] == last[end] {
        end += 1;
    }
    // Sorted, so keys ending here (the node's values) come first.
    let ending = entries.iter().take_while(|e| e.0.len() == end).count();
    let mut children: Vec<(u8, u32)> = Vec::new();
    let mut rest = &entries[ending..];
    while let Some(&(key, _, _)) = rest.first() {
        let byte = key[end];
        let group = rest.iter().take_while(|e| e.0[end] == byte).count();
        children.push((byte, write_node(&rest[..group], end + 1, out)));
        rest = &rest[group..];
    }
    let offset = out.len() as u32;
    let mut tag = 0;
    if end > depth {
        tag |= NODE_PREFIX;
        out.extend_from_slice(&first[depth..end]);
        out.push(0);
    }
    if let (Some(&(lo, _)), Some(&(hi, _))) = (children.first(), children.last()) {
        tag |= NODE_CHILDS;
        out.push(lo);
        out.push(hi);
        let mut next = children.iter().peekable();
        for b in lo..=hi {
            let child = match next.peek() {
                Some(&&(c, off)) if c == b => {
                    next.next();
                    off
                }
                _ => 0,
            };
            out.extend_from_slice(&child.to_be_bytes());
        }
    }
    if ending > 0 {
        tag |= NODE_VALUES;
        let mut values: Vec<(u32, &str)> = entries[..ending].iter().map(|e| (e.1, e.2)).collect();
        values.sort();
        out.extend_from_slice(&(values.len() as u32).to_be_bytes());
        for (priority, value) in values {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
    }
    offset | tag
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader for the index format, independent of the writer, following
    /// libkmod's exact-match lookup.
    fn lookup(bytes: &[u8], key: &str) -> Vec<(u32, String)> {
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!(be(0), INDEX_MAGIC);
        assert_eq!(be(4), INDEX_VERSION);
        let mut tagged = be(8);
        let key = key.as_bytes();
        let mut i = 0;
        loop {
            let mut at = (tagged & 0x0FFF_FFFF) as usize;
            if tagged & NODE_PREFIX != 0 {
                let end = at + bytes[at..].iter().position(|&b| b == 0).unwrap();
                let prefix = &bytes[at..end];
                if !key[i..].starts_with(prefix) {
                    return vec![];
                }
                i += prefix.len();
                at = end + 1;
            }
            let mut child = 0;
            if tagged & NODE_CHILDS != 0 {
                let (first, last) = (bytes[at], bytes[at + 1]);
                at += 2;
                if i < key.len() && (first..=last).contains(&key[i]) {
                    child = be(at + 4 * (key[i] - first) as usize);
                }
                at += 4 * (last - first + 1) as usize;
            }
            if i == key.len() {
                if tagged & NODE_VALUES == 0 {
                    return vec![];
                }
                let count = be(at) as usize;
                at += 4;
                let mut values = Vec::new();
                for _ in 0..count {
                    let priority = be(at);
                    at += 4;
                    let end = at + bytes[at..].iter().position(|&b| b == 0).unwrap();
                    values.push((
                        priority,
                        String::from_utf8(bytes[at..end].to_vec()).unwrap(),
                    ));
                    at = end + 1;
                }
                return values;
            }
            if child == 0 {
                return vec![];
            }
            tagged = child;
            i += 1;
        }
    }

    #[test]
    fn the_module_tree_is_read_only_for_a_module_to_load_and_each_name_asked_once() {
        let sys = tempfile::tempdir().unwrap();
        fs::create_dir(sys.path().join("loop")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/erofs/erofs.ko\n",
        )
        .unwrap();
        let cmdline = KernelCmdline::parse("");
        let modules = OnDemand::with_sys_module(dir.path(), sys.path(), &cmdline);
        let looked_for_the_tree = |m: &OnDemand<'_>| m.state.lock().unwrap().loader.is_some();
        modules.need(&["loop", "erofs"]);
        assert!(
            !looked_for_the_tree(&modules),
            "loaded and built in: nothing to read"
        );
        // Not loaded: modules.dep is looked for (absent here: the kernel's job).
        modules.need(&["loop", "dm-mod"]);
        assert!(looked_for_the_tree(&modules));
        let asked = modules.state.lock().unwrap().asked.clone();
        assert_eq!(asked, ["loop", "erofs", "dm_mod"].map(String::from).into());
    }

    #[test]
    fn loaded_and_built_in_modules_are_not_wanted() {
        let sys = tempfile::tempdir().unwrap();
        fs::create_dir(sys.path().join("dm_mod")).unwrap();
        fs::create_dir(sys.path().join("loop")).unwrap();
        let wanted = not_loaded(&["loop", "dm-mod", "overlay", "erofs"], sys.path());
        assert_eq!(wanted, ["overlay", "erofs"]);
        let builtin = "kernel/fs/overlayfs/overlay.ko\nkernel/drivers/md/dm-bufio.ko\n";
        assert_eq!(not_built_in(wanted, builtin), ["erofs"]);
        assert!(not_loaded(&["loop", "dm_mod"], sys.path()).is_empty());
    }

    #[test]
    fn index_round_trips_through_a_libkmod_style_reader() {
        let mut index = Index::default();
        let keys = ["dummy", "dm_mod", "dm_verity", "d", "ifb", "loop", "loop_x"];
        for (i, k) in keys.iter().enumerate() {
            index.insert(*k, format!("value-{k}"), i as u32);
        }
        index.insert("dummy", "second", 9);
        let bytes = index.to_bytes();
        for (i, k) in keys.iter().enumerate() {
            let values = lookup(&bytes, k);
            assert!(
                values.contains(&(i as u32, format!("value-{k}"))),
                "{k}: {values:?}"
            );
        }
        assert_eq!(lookup(&bytes, "dummy").len(), 2);
        for missing in ["dm", "dummyx", "l", "", "zzz"] {
            assert!(lookup(&bytes, missing).is_empty(), "{missing}");
        }
    }

    fn layer(tmp: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = tmp.join(name);
        for (rel, content) in files {
            let p = root.join("lib/modules/6.12.0").join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        root
    }

    #[test]
    fn metadata_of_all_layers_is_merged_top_first() {
        let tmp = tempfile::tempdir().unwrap();
        let base = layer(
            tmp.path(),
            "base",
            &[
                (
                    "modules.dep",
                    "kernel/fs/erofs.ko.xz:\nkernel/net/ifb.ko.xz: kernel/net/core.ko.xz\n",
                ),
                ("modules.alias", "alias fs-erofs erofs\n"),
            ],
        );
        let a = layer(
            tmp.path(),
            "a",
            &[
                (
                    "modules.dep",
                    "extra/dummy.ko.xz:\nkernel/fs/erofs.ko.xz:\n",
                ),
                (
                    "modules.alias",
                    "alias rtnl-link-dummy dummy\nalias fs-erofs erofs\n",
                ),
            ],
        );
        let b = layer(
            tmp.path(),
            "b",
            &[
                ("modules.dep", "updates/ifb.ko.xz:\n"),
                ("modules.softdep", "softdep ifb pre: dummy\n"),
            ],
        );
        let files = merged_metadata(&[b.clone(), a.clone()], Some(&base)).unwrap();
        let get = |name: &str| {
            let rel = Path::new("lib/modules/6.12.0").join(name);
            files
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, c)| c.clone())
                .unwrap()
        };
        assert_eq!(
            String::from_utf8(get("modules.dep")).unwrap(),
            "updates/ifb.ko.xz:\nextra/dummy.ko.xz:\nkernel/fs/erofs.ko.xz:\n"
        );
        assert_eq!(
            String::from_utf8(get("modules.alias")).unwrap(),
            "alias rtnl-link-dummy dummy\nalias fs-erofs erofs\n"
        );
        assert_eq!(
            String::from_utf8(get("modules.softdep")).unwrap(),
            "softdep ifb pre: dummy\n"
        );
        let dep_bin = get("modules.dep.bin");
        assert_eq!(
            lookup(&dep_bin, "ifb"),
            [(0, "updates/ifb.ko.xz:".to_string())]
        );
        assert_eq!(
            lookup(&dep_bin, "dummy"),
            [(1, "extra/dummy.ko.xz:".to_string())]
        );
        assert_eq!(
            lookup(&get("modules.alias.bin"), "rtnl_link_dummy"),
            [(0, "dummy".to_string())]
        );
        assert!(!files.iter().any(|(p, _)| p.ends_with("modules.devname")));
    }

    /// The real libkmod (modprobe from Debian's kmod) resolves modules,
    /// dependencies and aliases through the merged index files alone.
    #[test]
    fn host_modprobe_reads_the_merged_indexes() {
        let tmp = tempfile::tempdir().unwrap();
        let tmp = tmp.path();
        let base = layer(
            tmp,
            "base",
            &[("modules.dep", "kernel/core.ko:\n"), ("kernel/core.ko", "")],
        );
        let a = layer(
            tmp,
            "a",
            &[
                (
                    "modules.dep",
                    "extra/ifb.ko: kernel/core.ko\nkernel/core.ko:\n",
                ),
                ("modules.alias", "alias rtnl-link-ifb ifb\n"),
                ("extra/ifb.ko", ""),
            ],
        );
        let b = layer(
            tmp,
            "b",
            &[("modules.dep", "extra/dummy.ko:\n"), ("extra/dummy.ko", "")],
        );
        // What the overlay would show: every layer's files, merged metadata on top.
        let merged = tmp.join("merged");
        for l in [&base, &a, &b] {
            let status = std::process::Command::new("cp")
                .arg("-rT")
                .arg(l)
                .arg(&merged)
                .status()
                .unwrap();
            assert!(status.success());
        }
        for (rel, content) in merged_metadata(&[b.clone(), a.clone()], Some(&base)).unwrap() {
            fs::write(merged.join(rel), content).unwrap();
        }
        let show = |what: &str| {
            let out = std::process::Command::new("/sbin/modprobe")
                .args(["-C", "/dev/null", "-d"])
                .arg(&merged)
                .args(["-S", "6.12.0", "--show-depends", what])
                .output()
                .expect("modprobe from Debian's kmod package must be installed");
            let dir = merged.join("lib/modules/6.12.0").display().to_string();
            String::from_utf8(out.stdout).unwrap().replace(&dir, "M")
        };
        assert_eq!(
            show("ifb"),
            "insmod M/kernel/core.ko \ninsmod M/extra/ifb.ko \n"
        );
        assert_eq!(show("dummy"), "insmod M/extra/dummy.ko \n");
        assert_eq!(
            show("rtnl-link-ifb"),
            "insmod M/kernel/core.ko \ninsmod M/extra/ifb.ko \n"
        );
        assert_eq!(show("core"), "insmod M/kernel/core.ko \n");
    }

    #[test]
    fn no_module_metadata_in_extensions_means_nothing_to_write() {
        let tmp = tempfile::tempdir().unwrap();
        let base = layer(tmp.path(), "base", &[("modules.dep", "kernel/a.ko:\n")]);
        let ext = tmp.path().join("ext");
        fs::create_dir_all(ext.join("bin")).unwrap();
        assert!(merged_metadata(&[ext], Some(&base)).unwrap().is_empty());
    }

    #[test]
    fn dep_parsing() {
        assert_eq!(
            name_of("kernel/drivers/md/dm-verity.ko.xz").as_deref(),
            Some("dm_verity")
        );
        assert_eq!(name_of("extra/foo.ko").as_deref(), Some("foo"));
        assert_eq!(name_of("nonsense"), None);
        assert_eq!(normalize_alias("rtnl-link-ifb"), "rtnl_link_ifb");
        let soft = parse_softdeps(
            "softdep libcrc32c pre: crc32c post: x\nsoftdep a-b pre: c d\nnonsense\n",
        );
        assert_eq!(soft["libcrc32c"], ["crc32c"]);
        assert_eq!(soft["a_b"], ["c", "d"]);
        let aliases = parse_plain_aliases(
            "alias crc32c crc32c_generic\nalias crc32c crc32c-intel\nalias pci:v* x\n",
        );
        assert_eq!(aliases["crc32c"], ["crc32c_generic", "crc32c_intel"]);
        assert_eq!(aliases.len(), 1);
        assert_eq!(normalize_alias("pci:v*d[0-9]-x"), "pci:v*d[0-9]_x");
        let parsed = parse_dep("a/x.ko.zst: b/y.ko.zst c/z.ko.zst\n\ngarbage\n");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].1.deps, ["b/y.ko.zst", "c/z.ko.zst"]);
    }
}
