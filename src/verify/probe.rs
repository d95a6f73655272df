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
    /// The file system says it is larger than what holds it: a cut-off
    /// download or copy, whose missing blocks would fail at read time.
    #[error(
        "truncated {fstype} image: its superblock says {claimed} bytes, the image has {actual}"
    )]
    Truncated {
        /// The file system.
        fstype: &'static str,
        /// The size its superblock records.
        claimed: u64,
        /// The size of the file or device.
        actual: u64,
    },
    /// The superblock's size fields make no sense.
    #[error("corrupt {0} superblock: {1}")]
    BadSuperblock(&'static str, &'static str),
}

/// Identify the file system in the first blocks of an image; `None` is a GPT disk image,
/// whose layout `verity` reads.
pub fn probe(image: &impl FileExt) -> Result<Option<Format>, ProbeError> {
    probe_head(&read_head(image)?)
}

fn read_head(image: &impl FileExt) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; 8192];
    let mut filled = 0;
    while filled < head.len() {
        match image.read_at(&mut head[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// Identify the file system from an image's first bytes (up to 8 KiB).
pub fn probe_head(head: &[u8]) -> Result<Option<Format>, ProbeError> {
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

/// The number of bytes the file system in `head` (an image's first 8 KiB)
/// says it occupies.
pub fn claimed_size(head: &[u8], format: Format) -> Result<u64, ProbeError> {
    let le32 = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u64::from(u32::from_le_bytes(b.try_into().unwrap_or_default())))
    };
    let short = ProbeError::BadSuperblock(format.fstype(), "superblock cut short");
    match format {
        Format::Squashfs => head
            .get(40..48)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .ok_or(short),
        Format::Erofs => {
            let bits = *head.get(1024 + 12).ok_or(short)?;
            if !(9..=16).contains(&bits) {
                return Err(ProbeError::BadSuperblock(
                    "erofs",
                    "block size out of range",
                ));
            }
            let blocks = le32(1024 + 36).ok_or(ProbeError::BadSuperblock("erofs", "cut short"))?;
            Ok(blocks << bits)
        }
        Format::Ext4 => {
            let sb = 1024;
            let (Some(lo), Some(log), Some(incompat)) =
                (le32(sb + 4), le32(sb + 24), le32(sb + 0x60))
            else {
                return Err(short);
            };
            // ext4 allows 1 KiB to 64 KiB blocks.
            if log > 6 {
                return Err(ProbeError::BadSuperblock("ext4", "block size out of range"));
            }
            const INCOMPAT_64BIT: u64 = 0x80;
            let hi = if incompat & INCOMPAT_64BIT != 0 {
                le32(sb + 0x150).ok_or(ProbeError::BadSuperblock("ext4", "cut short"))?
            } else {
                0
            };
            ((hi << 32) | lo)
                .checked_mul(1 << (10 + log))
                .ok_or(ProbeError::BadSuperblock(
                    "ext4",
                    "block count out of range",
                ))
        }
    }
}

/// Refuse an image (file or block device) shorter than the file system in
/// it says it is, before the kernel mounts it.
pub fn check_complete(image: &std::fs::File, format: Format) -> Result<(), ProbeError> {
    use std::io::Seek;
    let claimed = claimed_size(&read_head(image)?, format)?;
    // Seeking to the end gives the size of block devices too.
    let actual = (&*image).seek(std::io::SeekFrom::End(0))?;
    if claimed > actual {
        return Err(ProbeError::Truncated {
            fstype: format.fstype(),
            claimed,
            actual,
        });
    }
    Ok(())
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
    fn claimed_sizes_come_from_each_superblock() {
        let mut head = vec![0u8; 8192];
        head[40..48].copy_from_slice(&12_345u64.to_le_bytes());
        assert_eq!(claimed_size(&head, Format::Squashfs).unwrap(), 12_345);
        head[1024 + 12] = 12;
        head[1024 + 36..1024 + 40].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(claimed_size(&head, Format::Erofs).unwrap(), 3 * 4096);
        head[1024 + 12] = 40;
        assert!(matches!(
            claimed_size(&head, Format::Erofs),
            Err(ProbeError::BadSuperblock("erofs", _))
        ));
        let mut ext = vec![0u8; 1200];
        ext[1024 + 4..1024 + 8].copy_from_slice(&10u32.to_le_bytes());
        ext[1024 + 24] = 2;
        assert_eq!(claimed_size(&ext, Format::Ext4).unwrap(), 10 * 4096);
        // 64-bit block counts need the high half, which a cut head lacks.
        ext[1024 + 0x60] = 0x80;
        assert!(claimed_size(&ext, Format::Ext4).is_err());
        ext.resize(8192, 0);
        ext[1024 + 0x150] = 1;
        assert_eq!(
            claimed_size(&ext, Format::Ext4).unwrap(),
            ((1u64 << 32) + 10) * 4096
        );
        assert!(claimed_size(&head[..20], Format::Squashfs).is_err());
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
