//! What an image file holds, read from its first blocks: the file system to mount, or a GPT
//! disk image (DDI) whose partitions `verity` reads. Both `image` and `verity` use it.

use std::os::unix::fs::FileExt;

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

/// Why an image is not one rdext can read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading the image failed.
    #[error("cannot read image: {0}")]
    Read(#[from] std::io::Error),
    /// No known file system or partition table signature.
    #[error("not a squashfs, erofs or ext4 image")]
    Unrecognized,
}

/// Identify the file system in the first blocks of an image; `None` is a GPT disk image,
/// whose layout `verity` reads.
pub fn probe(image: &impl FileExt) -> Result<Option<Format>, ProbeError> {
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
        Ok(Some(Format::Squashfs))
    } else if at(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        Ok(Some(Format::Erofs))
    } else if at(1080, &0xEF53u16.to_le_bytes()) {
        Ok(Some(Format::Ext4))
    } else if at(512, b"EFI PART") || at(4096, b"EFI PART") {
        Ok(None)
    } else {
        Err(ProbeError::Unrecognized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

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
        assert_eq!(probe_at(0, b"hsqs").unwrap().unwrap(), Format::Squashfs);
        assert_eq!(
            probe_at(1024, &[0xE2, 0xE1, 0xF5, 0xE0]).unwrap().unwrap(),
            Format::Erofs
        );
        assert_eq!(
            probe_at(1080, &[0x53, 0xEF]).unwrap().unwrap(),
            Format::Ext4
        );
        assert!(matches!(probe_at(512, b"EFI PART"), Ok(None)));
        assert!(matches!(
            probe_at(100, b"junk"),
            Err(ProbeError::Unrecognized)
        ));
    }

    #[test]
    fn short_file_is_unrecognized() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"hs").unwrap();
        assert!(matches!(
            probe(&File::open(file.path()).unwrap()),
            Err(ProbeError::Unrecognized)
        ));
    }
}
