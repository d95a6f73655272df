//! Stage 3, verify: opening an image, reading its layout (file system or DDI), dm-verity,
//! root-hash signatures and the image policy that decides what is accepted.

pub mod ddi;
pub mod image;
pub mod policy;
pub mod probe;
pub mod signature;
pub mod verity;
