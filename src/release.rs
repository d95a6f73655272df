//! extension-release files: finding them in an extension, parsing them, and deciding whether an
//! extension fits the host.
//!
//! rdext merges in the initramfs what `systemd-sysext`/`systemd-confext` would merge on the booted
//! system, so an extension must be accepted or ignored exactly as systemd would judge it. The file
//! lookup follows `open_extension_release_at`, the parser follows systemd's env-file parser
//! (os-release syntax), and [`validate`] follows `extension_release_validate`.

use crate::class::Class;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an os-release style file was refused as a whole; systemd then reads no data from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// systemd refuses files with embedded NUL bytes rather than guess where they end.
    #[error("file contains a NUL byte")]
    NulByte,
    /// A key or value that is not UTF-8 makes systemd drop the whole file, not just that line.
    #[error("invalid UTF-8 in the assignment on line {line}")]
    InvalidUtf8 {
        /// 1-based line on which the assignment starts.
        line: usize,
    },
}

/// The assignments of an os-release style file, in the order keys first appear.
///
/// Keys are stored exactly as written (systemd does not check that they are valid variable names
/// when it loads release files), and a repeated key replaces the earlier value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pairs: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
}

impl EnvFile {
    /// Parses with systemd's env-file rules so that exotic quoting gives the same values as there.
    ///
    /// Bytes, not `&str`, because invalid UTF-8 is only an error inside assignments: a Latin-1
    /// comment is fine for systemd and must be fine here. Lines without `=` are silently skipped,
    /// CR counts as a line end, quotes open only at the start of a value (or right after a closing
    /// quote), and an unterminated quote runs to the end of the file.
    pub fn parse(data: impl AsRef<[u8]>) -> Result<EnvFile, ParseError> {
        let data = data.as_ref();
        if data.contains(&0) {
            return Err(ParseError::NulByte);
        }
        let mut env = EnvFile::default();
        let (mut key, mut value) = (Vec::new(), Vec::new());
        // Where trailing blanks of the key / unquoted value start, if they are still trailing.
        let (mut key_ws, mut value_ws) = (None, None);
        let (mut line, mut key_line) = (1, 1);
        let mut state = State::PreKey;
        for &c in data {
            let newline = c == b'\n' || c == b'\r';
            let blank = c == b' ' || c == b'\t';
            state = match state {
                State::PreKey if c == b'#' || c == b';' => State::Comment,
                State::PreKey if newline || blank => State::PreKey,
                State::PreKey => {
                    (key, key_ws, key_line) = (vec![c], None, line);
                    State::Key
                }
                State::Key if newline => State::PreKey,
                State::Key if c == b'=' => {
                    (value, value_ws) = (Vec::new(), None);
                    State::PreValue
                }
                State::Key => {
                    track_blank(&mut key_ws, blank, key.len());
                    key.push(c);
                    State::Key
                }
                State::PreValue | State::Value if newline => {
                    env.push(&key, key_ws, &value, value_ws, key_line)?;
                    State::PreKey
                }
                State::PreValue if c == b'\'' => State::Single,
                State::PreValue if c == b'"' => State::Double,
                State::PreValue | State::Value if c == b'\\' => {
                    value_ws = None;
                    State::ValueEscape
                }
                State::PreValue if blank => State::PreValue,
                State::PreValue | State::Value => {
                    track_blank(&mut value_ws, blank, value.len());
                    value.push(c);
                    State::Value
                }
                State::ValueEscape => {
                    if !newline {
                        value.push(c);
                    }
                    State::Value
                }
                State::Single if c == b'\'' => State::PreValue,
                State::Double if c == b'"' => State::PreValue,
                State::Double if c == b'\\' => State::DoubleEscape,
                State::Single | State::Double => {
                    value.push(c);
                    state
                }
                State::DoubleEscape => {
                    // Only shell-special characters lose their backslash; `\<LF>` joins lines.
                    if c != b'\n' {
                        if !b"\"\\`$".contains(&c) {
                            value.push(b'\\');
                        }
                        value.push(c);
                    }
                    State::Double
                }
                State::Comment if newline => State::PreKey,
                State::Comment => State::Comment,
            };
            if c == b'\n' {
                line += 1;
            }
        }
        if !matches!(state, State::PreKey | State::Key | State::Comment) {
            env.push(&key, key_ws, &value, value_ws, key_line)?;
        }
        Ok(env)
    }

