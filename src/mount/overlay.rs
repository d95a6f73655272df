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
use rustix::mount::MountAttrFlags;

use crate::class::Class;
use crate::find::version;
use crate::sys::fs::{dir_has_entries, fd_path, open_dir, open_in_root};
use crate::sys::mount::{attach, bind_read_only_onto_itself, detach, io_error, FsContext};
use crate::sys::mountcompat::{self, Replaced};
use crate::sys::{SysError, SysResult};

/// systemd-sysext's `--mutable=` modes: whether and where the merged
/// hierarchy is writable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutable {
    /// Read-only.
    #[default]
    No,
    /// Writable into `var/lib/extensions.mutable/D` if that exists.
    Auto,
    /// Writable into `var/lib/extensions.mutable/D`, created if needed.
    Yes,
    /// Read-only, with `var/lib/extensions.mutable/D` as a layer.
    Import,
    /// Writable into a tmpfs that is gone on unmerge.
    Ephemeral,
    /// Ephemeral, with `var/lib/extensions.mutable/D` as a layer.
    EphemeralImport,
}

impl Mutable {
    /// Every mode with its name.
    pub const ALL: [(Mutable, &'static str); 6] = [
        (Mutable::No, "no"),
        (Mutable::Auto, "auto"),
        (Mutable::Yes, "yes"),
        (Mutable::Import, "import"),
        (Mutable::Ephemeral, "ephemeral"),
        (Mutable::EphemeralImport, "ephemeral-import"),
    ];

    /// The mode's name as systemd spells it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("no", |(_, n)| n)
    }

    /// Parse a mode; `yes` and `no` take the other boolean spellings too.
    pub fn parse(text: &str) -> Option<Mutable> {
        if let Some((mode, _)) = Self::ALL.iter().find(|(_, n)| *n == text) {
            return Some(*mode);
        }
        crate::cmdline::parse_bool(text).map(|b| if b { Mutable::Yes } else { Mutable::No })
    }

    /// Whether the upper directory persists under `/var`.
    pub fn persistent(self) -> bool {
        matches!(self, Mutable::Auto | Mutable::Yes | Mutable::Import)
    }
}

/// Where the mutable layers of one merge go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableSetup {
    /// The mode.
    pub mode: Mutable,
    /// Directory for the ephemeral upper directories (a private tmpfs).
    pub ephemeral_base: PathBuf,
    /// Unique per merge: names the overlay work directories, so a new
    /// merge never shares one with the merge it replaces.
    pub merge_id: String,
}

impl MutableSetup {
    /// Read-only: no mutable layer at all.
    pub fn read_only() -> Self {
        MutableSetup {
            mode: Mutable::No,
            ephemeral_base: PathBuf::new(),
            merge_id: String::new(),
        }
    }
}

/// The base directory of the persistent mutable layers, relative to the
/// root, for both classes.
pub const MUTABLE_BASE: &str = "var/lib/extensions.mutable";

/// An accepted extension, ready to stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Its name.
    pub name: String,
    /// The root of its tree on this system.
    pub root: PathBuf,
    /// Each hierarchy of its class it has content for, resolved inside
    /// `root`: the layers it adds.
    pub layers: Vec<(&'static str, PathBuf)>,
}

impl Extension {
    /// The extension `name` whose tree is at `root`, its layers looked up
    /// once (images are judged in parallel; planning then reads nothing).
    pub fn resolve(class: Class, name: &str, root: &Path) -> io::Result<Extension> {
        let mut layers = Vec::new();
        for &hierarchy in class.hierarchies() {
            if let Some(layer) = non_empty_dir_in(root, hierarchy)? {
                layers.push((hierarchy, layer));
            }
        }
        Ok(Extension {
            name: name.to_string(),
            root: root.to_path_buf(),
            layers,
        })
    }

