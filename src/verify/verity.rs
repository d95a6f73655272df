//! What protects an image, and setting that protection up: the root hash
//! (sidecar, signature partition or the DPS UUID rule), the hash tree (a
//! DDI verity partition or a `.verity` sidecar), the signature, and the
//! image policy's verdict, then a dm-verity device through `sys::dm`.
//!
//! "Signed" means signed: when the policy asks for a signature check and
//! it fails, the image is refused; there is no fallback to plain verity
//! (unlike systemd's default, kairos#4425).

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::sys::dm::{Control, DmDevice};
use crate::sys::loopdev::{self, LoopDevice, Window};
use crate::verify::ddi::{self, Arch, DataDesignator, DdiLayout, RootHash, VeritySuperblock};
use crate::verify::policy::{self, Decision, ImagePolicy, Protection};
use crate::verify::probe::Format;
use crate::verify::signature::{self, TrustedCert};

/// Why an image's protection cannot be established or is not enough.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// Reading the image or its sidecars failed, or they are malformed.
    #[error("{0}")]
    Format(#[from] ddi::DdiError),
    /// The image policy refuses what was found.
    #[error("{0}")]
    Policy(#[from] policy::PolicyViolation),
    /// The policy lists the partition as unused.
    #[error("policy ignores the {0} partition, leaving nothing to mount")]
    Ignored(&'static str),
    /// The policy wants the signature checked and the check failed.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// A root hash without a hash tree to check it against.
    #[error("root hash given but no .verity hash tree next to the image")]
    NoHashTree,
    /// Sidecar and signature disagree.
    #[error(
        "root hash {sidecar} from the sidecar differs from {signed} in the signature partition"
    )]
    HashMismatch {
        /// From `.roothash`.
        sidecar: String,
        /// From the signature JSON.
        signed: String,
    },
    /// Not a file system rdext can mount.
    #[error("{0}")]
    Unrecognized(String),
    /// The kernel refused a step.
    #[error("{0}")]
    Sys(#[from] crate::sys::SysError),
    /// A device of the name rdext would give this image exists with
    /// another table.
    #[error("dm-verity device {0} exists with a different table; not reusing it")]
    ForeignDevice(String),
    /// The hash tree is shorter than the data it covers needs.
    #[error("truncated verity hash tree: {needs} bytes needed, {has} present")]
    TruncatedHashTree {
        /// Bytes the superblock's geometry needs.
        needs: u64,
        /// Bytes there are.
        has: u64,
    },
    /// The hash tree's top block does not hash to the root hash.
    #[error("root hash mismatch: the hash tree's top block hashes to {actual}, not {expected}")]
    RootHashMismatch {
        /// The root hash given.
        expected: String,
        /// What the tree hashes to.
        actual: String,
    },
}

/// A byte range of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Start in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

impl From<Region> for Window {
    fn from(r: Region) -> Window {
        Window {
            offset: r.offset,
            size: r.size,
        }
    }
}

/// Where the hash tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashTree {
    /// A partition of the image itself.
    Partition(Region),
    /// A `.verity` file next to it.
    Sidecar(PathBuf),
}

/// Everything known about an image before anything is activated; `rdext
/// verify` prints it.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// "ddi" or the file system of a naked image.
    pub kind: String,
    /// The DDI's partitions, for display: (designator or label, offset, size).
    pub partitions: Vec<(String, u64, u64)>,
    /// Root or usr.
    pub designator: policy::Designator,
    /// The file system's bytes.
    pub data: Region,
    /// The hash tree, if any.
    pub hash_tree: Option<HashTree>,
    /// The root hash, if known.
    pub root_hash: Option<Vec<u8>>,
    /// Where the root hash came from.
    pub root_hash_source: Option<&'static str>,
    /// DER PKCS#7 over the hex root hash, if any.
    pub signature: Option<Vec<u8>>,
}

impl Inspection {
    /// What was found, in the policy's terms.
    pub fn protection(&self) -> Protection {
        match (&self.hash_tree, &self.root_hash, &self.signature) {
            (Some(_), Some(_), Some(_)) => Protection::Signed,
            (Some(_), Some(_), None) => Protection::Verity,
            _ => Protection::Unprotected,
        }
    }

    /// The root hash as lowercase hex.
    pub fn root_hash_hex(&self) -> Option<String> {
        self.root_hash.as_deref().map(crate::hex)
    }
}

