//! extension-release files: finding them in an extension, parsing them, and deciding whether an
//! extension fits the host.
//!
//! rdext merges in the initramfs what `systemd-sysext`/`systemd-confext` would merge on the booted
//! system, so an extension must be accepted or ignored exactly as systemd would judge it. The file
//! lookup follows `open_extension_release_at`, the parser follows systemd's env-file parser
//! (os-release syntax), and [`validate`] follows `extension_release_validate`. Behaviour is
//! specified in `sysext-compat.md` §2; [`Class`] comes from `crate::class`.

use crate::class::Class;
use crate::envfile::EnvFile;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

/// `get` with systemd's `isempty()` folded in.
fn non_empty<'a>(env: &'a EnvFile, key: &str) -> Option<&'a str> {
    env.get(key).filter(|v| !v.is_empty())
}

/// systemd splits lists on exactly these four bytes, not on every Unicode space.
fn words(list: &str) -> impl Iterator<Item = &str> {
    list.split([' ', '\t', '\n', '\r'])
        .filter(|w| !w.is_empty())
}

/// Why the host's os-release cannot be used to judge extensions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// systemd refuses to merge anything when the host does not say which OS it is.
    #[error("os-release has no ID, or an empty one")]
    MissingId,
}

/// The host side of the comparison, read from the target root's os-release.
///
/// Empty values are stored as `None`, since systemd treats them like missing keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRelease {
    /// `ID=`; never empty.
    pub id: String,
    /// Words of `ID_LIKE=`: an extension for a parent distribution fits too.
    pub id_like: Vec<String>,
    /// `VERSION_ID=`.
    pub version_id: Option<String>,
    /// `SYSEXT_LEVEL=`.
    pub sysext_level: Option<String>,
    /// `CONFEXT_LEVEL=`.
    pub confext_level: Option<String>,
}

impl HostRelease {
    /// Extracts what [`validate`] compares, failing where systemd would refuse to merge at all.
    pub fn from_env(env: &EnvFile) -> Result<HostRelease, HostError> {
        let owned = |key| non_empty(env, key).map(str::to_owned);
        Ok(HostRelease {
            id: owned("ID").ok_or(HostError::MissingId)?,
            id_like: env
                .get("ID_LIKE")
                .map(|l| words(l).map(str::to_owned).collect())
                .unwrap_or_default(),
            version_id: owned("VERSION_ID"),
            sysext_level: owned("SYSEXT_LEVEL"),
            confext_level: owned("CONFEXT_LEVEL"),
        })
    }

    fn level(&self, class: Class) -> Option<&str> {
        let level = match class {
            Class::Sysext => &self.sysext_level,
            Class::Confext => &self.confext_level,
        };
        level.as_deref().filter(|l| !l.is_empty())
    }
}

/// Why an extension does not fit the host. Display is a short reason for a one-line log.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mismatch {
    /// The release file exists but assigns nothing.
    #[error("no release data")]
    NoReleaseData,
    /// Not meant for the host's scope: (scope key, its value if set, host scope).
    #[error("{0}{value} does not include '{2}'", value = scope_text(.1))]
    Scope(&'static str, Option<String>, String),
    /// Built for another CPU: (extension's `ARCHITECTURE`, host architecture).
    #[error("ARCHITECTURE={0} does not match host {1}")]
    Architecture(String, String),
    /// `ID=` is missing or empty.
    #[error("no ID")]
    NoId,
    /// Built for another OS: (extension's `ID`, host `ID`, host `ID_LIKE` words).
    #[error("ID={0} does not match host ID={1}{like}", like = id_like_text(.2))]
    Id(String, String, Vec<String>),
    /// Both sides declare an API level and they differ: (level key, extension's, host's).
    #[error("{0}={1} does not match host {0}={2}")]
    Level(&'static str, String, String),
    /// The host has a `VERSION_ID` to match and the extension has none: (host `VERSION_ID`).
    #[error("missing VERSION_ID (host has VERSION_ID={0})")]
    NoVersionId(String),
    /// Built for another OS release: (extension's `VERSION_ID`, host's).
    #[error("VERSION_ID={0} does not match host VERSION_ID={1}")]
    VersionId(String, String),
}

fn scope_text(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("={v}"),
        None => " unset (default 'system portable')".to_owned(),
    }
}

