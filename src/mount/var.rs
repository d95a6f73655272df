//! A `/var` of its own that the initrd does not mount (an ordinary line of
//! the real root's fstab, not `x-initrd.mount`): the extensions in
//! `/var/lib/extensions` and `/var/lib/confexts`, downloads and mutable
//! upper directories are there.
//!
//! It is checked (when the line has an fsck pass number) and mounted on
//! `ROOT/var` exactly as the fstab line says, and stays mounted, as if the
//! line had `x-initrd.mount`: switch-root carries it to `/var`, the booted
//! system's `var.mount` finds it mounted and is active, and its fsck
//! (`fsck -M`) passes over a mounted file system. Unmounting it again
//! would leave the merged images holding a superblock outside the mount
//! table: the device busy for the booted system's fsck, not remounted
//! read-only at shutdown, and the images' mount ids in the merge's
//! `origin` different from those systemd-sysext sees after boot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;
use rustix::mount::MountFlags;

use crate::find::fstab::{self, Entry, GenericFlag};
use crate::sys::fs::{is_mount_point, open_dir, open_in_root};
use crate::sys::mount::mount_device;

/// Mount the file system the root's fstab puts on `/var`, unless `/var`
/// is already a mount point or the fstab has no such line; the device it
/// mounted, if it did. Problems are logged and leave `/var` as it is: the
/// merge then goes on without what is on it.
pub fn mount_split_var(root: &Path, device_wait: Duration) -> Option<PathBuf> {
    let entry = fstab_var_entry(root)?;
    let target = root.join("var");
    match is_mount_point(&target) {
        Ok(false) => {}
        Ok(true) => {
            log::debug!("/var is already mounted");
            return None;
        }
        Err(e) => {
            log::warn!("separate /var: cannot inspect {}: {e}", target.display());
            return None;
        }
    }
    let source = &entry.source;
    if entry.has_option("noauto") {
        log::info!("separate /var ({source}) is noauto: images on it are not merged");
        return None;
    }
    if entry.fstype == "auto" || entry.fstype.is_empty() {
        log::warn!("separate /var ({source}): its fstab line names no file system type; images on it are not merged");
        return None;
    }
    let Some(device) = entry.device_path() else {
        log::warn!("separate /var ({source}) is not a block device; images on it are not merged");
        return None;
    };
    if !wait_for(&device, device_wait) {
        log::warn!(
            "separate /var: {} did not appear within {} s; images on it are not merged",
            device.display(),
            device_wait.as_secs()
        );
        return None;
    }
    if entry.passno > 0 {
        fsck(&device)?;
    }
    let (generic, data) = entry.mount_options();
    let flags = generic
        .iter()
        .fold(MountFlags::empty(), |f, g| f | mount_flag(*g));
    // The device node itself, not the udev link, as mount(8) names it.
    let node = std::fs::canonicalize(&device).unwrap_or_else(|_| device.clone());
    if let Err(e) = mount_device(&node, &target, &entry.fstype, flags, &data) {
        log::warn!("separate /var: {e}; images on it are not merged");
        return None;
    }
    log::info!(
        "mounted /var ({}) from the root's fstab; it stays mounted for the booted system",
        device.display()
    );
    Some(device)
}

fn fstab_var_entry(root: &Path) -> Option<Entry> {
    let root_fd = open_dir(root).ok()?;
    let fd = open_in_root(&root_fd, Path::new("etc/fstab"), OFlags::RDONLY).ok()?;
    let text = std::io::read_to_string(std::fs::File::from(fd)).ok()?;
    fstab::var_entry(&fstab::parse(&text)).cloned()
}

fn wait_for(device: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while !device.exists() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Check the file system as systemd-fsck would before the first mount
/// (`fsck -a -T -M`). None: errors were left, so it must not be mounted.
fn fsck(device: &Path) -> Option<()> {
    let status = match Command::new("fsck")
        .args(["-a", "-T", "-M"])
        .arg(device)
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            log::info!(
                "separate /var: cannot run fsck ({e}); {} not checked",
                device.display()
            );
            return Some(());
        }
    };
    // fsck(8) exit bits: 1 corrected, 2 reboot, 4 left uncorrected, 8 operational error.
    match status.code() {
        Some(code) if code & 6 != 0 => {
            log::warn!(
                "separate /var: fsck {} exited with {code}; not mounting it, images on it are not merged",
                device.display()
            );
            None
        }
        Some(code) if code & !1 == 0 => Some(()),
        other => {
            log::warn!(
                "separate /var: fsck {} failed ({other:?}); mounting it unchecked",
                device.display()
            );
            Some(())
        }
    }
}

fn mount_flag(flag: GenericFlag) -> MountFlags {
    match flag {
        GenericFlag::ReadOnly => MountFlags::RDONLY,
        GenericFlag::NoSuid => MountFlags::NOSUID,
        GenericFlag::NoDev => MountFlags::NODEV,
        GenericFlag::NoExec => MountFlags::NOEXEC,
        GenericFlag::NoAtime => MountFlags::NOATIME,
        GenericFlag::NoDirAtime => MountFlags::NODIRATIME,
        GenericFlag::RelAtime => MountFlags::RELATIME,
        GenericFlag::StrictAtime => MountFlags::STRICTATIME,
        GenericFlag::LazyTime => MountFlags::LAZYTIME,
        GenericFlag::Sync => MountFlags::SYNCHRONOUS,
        GenericFlag::DirSync => MountFlags::DIRSYNC,
        GenericFlag::NoSymFollow => MountFlags::NOSYMFOLLOW,
    }
}
