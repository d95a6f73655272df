//! Stacking accepted extensions over a hierarchy exactly as systemd-sysext
//! does, so that its `status`, `unmerge` and `refresh` accept the result:
//! overlay source `sysext`/`confext`, layers (top first) metadata, highest
//! extension name … lowest, base; the metadata layer holds
//! `.systemd-sysext/{extensions,dev}` with `dev` equal to the overlay's
//! `st_dev`, and takes the base's permissions so the merged root keeps them.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::class::Class;
use crate::find::version;
use crate::sys::fs::{dir_has_entries, fd_path, open_dir, open_in_root};
use crate::sys::mount::{attach, detach, io_error, FsContext};
use crate::sys::{SysError, SysResult};

/// An accepted extension, ready to stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Its name.
    pub name: String,
    /// The root of its tree on this system.
    pub root: PathBuf,
}

/// How one hierarchy will be overlaid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HierarchyPlan {
    /// The hierarchy relative to the root, e.g. `usr`.
    pub hierarchy: &'static str,
    /// Where the overlay goes on this system.
    pub target: PathBuf,
    /// Extension layers, top (highest name) first.
    pub layers: Vec<PathBuf>,
    /// The existing, non-empty hierarchy, stacked lowest.
    pub base: Option<PathBuf>,
    /// Permission bits the merged root must keep.
    pub mode: u32,
}

/// Sort names the way systemd orders layers: ascending by version compare.
pub fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| version::compare(a, b));
}

/// Plan the overlays of `class` over `root` for `extensions` (any order).
/// A hierarchy that no extension has content for is left alone.
pub fn plan(class: Class, root: &Path, extensions: &[Extension]) -> io::Result<Vec<HierarchyPlan>> {
    let mut ordered = extensions.to_vec();
    ordered.sort_by(|a, b| version::compare(&b.name, &a.name));
    let root_fd = open_dir(root)?;
    let mut plans = Vec::new();
    for &hierarchy in class.hierarchies() {
        let mut layers = Vec::new();
        for ext in &ordered {
            if let Some(layer) = non_empty_dir_in(&ext.root, hierarchy)? {
                layers.push(layer);
            }
        }
        if layers.is_empty() {
            continue;
        }
        let (target, base, mode) = match open_in_root(
            &root_fd,
            Path::new(hierarchy),
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(fd) => {
                let path = fd_path(&fd)?;
                let mode = rustix::fs::fstat(&fd)?.st_mode & 0o7777;
                let base = dir_has_entries(&fd)?.then(|| path.clone());
                (path, base, mode)
            }
            Err(Errno::NOENT) => (root.join(hierarchy), None, 0o755),
            Err(e) => return Err(e.into()),
        };
        plans.push(HierarchyPlan {
            hierarchy,
            target,
            layers,
            base,
            mode,
        });
    }
    Ok(plans)
}

