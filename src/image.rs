//! Turning a discovered candidate into a tree that can be read and stacked:
//! directories are used in place, file system images are attached
//! read-only to a loop device and mounted in the workspace.
//!
//! GPT disk images (DDIs) and dm-verity plug in here: `probe` recognises a
//! partition table and refuses it until that support exists.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::mount::MountAttrFlags;

use crate::discover::{Candidate, SourceKind};
use crate::sys::loopdev;
use crate::sys::mount::{attach, io_error, mount_block_read_only};
use crate::sys::SysError;

/// A file system rdext can mount from an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// squashfs, as made by mksquashfs.
    Squashfs,
    /// EROFS, as made by mkfs.erofs and systemd-repart.
    Erofs,
    /// ext4 (also ext2/ext3 superblocks, mounted as ext4).
    Ext4,
}

impl Format {
    /// The kernel's file system name.
    pub fn fstype(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Ext4 => "ext4",
        }
    }
}

/// Why an image cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the image failed.
    #[error("cannot read image: {0}")]
    Read(#[from] std::io::Error),
    /// No known file system signature.
    #[error("not a squashfs, erofs or ext4 image")]
    Unrecognized,
    /// A partitioned disk image.
    #[error("GPT disk images are not supported yet")]
    PartitionTable,
    /// The kernel refused to attach or mount it.
    #[error("{0}")]
    Mount(#[from] SysError),
}

/// Identify the file system in the first blocks of an image.
pub fn probe(image: &impl FileExt) -> Result<Format, ImageError> {
    let mut head = vec![0u8; 4096];
    let mut filled = 0;
    while filled < head.len() {
        match image.read_at(&mut head[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"hsqs") {
        Ok(Format::Squashfs)
    } else if at(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        Ok(Format::Erofs)
    } else if at(1080, &0xEF53u16.to_le_bytes()) {
        Ok(Format::Ext4)
    } else if at(512, b"EFI PART") {
        Err(ImageError::PartitionTable)
    } else {
        Err(ImageError::Unrecognized)
    }
}

/// Make the candidate's tree available and return its root. File system
/// images are mounted (read-only, `attrs`) at `mount_point`, which must be an
/// empty directory in the workspace.
pub fn open(
    candidate: &Candidate,
    mount_point: &Path,
    attrs: MountAttrFlags,
) -> Result<PathBuf, ImageError> {
    if candidate.kind == SourceKind::Directory {
        return Ok(candidate.path.clone());
    }
    // One open file serves probing and the loop device, so what was probed
    // is what gets mounted.
    let file = File::open(&candidate.path)?;
    let format = probe(&file)?;
    let mount = match candidate.kind {
        SourceKind::RawFile => {
            let device =
                loopdev::attach_read_only(file.as_fd(), &candidate.path.to_string_lossy())?;
            // The mount holds the device from here on; autoclear detaches it
            // when the mount is gone.
            mount_block_read_only(format.fstype(), &device.path, attrs)?
        }
        _ => mount_block_read_only(format.fstype(), &candidate.path, attrs)?,
    };
    std::fs::create_dir_all(mount_point).map_err(|e| io_error("create", mount_point, &e))?;
    attach(&mount, mount_point)?;
    Ok(mount_point.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(offset: usize, magic: &[u8]) -> tempfile::NamedTempFile {
        let mut data = vec![0u8; 8192];
        data[offset..offset + magic.len()].copy_from_slice(magic);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        file
    }

    #[test]
    fn probes_by_magic() {
        let probe_at =
            |offset, magic: &[u8]| probe(&File::open(image_with(offset, magic).path()).unwrap());
        assert_eq!(probe_at(0, b"hsqs").unwrap(), Format::Squashfs);
        assert_eq!(
            probe_at(1024, &[0xE2, 0xE1, 0xF5, 0xE0]).unwrap(),
            Format::Erofs
        );
        assert_eq!(probe_at(1080, &[0x53, 0xEF]).unwrap(), Format::Ext4);
        assert!(matches!(
            probe_at(512, b"EFI PART"),
            Err(ImageError::PartitionTable)
        ));
        assert!(matches!(
            probe_at(100, b"junk"),
            Err(ImageError::Unrecognized)
        ));
    }

    #[test]
    fn short_file_is_unrecognized() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"hs").unwrap();
        assert!(matches!(
            probe(&File::open(file.path()).unwrap()),
            Err(ImageError::Unrecognized)
        ));
    }
}