fn designator_of(d: DataDesignator) -> policy::Designator {
    match d {
        DataDesignator::Root => policy::Designator::Root,
        DataDesignator::Usr => policy::Designator::Usr,
    }
}

/// Inspect an open raw image (`path` is its resolved path, for sidecars).
/// `naked` is the file system probed at the start, None for a GPT image.
pub fn inspect(file: &File, path: &Path, naked: Option<Format>) -> Result<Inspection, VerityError> {
    let size = file.metadata().map_err(ddi::DdiError::Io)?.len();
    let sidecars = ddi::find_sidecars(path)?;
    if let Some(format) = naked {
        let hash_tree = sidecars.verity_data.clone().map(HashTree::Sidecar);
        if sidecars.root_hash.is_some() && hash_tree.is_none() {
            return Err(VerityError::NoHashTree);
        }
        let designator = sidecars
            .root_hash
            .as_ref()
            .map_or(DataDesignator::Root, |h| h.designator);
        return Ok(Inspection {
            kind: format.fstype().to_string(),
            partitions: Vec::new(),
            designator: designator_of(designator),
            data: Region { offset: 0, size },
            hash_tree,
            root_hash_source: sidecars.root_hash.as_ref().map(|_| "sidecar"),
            root_hash: sidecars.root_hash.map(|h| h.bytes),
            signature: sidecars.signature,
        });
    }
    let partitions = ddi::read_partitions(file, size)?;
    let native = Arch::native().unwrap_or(Arch::X86_64);
    let layout = ddi::select_layout(file, &partitions, native, sidecars.root_hash.as_ref())?;
    let signed = match &layout.signature {
        Some(part) => Some(ddi::read_verity_sig(file, part)?),
        None => None,
    };
    let (root_hash, source) = match (&sidecars.root_hash, &signed) {
        (Some(RootHash { bytes, .. }), Some(sig)) if *bytes != sig.root_hash => {
            return Err(VerityError::HashMismatch {
                sidecar: crate::hex(bytes),
                signed: crate::hex(&sig.root_hash),
            })
        }
        (Some(h), _) => (Some(h.bytes.clone()), Some("sidecar")),
        (None, Some(sig)) => (Some(sig.root_hash.clone()), Some("signature partition")),
        (None, None) => (layout.guessed_root_hash(), Some("partition UUIDs")),
    };
    let root_hash_source = root_hash.as_ref().and(source);
    let signature = sidecars.signature.or(signed.map(|s| s.signature));
    Ok(Inspection {
        kind: "ddi".to_string(),
        partitions: describe(&layout),
        designator: designator_of(layout.designator),
        data: region(&layout.data),
        hash_tree: layout
            .verity
            .as_ref()
            .map(|p| HashTree::Partition(region(p))),
        root_hash,
        root_hash_source,
        signature,
    })
}

fn region(p: &ddi::GptPartition) -> Region {
    Region {
        offset: p.offset,
        size: p.size,
    }
}

fn describe(layout: &DdiLayout) -> Vec<(String, u64, u64)> {
    let name = match layout.designator {
        DataDesignator::Root => "root",
        DataDesignator::Usr => "usr",
    };
    let mut out = vec![(name.to_string(), layout.data.offset, layout.data.size)];
    if let Some(v) = &layout.verity {
        out.push((format!("{name}-verity"), v.offset, v.size));
    }
    if let Some(s) = &layout.signature {
        out.push((format!("{name}-verity-sig"), s.offset, s.size));
    }
    out
}

/// How the image will be set up, after the policy and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Mount the data directly.
    Unprotected,
    /// dm-verity with the root hash, no signature checked.
    Verity,
    /// dm-verity, signature verified by rdext against verity.d.
    Signed {
        /// Subject of the certificate that signed.
        signer: String,
        /// The trusted certificate file.
        cert: PathBuf,
    },
    /// dm-verity with the signature left to the kernel's keyrings: the
    /// signer is not in verity.d, so only the kernel can vouch for it.
    KernelSigned {
        /// Why verity.d did not do.
        userspace: String,
    },
}

