//! rdext: merge systemd-sysext and systemd-confext images into the real root
//! from the initramfs, so udev rules, kernel modules and units shipped in
//! extensions apply at the first boot as if they were part of the base.
//!
//! Data flows one way: discovery (a plain list of candidates) → images
//! opened and validated → overlay plans → mounts → metadata. Only `sys`
//! talks to the kernel.

pub mod class;
pub mod cmdline;
pub mod config;
pub mod envfile;
pub mod logger;
pub mod sys;

#[cfg(feature = "download")]
pub mod fetch;
pub mod find;
pub mod mount;
pub mod verify;

pub mod merge;

/// Lowercase hex: the form root hashes are signed over and SHA-256 sums
/// are published in.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
