//! Kernel-version differences of the mount calls, in one place, each
//! chosen by trying rather than by version number.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Once;

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{move_mount, MoveMountFlags};

use super::mount::{attach, detach};
use super::{SysError, SysResult};

/// `MOVE_MOUNT_BENEATH` (Linux 6.5), not yet named by rustix.
const MOVE_MOUNT_BENEATH: u32 = 0x200;

/// How a mount was put in place of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replaced {
    /// Slid beneath the old mount, which was then detached: at no instant
    /// was the path without one of them.
    Atomically,
    /// The kernel cannot mount beneath (before 6.5): the old mount was
    /// detached and the new one attached right after.
    UnmountThenMount,
}

static FALLBACK_LOGGED: Once = Once::new();

/// Put the detached `mount` in place of the mount on top of `target`.
pub fn replace(mount: impl AsFd, target: &Path) -> SysResult<Replaced> {
    let beneath = move_mount(
        mount.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
            | MoveMountFlags::from_bits_retain(MOVE_MOUNT_BENEATH),
    );
    match beneath {
        Ok(()) => {
            detach(target)?;
            Ok(Replaced::Atomically)
        }
        // EINVAL: the flag is unknown; older kernels may also reject the
        // combination with EINVAL only.
        Err(Errno::INVAL) => {
            FALLBACK_LOGGED.call_once(|| {
                log::warn!(
                    "the kernel cannot mount beneath (MOVE_MOUNT_BENEATH, Linux 6.5); \
                     replacing overlays by unmounting first"
                )
            });
            detach(target)?;
            attach(mount, target)?;
            Ok(Replaced::UnmountThenMount)
        }
        Err(e) => Err(SysError::new("mount beneath", target.display(), e)),
    }
}