/// Apply `policy` to what `inspection` found; check the signature when the
/// policy needs it. `now` is the time certificates must be valid at.
pub fn judge(
    inspection: &Inspection,
    policy: &ImagePolicy,
    trusted: &[TrustedCert],
    now: u64,
) -> Result<Verdict, VerityError> {
    let other = match inspection.designator {
        policy::Designator::Usr => policy::Designator::Root,
        _ => policy::Designator::Usr,
    };
    policy.check(other, None)?;
    match policy.check(inspection.designator, Some(inspection.protection()))? {
        Decision::Ignore => Err(VerityError::Ignored(inspection.designator.as_str())),
        Decision::Use(Protection::Signed) => {
            let (Some(signature), Some(hash)) = (&inspection.signature, inspection.root_hash_hex())
            else {
                return Err(VerityError::Signature("no signature".into()));
            };
            match signature::verify_root_hash(signature, &hash, trusted, now) {
                Ok(verified) => Ok(Verdict::Signed {
                    signer: verified.signer_subject,
                    cert: verified.cert_path,
                }),
                Err(e @ signature::SignatureError::NotTrusted(_)) => Ok(Verdict::KernelSigned {
                    userspace: e.to_string(),
                }),
                Err(e) => Err(VerityError::Signature(e.to_string())),
            }
        }
        Decision::Use(Protection::Verity) => Ok(Verdict::Verity),
        Decision::Use(_) => Ok(Verdict::Unprotected),
    }
}

/// A block device holding the image's file system, and what keeps it alive
/// until it is mounted.
#[derive(Debug)]
pub struct Activated {
    /// The device to mount, e.g. `/dev/loop3` or `/dev/dm-1`.
    pub device: PathBuf,
    /// Its device number, to check the mount is on it.
    pub dev: u64,
    /// Loop devices to hold open until the mount holds them.
    pub loops: Vec<LoopDevice>,
    /// The verity device, to schedule for removal once mounted.
    pub dm_name: Option<String>,
}

/// Attach the image as `verdict` says: a loop device over the data, and for
/// verity a second one over the hash tree with a dm-verity device on top
/// (reused when one for the same root hash exists).
pub fn activate(
    file: &File,
    path: &Path,
    inspection: &Inspection,
    verdict: &Verdict,
    need_modules: &(dyn Fn(&[&str]) + Sync),
) -> Result<Activated, VerityError> {
    let name = path.to_string_lossy();
    need_modules(&["loop"]);
    let data = loopdev::attach_read_only(file.as_fd(), &name, inspection.data.into())?;
    let (Some(hash_tree), Some(root_hash)) = (&inspection.hash_tree, inspection.root_hash_hex())
    else {
        return Ok(plain(data));
    };
    if *verdict == Verdict::Unprotected {
        return Ok(plain(data));
    }
    // Loaded before its parameters (require_signatures) are read.
    need_modules(&["dm-mod", "dm-verity"]);
    let (hash_file, window) = match hash_tree {
        HashTree::Partition(region) => (
            file.try_clone().map_err(ddi::DdiError::Io)?,
            (*region).into(),
        ),
        HashTree::Sidecar(p) => (
            File::open(p).map_err(|source| ddi::DdiError::File {
                path: p.clone(),
                source,
            })?,
            Window::default(),
        ),
    };
    let mut head = vec![0u8; ddi::VERITY_SUPERBLOCK_SIZE];
    hash_file
        .read_exact_at(&mut head, window.offset)
        .map_err(ddi::DdiError::Io)?;
    let superblock = ddi::parse_verity_superblock(&head)?;
    check_hash_tree(
        (file, inspection.data.offset),
        &hash_file,
        window,
        &superblock,
        &root_hash,
    )?;
    let hash = loopdev::attach_read_only(hash_file.as_fd(), &name, window)?;
    let dm_name = format!("rdext-{root_hash}");
    // The kernel checks the signature itself when verity.d could not, and
    // whenever it insists (dm_verity.require_signatures=1).
    let kernel_check = match (verdict, &inspection.signature) {
        (Verdict::KernelSigned { userspace }, Some(sig)) => Some((sig, Some(userspace.as_str()))),
        (Verdict::Signed { .. }, Some(sig)) if kernel_requires_signatures() => Some((sig, None)),
        _ => None,
    };
    let key = match kernel_check {
        Some((sig, _)) => {
            let description = format!("rdext:{root_hash}");
            crate::sys::keyring::add_user_key(&description, sig)?;
            Some(description)
        }
        None => None,
    };
    let device = open_verity(
        &dm_name,
        &superblock,
        &data,
        &hash,
        &root_hash,
        key.as_deref(),
    )
    .map_err(|e| match (kernel_check, e) {
        (Some((_, userspace)), VerityError::Sys(sys)) if keyring_refusal(sys.errno) => {
            VerityError::Signature(format!(
                "{}the kernel keyring refused it: {}",
                userspace.map(|u| format!("{u}; ")).unwrap_or_default(),
                sys.errno
            ))
        }
        (_, e) => e,
    })?;
    Ok(Activated {
        device: PathBuf::from(format!("/dev/dm-{}", rustix::fs::minor(device.dev))),
        dev: device.dev,
        loops: vec![data, hash],
        dm_name: Some(dm_name),
    })
}