fn id_like_text(like: &[String]) -> String {
    if like.is_empty() {
        String::new()
    } else {
        format!(" or ID_LIKE={}", like.join(" "))
    }
}

/// Decides like systemd's `extension_release_validate` whether an extension may be merged on
/// `host`, judged in `scope` (`system`, or `initrd` when the target root has
/// `/etc/initrd-release`). `host_arch` is the systemd architecture name of the running kernel
/// (see [`systemd_arch`]). The first failing check is reported.
pub fn validate(
    class: Class,
    ext: &EnvFile,
    host: &HostRelease,
    scope: &str,
    host_arch: &str,
) -> Result<(), Mismatch> {
    if ext.is_empty() {
        return Err(Mismatch::NoReleaseData);
    }
    let scopes = ext.get(class.scope_key());
    let in_scope = match scopes {
        Some(list) => words(list).any(|w| w == scope),
        None => scope == "system" || scope == "portable",
    };
    if !in_scope {
        let value = scopes.map(str::to_owned);
        return Err(Mismatch::Scope(class.scope_key(), value, scope.to_owned()));
    }
    if let Some(arch) = non_empty(ext, "ARCHITECTURE") {
        if arch != "_any" && arch != host_arch {
            return Err(Mismatch::Architecture(arch.into(), host_arch.into()));
        }
    }
    let id = non_empty(ext, "ID").ok_or(Mismatch::NoId)?;
    if id == "_any" {
        return Ok(());
    }
    if id != host.id && !host.id_like.iter().any(|l| l == id) {
        let like = host.id_like.clone();
        return Err(Mismatch::Id(id.into(), host.id.clone(), like));
    }
    let host_version = host.version_id.as_deref().filter(|v| !v.is_empty());
    let host_level = host.level(class);
    if let (Some(host_level), Some(ext_level)) = (host_level, non_empty(ext, class.level_key())) {
        if host_level != ext_level {
            let key = class.level_key();
            return Err(Mismatch::Level(key, ext_level.into(), host_level.into()));
        }
    } else if let Some(host_version) = host_version {
        let ext_version = non_empty(ext, "VERSION_ID")
            .ok_or_else(|| Mismatch::NoVersionId(host_version.into()))?;
        if ext_version != host_version {
            let host_version = host_version.into();
            return Err(Mismatch::VersionId(ext_version.into(), host_version));
        }
    }
    // Otherwise: a rolling host without version info, or a host with only a level and an
    // extension without one; systemd accepts both.
    Ok(())
}

/// Translates `uname -m` into the names `ARCHITECTURE=` uses, as systemd's `uname_architecture`
/// does; `None` for machines systemd does not know.
pub fn systemd_arch(uname_machine: &str) -> Option<&'static str> {
    Some(match uname_machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "armv8l" | "armv7ml" | "armv7l" | "armv6l" | "armv5tl" | "armv5tel" | "armv5tejl"
        | "armv4tl" | "armv4l" => "arm",
        "armv8b" | "armv7mb" | "armv7b" | "armv6b" | "armv5tejb" | "armv5teb" | "armv5tb"
        | "armv4tb" | "armv4b" => "arm-be",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        // Plain "riscv" is ambiguous; systemd resolves it by its own pointer size.
        "riscv" if cfg!(target_pointer_width = "64") => "riscv64",
        "riscv" => "riscv32",
        "ppc64le" => "ppc64-le",
        "ppc64" => "ppc64",
        "ppcle" => "ppc-le",
        "ppc" => "ppc",
        "s390x" => "s390x",
        "s390" => "s390",
        "loongarch64" => "loongarch64",
        "alpha" => "alpha",
        "arc" => "arc",
        "arceb" => "arc-be",
        "crisv32" => "cris",
        "ia64" => "ia64",
        "parisc64" => "parisc64",
        "parisc" => "parisc",
        "m68k" => "m68k",
        "mips64" => "mips64",
        "mips" => "mips",
        "nios2" => "nios2",
        "sh5" => "sh64",
        "sh4a" | "sh4" | "sh3" | "sh2a" | "sh2" => "sh",
        "sparc64" => "sparc64",
        "sparc" => "sparc",
        "tilegx" => "tilegx",
        _ => return None,
    })
}

