//! Turning a discovered candidate into a tree that can be read and stacked:
//! directories are used in place; file system images and GPT disk images
//! (DDIs) are judged (`verity`), attached read-only to loop devices (under
//! dm-verity when protected) and mounted in the workspace.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::mount::MountAttrFlags;

use crate::discover::{Candidate, SourceKind};
use crate::policy::{Designator, ImagePolicy, Protection};
use crate::signature::TrustedCert;
use crate::sys::mount::{attach, io_error, mount_block_read_only};
use crate::sys::SysError;
use crate::verity::{self, Verdict, VerityError};

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
    /// A partitioned disk image; `verity` takes it from here.
    #[error("GPT disk image")]
    PartitionTable,
    /// Its protection is missing, broken or not enough for the policy.
    #[error("{0}")]
    Verity(#[from] VerityError),
    /// The kernel refused to attach or mount it.
    #[error("{0}")]
    Mount(#[from] SysError),
    /// The mount is not on the device that was checked.
    #[error("mounted file system is not on {0}")]
    WrongDevice(String),
}

/// Identify the file system in the first blocks of an image.
pub fn probe(image: &impl FileExt) -> Result<Format, ImageError> {
    let mut head = vec![0u8; 8192];
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
    } else if at(512, b"EFI PART") || at(4096, b"EFI PART") {
        Err(ImageError::PartitionTable)
    } else {
        Err(ImageError::Unrecognized)
    }
}

/// What `open` needs to judge an image.
#[derive(Debug)]
pub struct Trust<'a> {
    /// The image policy for this image.
    pub policy: &'a ImagePolicy,
    /// Certificates from the verity.d directories.
    pub trusted: &'a [TrustedCert],
    /// Unix time certificates must be valid at.
    pub now: u64,
}

/// An image ready to read and stack.
#[derive(Debug)]
pub struct Opened {
    /// Its root directory.
    pub root: PathBuf,
    /// How it is protected.
    pub verdict: Verdict,
}

/// Make the candidate's tree available and return its root. File system
/// images are judged against the policy, set up (dm-verity when they carry
/// a hash tree the policy wants) and mounted read-only (`attrs`) at
/// `mount_point`, an empty directory in the workspace.
pub fn open(
    candidate: &Candidate,
    mount_point: &Path,
    attrs: MountAttrFlags,
    trust: &Trust<'_>,
) -> Result<Opened, ImageError> {
    if candidate.kind == SourceKind::Directory {
        // A directory cannot carry verity: it is judged as unprotected.
        trust
            .policy
            .check(Designator::Root, Some(Protection::Unprotected))
            .map_err(VerityError::from)?;
        return Ok(Opened {
            root: candidate.path.clone(),
            verdict: Verdict::Unprotected,
        });
    }
    // One open file serves probing, inspection and the loop devices, so
    // what was checked is what gets mounted.
    let file = File::open(&candidate.path)?;
    let naked = match probe(&file) {
        Ok(format) => Some(format),
        Err(ImageError::PartitionTable) => None,
        Err(e) => return Err(e),
    };
    let inspection = verity::inspect(&file, &candidate.path, naked)?;
    let verdict = verity::judge(&inspection, trust.policy, trust.trusted, trust.now)?;
    let active = verity::activate(&file, &candidate.path, &inspection, &verdict)?;
    let format = match naked {
        Some(format) => format,
        None => probe(&File::open(&active.device)?)?,
    };
    let mount = mount_block_read_only(format.fstype(), &active.device, attrs);
    if let Some(name) = &active.dm_name {
        verity::release_when_unmounted(name);
    }
    let mount = mount?;
    // The loop devices are held by the mount from here on (autoclear).
    drop(active.loops);
    let stat =
        rustix::fs::fstat(&mount).map_err(|e| SysError::new("stat", mount_point.display(), e))?;
    if stat.st_dev != active.dev {
        return Err(ImageError::WrongDevice(active.device.display().to_string()));
    }
    std::fs::create_dir_all(mount_point).map_err(|e| io_error("create", mount_point, &e))?;
    attach(&mount, mount_point)?;
    Ok(Opened {
        root: mount_point.to_path_buf(),
        verdict,
    })
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