/// Whether dm-verity's table load failed because the kernel's signature
/// check said no (no trusted key, rejected, expired or unparsable
/// signature), rather than for a device-mapper reason of its own.
fn keyring_refusal(errno: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::NOKEY,
        Errno::KEYREJECTED,
        Errno::KEYEXPIRED,
        Errno::KEYREVOKED,
        Errno::BADMSG,
        Errno::NOPKG,
    ]
    .contains(&errno)
}

/// The digest of `algorithm`, when rdext knows it.
fn digest_algorithm(algorithm: &str) -> Option<&'static ring::digest::Algorithm> {
    match algorithm {
        "sha256" => Some(&ring::digest::SHA256),
        "sha512" => Some(&ring::digest::SHA512),
        "sha1" => Some(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        _ => None,
    }
}

/// The number of hash levels and the bytes of the hash device (superblock
/// block included) that the tree for `superblock`'s data needs, as
/// dm-verity lays it out. With 0 levels the root hash is the one data
/// block's hash.
pub fn hash_tree_geometry(superblock: &VeritySuperblock, digest_len: usize) -> Option<(u32, u64)> {
    let per_block = u64::from(superblock.hash_block_size) / digest_len as u64;
    // dm-verity: hashes per block rounded down to a power of two.
    let bits = per_block.checked_ilog2().filter(|&b| b > 0)?;
    let last = superblock.data_blocks.checked_sub(1)?;
    let levels = (0..64_u32.div_ceil(bits))
        .take_while(|l| last >> (bits * l) != 0)
        .count() as u32;
    let mut blocks = 1u64; // the superblock
    for level in 0..levels {
        let shift = bits * (level + 1);
        let at_level = if shift >= 64 {
            1
        } else {
            superblock.data_blocks.div_ceil(1 << shift)
        };
        blocks = blocks.checked_add(at_level)?;
    }
    Some((
        levels,
        blocks.checked_mul(u64::from(superblock.hash_block_size))?,
    ))
}

/// Check, before the kernel sees it, that the hash tree is all there and
/// that its top block hashes to the root hash: a wrong root hash is then
/// refused as such rather than as an I/O error at mount. `data` is the
/// data file and where the data starts in it.
fn check_hash_tree(
    data: (&File, u64),
    hash_file: &File,
    window: Window,
    superblock: &VeritySuperblock,
    root_hash_hex: &str,
) -> Result<(), VerityError> {
    let Some(algorithm) = digest_algorithm(&superblock.algorithm) else {
        return Ok(());
    };
    let (levels, needs) = hash_tree_geometry(superblock, algorithm.output_len()).ok_or(
        ddi::DdiError::BadVeritySuperblock("hash tree geometry out of range"),
    )?;
    let file_len = hash_file.metadata().map_err(ddi::DdiError::Io)?.len();
    let has = match window.size {
        0 => file_len.saturating_sub(window.offset),
        size => size.min(file_len.saturating_sub(window.offset)),
    };
    if needs > has {
        return Err(VerityError::TruncatedHashTree { needs, has });
    }
    // The top block is the first after the superblock, or with a single
    // data block (no hash levels) that data block itself.
    let (top_file, top_at, block_size) = if levels == 0 {
        (data.0, data.1, superblock.data_block_size)
    } else {
        let size = superblock.hash_block_size;
        (hash_file, window.offset + u64::from(size), size)
    };
    let mut top = vec![0u8; block_size as usize];
    top_file
        .read_exact_at(&mut top, top_at)
        .map_err(ddi::DdiError::Io)?;
    let mut context = ring::digest::Context::new(algorithm);
    if superblock.hash_type == 1 {
        context.update(&superblock.salt);
        context.update(&top);
    } else {
        context.update(&top);
        context.update(&superblock.salt);
    }
    let actual = crate::hex(context.finish().as_ref());
    if actual != root_hash_hex {
        return Err(VerityError::RootHashMismatch {
            expected: root_hash_hex.to_string(),
            actual,
        });
    }
    Ok(())
}