/// systemd's `image_name_is_valid`: names that could not be a single file name, or that look
/// like temporary files (`.#…`), are neither images nor release-file suffixes.
pub fn is_valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.starts_with(".#")
        && !name.bytes().any(|b| b == b'/' || b < b' ' || b == 0x7f)
}

/// The part of an image name that a release file may be named after, so that versioned images
/// (`foo_1.2.raw`, `foo+3.sysext.raw`) still match `extension-release.foo`.
pub fn image_base_name(image_name: &str) -> &str {
    let name = [".sysext.raw", ".confext.raw", ".raw"]
        .iter()
        .find_map(|suffix| image_name.strip_suffix(suffix))
        .unwrap_or(image_name);
    name.find(['_', '+']).map_or(name, |cut| &name[..cut])
}

/// Why the release file of an extension could not be determined; the extension then cannot be
/// judged at all (systemd fails the command rather than ignoring the image).
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// systemd refuses to look up release files for names that are not valid image names.
    #[error("invalid image name {0:?}")]
    InvalidName(String),
    /// `extension-release.<name>` exists but is a directory or special file.
    #[error("{} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    /// Resolving or reading the release directory failed other than by its absence.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path being looked up.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The fallback scan is ambiguous; systemd refuses to choose (ENOTUNIQ).
    #[error("several release files could belong to this image: {}", list_paths(.0))]
    NotUnique(Vec<PathBuf>),
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

const RELEASE_PREFIX: &str = "extension-release.";
const STRICT_XATTR: &str = "user.extension-release.strict";
/// systemd's `CHASE_MAX`.
const MAX_SYMLINKS: usize = 128;

/// Finds the release file of the image `image_name` (its discovered name, §1.3) mounted or
/// unpacked at `root`, following systemd's `open_extension_release_at`.
///
/// `extension-release.<image_name>` is used if it exists, symlinks being resolved inside `root`
/// (an absolute target is taken relative to `root`, `..` stops at `root`). Otherwise the release
/// directory is scanned for regular files (symlinks excluded, as in systemd) named
/// `extension-release.<X>`, where X is the image's [`image_base_name`] or the file carries the
/// xattr `user.extension-release.strict` with a false boolean. `Ok(None)` means "not an
/// extension of this class"; the returned path contains no symlinks below `root`.
pub fn find_release_file(
    root: &Path,
    class: Class,
    image_name: &str,
) -> Result<Option<PathBuf>, FindError> {
    if !is_valid_image_name(image_name) {
        return Err(FindError::InvalidName(image_name.to_owned()));
    }
    let dir_rel = Path::new(class.release_dir());
    let exact = dir_rel.join(format!("{RELEASE_PREFIX}{image_name}"));
    match resolve_in(root, &exact) {
        Ok((path, meta)) if meta.is_file() => return Ok(Some(path)),
        Ok((path, _)) => return Err(FindError::NotRegular(path)),
        // An image name of 238 bytes or more makes a release file name no
        // file system holds: only a relaxed release file can serve it.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) => {}
        Err(source) => {
            let path = root.join(exact);
            return Err(FindError::Io { path, source });
        }
    }
    let dir = match resolve_in(root, dir_rel) {
        Ok((dir, _)) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let path = root.join(dir_rel);
            return Err(FindError::Io { path, source });
        }
    };
    let io_err = |source| FindError::Io {
        path: dir.clone(),
        source,
    };
    let base = image_base_name(image_name);
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(RELEASE_PREFIX)) else {
            continue;
        };
        // systemd skips every candidate when the base name is unusable, even relaxed ones.
        if !is_valid_image_name(suffix)
            || !entry.file_type().map_err(io_err)?.is_file()
            || !is_valid_image_name(base)
            || (suffix != base && is_strict(&entry.path()))
        {
            continue;
        }
        found.push(entry.path());
    }
    if found.len() > 1 {
        found.sort();
        return Err(FindError::NotUnique(found));
    }
    Ok(found.pop())
}

