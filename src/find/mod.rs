//! Stage 1, find: which extension images the root offers, named, shadowed and versioned as
//! systemd does, and whether their extension-release fits the host.

pub mod counting;
pub mod discover;
pub mod fstab;
pub mod release;
pub mod version;
