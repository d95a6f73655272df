//! Discoverable Disk Image (DDI) inspection for `.raw` extension images.
//!
//! systemd-sysext accepts two kinds of `.raw` image: a GPT disk laid out per the
//! UAPI Discoverable Partitions Specification (DPS), or a naked file system with
//! dm-verity sidecar files next to it. This module reads what is needed to
//! decide what to mount and how to set up dm-verity, without asking the kernel
//! for anything: the GPT, the DPS partition types, the partition choice systemd
//! makes for an extension, the embedded signature partition, the verity
//! superblock and the sidecar files. It verifies no signature; that is left to
//! the kernel keyring (or a later userspace check).
//!
//! The typical flow for an image file is: [`find_sidecars`] → [`read_partitions`]
//! → [`select_layout`] with the sidecar root hash → [`read_verity_sig`] on the
//! chosen signature partition (its `rootHash` must equal a sidecar hash) →
//! [`parse_verity_superblock`] on the verity partition → [`VeritySuperblock::dm_table`].

use std::cmp::Ordering;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::str::FromStr;

mod verity_format;

pub use verity_format::{
    find_sidecars, parse_root_hash_sidecar, parse_verity_sig, parse_verity_superblock, Sidecars,
};
pub use verity_format::{VeritySig, VeritySuperblock, MAX_SIGNATURE_SIZE, VERITY_SUPERBLOCK_SIZE};

/// Why an image could not be inspected; each variant maps to one refusal
/// systemd would also make (or an I/O failure), so callers can log it as is.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid GUID string")]
    InvalidGuid,
    #[error("no GPT partition table found")]
    NoGpt,
    #[error("GPT header found at more than one sector size")]
    AmbiguousSectorSize,
    #[error("invalid GPT header: {0}")]
    BadGptHeader(&'static str),
    #[error("GPT header CRC mismatch")]
    HeaderCrc,
    #[error("GPT partition entry array CRC mismatch")]
    EntriesCrc,
    #[error("invalid GPT: {0}")]
    Gpt(gptman::Error),
    #[error("GPT partition {0} ends before it starts")]
    BadPartitionEntry(u32),
    #[error("no root or usr partition found")]
    NoDataPartition,
    #[error("more than one generic Linux partition")]
    MultipleGeneric,
    #[error("{0} verity partition without {0} data partition")]
    VerityWithoutData(DataDesignator),
    #[error("{0} verity signature partition without {0} verity partition")]
    SignatureWithoutVerity(DataDesignator),
    #[error("both root and usr verity partitions found")]
    MultipleVerity,
    #[error("verity-protected root with a separate usr partition")]
    VerityRootWithUsr,
    #[error("both root and usr partitions found (unsupported for extensions)")]
    RootAndUsr,
    #[error("no {designator} {kind} partition matches the root hash")]
    NoMatchForRootHash {
        designator: DataDesignator,
        kind: &'static str,
    },
    #[error("invalid root hash: {0}")]
    BadRootHash(&'static str),
    #[error("verity signature data is {0} bytes, more than 4 MiB")]
    SignatureTooLarge(u64),
    #[error("verity signature data has non-NUL bytes after its end")]
    SignatureTrailingData,
    #[error("invalid verity signature JSON: {0}")]
    SignatureJson(#[from] serde_json::Error),
    #[error("verity signature is not valid base64")]
    BadBase64,
    #[error("verity signature is empty")]
    EmptySignature,
    #[error("{}: empty signature file", .0.display())]
    EmptySignatureFile(PathBuf),
    #[error("invalid verity superblock: {0}")]
    BadVeritySuperblock(&'static str),
}

const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes a root hash the way systemd's `unhexmem` does (either case, even
/// length) and insists on the 16 bytes the DPS UUID rule needs.
fn decode_root_hash(text: &str) -> Result<Vec<u8>, DdiError> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return Err(DdiError::BadRootHash("odd number of hex digits"));
    }
    let bytes = digits
        .chunks_exact(2)
        .map(|pair| Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or(DdiError::BadRootHash("not hexadecimal"))?;
    if bytes.len() < 16 {
        return Err(DdiError::BadRootHash("shorter than 16 bytes"));
    }
    Ok(bytes)
}

/// Position in the on-disk GUID of each byte of the textual (RFC 4122) form:
/// the first three fields are little-endian on disk. It is its own inverse.
const GUID_SWAP: [usize; 16] = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

/// A GPT GUID, kept in on-disk (mixed-endian) byte order so it compares
/// directly against raw entries; text and [`Guid::uuid_bytes`] use RFC order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case); `const` so
    /// the DPS table is checked at compile time.
    pub const fn parse(text: &str) -> Option<Guid> {
        let s = text.as_bytes();
        if s.len() != 36 {
            return None;
        }
        let mut rfc = [0u8; 16];
        let (mut pos, mut i) = (0, 0);
        while pos < 36 {
            if pos == 8 || pos == 13 || pos == 18 || pos == 23 {
                if s[pos] != b'-' {
                    return None;
                }
                pos += 1;
                continue;
            }
            let (Some(hi), Some(lo)) = (hex_value(s[pos]), hex_value(s[pos + 1])) else {
                return None;
            };
            rfc[i] = (hi << 4) | lo;
            i += 1;
            pos += 2;
        }
        Some(Guid::from_uuid_bytes(rfc))
    }

    /// Builds a GUID from RFC 4122 byte order, the order in which a dm-verity
    /// root hash carries the data and verity partition UUIDs.
    pub const fn from_uuid_bytes(rfc: [u8; 16]) -> Guid {
        let mut disk = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            disk[i] = rfc[GUID_SWAP[i]];
            i += 1;
        }
        Guid(disk)
    }

    /// The RFC 4122 byte order, i.e. the bytes in the order they are printed.
    pub fn uuid_bytes(&self) -> [u8; 16] {
        std::array::from_fn(|i| self.0[GUID_SWAP[i]])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.uuid_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = DdiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guid::parse(s).ok_or(DdiError::InvalidGuid)
    }
}

/// DPS attribute bit 63: the partition must not be auto-discovered; systemd
/// skips it when dissecting.
pub const GPT_FLAG_NO_AUTO: u64 = 1 << 63;
/// DPS attribute bit 60: mount read-only.
pub const GPT_FLAG_READ_ONLY: u64 = 1 << 60;

/// One used GPT entry, with its place already converted to bytes so callers
/// never need the sector size again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based entry slot, the number the kernel gives the partition device.
    pub number: u32,
    pub type_guid: Guid,
    pub uuid: Guid,
    pub label: String,
    /// Byte offset of the first sector.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    pub attributes: u64,
}

impl GptPartition {
    /// True if DPS auto-discovery must ignore this partition.
    pub fn no_auto(&self) -> bool {
        self.attributes & GPT_FLAG_NO_AUTO != 0
    }

