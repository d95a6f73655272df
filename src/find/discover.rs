//! Finding extension images the way systemd-sysext does: search directories
//! in precedence order, the first image of a name wins, an empty directory
//! masks a name, `NAME.v/` directories pick their newest version, and
//! symlinks resolve inside the root they were found in.
//!
//! Deliberate difference: entries of one directory are read in sorted order,
//! so when `foo/`, `foo.raw` and `foo.sysext.raw` sit side by side the
//! outcome is defined (the directory `foo` wins) rather than readdir's.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use crate::class::Class;
use crate::find::version;
use crate::sys::fs::{dir_has_entries, fd_path, file_type, open_dir, open_in_root, sorted_entries};

/// Which file system tree a search directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The root being extended (`--root`).
    Target,
    /// The initrd rdext runs in.
    Initrd,
}

/// What an image is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A plain directory tree.
    Directory,
    /// A `.raw` file: a file system image to loop-mount.
    RawFile,
    /// A block device holding a file system.
    BlockDevice,
}

/// An image that won its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The extension name (file name without `.raw` and class suffix).
    pub name: String,
    /// The search-directory entry, relative to its root, e.g.
    /// `/etc/extensions/foo.raw`.
    pub entry: PathBuf,
    /// Which tree `entry` is in.
    pub origin: Origin,
    /// The resolved image, as an absolute path on this system.
    pub path: PathBuf,
    /// What `path` is.
    pub kind: SourceKind,
    /// The version picked from a `NAME.v/` directory.
    pub version: Option<String>,
}

/// What discovery decided about one search-directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The first image of its name: to be validated and merged.
    Selected(Candidate),
    /// An empty directory: it takes the name so nothing of that name merges.
    Masked(Candidate),
    /// A later image of a name already taken.
    Shadowed {
        /// The losing image.
        candidate: Candidate,
        /// The entry that won the name.
        by: PathBuf,
    },
    /// Not an image at all.
    Ignored {
        /// The search-directory entry.
        entry: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why a regular file that does not end in `.raw` is ignored: sidecars
/// (`.roothash`, `.verity`, …) sit next to images, so this is no news.
pub const NOT_RAW: &str = "not a .raw file";

/// A tree to search and the directories in it.
#[derive(Clone, Debug)]
pub struct SearchRoot {
    /// The tree, as a path on this system.
    pub path: PathBuf,
    /// Which tree it is.
    pub origin: Origin,
}

/// Discover every image of `class` under the given roots, in precedence
/// order. `host_arch` (systemd notation) filters `NAME.v/` entries.
pub fn discover(
    class: Class,
    roots: &[SearchRoot],
    host_arch: &str,
) -> std::io::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let mut winners: HashMap<String, PathBuf> = HashMap::new();
    for root in roots {
        let dirs = match root.origin {
            Origin::Target => class.search_dirs(),
            Origin::Initrd => class.initrd_dirs(),
        };
        let root_fd = open_dir(&root.path)?;
        for dir in dirs {
            let Ok(dir_fd) =
                open_in_root(&root_fd, Path::new(dir), OFlags::PATH | OFlags::DIRECTORY)
            else {
                continue;
            };
            for name in sorted_entries(&dir_fd)? {
                let entry = Path::new("/").join(dir).join(&name);
                let finding = match inspect_entry(class, &root_fd, &entry, host_arch) {
                    Ok((candidate, empty_dir)) => {
                        let candidate = Candidate {
                            origin: root.origin,
                            ..candidate
                        };
                        match winners.get(&candidate.name) {
                            Some(by) => Finding::Shadowed {
                                candidate,
                                by: by.clone(),
                            },
                            None => {
                                winners.insert(candidate.name.clone(), entry.clone());
                                if empty_dir {
                                    Finding::Masked(candidate)
                                } else {
                                    Finding::Selected(candidate)
                                }
                            }
                        }
                    }
                    Err(reason) => Finding::Ignored { entry, reason },
                };
                findings.push(finding);
            }
        }
    }
    Ok(findings)
}