fn plain(data: LoopDevice) -> Activated {
    let dev = rustix::fs::fstat(&data.device)
        .map(|s| s.st_rdev)
        .unwrap_or(0);
    Activated {
        device: data.path.clone(),
        dev,
        loops: vec![data],
        dm_name: None,
    }
}

fn dev_name(device: &LoopDevice) -> Result<String, VerityError> {
    let stat = rustix::fs::fstat(&device.device)
        .map_err(|e| crate::sys::SysError::new("stat", device.path.display(), e))?;
    Ok(format!(
        "{}:{}",
        rustix::fs::major(stat.st_rdev),
        rustix::fs::minor(stat.st_rdev)
    ))
}

/// Whether dm-verity refuses tables without a signature
/// (`dm_verity.require_signatures=1`).
fn kernel_requires_signatures() -> bool {
    std::fs::read_to_string("/sys/module/dm_verity/parameters/require_signatures")
        .is_ok_and(|v| v.trim() == "Y" || v.trim() == "1")
}

fn open_verity(
    dm_name: &str,
    superblock: &VeritySuperblock,
    data: &LoopDevice,
    hash: &LoopDevice,
    root_hash: &str,
    signature_key: Option<&str>,
) -> Result<DmDevice, VerityError> {
    let control = Control::open()?;
    let key_opt = signature_key.map(|k| format!("root_hash_sig_key_desc {k}"));
    let opts: Vec<&str> = key_opt.iter().map(String::as_str).collect();
    let table = superblock.dm_table(&dev_name(data)?, &dev_name(hash)?, root_hash, 1, &opts);
    let sectors = superblock.data_blocks * u64::from(superblock.data_block_size) / 512;
    // Images are opened in parallel: two with the same root hash must not
    // both find no device and race to create it.
    static SETTING_UP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SETTING_UP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((device, active)) = control.table(dm_name)? {
        // Reused only if it is exactly what this image needs, the kernel's
        // signature check included: a device made without it (or by
        // someone else, with other options) must not vouch for this image.
        if active.target_type == "verity"
            && active.sectors == sectors
            && same_verity_table(&active.params, &table)
        {
            log::debug!("reusing dm-verity device {dm_name}");
            return Ok(device);
        }
        return Err(VerityError::ForeignDevice(dm_name.to_string()));
    }
    let uuid = format!("RDEXT-VERITY-{root_hash}");
    Ok(control.create_read_only(
        dm_name,
        &uuid[..uuid.len().min(128)],
        "verity",
        sectors,
        &table,
    )?)
}

/// Whether an active verity table is `wanted` but for its data and hash
/// devices (the 2nd and 3rd fields): other loop devices over the same root
/// hash hold the same content, as dm-verity checks every block against it.
fn same_verity_table(active: &str, wanted: &str) -> bool {
    let fields = |table: &'_ str| -> Vec<String> {
        table
            .split_whitespace()
            .enumerate()
            .filter(|(i, _)| *i != 1 && *i != 2)
            .map(|(_, w)| w.to_string())
            .collect()
    };
    fields(active) == fields(wanted)
}