    /// True if the partition asks to be mounted read-only.
    pub fn read_only(&self) -> bool {
        self.attributes & GPT_FLAG_READ_ONLY != 0
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

const GPT_HEADER_MIN: usize = 92;
const GPT_MAX_ENTRIES: u32 = 1024;
/// The only entry size gptman reads; every partitioning tool writes it.
const GPT_ENTRY_SIZE: u32 = 128;

/// The header checks systemd's `gpt_probe` uses to decide the sector size.
fn looks_like_gpt_header(h: &[u8], sector: usize) -> bool {
    let size = le_u32(h, 12) as usize;
    &h[..8] == b"EFI PART"
        && le_u32(h, 8) == 0x0001_0000
        && (GPT_HEADER_MIN..=sector).contains(&size)
        && le_u64(h, 24) == 1
}

/// libblkid (and so systemd) ignores a GPT without a protective MBR entry.
fn has_protective_mbr(mbr: &[u8]) -> bool {
    mbr[510..512] == [0x55, 0xAA] && (0..4).any(|i| mbr[446 + 16 * i + 4] == 0xEE)
}

/// Positional reads as the `Read + Seek` stream gptman parses from; it only
/// seeks to absolute offsets.
struct PositionalReader<'a, D> {
    dev: &'a D,
    pos: u64,
}

impl<D: FileExt> io::Read for PositionalReader<'_, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.dev.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D> io::Seek for PositionalReader<'_, D> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        match to {
            io::SeekFrom::Start(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

fn gpt_error(e: gptman::Error) -> DdiError {
    match e {
        gptman::Error::Io(e) => DdiError::Io(e),
        gptman::Error::InvalidChecksum(..) => DdiError::HeaderCrc,
        gptman::Error::InvalidPartitionEntryArrayChecksum(..) => DdiError::EntriesCrc,
        other => DdiError::Gpt(other),
    }
}

/// Reads the primary GPT of an image or block device of `size` bytes.
///
/// The sector size is detected like systemd does (header at byte 512, 1024,
/// 2048 or 4096); gptman then parses the header and the entries and checks
/// both CRCs. The bounds it does not check (usable area, entry array inside
/// the device, entry count) are checked here first, so a hostile header
/// cannot make it read or allocate without limit. There is no fallback to the
/// backup header: a damaged primary table is an error rather than a silent
/// repair. Entries that lie outside the usable area are skipped, as libblkid
/// does.
pub fn read_partitions(dev: &impl FileExt, size: u64) -> Result<Vec<GptPartition>, DdiError> {
    let mut head = vec![0u8; 8192];
    if size < head.len() as u64 {
        return Err(DdiError::NoGpt);
    }
    dev.read_exact_at(&mut head, 0)?;
    if !has_protective_mbr(&head) {
        return Err(DdiError::NoGpt);
    }
    let mut found = None;
    for sector in [512usize, 1024, 2048, 4096] {
        if looks_like_gpt_header(&head[sector..], sector) {
            if found.is_some() {
                return Err(DdiError::AmbiguousSectorSize);
            }
            found = Some(sector);
        }
    }
    let sector = found.ok_or(DdiError::NoGpt)?;
    let header =
        gptman::GPTHeader::read_from(&mut io::Cursor::new(&head[sector..])).map_err(gpt_error)?;

    let ss = sector as u64;
    let last_lba = size / ss - 1;
    let (first_usable, last_usable) = (header.first_usable_lba, header.last_usable_lba);
    if first_usable > last_usable || last_usable > last_lba {
        return Err(DdiError::BadGptHeader("usable area outside the device"));
    }
    if header.size_of_partition_entry != GPT_ENTRY_SIZE {
        return Err(DdiError::BadGptHeader("partition entry size is not 128"));
    }
    let count = header.number_of_partition_entries;
    if count == 0 || count > GPT_MAX_ENTRIES {
        return Err(DdiError::BadGptHeader("bad partition entry count"));
    }
    let table_len = u64::from(count) * u64::from(GPT_ENTRY_SIZE);
    let entries_lba = header.partition_entry_lba;
    entries_lba
        .checked_mul(ss)
        .filter(|off| entries_lba >= 2 && off.saturating_add(table_len) <= size)
        .ok_or(DdiError::BadGptHeader(
            "partition entry array outside the device",
        ))?;
    let entries = header
        .read_partitions(&mut PositionalReader { dev, pos: 0 }, ss)
        .map_err(gpt_error)?;

    let mut parts = Vec::new();
    for (slot, e) in (1u32..).zip(entries) {
        if e.is_unused() {
            continue;
        }
        let (first, last) = (e.starting_lba, e.ending_lba);
        if last < first {
            return Err(DdiError::BadPartitionEntry(slot));
        }
        if first < first_usable || last > last_usable {
            continue;
        }
        parts.push(GptPartition {
            number: slot,
            type_guid: Guid(e.partition_type_guid),
            uuid: Guid(e.unique_partition_guid),
            label: e.partition_name.as_str().to_owned(),
            offset: first * ss,
            size: (last - first + 1) * ss,
            attributes: e.attribute_bits,
        });
    }
    Ok(parts)
}

/// The DPS partition roles that matter for an extension image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Designator {
    Root,
    Usr,
    RootVerity,
    UsrVerity,
    RootVeritySig,
    UsrVeritySig,
}

impl Designator {
    /// In slot order.
    const ALL: [Designator; 6] = [
        Designator::Root,
        Designator::Usr,
        Designator::RootVerity,
        Designator::UsrVerity,
        Designator::RootVeritySig,
        Designator::UsrVeritySig,
    ];

    fn data(self) -> DataDesignator {
        match self {
            Designator::Root | Designator::RootVerity | Designator::RootVeritySig => {
                DataDesignator::Root
            }
            _ => DataDesignator::Usr,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Which file system a verity setup protects: the DPS root or usr partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDesignator {
    Root,
    Usr,
}

impl DataDesignator {
    fn verity(self) -> Designator {
        match self {
            DataDesignator::Root => Designator::RootVerity,
            DataDesignator::Usr => Designator::UsrVerity,
        }
    }

    fn signature(self) -> Designator {
        match self {
            DataDesignator::Root => Designator::RootVeritySig,
            DataDesignator::Usr => Designator::UsrVeritySig,
        }
    }

    fn as_designator(self) -> Designator {
        match self {
            DataDesignator::Root => Designator::Root,
            DataDesignator::Usr => Designator::Usr,
        }
    }
}

impl fmt::Display for DataDesignator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataDesignator::Root => "root",
            DataDesignator::Usr => "usr",
        })
    }
}

/// The architectures rdext ships for; DPS root/usr types are per architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// The architecture this binary runs on, the one to prefer in images.
    pub fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Arm64)
        } else {
            None
        }
    }
}

const fn guid(text: &str) -> Guid {
    match Guid::parse(text) {
        Some(g) => g,
        None => panic!("malformed GUID literal"),
    }
}

/// Generic "Linux filesystem data" type; systemd uses a single one as root
/// when no typed root/usr partition exists.
pub const LINUX_GENERIC: Guid = guid("0fc63daf-8483-4772-8e79-3d69d8477de4");

/// DPS type GUIDs (UAPI Discoverable Partitions Specification), per
/// architecture in [`Designator`] order.
const DPS_TYPES: [(Arch, [Guid; 6]); 2] = [
    (
        Arch::X86_64,
        [
            guid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
            guid("8484680c-9521-48c6-9c11-b0720656f69e"),
            guid("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"),
            guid("77ff5f63-e7b6-4633-acf4-1565b864c0e6"),
            guid("41092b05-9fc8-4523-994f-2def0408b176"),
            guid("e7bb33fb-06cf-4e81-8273-e543b413e2e2"),
        ],
    ),
    (
        Arch::Arm64,
        [
            guid("b921b045-1df0-41c3-af44-4c6f280d3fae"),
            guid("b0e01050-ee5f-4390-949a-9101b17104e9"),
            guid("df3300ce-d69f-4c92-978c-9bfb0f38d820"),
            guid("6e11a4e7-fbca-4ded-b9e9-e1a512bb664e"),
            guid("6db69de6-29f4-4758-a7a5-962190f00ce3"),
            guid("c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"),
        ],
    ),
];

