//! Stage 4, mount: overlay plans and their detached mounts, and the kernel-module metadata and
//! preloading that make extensions' modules usable.

pub mod modules;
pub mod origin;
pub mod overlay;
pub mod var;