/// Once the file system is mounted, let the verity device go away with it.
pub fn release_when_unmounted(dm_name: &str) {
    match Control::open().and_then(|c| c.remove(dm_name, true)) {
        Ok(()) => {}
        Err(e) => log::debug!("cannot schedule removal of {dm_name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn verity_table_reuse_needs_the_same_table_but_devices() {
        let hash = "ab".repeat(32);
        let table =
            |devs: &str, opts: &str| format!("1 {devs} 4096 4096 100 1 sha256 {hash} 00ff{opts}");
        let signed = format!(" 2 root_hash_sig_key_desc rdext:{hash}");
        let wanted = table("7:1 7:2", "");
        assert!(same_verity_table(&table("7:5 7:6", ""), &wanted));
        let wanted_signed = table("7:1 7:2", &signed);
        assert!(same_verity_table(
            &table("7:5 7:6", &signed),
            &wanted_signed
        ));
        // Without the kernel's signature check, or with it where none is
        // asked for, or with other options: not the same.
        assert!(!same_verity_table(&table("7:5 7:6", ""), &wanted_signed));
        assert!(!same_verity_table(&table("7:5 7:6", &signed), &wanted));
        assert!(!same_verity_table(
            &table("7:5 7:6", " 1 ignore_corruption"),
            &wanted
        ));
        let other_salt = wanted.replace(" 00ff", " -");
        assert!(!same_verity_table(&other_salt, &wanted));
    }

    /// A data file of `blocks` 4 KiB blocks and its hash tree made by the
    /// real veritysetup; returns the directory, the hash file and the root hash.
    fn veritysetup(blocks: u64) -> (tempfile::TempDir, PathBuf, String) {
        veritysetup_with(blocks, |_| {})
    }

    fn veritysetup_with(blocks: u64, fill: impl Fn(&File)) -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let hash = dir.path().join("hash");
        let file = File::create(&data).unwrap();
        file.set_len(blocks * 4096).unwrap();
        fill(&file);
        let out = Command::new("veritysetup")
            .arg("format")
            .args([&data, &hash])
            .output()
            .expect("veritysetup (cryptsetup-bin) is needed");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let root = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .unwrap()
            .trim()
            .to_string();
        (dir, hash, root)
    }

    fn superblock_of(hash: &Path) -> VeritySuperblock {
        let bytes = std::fs::read(hash).unwrap();
        ddi::parse_verity_superblock(&bytes[..ddi::VERITY_SUPERBLOCK_SIZE]).unwrap()
    }

    /// The tree size rdext expects is the size veritysetup writes, across
    /// level boundaries (1, 128, 129, 16385 blocks of 128 hashes each).
    #[test]
    fn only_key_errors_count_as_keyring_refusals() {
        use rustix::io::Errno;
        assert!(keyring_refusal(Errno::KEYREJECTED));
        assert!(keyring_refusal(Errno::NOKEY));
        for errno in [Errno::INVAL, Errno::BUSY, Errno::NOMEM, Errno::NXIO] {
            assert!(!keyring_refusal(errno), "{errno}");
        }
    }

    #[test]
    fn geometry_matches_veritysetup() {
        for (blocks, levels) in [(1, 0), (128, 1), (129, 2), (16385, 3)] {
            let (_dir, hash, _) = veritysetup(blocks);
            let len = std::fs::metadata(&hash).unwrap().len();
            assert_eq!(
                hash_tree_geometry(&superblock_of(&hash), 32),
                Some((levels, len)),
                "{blocks} blocks"
            );
        }
    }

    /// A single data block has no hash levels: the root hash is that
    /// block's hash.
    #[test]
    fn single_block_root_hash_is_checked_against_the_data() {
        let write = |f: &File| f.write_all_at(b"data", 100).unwrap();
        let (dir, hash, root) = veritysetup_with(1, write);
        let sb = superblock_of(&hash);
        let data = File::open(dir.path().join("data")).unwrap();
        let hash = File::open(&hash).unwrap();
        check_hash_tree((&data, 0), &hash, Window::default(), &sb, &root).unwrap();
        let wrong = "a".repeat(64);
        assert!(matches!(
            check_hash_tree((&data, 0), &hash, Window::default(), &sb, &wrong),
            Err(VerityError::RootHashMismatch { .. })
        ));
    }

    #[test]
    fn hash_tree_checked_for_length_and_root_hash() {
        let (dir, hash, root) = veritysetup(300);
        let sb = superblock_of(&hash);
        let data_file = File::open(dir.path().join("data")).unwrap();
        let data = (&data_file, 0);
        let file = File::open(&hash).unwrap();
        check_hash_tree(data, &file, Window::default(), &sb, &root).unwrap();
        let wrong = "a".repeat(64);
        match check_hash_tree(data, &file, Window::default(), &sb, &wrong) {
            Err(VerityError::RootHashMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (wrong, root.clone()));
            }
            other => panic!("{other:?}"),
        }
        let len = file.metadata().unwrap().len();
        let window = Window {
            offset: 0,
            size: len - 4096,
        };
        match check_hash_tree(data, &file, window, &sb, &root) {
            Err(VerityError::TruncatedHashTree { needs, has }) => {
                assert_eq!((needs, has), (len, len - 4096))
            }
            other => panic!("{other:?}"),
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&hash)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let file = File::open(&hash).unwrap();
        assert!(matches!(
            check_hash_tree(data, &file, Window::default(), &sb, &root),
            Err(VerityError::TruncatedHashTree { .. })
        ));
    }
}