/// Maps a partition type to its DPS role; `None` for every other type,
/// including [`LINUX_GENERIC`].
pub fn classify(type_guid: &Guid) -> Option<(Designator, Arch)> {
    DPS_TYPES.iter().find_map(|(arch, guids)| {
        let i = guids.iter().position(|g| g == type_guid)?;
        Some((Designator::ALL[i], *arch))
    })
}

/// The DPS type GUID for a role, for building or describing images.
pub fn type_guid(designator: Designator, arch: Arch) -> Guid {
    let (_, guids) = DPS_TYPES
        .iter()
        .find(|(a, _)| *a == arch)
        .expect("every arch");
    guids[designator.slot()]
}

/// A known dm-verity root hash and the file system it is for (a `.usrhash`
/// sidecar makes it usr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootHash {
    pub designator: DataDesignator,
    pub bytes: Vec<u8>,
}

/// The partitions systemd-sysext would use from a DDI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiLayout {
    pub designator: DataDesignator,
    /// `None` when a generic Linux partition stands in for root.
    pub arch: Option<Arch>,
    pub data: GptPartition,
    pub verity: Option<GptPartition>,
    pub signature: Option<GptPartition>,
}

impl DdiLayout {
    /// The DPS fallback root hash (data UUID ‖ verity UUID), used when no
    /// sidecar or signature provides one. It gives integrity, not trust.
    pub fn guessed_root_hash(&self) -> Option<Vec<u8>> {
        let verity = self.verity.as_ref()?;
        let mut hash = self.data.uuid.uuid_bytes().to_vec();
        hash.extend_from_slice(&verity.uuid.uuid_bytes());
        Some(hash)
    }
}

