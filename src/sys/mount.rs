//! The new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`).
//!
//! Mounts are built detached, inspected (the overlay's `st_dev` must be known
//! before its metadata is written) and only then attached.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount, unmount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags,
};

use super::{SysError, SysResult};

/// A filesystem being configured (`fsopen`). The kernel explains failures
/// in a log on this fd; we read it into the error.
#[derive(Debug)]
pub struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    /// Start configuring a superblock of `fstype`.
    pub fn new(fstype: &'static str) -> SysResult<Self> {
        let fd = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| SysError::new("fsopen", fstype, e))?;
        Ok(FsContext { fd, fstype })
    }

    /// `fsconfig(FSCONFIG_SET_STRING)`.
    pub fn set_string(&self, key: &str, value: &str) -> SysResult<()> {
        fsconfig_set_string(&self.fd, key, value).map_err(|e| self.error("set", key, e))
    }

    /// `fsconfig(FSCONFIG_SET_FLAG)`.
    pub fn set_flag(&self, key: &str) -> SysResult<()> {
        fsconfig_set_flag(&self.fd, key).map_err(|e| self.error("set", key, e))
    }

    /// Create the superblock and return a detached mount of it.
    pub fn mount(self, what: &str, attrs: MountAttrFlags) -> SysResult<OwnedFd> {
        fsconfig_create(&self.fd).map_err(|e| self.error("mount", what, e))?;
        fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| self.error("mount", what, e))
    }

    fn error(&self, op: &'static str, what: &str, errno: Errno) -> SysError {
        let mut err = SysError::new(op, format!("{} {what}", self.fstype), errno);
        err.detail = self.kernel_log();
        err
    }

    /// Drain the fs-context log: lines "e msg", "w msg", "i msg".
    fn kernel_log(&self) -> Option<String> {
        let mut lines = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = rustix::io::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            lines.push(line.get(2..).unwrap_or(&line).trim_end().to_string());
        }
        (!lines.is_empty()).then(|| lines.join("; "))
    }
}

/// Mount a read-only filesystem from a block device, detached.
pub fn mount_block_read_only(
    fstype: &'static str,
    device: &Path,
    attrs: MountAttrFlags,
) -> SysResult<OwnedFd> {
    let fs = FsContext::new(fstype)?;
    fs.set_string("source", &device.to_string_lossy())?;
    // Without "ro" on the superblock the kernel opens the device for
    // writing, which a read-only loop device refuses with EACCES.
    fs.set_flag("ro")?;
    fs.mount(
        &device.to_string_lossy(),
        attrs | MountAttrFlags::MOUNT_ATTR_RDONLY,
    )
}

/// Attach a detached mount at `target`.
pub fn attach(mount: impl AsFd, target: &Path) -> SysResult<()> {
    move_mount(
        mount.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| SysError::new("attach mount at", target.display(), e))
}

/// Lazily unmount `target`, never following a symlink there.
pub fn detach(target: &Path) -> SysResult<()> {
    unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
        .map_err(|e| SysError::new("unmount", target.display(), e))
}

/// A private tmpfs holding the image mounts and metadata layers while a
/// merge is built. The finished overlays pin what they use, so dropping
/// the workspace detaches it and leaves no trace in the tree.
#[derive(Debug)]
pub struct Workspace {
    path: PathBuf,
}