/// `tree/sub` resolved inside `tree`, if it is a directory with entries.
fn non_empty_dir_in(tree: &Path, sub: &str) -> io::Result<Option<PathBuf>> {
    let tree_fd = open_dir(tree)?;
    match open_in_root(&tree_fd, Path::new(sub), OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) if dir_has_entries(&fd)? => Ok(Some(fd_path(&fd)?)),
        Ok(_) | Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The content of `.systemd-sysext/extensions`: one name per line.
pub fn list_file_content(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// Escape a path for the legacy `lowerdir=a:b` option.
pub fn escape_lowerdir(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Build the overlay for `plan` (detached) with its metadata layer in
/// `meta`, an empty directory in the workspace; `names` ascending.
/// `extra` files (relative paths) go into the metadata layer too, above
/// every extension.
pub fn build(
    class: Class,
    plan: &HierarchyPlan,
    meta: &Path,
    names: &[String],
    extra: &[(PathBuf, Vec<u8>)],
) -> SysResult<OwnedFd> {
    for (rel, content) in extra {
        let path = meta.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, &e))?;
        }
        std::fs::write(&path, content).map_err(|e| io_error("write", &path, &e))?;
    }
    let meta_dir = meta.join(class.meta_dir());
    std::fs::create_dir_all(&meta_dir).map_err(|e| io_error("create", &meta_dir, &e))?;
    let list = meta_dir.join(class.list_file());
    std::fs::write(&list, list_file_content(names)).map_err(|e| io_error("write", &list, &e))?;
    std::fs::set_permissions(meta, std::fs::Permissions::from_mode(plan.mode))
        .map_err(|e| io_error("chmod", meta, &e))?;

    let mut lower = vec![meta.to_path_buf()];
    lower.extend(plan.layers.iter().cloned());
    lower.extend(plan.base.iter().cloned());
    let target = plan.target.display().to_string();
    let mount = match mount_overlay(class, &lower, &target, true) {
        // Kernels before 6.8 know only the single `lowerdir=` option.
        Err(e) if e.errno == Errno::INVAL => mount_overlay(class, &lower, &target, false)?,
        other => other?,
    };
    // The overlay's device number only exists now; systemd's tools compare
    // it with the mount point's st_dev to recognise the merge.
    let stat =
        rustix::fs::fstat(&mount).map_err(|e| SysError::new("stat overlay for", &target, e))?;
    let dev = meta_dir.join("dev");
    let content = format!(
        "{}:{}\n",
        rustix::fs::major(stat.st_dev),
        rustix::fs::minor(stat.st_dev)
    );
    std::fs::write(&dev, content).map_err(|e| io_error("write", &dev, &e))?;
    Ok(mount)
}

fn mount_overlay(
    class: Class,
    lower: &[PathBuf],
    target: &str,
    append: bool,
) -> SysResult<OwnedFd> {
    let fs = FsContext::new("overlay")?;
    fs.set_string("source", class.name())?;
    if append {
        for layer in lower {
            fs.set_string("lowerdir+", &layer.to_string_lossy())?;
        }
    } else {
        let joined: Vec<String> = lower.iter().map(|p| escape_lowerdir(p)).collect();
        fs.set_string("lowerdir", &joined.join(":"))?;
    }
    fs.set_flag("ro")?;
    fs.mount(target, class.mount_attrs())
}

/// Attach a built overlay at the plan's target, creating the directory
/// (0755) when the root has none.
pub fn attach_at(plan: &HierarchyPlan, mount: &OwnedFd) -> SysResult<()> {
    if !plan.target.exists() {
        std::fs::create_dir(&plan.target).map_err(|e| io_error("create", &plan.target, &e))?;
        std::fs::set_permissions(&plan.target, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("chmod", &plan.target, &e))?;
    }
    attach(mount, &plan.target)
}

/// What a merged hierarchy says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedHierarchy {
    /// Names from the list file.
    pub extensions: Vec<String>,
    /// When the metadata was written, in µs since the epoch.
    pub since_usec: u64,
}

/// systemd's test for "our" merge: the metadata's `dev` equals the st_dev
/// of the hierarchy itself (a copied tree cannot pass).
pub fn merged_state(class: Class, target: &Path) -> Option<MergedHierarchy> {
    let meta_dir = target.join(class.meta_dir());
    let dev_text = std::fs::read_to_string(meta_dir.join("dev")).ok()?;
    let (major, minor) = dev_text.trim().split_once(':')?;
    let dev = rustix::fs::makedev(major.parse().ok()?, minor.parse().ok()?);
    let stat = rustix::fs::lstat(target).ok()?;
    if stat.st_dev != dev {
        return None;
    }
    let list = std::fs::read_to_string(meta_dir.join(class.list_file())).unwrap_or_default();
    let since_usec = std::fs::metadata(&meta_dir)
        .map(|m| (m.mtime() as u64) * 1_000_000 + (m.mtime_nsec() as u64) / 1000)
        .unwrap_or(0);
    Some(MergedHierarchy {
        extensions: list.lines().map(str::to_string).collect(),
        since_usec,
    })
}

