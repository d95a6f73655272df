//! The one seam to the kernel: loop devices, the new mount API and a few
//! filesystem helpers that must resolve paths inside a root.
//!
//! Everything above this module works on plain values and paths, so the
//! planning logic is testable without privileges.

pub mod dm;
pub mod fs;
pub mod keyring;
pub mod loopdev;
pub mod mount;
pub mod mountcompat;

use std::fmt;

/// A failed system call, with what it was acting on and the kernel's own
/// explanation when it gave one (fs-context log).
#[derive(Debug, thiserror::Error)]
pub struct SysError {
    /// The operation, e.g. "mount squashfs".
    pub op: &'static str,
    /// The object it acted on, usually a path.
    pub target: String,
    /// The errno.
    pub errno: rustix::io::Errno,
    /// Extra text from the kernel's fs-context log, if any.
    pub detail: Option<String>,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.target, self.errno)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl SysError {
    pub(crate) fn new(
        op: &'static str,
        target: impl fmt::Display,
        errno: rustix::io::Errno,
    ) -> Self {
        SysError {
            op,
            target: target.to_string(),
            errno,
            detail: None,
        }
    }
}

/// Shorthand for results of this module.
pub type SysResult<T> = Result<T, SysError>;