impl Workspace {
    /// Mount a fresh workspace in a new directory under `parent`.
    pub fn create(parent: &Path) -> SysResult<Self> {
        let path = parent.join(format!("rdext.{}", std::process::id()));
        std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, &e))?;
        sweep_stale(parent);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create", &path, &e)),
        }
        let fs = FsContext::new("tmpfs")?;
        fs.set_string("mode", "0700")?;
        fs.set_string("source", "rdext")?;
        let mount = fs.mount("workspace", MountAttrFlags::MOUNT_ATTR_NODEV)?;
        attach(&mount, &path)?;
        Ok(Workspace { path })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Detach and remove the workspaces of rdext runs that died (SIGKILL, power
/// cut of a long-lived /run) without cleaning up: their image mounts would
/// otherwise hold loop and verity devices forever.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rdext."))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        // Not a mount point (already detached) is fine: the directory goes.
        let _ = detach(&path);
        match std::fs::remove_dir(&path) {
            Ok(()) => log::info!(
                "removed the workspace {} of a run that died",
                path.display()
            ),
            Err(e) => log::warn!("cannot remove stale workspace {}: {e}", path.display()),
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = detach(&self.path) {
            log::warn!("{e}");
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Turn a std I/O error into a [`SysError`].
pub fn io_error(op: &'static str, path: &Path, err: &std::io::Error) -> SysError {
    SysError::new(
        op,
        path.display(),
        Errno::from_io_error(err).unwrap_or(Errno::IO),
    )
}

/// A private copy of the caller's mount namespace, entered for building a
/// merge that must see the hierarchies without the overlays stacked on them
/// now; [`PrivateNamespace::leave`] returns to the original namespace,
/// where the built (detached) mounts can be attached. The copy dies with
/// the last reference; mounts it holds stay alive while an overlay uses them.
#[derive(Debug)]
pub struct PrivateNamespace {
    original: OwnedFd,
    cwd: OwnedFd,
}

impl PrivateNamespace {
    /// Unshare the mount namespace and cut the copy's propagation, so
    /// nothing done in it reaches the original. Fails (EINVAL) when the
    /// process has other threads.
    pub fn enter() -> SysResult<Self> {
        let open = |path: &str| {
            rustix::fs::open(
                path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| SysError::new("open", path, e))
        };
        let original = open("/proc/self/ns/mnt")?;
        let cwd = open(".")?;
        // SAFETY: unshare takes no pointers.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(SysError::new(
                "unshare",
                "mount namespace",
                Errno::from_raw_os_error(
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                ),
            ));
        }
        let ns = PrivateNamespace { original, cwd };
        let private = rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::PRIVATE
                | rustix::mount::MountPropagationFlags::REC,
        );
        if let Err(e) = private {
            // Never stay in a copy that still propagates to the original.
            ns.leave()?;
            return Err(SysError::new("make private", "/", e));
        }
        Ok(ns)
    }

    /// Go back to the original namespace and working directory.
    pub fn leave(self) -> SysResult<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: setns takes a valid fd we own.
        if unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
            return Err(SysError::new(
                "setns",
                "original mount namespace",
                Errno::from_raw_os_error(
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
                ),
            ));
        }
        rustix::process::fchdir(&self.cwd).map_err(|e| SysError::new("chdir", "back", e))
    }
}

/// Bind `path` onto itself read-only: the metadata of a writable overlay
/// must not be changed through it.
pub fn bind_read_only_onto_itself(path: &Path) -> SysResult<()> {
    rustix::mount::mount_bind(path, path).map_err(|e| SysError::new("bind", path.display(), e))?;
    rustix::mount::mount_remount(
        path,
        rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
        "",
    )
    .map_err(|e| SysError::new("remount read-only", path.display(), e))
}

/// Mount the block device `device` at `target` with mount(2), as mount(8)
/// does for an fstab line: generic `flags` and the file system's own
/// `data` options.
pub fn mount_device(
    device: &Path,
    target: &Path,
    fstype: &str,
    flags: rustix::mount::MountFlags,
    data: &str,
) -> SysResult<()> {
    let data = std::ffi::CString::new(data)
        .map_err(|_| SysError::new("mount", device.display(), Errno::INVAL))?;
    rustix::mount::mount(device, target, fstype, flags, data.as_c_str()).map_err(|e| {
        SysError::new(
            "mount",
            format!("{} on {}", device.display(), target.display()),
            e,
        )
    })
}