/// A release file is matched strictly by name unless its xattr says explicitly otherwise; an
/// absent, unreadable or unparsable value keeps it strict.
fn is_strict(path: &Path) -> bool {
    let mut buf = [0u8; 16];
    let Ok(len) = rustix::fs::lgetxattr(path, STRICT_XATTR, &mut buf[..]) else {
        return true;
    };
    let value = buf[..len].strip_suffix(&[0]).unwrap_or(&buf[..len]);
    let falsy = ["0", "no", "n", "false", "f", "off"];
    !falsy
        .iter()
        .any(|f| value.eq_ignore_ascii_case(f.as_bytes()))
}

/// Resolves `rel` below `root` like systemd's chase with `root` as the root directory, so that an
/// image's symlinks cannot point us at host files.
fn resolve_in(root: &Path, rel: &Path) -> io::Result<(PathBuf, Metadata)> {
    let mut todo = Vec::new();
    queue(&mut todo, rel);
    let (mut done, mut depth, mut hops) = (root.to_path_buf(), 0, 0);
    while let Some(part) = todo.pop() {
        if part == ".." {
            if depth > 0 {
                done.pop();
                depth -= 1;
            }
            continue;
        }
        let next = done.join(&part);
        if !fs::symlink_metadata(&next)?.file_type().is_symlink() {
            (done, depth) = (next, depth + 1);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return Err(rustix::io::Errno::LOOP.into());
        }
        let target = fs::read_link(&next)?;
        if target.is_absolute() {
            (done, depth) = (root.to_path_buf(), 0);
        }
        queue(&mut todo, &target);
    }
    // Only `root` itself may still be a symlink; following it is the caller's intent.
    let meta = fs::metadata(&done)?;
    Ok((done, meta))
}