/// Classify one entry; returns the candidate and whether it is an empty
/// directory (a mask).
fn inspect_entry(
    class: Class,
    root_fd: &OwnedFd,
    entry: &Path,
    host_arch: &str,
) -> Result<(Candidate, bool), String> {
    let fd =
        open_in_root(root_fd, entry, OFlags::PATH).map_err(|e| format!("cannot resolve: {e}"))?;
    let kind = kind_of(&fd)?;
    let file_name = entry
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let (name, fd, kind, version) = if kind == SourceKind::Directory && file_name.ends_with(".v") {
        let pick = pick_version(&fd, &file_name, host_arch)?;
        (
            image_name(class, &pick.base),
            pick.fd,
            pick.kind,
            Some(pick.version),
        )
    } else {
        let name = match kind {
            SourceKind::RawFile => {
                let stem = file_name
                    .strip_suffix(".raw")
                    .ok_or_else(|| NOT_RAW.to_string())?;
                image_name(class, stem)
            }
            SourceKind::Directory => image_name(class, &file_name),
            SourceKind::BlockDevice => file_name.clone(),
        };
        (name, fd, kind, None)
    };
    if !valid_name(&name) {
        return Err(format!("invalid extension name {name:?}"));
    }
    let empty_dir = kind == SourceKind::Directory
        && !dir_has_entries(&fd).map_err(|e| format!("cannot read directory: {e}"))?;
    let path = fd_path(&fd).map_err(|e| format!("cannot resolve: {e}"))?;
    let candidate = Candidate {
        name,
        entry: entry.to_path_buf(),
        origin: Origin::Target,
        path,
        kind,
        version,
    };
    Ok((candidate, empty_dir))
}

/// What an entry is, or why it cannot be an image.
fn kind_of(fd: &OwnedFd) -> Result<SourceKind, String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("cannot stat: {e}"))?;
    let other = match file_type(&stat) {
        FileType::Directory => return Ok(SourceKind::Directory),
        FileType::RegularFile => return Ok(SourceKind::RawFile),
        FileType::BlockDevice => return Ok(SourceKind::BlockDevice),
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::Socket => "a socket",
        _ => "of an unknown file type",
    };
    Err(format!(
        "{other}, not a directory, .raw file or block device"
    ))
}

/// Strip the class suffix: `foo.sysext` → `foo` for sysext (a
/// `foo.confext.raw` in a sysext directory keeps `foo.confext`).
fn image_name(class: Class, stem: &str) -> String {
    let suffix = format!(".{}", class.name());
    stem.strip_suffix(&suffix).unwrap_or(stem).to_string()
}

/// systemd's rule for image names: a valid file name, UTF-8 without control
/// characters, not a `.#` temporary.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains('/')
        && !name.starts_with(".#")
        && !name.chars().any(char::is_control)
}

/// The entry chosen from a `NAME.v/` directory.
struct Pick {
    base: String,
    version: String,
    kind: SourceKind,
    fd: OwnedFd,
}

/// A parsed `.v/` entry name: `BASE_VERSION[_ARCH][+LEFT[-DONE]][.raw]`.
#[derive(Debug, PartialEq, Eq)]
struct VersionedName {
    version: String,
    arch: Option<String>,
    tries_left: Option<u32>,
}

/// Parse a `.v/` entry name; None if it does not belong to `base`.
fn parse_versioned(file_name: &str, base: &str, suffix: &str) -> Option<VersionedName> {
    let rest = file_name.strip_prefix(base)?.strip_prefix('_')?;
    let rest = rest.strip_suffix(suffix)?;
    let (rest, tries_left) = match rest.rsplit_once('+') {
        Some((head, tries)) => {
            let left = tries.split_once('-').map_or(tries, |(left, _done)| left);
            match left.parse::<u32>() {
                Ok(left) => (head, Some(left)),
                Err(_) => (rest, None),
            }
        }
        None => (rest, None),
    };
    let (version, arch) = match rest.split_once('_') {
        Some((version, arch)) => (version, Some(arch.to_string())),
        None => (rest, None),
    };
    (!version.is_empty()).then(|| VersionedName {
        version: version.to_string(),
        arch,
        tries_left,
    })
}

/// Which of two usable entries is better: exhausted tries lose, then the
/// newer version, then more tries left.
fn compare_picks(a: &VersionedName, b: &VersionedName) -> Ordering {
    let usable = |v: &VersionedName| v.tries_left != Some(0);
    usable(a)
        .cmp(&usable(b))
        .then_with(|| version::compare(&a.version, &b.version))
        .then_with(|| {
            a.tries_left
                .unwrap_or(u32::MAX)
                .cmp(&b.tries_left.unwrap_or(u32::MAX))
        })
}