    fn push(
        &mut self,
        key: &[u8],
        key_ws: Option<usize>,
        value: &[u8],
        value_ws: Option<usize>,
        line: usize,
    ) -> Result<(), ParseError> {
        let text = |b: &[u8], cut: Option<usize>| {
            let b = &b[..cut.unwrap_or(b.len())];
            String::from_utf8(b.to_vec()).map_err(|_| ParseError::InvalidUtf8 { line })
        };
        let (key, value) = (text(key, key_ws)?, text(value, value_ws)?);
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((key, value)),
        }
        Ok(())
    }

    /// TEMP
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of the last assignment to `key`.
    ///
    /// `KEY=` yields `Some("")`: whether empty means unset depends on the key, and [`validate`]
    /// follows systemd there (empty `ID`, `VERSION_ID`, levels and `ARCHITECTURE` count as
    /// unset, an empty scope list matches no scope).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn track_blank(start: &mut Option<usize>, blank: bool, len: usize) {
    if !blank {
        *start = None;
    } else if start.is_none() {
        *start = Some(len);
    }
}

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
    if ext.pairs.is_empty() {
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
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

    fn env(text: &str) -> EnvFile {
        EnvFile::parse(text).unwrap()
    }

    fn get(text: &str, key: &str) -> Option<String> {
        env(text).get(key).map(str::to_owned)
    }

    #[test]
    fn parse_trims_blanks_and_skips_comments_and_keyless_lines() {
        let e = env("  A  =  x y \t\n# B=1\n ;C=1\nno equals\nD=1 # not a comment\n\nE=");
        assert_eq!(e.get("A"), Some("x y"));
        assert_eq!(
            (e.get("B"), e.get("C"), e.get("no equals")),
            (None, None, None)
        );
        assert_eq!(e.get("D"), Some("1 # not a comment"));
        assert_eq!(e.get("E"), Some(""));
        // A comment never continues over an escaped newline (systemd >= v254).
        assert_eq!(get("#x\\\nF=1", "F").as_deref(), Some("1"));
    }

    #[test]
    fn parse_quotes() {
        assert_eq!(
            get(r#"A='a \"b\" \$c'"#, "A").as_deref(),
            Some(r#"a \"b\" \$c"#)
        );
        assert_eq!(
            get(r#"A="q\" b\\ d\$ t\` n\n x\a""#, "A").as_deref(),
            Some(r#"q" b\ d$ t` n\n x\a"#)
        );
        assert_eq!(get("A=\"one\\\ntwo\"", "A").as_deref(), Some("onetwo"));
        assert_eq!(
            get("A=\"multi\nline\"\nB=2", "A").as_deref(),
            Some("multi\nline")
        );
        // Parts after a closing quote join, blanks between them are dropped.
        assert_eq!(get(r#"A="a" 'b'  c d  "#, "A").as_deref(), Some("abc d"));
        // Once a value has started unquoted, quotes are ordinary characters.
        assert_eq!(get(r#"A=a"b c""#, "A").as_deref(), Some(r#"a"b c""#));
        // An unterminated quote runs to the end of the file.
        assert_eq!(get("A='open\nB=1", "A").as_deref(), Some("open\nB=1"));
    }

    #[test]
    fn parse_unquoted_escapes_and_continuation() {
        assert_eq!(get(r"A=a\ b\\c\'d\x", "A").as_deref(), Some(r"a b\c'dx"));
        assert_eq!(get("A=one\\\ntwo\nB=1", "A").as_deref(), Some("onetwo"));
        assert_eq!(get("A=x\\ \nB=1", "A").as_deref(), Some("x "));
        assert_eq!(get("A=$HOME${X}", "A").as_deref(), Some("$HOME${X}"));
    }

    #[test]
    fn parse_duplicates_crlf_and_odd_keys() {
        let e = env("ID=a\r\nVERSION_ID=\"1\"\r\nID=b\r\nFOO BAR = z\r\n");
        assert_eq!((e.get("ID"), e.get("VERSION_ID")), (Some("b"), Some("1")));
        assert_eq!(e.get("FOO BAR"), Some("z"));
        assert_eq!(e.pairs.len(), 3);
    }

    #[test]
    fn parse_refuses_nul_and_bad_utf8_only_in_assignments() {
        assert_eq!(EnvFile::parse("A=1\0"), Err(ParseError::NulByte));
        let bad = EnvFile::parse(b"A=1\nB=\xff\n");
        assert_eq!(bad, Err(ParseError::InvalidUtf8 { line: 2 }));
        assert_eq!(
            EnvFile::parse(b"# caf\xe9\nA=1").unwrap().get("A"),
            Some("1")
        );
    }

    fn host(text: &str) -> HostRelease {
        HostRelease::from_env(&env(text)).unwrap()
    }

    fn check(class: Class, ext: &str, host_text: &str, scope: &str) -> Result<(), String> {
        validate(class, &env(ext), &host(host_text), scope, "x86-64").map_err(|m| m.to_string())
    }

    fn sys(ext: &str, host_text: &str) -> Result<(), String> {
        check(Class::Sysext, ext, host_text, "system")
    }

    const DEBIAN: &str = "ID=debian\nVERSION_ID=13\n";

    #[test]
    fn host_release() {
        let h = host("ID=ubuntu\nID_LIKE=\"debian  fedora\"\nVERSION_ID=\nCONFEXT_LEVEL=2");
        assert_eq!(h.id_like, ["debian", "fedora"]);
        assert_eq!((h.version_id, h.sysext_level), (None, None));
        assert_eq!(h.confext_level.as_deref(), Some("2"));
        for text in ["NAME=x", "ID="] {
            assert_eq!(HostRelease::from_env(&env(text)), Err(HostError::MissingId));
        }
    }

    #[test]
    fn validate_scope() {
        let initrd = |ext| check(Class::Sysext, ext, DEBIAN, "initrd");
        assert_eq!(sys("ID=debian\nVERSION_ID=13", DEBIAN), Ok(()));
        assert_eq!(
            initrd("ID=debian\nVERSION_ID=13").unwrap_err(),
            "SYSEXT_SCOPE unset (default 'system portable') does not include 'initrd'"
        );
        assert_eq!(
            initrd("ID=debian\nVERSION_ID=13\nSYSEXT_SCOPE=system\tinitrd"),
            Ok(())
        );
        assert_eq!(
            sys("ID=debian\nSYSEXT_SCOPE=initrd", DEBIAN).unwrap_err(),
            "SYSEXT_SCOPE=initrd does not include 'system'"
        );
        // An empty list matches no scope at all, unlike a missing key.
        assert!(sys("ID=debian\nVERSION_ID=13\nSYSEXT_SCOPE=", DEBIAN).is_err());
        // The other class's key is irrelevant.
        let confext = check(
            Class::Confext,
            "ID=debian\nSYSEXT_SCOPE=initrd",
            "ID=debian",
            "system",
        );
        assert_eq!(confext, Ok(()));
        assert_eq!(sys("", DEBIAN).unwrap_err(), "no release data");
    }

    #[test]
    fn validate_architecture_and_id() {
        for arch in ["x86-64", "_any", ""] {
            assert_eq!(
                sys(
                    &format!("ID=debian\nVERSION_ID=13\nARCHITECTURE={arch}"),
                    DEBIAN
                ),
                Ok(())
            );
        }
        assert_eq!(
            sys("ID=_any\nARCHITECTURE=arm64", DEBIAN).unwrap_err(),
            "ARCHITECTURE=arm64 does not match host x86-64"
        );
        assert_eq!(sys("VERSION_ID=13", DEBIAN).unwrap_err(), "no ID");
        assert_eq!(sys("ID=\nVERSION_ID=13", DEBIAN).unwrap_err(), "no ID");
        // `_any` skips the version checks entirely.
        assert_eq!(
            sys(
                "ID=_any\nVERSION_ID=1\nSYSEXT_LEVEL=9",
                "ID=x\nVERSION_ID=2\nSYSEXT_LEVEL=1"
            ),
            Ok(())
        );
        assert_eq!(
            sys("ID=fedora\nVERSION_ID=13", DEBIAN).unwrap_err(),
            "ID=fedora does not match host ID=debian"
        );
        let ubuntu = "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=13";
        assert_eq!(sys("ID=debian\nVERSION_ID=13", ubuntu), Ok(()));
        assert_eq!(
            sys("ID=arch", ubuntu).unwrap_err(),
            "ID=arch does not match host ID=ubuntu or ID_LIKE=debian"
        );
    }

    #[test]
    fn validate_versions_and_levels() {
        // Rolling host: nothing further to compare.
        assert_eq!(
            sys(
                "ID=arch\nVERSION_ID=1\nSYSEXT_LEVEL=2",
                "ID=arch\nVERSION_ID="
            ),
            Ok(())
        );
        assert_eq!(
            sys("ID=debian\nVERSION_ID=12", DEBIAN).unwrap_err(),
            "VERSION_ID=12 does not match host VERSION_ID=13"
        );
        assert_eq!(
            sys("ID=debian\nSYSEXT_LEVEL=1", DEBIAN).unwrap_err(),
            "missing VERSION_ID (host has VERSION_ID=13)"
        );
        let leveled = "ID=debian\nVERSION_ID=13\nSYSEXT_LEVEL=1";
        assert_eq!(
            sys("ID=debian\nSYSEXT_LEVEL=1\nVERSION_ID=99", leveled),
            Ok(())
        );
        assert_eq!(
            sys("ID=debian\nSYSEXT_LEVEL=2\nVERSION_ID=13", leveled).unwrap_err(),
            "SYSEXT_LEVEL=2 does not match host SYSEXT_LEVEL=1"
        );
        // Extension without a level falls back to VERSION_ID ...
        assert!(sys("ID=debian\nVERSION_ID=12", leveled).is_err());
        // ... and is accepted when the host has a level but no VERSION_ID.
        assert_eq!(
            sys("ID=debian\nVERSION_ID=12", "ID=debian\nSYSEXT_LEVEL=1"),
            Ok(())
        );
        // Confext compares CONFEXT_LEVEL only.
        let conf = |ext| {
            check(
                Class::Confext,
                ext,
                "ID=debian\nCONFEXT_LEVEL=3\nSYSEXT_LEVEL=1",
                "system",
            )
        };
        assert_eq!(conf("ID=debian\nCONFEXT_LEVEL=3\nSYSEXT_LEVEL=9"), Ok(()));
        assert_eq!(
            conf("ID=debian\nCONFEXT_LEVEL=4").unwrap_err(),
            "CONFEXT_LEVEL=4 does not match host CONFEXT_LEVEL=3"
        );
    }

    #[test]
    fn arch_and_names() {
        let table = [
            ("x86_64", "x86-64"),
            ("i686", "x86"),
            ("aarch64", "arm64"),
            ("armv7l", "arm"),
            ("armv5tejb", "arm-be"),
            ("riscv64", "riscv64"),
            ("ppc64le", "ppc64-le"),
            ("s390x", "s390x"),
            ("loongarch64", "loongarch64"),
            ("sh4a", "sh"),
        ];
        for (machine, arch) in table {
            assert_eq!(systemd_arch(machine), Some(arch), "{machine}");
        }
        assert_eq!(systemd_arch("x86-64"), None);
        for (image, base) in [
            ("foo_1.2.raw", "foo"),
            ("foo+3.sysext.raw", "foo"),
            ("foo", "foo"),
            ("a.b.confext.raw", "a.b"),
            ("foo_1+2-1", "foo"),
            ("_x", ""),
        ] {
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
}