/// Pushes the components of `path` so that popping yields them in order.
fn queue(todo: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => todo.push(name.to_owned()),
            Component::ParentDir => todo.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `|` stands for a newline, to keep the cases short.
    fn lines(text: &str) -> EnvFile {
        EnvFile::parse(text.replace('|', "\n")).unwrap()
    }

    #[test]
    fn host_release() {
        let h = HostRelease::from_env(&lines(
            "ID=ubuntu|ID_LIKE='debian  fedora'|VERSION_ID=|CONFEXT_LEVEL=2",
        ))
        .unwrap();
        assert_eq!(h.id_like, ["debian", "fedora"]);
        assert_eq!((h.version_id, h.sysext_level), (None, None));
        assert_eq!(h.confext_level.as_deref(), Some("2"));
        for text in ["NAME=x", "ID="] {
            assert_eq!(
                HostRelease::from_env(&lines(text)),
                Err(HostError::MissingId)
            );
        }
    }

    #[test]
    fn validate_follows_systemd() {
        use Class::{Confext as C, Sysext as S};
        const DEB: &str = "ID=debian|VERSION_ID=13";
        const LVL: &str = "ID=debian|VERSION_ID=13|SYSEXT_LEVEL=1";
        const UBU: &str = "ID=ubuntu|ID_LIKE=debian|VERSION_ID=13";
        const ROLLING: &str = "ID=arch|VERSION_ID=";
        const NO_VERSION: &str = "ID=debian";
        const LVL_ONLY: &str = "ID=debian|SYSEXT_LEVEL=1";
        const CONF3: &str = "ID=debian|CONFEXT_LEVEL=3";
        const CONF3_LVL4: &str = "ID=debian|CONFEXT_LEVEL=3|SYSEXT_LEVEL=4";
        // (class, extension, host, scope, "" for accepted or the reason)
        #[rustfmt::skip]
        let cases: &[(Class, &str, &str, &str, &str)] = &[
            (S, "", DEB, "system", "no release data"),
            (S, "ID=debian|VERSION_ID=13", DEB, "system", ""),
            (S, "ID=debian|VERSION_ID=13", DEB, "initrd", "SYSEXT_SCOPE unset (default 'system portable') does not include 'initrd'"),
            (S, "ID=debian|VERSION_ID=13|SYSEXT_SCOPE=system\tinitrd", DEB, "initrd", ""),
            (S, "ID=debian|SYSEXT_SCOPE=initrd", DEB, "system", "SYSEXT_SCOPE=initrd does not include 'system'"),
            // An empty list matches no scope at all, unlike a missing key.
            (S, "ID=debian|VERSION_ID=13|SYSEXT_SCOPE=", DEB, "system", "SYSEXT_SCOPE= does not include 'system'"),
            (C, "ID=debian|SYSEXT_SCOPE=initrd", NO_VERSION, "system", ""),
            (S, "ID=debian|VERSION_ID=13|ARCHITECTURE=x86-64", DEB, "system", ""),
            (S, "ID=debian|VERSION_ID=13|ARCHITECTURE=_any", DEB, "system", ""),
            (S, "ID=debian|VERSION_ID=13|ARCHITECTURE=", DEB, "system", ""),
            (S, "ID=_any|ARCHITECTURE=arm64", DEB, "system", "ARCHITECTURE=arm64 does not match host x86-64"),
            (S, "VERSION_ID=13", DEB, "system", "no ID"),
            (S, "ID=|VERSION_ID=13", DEB, "system", "no ID"),
            // `_any` skips the version checks entirely.
            (S, "ID=_any|VERSION_ID=1|SYSEXT_LEVEL=9", LVL, "system", ""),
            (S, "ID=fedora|VERSION_ID=13", DEB, "system", "ID=fedora does not match host ID=debian"),
            (S, "ID=debian|VERSION_ID=13", UBU, "system", ""),
            (S, "ID=arch", UBU, "system", "ID=arch does not match host ID=ubuntu or ID_LIKE=debian"),
            // A rolling host has nothing further to compare.
            (S, "ID=arch|VERSION_ID=1|SYSEXT_LEVEL=2", ROLLING, "system", ""),
            (S, "ID=debian|VERSION_ID=12", DEB, "system", "VERSION_ID=12 does not match host VERSION_ID=13"),
            (S, "ID=debian|SYSEXT_LEVEL=1", DEB, "system", "missing VERSION_ID (host has VERSION_ID=13)"),
            (S, "ID=debian|SYSEXT_LEVEL=1|VERSION_ID=99", LVL, "system", ""),
            (S, "ID=debian|SYSEXT_LEVEL=2|VERSION_ID=13", LVL, "system", "SYSEXT_LEVEL=2 does not match host SYSEXT_LEVEL=1"),
            // Without its own level the extension is compared by VERSION_ID ...
            (S, "ID=debian|VERSION_ID=12", LVL, "system", "VERSION_ID=12 does not match host VERSION_ID=13"),
            // ... unless the host has a level but no VERSION_ID: then it is accepted.
            (S, "ID=debian|VERSION_ID=12", LVL_ONLY, "system", ""),
            (C, "ID=debian|CONFEXT_LEVEL=3|SYSEXT_LEVEL=9", CONF3, "system", ""),
            (C, "ID=debian|CONFEXT_LEVEL=4", CONF3_LVL4, "system", "CONFEXT_LEVEL=4 does not match host CONFEXT_LEVEL=3"),
        ];
        for (class, ext, host, scope, want) in cases {
            let host = HostRelease::from_env(&lines(host)).unwrap();
            let got = validate(*class, &lines(ext), &host, scope, "x86-64");
            let got = got.err().map(|m| m.to_string()).unwrap_or_default();
            assert_eq!(got, *want, "{ext} on {host:?} in {scope}");
        }
    }

    #[test]
    fn arch_and_names() {
        #[rustfmt::skip]
        let arches = [("x86_64", "x86-64"), ("i686", "x86"), ("aarch64", "arm64"), ("armv7l", "arm"),
            ("armv5tejb", "arm-be"), ("riscv64", "riscv64"), ("ppc64le", "ppc64-le"),
            ("s390x", "s390x"), ("loongarch64", "loongarch64"), ("sh4a", "sh")];
        for (machine, arch) in arches {
            assert_eq!(systemd_arch(machine), Some(arch), "{machine}");
        }
        assert_eq!(systemd_arch("x86-64"), None);
        #[rustfmt::skip]
        let bases = [("foo_1.2.raw", "foo"), ("foo+3.sysext.raw", "foo"), ("foo", "foo"),
            ("a.b.confext.raw", "a.b"), ("foo_1+2-1", "foo"), ("_x", "")];
        for (image, base) in bases {
            assert_eq!(image_base_name(image), base, "{image}");
        }
        assert!(is_valid_image_name("foo-1.2_x+3"));
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            ".#foo",
            "a\tb",
            "a\x7fb",
            &"x".repeat(256),
        ] {
            assert!(!is_valid_image_name(bad), "{bad:?}");
        }
    }

    const DIR: &str = "usr/lib/extension-release.d";

    /// A sysext tree under `base` with the given release files (`name` or `name -> target`).
    fn tree_in(base: &Path, entries: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir_in(base).unwrap();
        fs::create_dir_all(root.path().join(DIR)).unwrap();
        for entry in entries {
            let (name, target) = entry.split_once(" -> ").unwrap_or((entry, ""));
            let path = root.path().join(DIR).join(name);
            match target {
                "" => fs::write(path, "ID=_any\n").unwrap(),
                target => symlink(target, path).unwrap(),
            }
        }
        root
    }

    fn tree(entries: &[&str]) -> tempfile::TempDir {
        tree_in(&std::env::temp_dir(), entries)
    }

    fn find(root: &tempfile::TempDir, image: &str) -> Option<String> {
        let found = find_release_file(root.path(), Class::Sysext, image).unwrap()?;
        let rel = found.strip_prefix(root.path()).unwrap();
        Some(rel.to_str().unwrap().to_owned())
    }

    #[test]
    fn find_by_exact_or_base_name() {
        let root = tree(&["extension-release.foo", "extension-release.foo_1"]);
        let release = |name: &str| Some(format!("{DIR}/extension-release.{name}"));
        assert_eq!(find(&root, "foo_1"), release("foo_1"));
        assert_eq!(find(&root, "foo_2"), release("foo"));
        assert_eq!(find(&root, "foo+3"), release("foo"));
        assert_eq!(find(&root, "bar"), None);
        let confext = find_release_file(root.path(), Class::Confext, "foo").unwrap();
        assert_eq!(confext, None);
        let invalid = find_release_file(root.path(), Class::Sysext, ".#foo");
        assert!(matches!(invalid, Err(FindError::InvalidName(_))));
        // An unusable base name disables the scan altogether.
        assert_eq!(find(&tree(&["extension-release.x"]), "_x"), None);
        // No release file can be named for a 251-byte name: none, no error.
        assert_eq!(find(&root, &"x".repeat(251)), None);
        let no_dir = tempfile::tempdir().unwrap();
        assert_eq!(find(&no_dir, "foo"), None);
        fs::create_dir(no_dir.path().join("usr")).unwrap();
        fs::write(no_dir.path().join("usr/lib"), "").unwrap();
        let not_dir = find_release_file(no_dir.path(), Class::Sysext, "foo");
        assert!(matches!(not_dir, Err(FindError::Io { .. })), "{not_dir:?}");
    }

    #[test]
    fn find_resolves_symlinks_inside_the_image() {
        let root = tree(&[
            "extension-release.abs -> /usr/lib/extension-release.d/real",
            "extension-release.up -> ../../../../../../../outside",
            "extension-release.loop -> extension-release.loop",
            "extension-release.lnk -> real",
            "extension-release.gone_1 -> /nowhere",
            "extension-release.gone",
            "real",
        ]);
        fs::write(root.path().join("outside"), "").unwrap();
        fs::create_dir(root.path().join(DIR).join("extension-release.dir")).unwrap();
        assert_eq!(find(&root, "abs"), Some(format!("{DIR}/real")));
        assert_eq!(find(&root, "up"), Some("outside".to_owned()));
        assert_eq!(find(&root, "lnk"), Some(format!("{DIR}/real")));
        // The scan never takes symlinks, even with a matching base name.
        assert_eq!(find(&root, "lnk_2"), None);
        // A dangling exact match falls back to the scan.
        assert_eq!(
            find(&root, "gone_1"),
            Some(format!("{DIR}/extension-release.gone"))
        );
        match find_release_file(root.path(), Class::Sysext, "dir") {
            Err(FindError::NotRegular(p)) => assert!(p.ends_with("extension-release.dir")),
            other => panic!("{other:?}"),
        }
        let looped = find_release_file(root.path(), Class::Sysext, "loop");
        assert!(matches!(looped, Err(FindError::Io { .. })), "{looped:?}");
    }

    #[test]
    fn find_relaxed_by_xattr() {
        let set = |path: &Path, value: &[u8]| {
            rustix::fs::setxattr(path, STRICT_XATTR, value, rustix::fs::XattrFlags::empty())
        };
        let bases = [std::env::temp_dir(), PathBuf::from("/dev/shm")];
        let Some(base) = bases.iter().find(|base| {
            tempfile::tempdir_in(base).is_ok_and(|probe| set(probe.path(), b"0").is_ok())
        }) else {
            panic!("this test needs user xattrs in the temp dir or /dev/shm (tmpfs has them)");
        };
        let renamed = format!("{DIR}/extension-release.renamed");
        let relaxed: [&[u8]; 6] = [b"0", b"No", b"n", b"FALSE", b"off", b"f\0"];
        let strict: [&[u8]; 6] = [b"1", b"yes", b"true", b"", b"0\0\0", b"nope"];
        let cases = relaxed.iter().map(|v| (v, true));
        for (value, accepted) in cases.chain(strict.iter().map(|v| (v, false))) {
            let root = tree_in(base, &["extension-release.renamed"]);
            set(&root.path().join(&renamed), value).unwrap();
            let want = accepted.then(|| renamed.clone());
            assert_eq!(find(&root, "foo"), want, "{value:?}");
        }
        // A name too long for its own release file (255 bytes, as an image
        // file name of 255 bytes without `.raw` can be) finds the relaxed one.
        let root = tree_in(base, &["extension-release.renamed"]);
        set(&root.path().join(&renamed), b"0").unwrap();
        assert_eq!(find(&root, &"x".repeat(251)), Some(renamed.clone()));
        let root = tree_in(
            base,
            &["extension-release.renamed", "extension-release.foo"],
        );
        set(&root.path().join(&renamed), b"0").unwrap();
        match find_release_file(root.path(), Class::Sysext, "foo_1") {
            Err(FindError::NotUnique(paths)) => {
                let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap()).collect();
                assert_eq!(
                    names,
                    ["extension-release.foo", "extension-release.renamed"]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