/// systemd's `compare_arch` for two architectures: native beats the other.
fn compare_arch(a: Arch, b: Arch, native: Arch) -> Ordering {
    if a == b {
        Ordering::Equal
    } else if a == native {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

/// A simple version compare for A/B labels: runs of digits compare as
/// numbers, everything else bytewise. It is a subset of systemd's
/// `strverscmp_improved` (no special `~`, `-`, `^` or `.` ordering), enough to
/// order `name_1.9` before `name_1.10`.
fn compare_labels(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let run = |s: &[u8], mut k: usize| {
                while k < s.len() && s[k] == b'0' {
                    k += 1;
                }
                let start = k;
                while k < s.len() && s[k].is_ascii_digit() {
                    k += 1;
                }
                (start, k)
            };
            let ((sa, ea), (sb, eb)) = (run(a, i), run(b, j));
            let ord = (ea - sa).cmp(&(eb - sb)).then(a[sa..ea].cmp(&b[sb..eb]));
            if ord != Ordering::Equal {
                return ord;
            }
            (i, j) = (ea, eb);
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Picks the data, verity and signature partitions the way systemd dissects
/// an extension image.
///
/// Partitions labelled `_empty` or flagged `no-auto` are ignored. Per role the
/// `native` architecture beats the other one and, for the same architecture,
/// the newest label wins (digit runs compare as numbers; a simplification of
/// systemd's `strverscmp_improved`). With a known root
/// hash, only the data partition whose UUID is its first 16 bytes and the
/// verity partition whose UUID is its last 16 bytes count, verity partitions of
/// the other designator are ignored, and signature partitions (read from
/// `dev`) whose `rootHash` differs are skipped. Without a typed root or usr
/// partition a single generic Linux partition becomes root.
///
/// Unlike systemd, an image with both a root and a usr data partition is
/// refused: an extension is mounted from one file system only.
pub fn select_layout(
    dev: &impl FileExt,
    parts: &[GptPartition],
    native: Arch,
    root_hash: Option<&RootHash>,
) -> Result<DdiLayout, DdiError> {
    let expected = match root_hash {
        Some(h) => {
            if h.bytes.len() < 16 {
                return Err(DdiError::BadRootHash("shorter than 16 bytes"));
            }
            let first: [u8; 16] = h.bytes[..16].try_into().expect("16 bytes");
            let last: [u8; 16] = h.bytes[h.bytes.len() - 16..].try_into().expect("16 bytes");
            if first == [0; 16] || last == [0; 16] {
                return Err(DdiError::BadRootHash("zero partition UUID"));
            }
            Some((h, Guid::from_uuid_bytes(first), Guid::from_uuid_bytes(last)))
        }
        None => None,
    };

    let mut found: [Option<(&GptPartition, Arch)>; 6] = [None; 6];
    let mut generic: Option<&GptPartition> = None;
    let mut multiple_generic = false;
    for p in parts {
        if p.label == "_empty" || p.no_auto() {
            continue;
        }
        let Some((des, arch)) = classify(&p.type_guid) else {
            if p.type_guid == LINUX_GENERIC {
                multiple_generic |= generic.is_some();
                generic.get_or_insert(p);
            }
            continue;
        };
        if let Some((hash, data_uuid, verity_uuid)) = expected {
            let ours = des.data() == hash.designator;
            let skip = match des {
                Designator::Root | Designator::Usr => ours && p.uuid != data_uuid,
                Designator::RootVerity | Designator::UsrVerity => !ours || p.uuid != verity_uuid,
                Designator::RootVeritySig | Designator::UsrVeritySig => {
                    !ours || read_verity_sig(dev, p)?.root_hash != hash.bytes
                }
            };
            if skip {
                continue;
            }
        }
        let slot = &mut found[des.slot()];
        if let Some((old, old_arch)) = *slot {
            match compare_arch(arch, old_arch, native) {
                Ordering::Less => continue,
                Ordering::Equal if compare_labels(&p.label, &old.label) != Ordering::Greater => {
                    continue
                }
                _ => {}
            }
        }
        *slot = Some((p, arch));
    }
    let has = |d: Designator| found[d.slot()].is_some();

    for d in [DataDesignator::Root, DataDesignator::Usr] {
        if !has(d.as_designator()) && (has(d.verity()) || has(d.signature())) {
            return Err(DdiError::VerityWithoutData(d));
        }
        if has(d.signature()) && !has(d.verity()) {
            return Err(DdiError::SignatureWithoutVerity(d));
        }
    }
    if !has(Designator::Root)
        && !has(Designator::Usr)
        && root_hash.is_none_or(|h| h.designator == DataDesignator::Root)
    {
        if multiple_generic {
            return Err(DdiError::MultipleGeneric);
        }
        if let Some(g) = generic {
            if root_hash.is_some() {
                return Err(DdiError::NoMatchForRootHash {
                    designator: DataDesignator::Root,
                    kind: "verity",
                });
            }
            return Ok(DdiLayout {
                designator: DataDesignator::Root,
                arch: None,
                data: g.clone(),
                verity: None,
                signature: None,
            });
        }
    }
    if !has(Designator::Root) && !has(Designator::Usr) {
        return Err(DdiError::NoDataPartition);
    }
    if has(Designator::RootVerity) && has(Designator::UsrVerity) {
        return Err(DdiError::MultipleVerity);
    }
    if has(Designator::RootVerity) && has(Designator::Usr) {
        return Err(DdiError::VerityRootWithUsr);
    }
    if let Some(h) = root_hash {
        for (d, kind) in [
            (h.designator.as_designator(), "data"),
            (h.designator.verity(), "verity"),
        ] {
            if !has(d) {
                return Err(DdiError::NoMatchForRootHash {
                    designator: h.designator,
                    kind,
                });
            }
        }
    }
    if has(Designator::Root) && has(Designator::Usr) {
        return Err(DdiError::RootAndUsr);
    }
    let designator = if has(Designator::Root) {
        DataDesignator::Root
    } else {
        DataDesignator::Usr
    };
    let pick = |d: Designator| found[d.slot()].map(|(p, _)| p.clone());
    let (data, arch) = found[designator.as_designator().slot()].expect("checked above");
    Ok(DdiLayout {
        designator,
        arch: Some(arch),
        data: data.clone(),
        verity: pick(designator.verity()),
        signature: pick(designator.signature()),
    })
}

/// Reads and parses a signature partition, refusing ones over 4 MiB before
/// reading them.
pub fn read_verity_sig(dev: &impl FileExt, part: &GptPartition) -> Result<VeritySig, DdiError> {
    if part.size > MAX_SIGNATURE_SIZE {
        return Err(DdiError::SignatureTooLarge(part.size));
    }
    let mut buf = vec![0u8; part.size as usize];
    dev.read_exact_at(&mut buf, part.offset)?;
    parse_verity_sig(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write as _;
    use std::path::Path;
    use std::process::{Command, Stdio};

    pub(super) const HASH_HEX: &str =
        "e110d71e4be084ec15889ec71aa947ef93327791cbb07acce232c6d83656f8a4";

    /// An in-memory device for hand-made images.
    struct Mem(Vec<u8>);

    impl FileExt for Mem {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let start = usize::try_from(offset).unwrap().min(self.0.len());
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
            Ok(n)
        }

        fn write_at(&self, _: &[u8], _: u64) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    const X86: Arch = Arch::X86_64;
    const ARM: Arch = Arch::Arm64;

    fn g(text: &str) -> Guid {
        text.parse().unwrap()
    }

    pub(super) fn s(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// Fail loudly when a host tool the test needs is missing: `.ci/setup`
    /// installs them all, so a missing one is a broken machine, not a skip.
    pub(super) fn require_tool(name: &str, version_arg: &str) {
        let ok = Command::new(name)
            .arg(version_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{name} is needed by this test; run .ci/setup");
    }

    pub(super) fn try_run(args: &[&str], stdin: &[u8]) -> Result<String, String> {
        let mut child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        match out.status.success() {
            true => Ok(String::from_utf8(out.stdout).unwrap()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    pub(super) fn run(args: &[&str], stdin: &[u8]) -> String {
        try_run(args, stdin).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
    }

    pub(super) fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let req = [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ];
        let rest = [
            "-subj",
            "/CN=rdext-test",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
        ];
        run(&[&req[..], &rest[..]].concat(), b"");
        (key, cert)
    }

    /// The `openssl smime` recipe of the sysext spec for `.roothash.p7s`.
    pub(super) fn sign_der(key: &Path, cert: &Path, content: &Path, out: &Path) {
        let sign = [
            "openssl", "smime", "-sign", "-nocerts", "-noattr", "-binary",
        ];
        let files = ["-in", s(content), "-inkey", s(key), "-signer", s(cert)];
        run(
            &[&sign[..], &files[..], &["-outform", "der", "-out", s(out)]].concat(),
            b"",
        );
    }

    /// `veritysetup format` output as key → value.
    pub(super) fn veritysetup_format(
        args: &[&str],
        data: &Path,
        hash: &Path,
    ) -> Vec<(String, String)> {
        let out = run(
            &[&["veritysetup", "format"], args, &[s(data), s(hash)]].concat(),
            b"",
        );
        out.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    pub(super) fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
        &fields.iter().find(|(k, _)| k == key).unwrap().1
    }

    pub(super) fn write_pattern(path: &Path, len: usize) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        fs::write(path, data).unwrap();
    }

    // ---- hand-made GPT images ----

    struct Entry {
        ty: Guid,
        uuid: Guid,
        first: u64,
        last: u64,
        attrs: u64,
        label: &'static str,
    }

    fn entry(ty: Guid, uuid: &str, first: u64, last: u64, label: &'static str) -> Entry {
        let (uuid, attrs) = (g(uuid), 0);
        Entry {
            ty,
            uuid,
            first,
            last,
            attrs,
            label,
        }
    }

    /// CRC-32 as GPT uses it, from the `crc` crate so that the test images do
    /// not depend on the code under test.
    fn crc32(data: &[u8]) -> u32 {
        crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(data)
    }

    fn fix_header_crc(img: &mut [u8], sector: usize) {
        let h = &mut img[sector..sector + 92];
        h[16..20].fill(0);
        let crc = crc32(h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A GPT image with 128 entries of 128 bytes at LBA 2.
    fn build_gpt(sector: usize, sectors: u64, entries: &[Entry]) -> Vec<u8> {
        let mut img = vec![0u8; sector * sectors as usize];
        img[446 + 4] = 0xEE;
        put(&mut img, 510, &[0x55, 0xAA]);
        let mut table = vec![0u8; 128 * 128];
        for (e, slot) in entries.iter().zip(table.chunks_exact_mut(128)) {
            put(slot, 0, &e.ty.0);
            put(slot, 16, &e.uuid.0);
            put(slot, 32, &e.first.to_le_bytes());
            put(slot, 40, &e.last.to_le_bytes());
            put(slot, 48, &e.attrs.to_le_bytes());
            for (i, unit) in e.label.encode_utf16().enumerate() {
                put(slot, 56 + 2 * i, &unit.to_le_bytes());
            }
        }
        let table_sectors = (table.len() / sector) as u64;
        let h = &mut img[sector..sector + 92];
        put(h, 0, b"EFI PART");
        put(h, 8, &0x0001_0000u32.to_le_bytes());
        put(h, 12, &92u32.to_le_bytes());
        put(h, 24, &1u64.to_le_bytes());
        put(h, 32, &(sectors - 1).to_le_bytes());
        put(h, 40, &(2 + table_sectors).to_le_bytes());
        put(h, 48, &(sectors - 2 - table_sectors).to_le_bytes());
        put(h, 72, &2u64.to_le_bytes());
        put(h, 80, &128u32.to_le_bytes());
        put(h, 84, &128u32.to_le_bytes());
        put(h, 88, &crc32(&table).to_le_bytes());
        put(&mut img, 2 * sector, &table);
        fix_header_crc(&mut img, sector);
        img
    }

    fn sample_gpt(sector: usize) -> Vec<u8> {
        let root = type_guid(Designator::Root, X86);
        let mut e = entry(
            root,
            "11111111-2222-3333-4444-555555555555",
            40,
            59,
            "root_1",
        );
        e.attrs = GPT_FLAG_READ_ONLY | GPT_FLAG_NO_AUTO;
        let verity = type_guid(Designator::RootVerity, X86);
        let v = entry(
            verity,
            "66666666-7777-8888-9999-aaaaaaaaaaaa",
            60,
            69,
            "vérité",
        );
        build_gpt(sector, 200, &[e, v])
    }

    fn read(img: &[u8]) -> Result<Vec<GptPartition>, DdiError> {
        read_partitions(&Mem(img.to_vec()), img.len() as u64)
    }

    fn patched_header(at: usize, bytes: &[u8]) -> Result<Vec<GptPartition>, DdiError> {
        let mut img = sample_gpt(512);
        put(&mut img, 512 + at, bytes);
        fix_header_crc(&mut img, 512);
        read(&img)
    }

    #[test]
    fn guid_text_is_mixed_endian() {
        let guid = g("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
        assert_eq!(
            guid.0[..10],
            [0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d, 0x96, 0xe7]
        );
        assert_eq!(guid.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
        assert_eq!(guid.uuid_bytes()[..4], [0x4f, 0x68, 0xbc, 0xe3]);
        assert_eq!(Guid::from_uuid_bytes(guid.uuid_bytes()), guid);
        assert_eq!(
            format!("{guid:?}"),
            "Guid(4f68bce3-e8cd-4db1-96e7-fbcaf984b709)"
        );
    }

    #[test]
    fn guid_rejects_malformed_text() {
        for bad in [
            "",
            "4f68bce3e8cd4db196e7fbcaf984b709",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b70",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b7090",
            "4f68bce3+e8cd-4db1-96e7-fbcaf984b709",
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b7g9",
        ] {
            assert!(
                matches!(bad.parse::<Guid>(), Err(DdiError::InvalidGuid)),
                "{bad}"
            );
        }
    }

    #[test]
    fn classify_knows_every_dps_type_and_nothing_else() {
        let mut seen = std::collections::HashSet::new();
        for arch in [X86, ARM] {
            for d in Designator::ALL {
                let guid = type_guid(d, arch);
                assert_eq!(classify(&guid), Some((d, arch)));
                assert!(seen.insert(guid));
            }
        }
        assert_eq!(classify(&LINUX_GENERIC), None);
        assert_eq!(classify(&g("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")), None);
        let arm_usr_sig = type_guid(Designator::UsrVeritySig, ARM);
        assert_eq!(
            arm_usr_sig.to_string(),
            "c23ce4ff-44bd-4b00-b2d4-b41b3419e02a"
        );
    }

    #[test]
    fn reads_hand_made_tables_at_both_sector_sizes() {
        for sector in [512u64, 4096] {
            let parts = read(&sample_gpt(sector as usize)).unwrap();
            assert_eq!(parts.len(), 2);
            let (root, verity) = (&parts[0], &parts[1]);
            assert_eq!(
                (root.number, root.offset, root.size),
                (1, 40 * sector, 20 * sector)
            );
            assert_eq!(root.label, "root_1");
            assert!(root.no_auto() && root.read_only());
            assert_eq!((verity.number, verity.label.as_str()), (2, "vérité"));
            assert_eq!(
                verity.uuid.to_string(),
                "66666666-7777-8888-9999-aaaaaaaaaaaa"
            );
            assert!(!verity.no_auto() && !verity.read_only());
        }
    }

    #[test]
    fn corrupted_crcs_are_refused() {
        let mut img = sample_gpt(512);
        img[512 + 40] ^= 1;
        assert!(matches!(read(&img), Err(DdiError::HeaderCrc)));
        let mut img = sample_gpt(4096);
        img[2 * 4096 + 60] ^= 0x80;
        assert!(matches!(read(&img), Err(DdiError::EntriesCrc)));
    }

    #[test]
    fn truncated_entry_array_is_refused() {
        let err = read_partitions(&Mem(sample_gpt(512)), 8192).unwrap_err();
        assert!(matches!(err, DdiError::BadGptHeader(_)), "{err}");
        let err = patched_header(72, &195u64.to_le_bytes()).unwrap_err();
        let message = "invalid GPT header: partition entry array outside the device";
        assert_eq!(err.to_string(), message);
    }

    #[test]
    fn odd_entry_sizes_and_counts_are_refused() {
        for (at, value) in [(84, 100u32), (84, 132), (80, 0), (80, 100_000)] {
            let err = patched_header(at, &value.to_le_bytes()).unwrap_err();
            assert!(matches!(err, DdiError::BadGptHeader(_)), "{at}={value}");
        }
        let err = patched_header(12, &96u32.to_le_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "invalid GPT: invalid header size");
    }

    #[test]
    fn missing_gpt_or_protective_mbr_is_no_gpt() {
        assert!(matches!(read(&vec![0u8; 65536]), Err(DdiError::NoGpt)));
        assert!(matches!(read(&[0u8; 100]), Err(DdiError::NoGpt)));
        let mut img = sample_gpt(512);
        img[446 + 4] = 0x83;
        assert!(matches!(read(&img), Err(DdiError::NoGpt)));
        let mut img = sample_gpt(512);
        img[512 + 24] = 2;
        assert!(matches!(read(&img), Err(DdiError::NoGpt)));
    }

    #[test]
    fn headers_at_two_sector_sizes_are_ambiguous() {
        let mut img = sample_gpt(4096);
        img[512..1024].copy_from_slice(&sample_gpt(512)[512..1024]);
        assert!(matches!(read(&img), Err(DdiError::AmbiguousSectorSize)));
    }

    #[test]
    fn reversed_entry_is_refused_and_out_of_area_entry_skipped() {
        let root = type_guid(Designator::Root, X86);
        let bad = entry(root, "11111111-2222-3333-4444-555555555555", 50, 49, "x");
        let img = build_gpt(512, 100, &[bad]);
        assert!(matches!(read(&img), Err(DdiError::BadPartitionEntry(1))));
        let outside = entry(root, "11111111-2222-3333-4444-555555555555", 50, 99, "x");
        let inside = entry(root, "11111111-2222-3333-4444-555555555556", 40, 49, "y");
        let parts = read(&build_gpt(512, 100, &[outside, inside])).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].number, parts[0].label.as_str()), (2, "y"));
    }

    // ---- GPT images made by util-linux ----

    fn sized_file(path: &Path, len: u64) -> fs::File {
        fs::File::create(path).unwrap().set_len(len).unwrap();
        fs::File::open(path).unwrap()
    }

    #[test]
    fn sfdisk_512_table_matches_sfdisk_json() {
        require_tool("sfdisk", "--version");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        let file = sized_file(&img, 8 << 20);
        let script = format!(
            "label: gpt\n\
             start=2048, size=2048, type={}, uuid=11111111-2222-3333-4444-555555555555, \
             name=\"ext_1.2\", attrs=\"GUID:60,63\"\n\
             start=4096, size=1024, type={}, uuid=66666666-7777-8888-9999-AAAAAAAAAAAA, \
             name=\"ext_1.2 verity\"\n\
             start=6144, size=8, type={LINUX_GENERIC}, name=\"x\"\n",
            type_guid(Designator::Root, X86),
            type_guid(Designator::RootVerity, X86),
        );
        let quiet = ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", s(&img)];
        run(&quiet, script.as_bytes());
        let json: serde_json::Value =
            serde_json::from_str(&run(&["sfdisk", "-J", s(&img)], b"")).unwrap();
        let parts = read_partitions(&file, 8 << 20).unwrap();
        let theirs = json["partitiontable"]["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        for (ours, theirs) in parts.iter().zip(theirs) {
            assert!(theirs["node"]
                .as_str()
                .unwrap()
                .ends_with(&ours.number.to_string()));
            assert_eq!(ours.offset, theirs["start"].as_u64().unwrap() * 512);
            assert_eq!(ours.size, theirs["size"].as_u64().unwrap() * 512);
            assert_eq!(ours.type_guid.to_string().to_uppercase(), theirs["type"]);
            assert_eq!(ours.uuid.to_string().to_uppercase(), theirs["uuid"]);
            assert_eq!(ours.label, theirs["name"]);
            let bits: Vec<String> = (48..64)
                .filter(|b| ours.attributes & (1 << b) != 0)
                .map(|b| b.to_string())
                .collect();
            let attrs = (!bits.is_empty()).then(|| format!("GUID:{}", bits.join(",")));
            assert_eq!(attrs.as_deref(), theirs["attrs"].as_str());
        }
        assert!(parts[0].no_auto() && parts[0].read_only());
    }

    #[test]
    fn fdisk_4096_sector_table() {
        require_tool("fdisk", "--version");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk4k.raw");
        let file = sized_file(&img, 16 << 20);
        let commands = format!(
            "g\nn\n1\n256\n767\nn\n2\n768\n1023\nt\n1\n{}\nt\n2\n{}\nx\n\
             u\n1\n11111111-2222-3333-4444-555555555555\n\
             u\n2\n66666666-7777-8888-9999-aaaaaaaaaaaa\n\
             n\n1\next_1.2\nn\n2\next_1.2_verity\nS\n2\n60\nr\nw\n",
            type_guid(Designator::Root, ARM),
            type_guid(Designator::RootVerity, ARM),
        );
        run(&["fdisk", "-b", "4096", s(&img)], commands.as_bytes());
        let parts = read_partitions(&file, 16 << 20).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].offset, parts[0].size), (256 * 4096, 512 * 4096));
        assert_eq!((parts[1].offset, parts[1].size), (768 * 4096, 256 * 4096));
        assert_eq!(parts[1].attributes, GPT_FLAG_READ_ONLY);
        assert_eq!(parts[1].label, "ext_1.2_verity");
        let layout = select_layout(&file, &parts, X86, None).unwrap();
        assert_eq!(layout.arch, Some(ARM));
        let guessed = crate::hex(&layout.guessed_root_hash().unwrap());
        assert_eq!(
            guessed,
            "1111111122223333444455555555555566666666777788889999aaaaaaaaaaaa"
        );
    }

    #[test]
    fn sfdisk_image_layout_follows_dps_rules() {
        require_tool("sfdisk", "--version");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("ab.raw");
        let file = sized_file(&img, 16 << 20);
        let (root, verity) = (Designator::Root, Designator::RootVerity);
        let rows = [
            (type_guid(root, X86), "ext_1.9", ""),
            (type_guid(verity, X86), "ext_1.9", ""),
            (type_guid(root, X86), "ext_1.10", ""),
            (type_guid(verity, X86), "ext_1.10", ""),
            (type_guid(root, X86), "ext_2.0", "GUID:63"),
            (type_guid(root, X86), "_empty", ""),
            (type_guid(root, ARM), "ext_3", ""),
            (type_guid(verity, ARM), "ext_3", ""),
            (LINUX_GENERIC, "data", ""),
        ];
        let uuid = |n: usize| format!("{n:08x}-0000-4000-8000-000000000000");
        let mut script = String::from("label: gpt\n");
        for (i, (ty, name, attrs)) in (1..).zip(rows) {
            let (start, uuid) = (2048 * i, uuid(i));
            script += &format!("start={start}, size=2048, type={ty}, uuid={uuid}, ");
            script += &format!("name=\"{name}\", attrs=\"{attrs}\"\n");
        }
        let sfdisk = ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", s(&img)];
        run(&sfdisk, script.as_bytes());
        let parts = read_partitions(&file, 16 << 20).unwrap();
        assert_eq!(parts.len(), 9);
        assert!(parts.iter().all(|p| p.uuid == g(&uuid(p.number as usize))));

        let layout = select_layout(&file, &parts, X86, None).unwrap();
        assert_eq!(
            (layout.designator, layout.arch),
            (DataDesignator::Root, Some(X86))
        );
        assert_eq!(numbers(&layout), (3, Some(4), None));
        let layout = select_layout(&file, &parts, ARM, None).unwrap();
        assert_eq!(numbers(&layout), (7, Some(8), None));

        let old = hash_of(DataDesignator::Root, &uuid(1), &uuid(2));
        let layout = select_layout(&file, &parts, X86, Some(&old)).unwrap();
        assert_eq!(numbers(&layout), (1, Some(2), None));
        let no_auto = hash_of(DataDesignator::Root, &uuid(5), &uuid(2));
        let err = select_layout(&file, &parts, X86, Some(&no_auto)).unwrap_err();
        assert!(matches!(
            err,
            DdiError::VerityWithoutData(DataDesignator::Root)
        ));
    }

    // ---- layout selection on synthetic partition lists ----

    fn part(number: u32, des: Designator, arch: Arch, uuid: &str, label: &str) -> GptPartition {
        GptPartition {
            number,
            type_guid: type_guid(des, arch),
            uuid: g(uuid),
            label: label.to_owned(),
            offset: u64::from(number) << 20,
            size: 4096,
            attributes: 0,
        }
    }

    const D1: &str = "d1d1d1d1-0000-4000-8000-000000000001";
    const V1: &str = "e1e1e1e1-0000-4000-8000-000000000001";
    const D2: &str = "d2d2d2d2-0000-4000-8000-000000000002";
    const V2: &str = "e2e2e2e2-0000-4000-8000-000000000002";

    fn hash_of(designator: DataDesignator, data: &str, verity: &str) -> RootHash {
        let bytes = [g(data).uuid_bytes(), g(verity).uuid_bytes()].concat();
        RootHash { designator, bytes }
    }

    /// A device holding signature JSON for each given partition.
    fn sig_dev(sigs: &[(&GptPartition, &[u8])]) -> Mem {
        let mut dev = vec![0u8; 16 << 20];
        for (p, hash) in sigs {
            let json = format!(
                r#"{{"rootHash":"{}","signature":"MIIBAg=="}}"#,
                crate::hex(hash)
            );
            put(&mut dev, p.offset as usize, json.as_bytes());
        }
        Mem(dev)
    }

    fn layout(parts: &[GptPartition], native: Arch) -> Result<DdiLayout, DdiError> {
        select_layout(&Mem(Vec::new()), parts, native, None)
    }

    fn layout_with(parts: &[GptPartition], hash: &RootHash) -> Result<DdiLayout, DdiError> {
        select_layout(&Mem(Vec::new()), parts, X86, Some(hash))
    }

    fn numbers(l: &DdiLayout) -> (u32, Option<u32>, Option<u32>) {
        let n = |p: &Option<GptPartition>| p.as_ref().map(|p| p.number);
        (l.data.number, n(&l.verity), n(&l.signature))
    }

    #[test]
    fn layout_for_a_signed_sysext() {
        let parts = [
            part(1, Designator::Root, X86, D1, "ext"),
            part(2, Designator::RootVerity, X86, V1, "ext-verity"),
            part(3, Designator::RootVeritySig, X86, D2, "ext-verity-sig"),
        ];
        let l = layout(&parts, X86).unwrap();
        assert_eq!((l.designator, l.arch), (DataDesignator::Root, Some(X86)));
        assert_eq!(numbers(&l), (1, Some(2), Some(3)));
    }

    #[test]
    fn layout_prefers_native_arch_then_takes_foreign() {
        let arm = part(1, Designator::Usr, ARM, D1, "a");
        let x86 = part(2, Designator::Usr, X86, D2, "b");
        let both = [arm.clone(), x86.clone()];
        assert_eq!(layout(&both, X86).unwrap().data, x86);
        assert_eq!(layout(&both, ARM).unwrap().data, arm);
        let l = layout(std::slice::from_ref(&arm), X86).unwrap();
        assert_eq!(
            (l.designator, l.arch, l.data),
            (DataDesignator::Usr, Some(ARM), arm)
        );
    }

    #[test]
    fn layout_skips_no_auto_and_empty_labels() {
        let mut no_auto = part(1, Designator::Root, X86, D1, "ext_9");
        no_auto.attributes = GPT_FLAG_NO_AUTO;
        let empty = part(2, Designator::Root, X86, D2, "_empty");
        let real = part(3, Designator::Root, X86, V1, "ext_1");
        let l = layout(&[no_auto.clone(), empty.clone(), real], X86).unwrap();
        assert_eq!(l.data.number, 3);
        let err = layout(&[no_auto, empty], X86).unwrap_err();
        assert!(matches!(err, DdiError::NoDataPartition));
    }

    #[test]
    fn layout_newest_label_wins() {
        let parts = [
            part(1, Designator::Root, X86, D1, "ext_1.10"),
            part(2, Designator::Root, X86, D2, "ext_1.9"),
            part(3, Designator::Root, X86, V1, "ext_1.10"),
            part(4, Designator::RootVerity, X86, V2, "ext_1.2"),
            part(5, Designator::RootVerity, X86, V1, "ext_1.02.1"),
        ];
        assert_eq!(numbers(&layout(&parts, X86).unwrap()), (1, Some(5), None));
        assert_eq!(compare_labels("a_1.10", "a_1.9"), Ordering::Greater);
        assert_eq!(compare_labels("a_007", "a_7"), Ordering::Equal);
        assert_eq!(compare_labels("a_1", "a_1.1"), Ordering::Less);
        assert_eq!(compare_labels("b", "a_9"), Ordering::Greater);
    }

    #[test]
    fn layout_with_root_hash_uses_matching_pair_only() {
        let parts = [
            part(1, Designator::Root, X86, D1, "ext_2"),
            part(2, Designator::RootVerity, X86, V1, "ext_2"),
            part(3, Designator::Root, X86, D2, "ext_1"),
            part(4, Designator::RootVerity, X86, V2, "ext_1"),
        ];
        let root = DataDesignator::Root;
        let l = layout_with(&parts, &hash_of(root, D2, V2)).unwrap();
        assert_eq!(numbers(&l), (3, Some(4), None));
        let l = layout_with(&parts, &hash_of(root, D2, V1)).unwrap();
        assert_eq!(numbers(&l), (3, Some(2), None));

        let err = layout_with(&parts, &hash_of(root, V2, V1)).unwrap_err();
        assert!(matches!(
            err,
            DdiError::VerityWithoutData(DataDesignator::Root)
        ));
        let unrelated = RootHash {
            designator: root,
            bytes: vec![0x5a; 32],
        };
        assert!(matches!(
            layout_with(&parts, &unrelated),
            Err(DdiError::NoDataPartition)
        ));
        let err = layout_with(&parts, &hash_of(root, D1, D1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no root verity partition matches the root hash"
        );
        let err = layout_with(&parts[..1], &hash_of(DataDesignator::Usr, D1, V1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no usr data partition matches the root hash"
        );
    }

    #[test]
    fn layout_with_usr_hash_ignores_root_verity() {
        let parts = [
            part(1, Designator::Usr, X86, D1, "u"),
            part(2, Designator::UsrVerity, X86, V1, "u"),
            part(3, Designator::RootVerity, X86, V2, "r"),
        ];
        let err = layout(&parts, X86).unwrap_err();
        assert!(matches!(
            err,
            DdiError::VerityWithoutData(DataDesignator::Root)
        ));
        let l = layout_with(&parts, &hash_of(DataDesignator::Usr, D1, V1)).unwrap();
        assert_eq!(l.designator, DataDesignator::Usr);
        assert_eq!(numbers(&l), (1, Some(2), None));
    }

    #[test]
    fn layout_refuses_orphans_and_conflicts() {
        let root = part(1, Designator::Root, X86, D1, "");
        let usr = part(2, Designator::Usr, X86, D2, "");
        let rv = part(3, Designator::RootVerity, X86, V1, "");
        let uv = part(4, Designator::UsrVerity, X86, V2, "");
        let rs = part(5, Designator::RootVeritySig, X86, V2, "");
        let us = part(6, Designator::UsrVeritySig, ARM, V2, "");
        let cases: [(Vec<&GptPartition>, &str); 6] = [
            (
                vec![&rv],
                "root verity partition without root data partition",
            ),
            (
                vec![&usr, &us],
                "usr verity signature partition without usr verity partition",
            ),
            (
                vec![&root, &rs],
                "root verity signature partition without root verity partition",
            ),
            (
                vec![&root, &rv, &usr, &uv],
                "both root and usr verity partitions found",
            ),
            (
                vec![&root, &rv, &usr],
                "verity-protected root with a separate usr partition",
            ),
            (
                vec![&root, &usr, &uv],
                "both root and usr partitions found (unsupported for extensions)",
            ),
        ];
        for (parts, message) in cases {
            let parts: Vec<GptPartition> = parts.into_iter().cloned().collect();
            assert_eq!(layout(&parts, X86).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn layout_falls_back_to_one_generic_partition() {
        let mut generic = part(1, Designator::Root, X86, D1, "data");
        generic.type_guid = LINUX_GENERIC;
        let one = std::slice::from_ref(&generic);
        let l = layout(one, ARM).unwrap();
        assert_eq!(
            (l.designator, l.arch, l.verity),
            (DataDesignator::Root, None, None)
        );
        let second = GptPartition {
            number: 2,
            ..generic.clone()
        };
        let typed = part(3, Designator::Usr, X86, D2, "");
        let mut parts = vec![generic.clone(), second];
        assert!(matches!(
            layout(&parts, X86),
            Err(DdiError::MultipleGeneric)
        ));
        parts.push(typed);
        assert_eq!(layout(&parts, X86).unwrap().data.number, 3);
        let err = layout_with(one, &hash_of(DataDesignator::Usr, D1, V1)).unwrap_err();
        assert!(matches!(err, DdiError::NoDataPartition));
        let err = layout_with(one, &hash_of(DataDesignator::Root, D1, V1)).unwrap_err();
        assert!(matches!(
            err,
            DdiError::NoMatchForRootHash { kind: "verity", .. }
        ));
        assert!(matches!(layout(&[], X86), Err(DdiError::NoDataPartition)));
    }

    #[test]
    fn layout_skips_signature_partitions_for_another_hash() {
        let parts = [
            part(1, Designator::Root, X86, D1, "ext"),
            part(2, Designator::RootVerity, X86, V1, "ext"),
            part(3, Designator::RootVeritySig, X86, D2, "ext_9"),
            part(4, Designator::RootVeritySig, X86, V2, "ext_1"),
        ];
        let h = hash_of(DataDesignator::Root, D1, V1);
        let other = hash_of(DataDesignator::Root, D2, V2);
        let dev = sig_dev(&[(&parts[2], &other.bytes), (&parts[3], &h.bytes)]);
        let l = select_layout(&dev, &parts, X86, Some(&h)).unwrap();
        assert_eq!(numbers(&l), (1, Some(2), Some(4)));
        let sig = read_verity_sig(&dev, l.signature.as_ref().unwrap()).unwrap();
        assert_eq!(
            (sig.root_hash, sig.signature),
            (h.bytes.clone(), vec![0x30, 0x82, 0x01, 0x02])
        );
        assert_eq!(
            numbers(&layout(&parts, X86).unwrap()),
            (1, Some(2), Some(3))
        );
        let dev = sig_dev(&[(&parts[2], &other.bytes), (&parts[3], &other.bytes)]);
        assert_eq!(
            select_layout(&dev, &parts, X86, Some(&h))
                .unwrap()
                .signature,
            None
        );
        let err = select_layout(&Mem(vec![0xff; 16 << 20]), &parts, X86, Some(&h)).unwrap_err();
        assert!(matches!(err, DdiError::SignatureJson(_)), "{err}");
    }

    #[test]
    fn layout_rejects_unusable_root_hashes() {
        let parts = [part(1, Designator::Root, X86, D1, "")];
        let zero_first = [[0u8; 16], [1u8; 16]].concat();
        let zero_last = [[1u8; 16], [0u8; 16]].concat();
        for bytes in [vec![1u8; 15], zero_first, zero_last] {
            let h = RootHash {
                designator: DataDesignator::Root,
                bytes,
            };
            assert!(matches!(
                layout_with(&parts, &h),
                Err(DdiError::BadRootHash(_))
            ));
        }
    }

    #[test]
    fn oversized_signature_partition_is_not_read() {
        let mut p = part(1, Designator::RootVeritySig, X86, D1, "");
        p.size = (4 << 20) + 512;
        let err = read_verity_sig(&Mem(Vec::new()), &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "verity signature data is 4194816 bytes, more than 4 MiB"
        );
    }

    // ---- a DDI made by systemd-repart ----

    /// Builds a signed root + root-verity + root-verity-sig DDI like
    /// `systemd-repart --make-ddi=sysext` does, spelled out as definitions so
    /// that repart v252 (which lacks `--make-ddi` and erofs) can make it too.
    fn repart_ddi(dir: &Path, key: &Path, cert: &Path) -> Result<PathBuf, String> {
        let (defs, src) = (dir.join("defs"), dir.join("src"));
        fs::create_dir_all(src.join("usr/lib/extension-release.d")).unwrap();
        fs::write(
            src.join("usr/lib/extension-release.d/extension-release.t"),
            "ID=_any\n",
        )
        .unwrap();
        fs::create_dir(&defs).unwrap();
        let copy = format!("Format=squashfs\nCopyFiles={}:/usr\n", s(&src.join("usr")));
        for (file, kind, extra) in [
            ("10-root.conf", "root", copy.as_str()),
            ("20-verity.conf", "root-verity", "Verity=hash\n"),
            ("30-sig.conf", "root-verity-sig", "Verity=signature\n"),
        ] {
            let data = if kind == "root" { "Verity=data\n" } else { "" };
            let body = format!("[Partition]\nType={kind}\nVerityMatchKey=root\n{data}{extra}");
            fs::write(defs.join(file), body).unwrap();
        }
        let image = dir.join("t.raw");
        let args = [
            "systemd-repart",
            "--empty=create",
            "--size=auto",
            "--dry-run=no",
            "--json=off",
            &format!("--definitions={}", s(&defs)),
            &format!("--private-key={}", s(key)),
            &format!("--certificate={}", s(cert)),
            s(&image),
        ];
        try_run(&args, b"").map(|_| image)
    }

    #[test]
    fn systemd_repart_signed_ddi() {
        let tools = [("systemd-repart", "--version"), ("mksquashfs", "-version")];
        let tools = [
            &tools[..],
            &[("veritysetup", "--version"), ("openssl", "version")],
        ]
        .concat();
        for (t, arg) in &tools {
            require_tool(t, arg);
        }
        let native = Arch::native().unwrap_or(X86);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (key, cert) = make_cert(d);
        let image = match repart_ddi(d, &key, &cert) {
            Ok(image) => image,
            Err(e) => panic!("systemd-repart cannot build a DDI here: {e}"),
        };

        let file = fs::File::open(&image).unwrap();
        let parts = read_partitions(&file, file.metadata().unwrap().len()).unwrap();
        let l = select_layout(&file, &parts, native, None).unwrap();
        assert_eq!((l.designator, l.arch), (DataDesignator::Root, Some(native)));
        let (verity, signature) = (l.verity.clone().unwrap(), l.signature.clone().unwrap());
        assert_eq!(
            classify(&verity.type_guid),
            Some((Designator::RootVerity, native))
        );
        assert_eq!(
            classify(&signature.type_guid),
            Some((Designator::RootVeritySig, native))
        );

        // The embedded rootHash is data UUID ‖ verity UUID, signed by our key.
        let sig = read_verity_sig(&file, &signature).unwrap();
        assert_eq!(Some(sig.root_hash.clone()), l.guessed_root_hash());
        let fp = run(
            &[
                "openssl",
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-in",
                s(&cert),
            ],
            b"",
        );
        let fp = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(sig.certificate_fingerprint.as_deref(), Some(fp.as_str()));
        let root_hex = crate::hex(&sig.root_hash);
        let (content, der) = (d.join("roothash.txt"), d.join("roothash.p7s"));
        fs::write(&content, &root_hex).unwrap();
        fs::write(&der, &sig.signature).unwrap();
        let verify = [
            "openssl",
            "smime",
            "-verify",
            "-binary",
            "-inform",
            "der",
            "-noverify",
        ];
        let files = [
            "-nointern",
            "-in",
            s(&der),
            "-content",
            s(&content),
            "-certfile",
            s(&cert),
        ];
        run(
            &[&verify[..], &files[..], &["-out", "/dev/null"]].concat(),
            b"",
        );

        let hash = RootHash {
            designator: DataDesignator::Root,
            bytes: sig.root_hash.clone(),
        };
        assert_eq!(
            select_layout(&file, &parts, native, Some(&hash)).unwrap(),
            l
        );
        let mut wrong = hash.clone();
        wrong.bytes[0] ^= 1;
        assert!(select_layout(&file, &parts, native, Some(&wrong)).is_err());

        // The verity partition starts with a superblock covering the whole
        // data partition, and the tree verifies against the root hash.
        let mut sb = vec![0u8; VERITY_SUPERBLOCK_SIZE];
        file.read_exact_at(&mut sb, verity.offset).unwrap();
        let sb = parse_verity_superblock(&sb).unwrap();
        assert_eq!(sb.data_blocks * u64::from(sb.data_block_size), l.data.size);
        let extract = |p: &GptPartition, name: &str| {
            let mut buf = vec![0u8; p.size as usize];
            file.read_exact_at(&mut buf, p.offset).unwrap();
            fs::write(d.join(name), buf).unwrap();
            d.join(name)
        };
        let (data_img, hash_img) = (extract(&l.data, "data.img"), extract(&verity, "hash.img"));
        run(
            &[
                "veritysetup",
                "verify",
                s(&data_img),
                s(&hash_img),
                &root_hex,
            ],
            b"",
        );
    }
}