/// Remove every merge of `class` stacked on `target`; returns how many.
pub fn unmerge(class: Class, target: &Path) -> SysResult<usize> {
    let mut removed = 0;
    while merged_state(class, target).is_some() {
        // systemd may have bind-mounted the metadata onto itself.
        match detach(&target.join(class.meta_dir())) {
            Err(e) if e.errno != Errno::INVAL => return Err(e),
            _ => {}
        }
        detach(target)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn ext(tmp: &Path, name: &str, dirs: &[&str]) -> Extension {
        let root = tmp.join("ext").join(name);
        fs::create_dir_all(&root).unwrap();
        for d in dirs {
            fs::create_dir_all(root.join(d)).unwrap();
            fs::write(root.join(d).join("f"), name).unwrap();
        }
        Extension {
            name: name.into(),
            root,
        }
    }

    #[test]
    fn layers_are_ordered_highest_name_first_and_base_last() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::set_permissions(root.join("usr"), fs::Permissions::from_mode(0o750)).unwrap();
        let exts = vec![
            ext(tmp.path(), "foo-9", &["usr"]),
            ext(tmp.path(), "bar", &["usr", "opt"]),
            ext(tmp.path(), "foo-10", &["usr"]),
            ext(tmp.path(), "etc-only", &["etc"]),
        ];
        let plans = plan(Class::Sysext, &root, &exts).unwrap();
        assert_eq!(plans.len(), 2);
        let usr = &plans[0];
        assert_eq!(usr.hierarchy, "usr");
        let names: Vec<_> = usr
            .layers
            .iter()
            .map(|p| p.parent().unwrap().file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["foo-10", "foo-9", "bar"]);
        assert_eq!(
            usr.base.as_deref(),
            Some(fs::canonicalize(root.join("usr")).unwrap().as_path())
        );
        assert_eq!(usr.mode, 0o750);
        let opt = &plans[1];
        assert_eq!(opt.hierarchy, "opt");
        assert_eq!(opt.layers.len(), 1);
        assert_eq!(opt.base, None);
        assert_eq!(opt.mode, 0o755);
        assert_eq!(opt.target, root.join("opt"));
    }

    #[test]
    fn empty_hierarchy_in_an_extension_does_not_count() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        let e = ext(tmp.path(), "a", &[]);
        fs::create_dir_all(e.root.join("etc")).unwrap();
        assert!(plan(Class::Confext, &root, &[e]).unwrap().is_empty());
    }

    #[test]
    fn sorting_and_list_file() {
        let mut names: Vec<String> = ["b", "a-10", "a-9"].iter().map(|s| s.to_string()).collect();
        sort_names(&mut names);
        assert_eq!(names, ["a-9", "a-10", "b"]);
        assert_eq!(list_file_content(&names), "a-9\na-10\nb\n");
    }

    #[test]
    fn lowerdir_escaping() {
        assert_eq!(escape_lowerdir(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn a_copied_tree_is_not_a_merge() {
        let tmp = tempfile::tempdir().unwrap();
        let usr = tmp.path().join("usr");
        fs::create_dir_all(usr.join(".systemd-sysext")).unwrap();
        fs::write(usr.join(".systemd-sysext/extensions"), "a\n").unwrap();
        fs::write(usr.join(".systemd-sysext/dev"), "0:1\n").unwrap();
        assert_eq!(merged_state(Class::Sysext, &usr), None);
        let st = rustix::fs::lstat(&usr).unwrap().st_dev;
        let dev = format!("{}:{}\n", rustix::fs::major(st), rustix::fs::minor(st));
        fs::write(usr.join(".systemd-sysext/dev"), dev).unwrap();
        assert_eq!(merged_state(Class::Sysext, &usr).unwrap().extensions, ["a"]);
    }
}