/// Pick the newest entry of a `NAME.v/` or `NAME.raw.v/` directory.
/// `NAME.raw.v/` holds `.raw` files (or block devices); `NAME.v/` holds
/// directories and `.raw` files.
fn pick_version(dir_fd: &OwnedFd, dir_name: &str, host_arch: &str) -> Result<Pick, String> {
    let inner = dir_name.strip_suffix(".v").unwrap_or(dir_name);
    let (base, raw_only) = match inner.strip_suffix(".raw") {
        Some(base) => (base, true),
        None => (inner, false),
    };
    let names = sorted_entries(dir_fd).map_err(|e| format!("cannot read {dir_name}: {e}"))?;
    let mut best: Option<(VersionedName, SourceKind, OwnedFd)> = None;
    for name in names {
        let file_name = name.to_string_lossy();
        let fd = match open_in_root(dir_fd, &name, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("ignoring {dir_name}/{file_name}: cannot resolve: {e}");
                continue;
            }
        };
        let kind = match kind_of(&fd) {
            Ok(kind) => kind,
            Err(why) => {
                log::warn!("ignoring {dir_name}/{file_name}: {why}");
                continue;
            }
        };
        let suffix = match kind {
            SourceKind::Directory if raw_only => {
                log::warn!("ignoring {dir_name}/{file_name}: a directory in a .raw.v directory");
                continue;
            }
            SourceKind::Directory => "",
            SourceKind::RawFile | SourceKind::BlockDevice => ".raw",
        };
        let Some(parsed) = parse_versioned(&file_name, base, suffix) else {
            log::warn!("ignoring {dir_name}/{file_name}: not named {base}_VERSION{suffix}");
            continue;
        };
        if parsed.arch.as_deref().is_some_and(|arch| arch != host_arch) {
            log::debug!("ignoring {dir_name}/{file_name}: for another architecture");
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(b, _, _)| compare_picks(&parsed, b) == Ordering::Greater)
        {
            best = Some((parsed, kind, fd));
        }
    }
    let (parsed, kind, fd) = best.ok_or_else(|| format!("no usable version in {dir_name}"))?;
    Ok(Pick {
        base: base.to_string(),
        version: parsed.version,
        kind,
        fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn selected(findings: &[Finding]) -> Vec<(String, String)> {
        findings
            .iter()
            .filter_map(|f| match f {
                Finding::Selected(c) => Some((c.name.clone(), c.entry.display().to_string())),
                _ => None,
            })
            .collect()
    }

    fn target(root: &Path) -> Vec<SearchRoot> {
        vec![SearchRoot {
            path: root.to_path_buf(),
            origin: Origin::Target,
        }]
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn ext_dir(path: &Path) {
        fs::create_dir_all(path.join("usr/lib")).unwrap();
    }

    #[test]
    fn precedence_and_shadowing_across_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("var/lib/extensions/foo.raw"));
        touch(&root.join("run/extensions/foo.raw"));
        ext_dir(&root.join("etc/extensions/bar"));
        touch(&root.join("var/lib/extensions/bar.raw"));
        touch(&root.join("var/lib/extensions/baz.sysext.raw"));
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        assert_eq!(
            selected(&findings),
            vec![
                ("bar".into(), "/etc/extensions/bar".into()),
                ("foo".into(), "/run/extensions/foo.raw".into()),
                ("baz".into(), "/var/lib/extensions/baz.sysext.raw".into()),
            ]
        );
        let shadowed: Vec<_> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::Shadowed { candidate, by } => Some((candidate.entry.clone(), by.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            shadowed,
            vec![
                (
                    "/var/lib/extensions/bar.raw".into(),
                    "/etc/extensions/bar".into()
                ),
                (
                    "/var/lib/extensions/foo.raw".into(),
                    "/run/extensions/foo.raw".into()
                ),
            ]
        );
    }

    #[test]
    fn same_name_in_one_directory_is_decided_by_sorted_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("var/lib/extensions/foo.sysext.raw"));
        touch(&root.join("var/lib/extensions/foo.raw"));
        ext_dir(&root.join("var/lib/extensions/foo"));
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        assert_eq!(
            selected(&findings),
            vec![("foo".into(), "/var/lib/extensions/foo".into())]
        );
        assert_eq!(findings.len(), 3);
    }

    #[test]
    fn empty_directory_masks_lower_images() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("etc/extensions/foo")).unwrap();
        touch(&root.join("var/lib/extensions/foo.raw"));
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        assert!(matches!(&findings[0], Finding::Masked(c) if c.name == "foo"));
        assert!(
            matches!(&findings[1], Finding::Shadowed { by, .. } if by == Path::new("/etc/extensions/foo"))
        );
        assert!(selected(&findings).is_empty());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("var/lib/store/abs.raw"));
        touch(&root.join("var/lib/store/rel.raw"));
        fs::create_dir_all(root.join("etc/extensions")).unwrap();
        symlink(
            "/var/lib/store/abs.raw",
            root.join("etc/extensions/abs.raw"),
        )
        .unwrap();
        symlink(
            "../../var/lib/store/rel.raw",
            root.join("etc/extensions/rel.raw"),
        )
        .unwrap();
        // Escapes with .. are clamped at the root, as for a chroot.
        symlink(
            "../../../../../../var/lib/store/rel.raw",
            root.join("etc/extensions/up.raw"),
        )
        .unwrap();
        symlink("/nonexistent.raw", root.join("etc/extensions/dangling.raw")).unwrap();
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        let real = fs::canonicalize(root).unwrap();
        for f in &findings {
            match f {
                Finding::Selected(c) => {
                    assert!(c.path.starts_with(&real), "{:?} escaped the root", c.path);
                    assert_eq!(c.kind, SourceKind::RawFile);
                }
                Finding::Ignored { entry, reason } => {
                    assert_eq!(entry, Path::new("/etc/extensions/dangling.raw"));
                    assert!(reason.contains("cannot resolve"), "{reason}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(selected(&findings).len(), 3);
    }

    #[test]
    fn other_files_and_devices_are_ignored_and_do_not_mask() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("etc/extensions/notes.txt"));
        fs::create_dir_all(root.join("etc/extensions")).unwrap();
        symlink("/dev/null", root.join("etc/extensions/foo.raw")).unwrap();
        touch(&root.join("var/lib/extensions/foo.raw"));
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        // /dev/null resolves inside the root, where it does not exist.
        assert_eq!(
            selected(&findings),
            vec![("foo".into(), "/var/lib/extensions/foo.raw".into())]
        );
    }

    #[test]
    fn confext_directories_and_suffix() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        touch(&root.join("usr/lib/confexts/a.confext.raw"));
        touch(&root.join("run/confexts/b.raw"));
        touch(&root.join("var/lib/extensions/c.raw"));
        let findings = discover(Class::Confext, &target(root), "x86-64").unwrap();
        assert_eq!(
            selected(&findings),
            vec![
                ("b".into(), "/run/confexts/b.raw".into()),
                ("a".into(), "/usr/lib/confexts/a.confext.raw".into()),
            ]
        );
    }

    #[test]
    fn initrd_directories_come_after_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let sysroot = tmp.path().join("sysroot");
        let initrd = tmp.path().join("initrd");
        touch(&sysroot.join("var/lib/extensions/foo.raw"));
        touch(&initrd.join("run/extensions/foo.raw"));
        touch(&initrd.join(".extra/sysext/bar.raw"));
        let roots = vec![
            SearchRoot {
                path: sysroot,
                origin: Origin::Target,
            },
            SearchRoot {
                path: initrd,
                origin: Origin::Initrd,
            },
        ];
        let findings = discover(Class::Sysext, &roots, "x86-64").unwrap();
        assert_eq!(
            selected(&findings),
            vec![
                ("foo".into(), "/var/lib/extensions/foo.raw".into()),
                ("bar".into(), "/.extra/sysext/bar.raw".into()),
            ]
        );
        assert!(matches!(&findings[2], Finding::Selected(c) if c.origin == Origin::Initrd));
    }

    #[test]
    fn version_directories_pick_the_newest_usable_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let v = root.join("var/lib/extensions/foo.raw.v");
        for name in [
            "foo_1.9.raw",
            "foo_1.10.raw",
            "foo_1.11_arm64.raw",
            "foo_1.12+0-3.raw",
            "foo_1.1_x86-64.raw",
            "other_9.raw",
            "foo_2.txt",
        ] {
            touch(&v.join(name));
        }
        fs::create_dir_all(v.join("foo_3")).unwrap();
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        match &findings[..] {
            [Finding::Selected(c)] => {
                assert_eq!(c.name, "foo");
                assert_eq!(c.version.as_deref(), Some("1.10"));
                assert!(c.path.ends_with("foo.raw.v/foo_1.10.raw"));
                assert_eq!(c.kind, SourceKind::RawFile);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_version_directory_holds_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let v = root.join("var/lib/extensions/bar.sysext.v");
        ext_dir(&v.join("bar.sysext_5"));
        ext_dir(&v.join("bar.sysext_5~rc1"));
        fs::create_dir_all(root.join("var/lib/extensions/empty.v")).unwrap();
        let findings = discover(Class::Sysext, &target(root), "x86-64").unwrap();
        assert!(matches!(&findings[0], Finding::Selected(c)
            if c.name == "bar" && c.version.as_deref() == Some("5") && c.kind == SourceKind::Directory));
        assert!(
            matches!(&findings[1], Finding::Ignored { reason, .. } if reason.contains("no usable version"))
        );
    }

    #[test]
    fn versioned_names() {
        let parse = |n| parse_versioned(n, "foo", ".raw");
        assert_eq!(
            parse("foo_1.2_x86-64+3-1.raw"),
            Some(VersionedName {
                version: "1.2".into(),
                arch: Some("x86-64".into()),
                tries_left: Some(3)
            })
        );
        assert_eq!(
            parse("foo_1.2.raw"),
            Some(VersionedName {
                version: "1.2".into(),
                arch: None,
                tries_left: None
            })
        );
        assert_eq!(parse("foo_.raw"), None);
        assert_eq!(parse("foobar_1.raw"), None);
        assert_eq!(parse("foo_1"), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("foo"));
        assert!(!valid_name(".#foo"));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(256)));
    }
}