    /// Its layer for `hierarchy`, if it has content there.
    pub fn layer(&self, hierarchy: &str) -> Option<&Path> {
        self.layers
            .iter()
            .find(|(h, _)| *h == hierarchy)
            .map(|(_, layer)| layer.as_path())
    }
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
    /// The resolved mutable directory (upper, or imported layer).
    pub mutable_dir: Option<PathBuf>,
    /// A read-only layer right below the metadata (import modes).
    pub import: Option<PathBuf>,
    /// Where writes go, in the writable modes.
    pub upper: Option<PathBuf>,
    /// The overlay's work directory, next to `upper`.
    pub work: Option<PathBuf>,
    /// The content of `work_dir` (persistent modes): `work` relative to the
    /// root, C-escaped.
    pub work_dir_record: Option<String>,
}

/// Sort names the way systemd orders layers: ascending by version compare.
pub fn sort_names(names: &mut [String]) {
    names.sort_by(|a, b| version::compare(a, b));
}

/// Plan the overlays of `class` over `root` for `extensions` (any order,
/// layers resolved).
/// A hierarchy that no extension has content for is left alone, unless
/// the mode is mutable. Persistent mutable directories are created here
/// (mode `yes`), as systemd does, before anything is mounted.
pub fn plan(
    class: Class,
    root: &Path,
    extensions: &[Extension],
    mutable: &MutableSetup,
) -> io::Result<Vec<HierarchyPlan>> {
    let mut ordered = extensions.to_vec();
    ordered.sort_by(|a, b| version::compare(&b.name, &a.name));
    let root_fd = open_dir(root)?;
    let mut plans = Vec::new();
    for &hierarchy in class.hierarchies() {
        let layers: Vec<PathBuf> = ordered
            .iter()
            .filter_map(|ext| ext.layer(hierarchy).map(Path::to_path_buf))
            .collect();
        if layers.is_empty() && mutable.mode == Mutable::No {
            continue;
        }
        let (target, existing, base, mode) = match open_in_root(
            &root_fd,
            Path::new(hierarchy),
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(fd) => {
                let path = fd_path(&fd)?;
                let mode = rustix::fs::fstat(&fd)?.st_mode & 0o7777;
                let base = dir_has_entries(&fd)?.then(|| path.clone());
                (path.clone(), Some(path), base, mode)
            }
            Err(Errno::NOENT) => (root.join(hierarchy), None, None, 0o755),
            Err(e) => return Err(e.into()),
        };
        let mut plan = HierarchyPlan {
            hierarchy,
            target,
            layers,
            base,
            mode,
            mutable_dir: None,
            import: None,
            upper: None,
            work: None,
            work_dir_record: None,
        };
        plan_mutable(&mut plan, &root_fd, root, existing.as_deref(), mutable)?;
        // Nothing to add (auto or import without a mutable directory).
        if plan.layers.is_empty() && plan.upper.is_none() && plan.import.is_none() {
            continue;
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Fill in the mutable layers of `plan` (systemd's rules, §3.6 of the
/// compatibility notes).
fn plan_mutable(
    plan: &mut HierarchyPlan,
    root_fd: &OwnedFd,
    root: &Path,
    hierarchy_dir: Option<&Path>,
    setup: &MutableSetup,
) -> io::Result<()> {
    let persistent_rel = Path::new(MUTABLE_BASE).join(plan.hierarchy);
    let persistent_path = root.join(&persistent_rel);
    let is_hierarchy = |dir: &Path| -> io::Result<bool> {
        match hierarchy_dir {
            Some(h) => {
                let (a, b) = (std::fs::metadata(h)?, std::fs::metadata(dir)?);
                Ok(a.dev() == b.dev() && a.ino() == b.ino())
            }
            None => Ok(false),
        }
    };
    let mutable_dir = match setup.mode {
        Mutable::No => None,
        Mutable::Ephemeral | Mutable::EphemeralImport => {
            let dir = setup
                .ephemeral_base
                .join(plan.hierarchy)
                .join(plan.hierarchy);
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(plan.mode))?;
            Some(dir)
        }
        Mutable::Auto | Mutable::Yes | Mutable::Import => {
            let existing = resolve_in_root(root_fd, &persistent_rel, false)?;
            if let (Some(dir), Mutable::Auto | Mutable::Yes) = (&existing, setup.mode) {
                let actual = std::fs::metadata(dir)?.mode() & 0o777;
                if actual != plan.mode & 0o777 {
                    return Err(io::Error::other(format!(
                        "mutable directory {} has mode {actual:04o}, ought to have {:04o} like /{}",
                        persistent_path.display(),
                        plan.mode & 0o777,
                        plan.hierarchy
                    )));
                }
            }
            if setup.mode == Mutable::Yes {
                let dir = resolve_in_root(root_fd, &persistent_rel, true)?
                    .ok_or_else(|| io::Error::other("mutable directory vanished"))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(plan.mode))?;
                Some(dir)
            } else {
                existing
            }
        }
    };
    let imported = match setup.mode {
        Mutable::Import => mutable_dir.clone(),
        Mutable::EphemeralImport => resolve_in_root(root_fd, &persistent_rel, false)?,
        _ => None,
    };
    if let Some(dir) = &imported {
        if is_hierarchy(dir)? {
            return Err(io::Error::other(format!(
                "not importing {} as a layer: it is /{} itself",
                persistent_path.display(),
                plan.hierarchy
            )));
        }
    }
    plan.import = imported;
    let upper = match (setup.mode, &mutable_dir) {
        (Mutable::Import, _) | (_, None) => None,
        (_, Some(dir)) => Some(dir.clone()),
    };
    if let Some(upper) = &upper {
        if is_hierarchy(upper)? {
            // Writes go straight into the hierarchy: it is the upper layer
            // and cannot also be a lower one.
            plan.base = None;
        }
        let stat = rustix::fs::statvfs(upper)?;
        if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
            return Err(io::Error::other(format!(
                "cannot write to {}: read-only file system",
                upper.display()
            )));
        }
        let parent = upper.parent().unwrap_or(upper);
        if std::fs::metadata(parent)?.dev() != std::fs::metadata(upper)?.dev() {
            return Err(io::Error::other(format!(
                "no place for the work directory of {}: its parent is another file system",
                upper.display()
            )));
        }
        let work = parent.join(format!(
            ".systemd-{}-workdir.{}",
            plan.hierarchy, setup.merge_id
        ));
        if setup.mode.persistent() {
            let resolved_root = std::fs::canonicalize(root)?;
            let rel = work.strip_prefix(&resolved_root).map_err(|_| {
                io::Error::other(format!(
                    "work directory {} is outside the root {}",
                    work.display(),
                    root.display()
                ))
            })?;
            plan.work_dir_record = Some(c_escape(&rel.to_string_lossy()));
        }
        plan.work = Some(work);
    }
    plan.mutable_dir = mutable_dir;
    plan.upper = upper;
    Ok(())
}

/// `rel` resolved inside the root; with `create`, missing directories
/// are made (0755) on the way, following symlinks as the lookup does.
fn resolve_in_root(root_fd: &OwnedFd, rel: &Path, create: bool) -> io::Result<Option<PathBuf>> {
    match open_in_root(root_fd, rel, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => return Ok(Some(fd_path(&fd)?)),
        Err(Errno::NOENT) if create => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut prefix = PathBuf::new();
    for part in rel.components() {
        prefix.push(part);
        match open_in_root(root_fd, &prefix, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {
                let parent = prefix.parent().unwrap_or(Path::new(""));
                let parent_fd = open_in_root(root_fd, parent, OFlags::PATH | OFlags::DIRECTORY)?;
                match rustix::fs::mkdirat(
                    &parent_fd,
                    part.as_os_str(),
                    rustix::fs::Mode::from_raw_mode(0o755),
                ) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let fd = open_in_root(root_fd, rel, OFlags::PATH | OFlags::DIRECTORY)?;
    Ok(Some(fd_path(&fd)?))
}

/// systemd's C escaping of a one-line path (`work_dir`).
pub fn c_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
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

/// The longest string value `fsconfig()` takes (256 bytes with its NUL):
/// a longer `lowerdir+` layer path fails the overlay mount of a whole
/// class with EINVAL.
pub const MAX_LAYER_PATH: usize = 255;

/// Whether the overlay mount can take `layer` as a lower layer; the error is
/// the reason, to refuse the one extension that brings it.
pub fn check_layer_path(layer: &Path) -> Result<(), String> {
    let len = layer.as_os_str().len();
    if len > MAX_LAYER_PATH {
        return Err(format!(
            "its layer {} is {len} bytes long, the overlay mount takes {MAX_LAYER_PATH} at most",
            layer.display()
        ));
    }
    Ok(())
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
/// `meta`, an empty directory in the workspace; `names` ascending,
/// `origin` the content of the `origin` file. `extra` files (relative
/// paths) go into the metadata layer too, above every extension.
pub fn build(
    class: Class,
    plan: &HierarchyPlan,
    meta: &Path,
    names: &[String],
    origin: &str,
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
    let write = |name: &str, content: &str| {
        let path = meta_dir.join(name);
        std::fs::write(&path, content).map_err(|e| io_error("write", &path, &e))
    };
    write(class.list_file(), &list_file_content(names))?;
    write("origin", origin)?;
    if let Some(record) = &plan.work_dir_record {
        write("work_dir", &format!("{record}\n"))?;
    }
    // The merged root takes the top layer's permissions.
    let chmod = |dir: &Path| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(plan.mode))
            .map_err(|e| io_error("chmod", dir, &e))
    };
    chmod(meta)?;
    if let Some(upper) = &plan.upper {
        chmod(upper)?;
    }
    if let Some(work) = &plan.work {
        std::fs::create_dir_all(work).map_err(|e| io_error("create", work, &e))?;
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("chmod", work, &e))?;
    }

    let mut lower = vec![meta.to_path_buf()];
    lower.extend(plan.import.iter().cloned());
    lower.extend(plan.layers.iter().cloned());
    lower.extend(plan.base.iter().cloned());
    let target = plan.target.display().to_string();
    let mount = match mount_overlay(class, plan, &lower, &target, true) {
        // Kernels before 6.8 know only the single `lowerdir=` option.
        Err(e) if e.errno == Errno::INVAL => mount_overlay(class, plan, &lower, &target, false)?,
        other => other?,
    };
    // The overlay's device number only exists now; systemd's tools compare
    // it with the mount point's st_dev to recognise the merge.
    let stat =
        rustix::fs::fstat(&mount).map_err(|e| SysError::new("stat overlay for", &target, e))?;
    write(
        "dev",
        &format!(
            "{}:{}\n",
            rustix::fs::major(stat.st_dev),
            rustix::fs::minor(stat.st_dev)
        ),
    )?;
    Ok(mount)
}

fn mount_overlay(
    class: Class,
    plan: &HierarchyPlan,
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
    let mut attrs = class.mount_attrs();
    match (&plan.upper, &plan.work) {
        (Some(upper), Some(work)) => {
            fs.set_string("upperdir", &upper.to_string_lossy())?;
            fs.set_string("workdir", &work.to_string_lossy())?;
            // systemd's options: no needless copy-ups, no half copied-up
            // files after an unmount, upper and work reusable after a
            // remount (index=off).
            fs.set_string("redirect_dir", "on")?;
            fs.set_string("metacopy", "off")?;
            fs.set_string("index", "off")?;
            attrs.remove(MountAttrFlags::MOUNT_ATTR_RDONLY);
            attrs |= MountAttrFlags::MOUNT_ATTR_NOATIME;
        }
        _ => fs.set_flag("ro")?,
    }
    fs.mount(target, attrs)
}

/// Put a built overlay on the plan's target: in place of a merge that is
/// there (atomically where the kernel can), else on top of the hierarchy,
/// creating the directory (0755) when the root has none. The metadata of a
/// writable overlay is then bound read-only onto itself.
pub fn place(class: Class, plan: &HierarchyPlan, mount: &OwnedFd) -> SysResult<Option<Replaced>> {
    let replaced = if merged_state(class, &plan.target).is_some() {
        Some(mountcompat::replace(mount, &plan.target)?)
    } else {
        if !plan.target.exists() {
            std::fs::create_dir(&plan.target).map_err(|e| io_error("create", &plan.target, &e))?;
            std::fs::set_permissions(&plan.target, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_error("chmod", &plan.target, &e))?;
        }
        attach(mount, &plan.target)?;
        None
    };
    if plan.upper.is_some() {
        bind_read_only_onto_itself(&plan.target.join(class.meta_dir()))?;
    }
    Ok(replaced)
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

/// The work directory a merge on `target` recorded (`work_dir`, relative
/// to `root`, C-escaped), if it has one.
pub fn recorded_work_dir(class: Class, root: &Path, target: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(target.join(class.meta_dir()).join("work_dir")).ok()?;
    let rel = c_unescape(text.trim_end_matches('\n'))?;
    Some(root.join(rel.trim_start_matches('/')))
}

/// Remove an overlay work directory of a merge that is gone. Only a
/// directory named as systemd and rdext name them is touched.
pub fn remove_work_dir(dir: &Path) {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    if !(name.starts_with(".systemd-") && name.contains("-workdir")) {
        log::warn!(
            "not removing {}: not an overlay work directory",
            dir.display()
        );
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", dir.display()),
    }
}

/// Undo [`c_escape`]; None for a malformed escape.
fn c_unescape(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let c = bytes.next()?;
        out.push(match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b'0'..=b'7' => {
                let oct = [c, bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&oct).ok()?, 8).ok()?
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}

/// Take every merge of `class` off `target` in a private mount namespace,
/// to build a new one on what is below; nothing on disk is touched.
pub fn uncover(class: Class, target: &Path) -> SysResult<()> {
    while merged_state(class, target).is_some() {
        match detach(&target.join(class.meta_dir())) {
            Err(e) if e.errno != Errno::INVAL => return Err(e),
            _ => {}
        }
        detach(target)?;
    }
    Ok(())
}

/// Remove every merge of `class` stacked on `target` (a hierarchy under
/// `root`), and the work directories they recorded; returns how many.
pub fn unmerge(class: Class, root: &Path, target: &Path) -> SysResult<usize> {
    let mut removed = 0;
    while merged_state(class, target).is_some() {
        let work_dir = recorded_work_dir(class, root, target);
        // A writable merge has its metadata bound onto itself.
        match detach(&target.join(class.meta_dir())) {
            Err(e) if e.errno != Errno::INVAL => return Err(e),
            _ => {}
        }
        detach(target)?;
        if let Some(dir) = work_dir {
            remove_work_dir(&dir);
        }
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
        Extension::resolve(Class::Sysext, name, &root).unwrap()
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
        let plans = plan(Class::Sysext, &root, &exts, &MutableSetup::read_only()).unwrap();
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
        fs::create_dir_all(tmp.path().join("ext/a/etc")).unwrap();
        let e = Extension::resolve(Class::Confext, "a", &tmp.path().join("ext/a")).unwrap();
        assert!(e.layers.is_empty());
        assert!(
            plan(Class::Confext, &root, &[e], &MutableSetup::read_only())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn sorting_and_list_file() {
        let mut names: Vec<String> = ["b", "a-10", "a-9"].iter().map(|s| s.to_string()).collect();
        sort_names(&mut names);
        assert_eq!(names, ["a-9", "a-10", "b"]);
        assert_eq!(list_file_content(&names), "a-9\na-10\nb\n");
    }

    #[test]
    fn layer_paths_longer_than_fsconfig_takes_are_refused() {
        let fits = format!("/{}", "x".repeat(MAX_LAYER_PATH - 1));
        assert_eq!(check_layer_path(Path::new(&fits)), Ok(()));
        let long = format!("{fits}x");
        let err = check_layer_path(Path::new(&long)).unwrap_err();
        assert!(err.contains("256 bytes long"), "{err}");
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
