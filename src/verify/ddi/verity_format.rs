//! dm-verity metadata formats: the JSON of a DPS `*-verity-sig` partition, the
//! superblock `veritysetup format` puts in front of a hash tree (and the
//! dm-verity table line built from it), and the sidecar files that carry the
//! root hash and signature of a naked file-system image.

use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::{decode_root_hash, le_u32, le_u64, DataDesignator, DdiError, RootHash};

/// Largest signature partition systemd reads.
pub const MAX_SIGNATURE_SIZE: u64 = 4 * 1024 * 1024;

/// The content of a `*-verity-sig` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySig {
    pub root_hash: Vec<u8>,
    /// DER PKCS#7 detached signature over the lowercase hex root hash.
    pub signature: Vec<u8>,
    /// Written by systemd-repart, ignored by systemd when dissecting; kept for
    /// logging. `None` if absent or not a string.
    pub certificate_fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct SigJson {
    #[serde(rename = "rootHash")]
    root_hash: String,
    signature: String,
    #[serde(rename = "certificateFingerprint", default)]
    certificate_fingerprint: Option<serde_json::Value>,
}

/// Parses signature partition content: JSON, then nothing but NUL padding.
pub fn parse_verity_sig(bytes: &[u8]) -> Result<VeritySig, DdiError> {
    if bytes.len() as u64 > MAX_SIGNATURE_SIZE {
        return Err(DdiError::SignatureTooLarge(bytes.len() as u64));
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(DdiError::SignatureTrailingData);
    }
    let json: SigJson = serde_json::from_slice(&bytes[..end])?;
    let root_hash = decode_root_hash(&json.root_hash)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(json.signature.as_bytes())
        .map_err(|_| DdiError::BadBase64)?;
    if signature.is_empty() {
        return Err(DdiError::EmptySignature);
    }
    let certificate_fingerprint = json
        .certificate_fingerprint
        .and_then(|v| v.as_str().map(str::to_owned));
    Ok(VeritySig {
        root_hash,
        signature,
        certificate_fingerprint,
    })
}

/// Size of the on-disk verity superblock (`struct verity_sb` of cryptsetup).
pub const VERITY_SUPERBLOCK_SIZE: usize = 512;

/// The header `veritysetup format` writes in front of the hash tree.
///
/// The hash tree starts at the next hash block after the superblock: with
/// the superblock at offset 0 of the hash device, pass `hash_start_block = 1`
/// to [`VeritySuperblock::dm_table`] (the 512-byte superblock is padded to one
/// hash block). DPS verity partitions made by systemd-repart have one there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeritySuperblock {
    /// Superblock format version, always 1.
    pub version: u32,
    /// dm-verity hash format (1 normal, 0 original Chrome OS); it is the first
    /// field of the table line.
    pub hash_type: u32,
    /// RFC 4122 byte order.
    pub uuid: [u8; 16],
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

fn valid_block_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

/// Parses and sanity-checks a verity superblock (at least 512 bytes).
pub fn parse_verity_superblock(bytes: &[u8]) -> Result<VeritySuperblock, DdiError> {
    let bad = DdiError::BadVeritySuperblock;
    if bytes.len() < VERITY_SUPERBLOCK_SIZE {
        return Err(bad("truncated"));
    }
    if &bytes[..8] != b"verity\0\0" {
        return Err(bad("bad magic"));
    }
    let version = le_u32(bytes, 8);
    if version != 1 {
        return Err(bad("unsupported version"));
    }
    let hash_type = le_u32(bytes, 12);
    if hash_type > 1 {
        return Err(bad("unsupported hash type"));
    }
    let name = &bytes[32..64];
    let name_len = name
        .iter()
        .position(|&b| b == 0)
        .ok_or(bad("unterminated algorithm name"))?;
    let name = &name[..name_len];
    if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
        return Err(bad("invalid algorithm name"));
    }
    let (data_block_size, hash_block_size) = (le_u32(bytes, 64), le_u32(bytes, 68));
    if !valid_block_size(data_block_size) || !valid_block_size(hash_block_size) {
        return Err(bad("invalid block size"));
    }
    let data_blocks = le_u64(bytes, 72);
    if data_blocks.checked_mul(data_block_size.into()).is_none() {
        return Err(bad("data area too large"));
    }
    let salt_size = usize::from(u16::from_le_bytes([bytes[80], bytes[81]]));
    if salt_size > 256 {
        return Err(bad("salt larger than 256 bytes"));
    }
    Ok(VeritySuperblock {
        version,
        hash_type,
        uuid: bytes[16..32].try_into().expect("16-byte slice"),
        algorithm: String::from_utf8_lossy(name).into_owned(),
        data_block_size,
        hash_block_size,
        data_blocks,
        salt: bytes[88..88 + salt_size].to_vec(),
    })
}

impl VeritySuperblock {
    /// The dm-verity target parameters (what follows `0 <sectors> verity`).
    ///
    /// `hash_start_block` counts hash blocks from the start of `hash_dev` and
    /// must point past the superblock (1 when it sits at offset 0).
    /// `extra_opts` are optional arguments such as `"root_hash_sig_key_desc KEY"`
    /// or `"panic_on_corruption"`; they are counted in words, as the kernel
    /// counts them.
    pub fn dm_table(
        &self,
        data_dev: &str,
        hash_dev: &str,
        root_hash_hex: &str,
        hash_start_block: u64,
        extra_opts: &[&str],
    ) -> String {
        let salt = match self.salt.as_slice() {
            [] => "-".to_owned(),
            salt => crate::hex(salt),
        };
        let mut line = format!(
            "{} {data_dev} {hash_dev} {} {} {} {hash_start_block} {} {root_hash_hex} {salt}",
            self.hash_type,
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.algorithm,
        );
        let words: Vec<&str> = extra_opts
            .iter()
            .flat_map(|o| o.split_whitespace())
            .collect();
        if !words.is_empty() {
            line.push_str(&format!(" {} {}", words.len(), words.join(" ")));
        }
        line
    }
}

/// Verity material found next to a naked file-system image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sidecars {
    pub root_hash: Option<RootHash>,
    /// DER PKCS#7 from `<stem>.roothash.p7s` / `<stem>.usrhash.p7s`.
    pub signature: Option<Vec<u8>>,
    /// `<stem>.verity`: the image is then a naked file system, never a GPT.
    pub verity_data: Option<PathBuf>,
}

/// `foo.raw` → `foo<suffix>`; a name without `.raw` gets the suffix appended.
fn auxiliary_path(image: &Path, suffix: &str) -> PathBuf {
    let bytes = image.as_os_str().as_bytes();
    let stem = bytes.strip_suffix(b".raw").unwrap_or(bytes);
    let mut out = stem.to_vec();
    out.extend_from_slice(suffix.as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Whether an error says the file is not there. A sidecar name longer than
/// a file name can be (an image name of 251 to 255 bytes plus `.roothash`)
/// names a file that cannot exist: absent too, not an error of the image.
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error())
}

/// Reads a whole file; `Ok(None)` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DdiError> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(source) => Err(DdiError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads an xattr; `Ok(None)` if it is absent or the file system has none.
fn read_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, DdiError> {
    use rustix::io::Errno;
    let mut buf = [0u8; 1024];
    match rustix::fs::getxattr(path, name, &mut buf[..]) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::NOSYS | Errno::NOENT) => Ok(None),
        Err(e) => Err(DdiError::File {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// Finds the root hash, its signature and a verity data file next to
/// `image`, which must be the resolved path (sidecars sit next to the target
/// of a symlink).
///
/// The root hash comes from the `user.verity.roothash` xattr, else
/// `<stem>.roothash`, else (for usr) `user.verity.usrhash` / `<stem>.usrhash`;
/// only its first line counts and surrounding whitespace is ignored. The
/// signature is read only when a hash is known. Device nodes (`/dev/…`,
/// `/sys/…`) have no sidecars.
pub fn find_sidecars(image: &Path) -> Result<Sidecars, DdiError> {
    if image.starts_with("/dev") || image.starts_with("/sys") {
        return Ok(Sidecars::default());
    }
    let mut text = None;
    for (designator, xattr, suffix) in [
        (DataDesignator::Root, "user.verity.roothash", ".roothash"),
        (DataDesignator::Usr, "user.verity.usrhash", ".usrhash"),
    ] {
        let value = match read_xattr(image, xattr)? {
            Some(v) => Some(v),
            None => read_optional(&auxiliary_path(image, suffix))?,
        };
        if let Some(v) = value {
            text = Some((designator, suffix, v));
            break;
        }
    }
    let mut sidecars = Sidecars::default();
    if let Some((designator, suffix, raw)) = text {
        sidecars.root_hash = Some(parse_root_hash_sidecar(designator, &raw)?);
        let sig_path = auxiliary_path(image, &format!("{suffix}.p7s"));
        if let Some(sig) = read_optional(&sig_path)? {
            if sig.is_empty() {
                return Err(DdiError::EmptySignatureFile(sig_path));
            }
            sidecars.signature = Some(sig);
        }
    }
    let verity = auxiliary_path(image, ".verity");
    match verity.try_exists() {
        Ok(true) => sidecars.verity_data = Some(verity),
        Ok(false) => {}
        Err(e) if is_absent(&e) => {}
        Err(source) => {
            return Err(DdiError::File {
                path: verity,
                source,
            })
        }
    }
    Ok(sidecars)
}

/// A `.roothash`/`.usrhash` file's or xattr's content: its first line,
/// surrounding whitespace and NULs ignored, in hexadecimal.
pub fn parse_root_hash_sidecar(
    designator: DataDesignator,
    raw: &[u8],
) -> Result<RootHash, DdiError> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .map_err(|_| DdiError::BadRootHash("not hexadecimal"))?
        .trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0');
    Ok(RootHash {
        designator,
        bytes: decode_root_hash(line)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        field, make_cert, require_tool, run, s, sign_der, veritysetup_format,
    };
    use super::super::tests::{write_pattern, HASH_HEX};
    use super::super::Guid;
    use super::*;
    use std::fs;

    fn sig_err(json: &str) -> DdiError {
        parse_verity_sig(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn verity_sig_with_nul_padding() {
        let upper = HASH_HEX.to_uppercase();
        let json = format!(
            r#"{{"rootHash":"{upper}","certificateFingerprint":"0b15ab","signature":"AQID"}}"#
        );
        let mut bytes = format!("{json}\n").into_bytes();
        bytes.resize(16384, 0);
        let sig = parse_verity_sig(&bytes).unwrap();
        assert_eq!(crate::hex(&sig.root_hash), HASH_HEX);
        assert_eq!(sig.signature, [1, 2, 3]);
        assert_eq!(sig.certificate_fingerprint.as_deref(), Some("0b15ab"));
        let plain = format!(r#"{{"signature":"AQID","rootHash":"{HASH_HEX}","x":[1]}}"#);
        let sig = parse_verity_sig(plain.as_bytes()).unwrap();
        assert_eq!(sig.certificate_fingerprint, None);
    }

    #[test]
    fn verity_sig_rejects_garbage_around_json() {
        let good = format!(r#"{{"rootHash":"{HASH_HEX}","signature":"AQID"}}"#);
        let after_nul = [good.as_bytes(), b"\0\0\0x\0"].concat();
        let err = parse_verity_sig(&after_nul).unwrap_err();
        assert!(matches!(err, DdiError::SignatureTrailingData));
        let no_hash = r#"{"signature":"AQID"}"#.to_owned();
        let no_sig = format!(r#"{{"rootHash":"{HASH_HEX}"}}"#);
        for json in [
            format!("{good}}}"),
            format!("{good} x"),
            "[1]".into(),
            "".into(),
            no_hash,
            no_sig,
        ] {
            assert!(
                matches!(sig_err(&json), DdiError::SignatureJson(_)),
                "{json}"
            );
        }
        let invalid_utf8 = [b"{\"rootHash\":\"".as_slice(), &[0xff], b"\"}"].concat();
        let err = parse_verity_sig(&invalid_utf8).unwrap_err();
        assert!(matches!(err, DdiError::SignatureJson(_)));
    }

    #[test]
    fn verity_sig_rejects_bad_hex_and_base64() {
        let with = |hash: &str, sig: &str| {
            sig_err(&format!(r#"{{"rootHash":"{hash}","signature":"{sig}"}}"#)).to_string()
        };
        let cases = [
            (
                with(&HASH_HEX[1..], "AQID"),
                "invalid root hash: odd number of hex digits",
            ),
            (
                with(&HASH_HEX.replace('e', "g"), "AQID"),
                "invalid root hash: not hexadecimal",
            ),
            (
                with(&HASH_HEX[..30], "AQID"),
                "invalid root hash: shorter than 16 bytes",
            ),
            (with("", "AQID"), "invalid root hash: shorter than 16 bytes"),
            (
                with(HASH_HEX, "AQI*"),
                "verity signature is not valid base64",
            ),
            (
                with(HASH_HEX, "AQI"),
                "verity signature is not valid base64",
            ),
            (with(HASH_HEX, ""), "verity signature is empty"),
        ];
        for (err, message) in cases {
            assert_eq!(err, message);
        }
    }

    #[test]
    fn verity_sig_size_limit() {
        let mut bytes = format!(r#"{{"rootHash":"{HASH_HEX}","signature":"AQID"}}"#).into_bytes();
        bytes.resize(4 << 20, 0);
        assert!(parse_verity_sig(&bytes).is_ok());
        bytes.push(0);
        let err = parse_verity_sig(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "verity signature data is 4194305 bytes, more than 4 MiB"
        );
    }

    #[test]
    fn verity_sig_carries_a_real_der_signature() {
        require_tool("openssl", "version");
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = make_cert(dir.path());
        let (content, der) = (dir.path().join("roothash"), dir.path().join("sig.der"));
        fs::write(&content, HASH_HEX).unwrap();
        sign_der(&key, &cert, &content, &der);
        let der = fs::read(&der).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut json = format!(r#"{{"rootHash":"{HASH_HEX}","signature":"{b64}"}}"#).into_bytes();
        json.resize(json.len().next_multiple_of(4096), 0);
        let sig = parse_verity_sig(&json).unwrap();
        assert_eq!(sig.signature, der);
        assert_eq!(sig.signature[0], 0x30, "DER SEQUENCE");
    }

    fn superblock() -> Vec<u8> {
        let mut sb = vec![0u8; 512];
        sb[..8].copy_from_slice(b"verity\0\0");
        sb[8..12].copy_from_slice(&1u32.to_le_bytes());
        sb[12..16].copy_from_slice(&1u32.to_le_bytes());
        sb[32..38].copy_from_slice(b"sha256");
        sb[64..68].copy_from_slice(&4096u32.to_le_bytes());
        sb[68..72].copy_from_slice(&4096u32.to_le_bytes());
        sb[72..80].copy_from_slice(&256u64.to_le_bytes());
        sb[80..82].copy_from_slice(&4u16.to_le_bytes());
        sb[88..92].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        sb
    }

    fn patched(at: usize, bytes: &[u8]) -> Result<VeritySuperblock, DdiError> {
        let mut sb = superblock();
        sb[at..at + bytes.len()].copy_from_slice(bytes);
        parse_verity_superblock(&sb)
    }

    #[test]
    fn superblock_and_dm_table_from_hand_made_bytes() {
        let sb = parse_verity_superblock(&superblock()).unwrap();
        assert_eq!(
            (sb.version, sb.hash_type, sb.algorithm.as_str()),
            (1, 1, "sha256")
        );
        assert_eq!(sb.salt, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            sb.dm_table("/dev/loop0p1", "/dev/loop0p2", "abcd", 1, &[]),
            "1 /dev/loop0p1 /dev/loop0p2 4096 4096 256 1 sha256 abcd deadbeef"
        );
        let opts = ["root_hash_sig_key_desc key:1", "panic_on_corruption"];
        assert_eq!(
            sb.dm_table("7:1", "7:2", "abcd", 3, &opts),
            "1 7:1 7:2 4096 4096 256 3 sha256 abcd deadbeef \
             3 root_hash_sig_key_desc key:1 panic_on_corruption"
        );
        let unsalted = patched(80, &[0, 0]).unwrap();
        let line = unsalted.dm_table("a", "b", "c", 1, &["ignore_zero_blocks"]);
        assert!(line.ends_with(" c - 1 ignore_zero_blocks"), "{line}");
    }

    #[test]
    fn superblock_sanity_checks() {
        let cases: [(usize, &[u8], &str); 11] = [
            (0, b"verity\0x", "bad magic"),
            (8, &[2, 0, 0, 0], "unsupported version"),
            (12, &[2, 0, 0, 0], "unsupported hash type"),
            (32, &[b'x'; 32], "unterminated algorithm name"),
            (32, b"\0", "invalid algorithm name"),
            (32, b"sha 256", "invalid algorithm name"),
            (64, &1000u32.to_le_bytes(), "invalid block size"),
            (64, &256u32.to_le_bytes(), "invalid block size"),
            (68, &131_072u32.to_le_bytes(), "invalid block size"),
            (72, &u64::MAX.to_le_bytes(), "data area too large"),
            (80, &257u16.to_le_bytes(), "salt larger than 256 bytes"),
        ];
        for (at, bytes, reason) in cases {
            let err = patched(at, bytes).unwrap_err().to_string();
            assert_eq!(err, format!("invalid verity superblock: {reason}"));
        }
        let err = parse_verity_superblock(&superblock()[..511]).unwrap_err();
        assert_eq!(err.to_string(), "invalid verity superblock: truncated");
        assert_eq!(patched(80, &256u16.to_le_bytes()).unwrap().salt.len(), 256);
        assert!(patched(64, &65536u32.to_le_bytes()).is_ok());
    }

    #[test]
    fn veritysetup_superblock_gives_exact_dm_table() {
        require_tool("veritysetup", "--version");
        let dir = tempfile::tempdir().unwrap();
        let (data, hash) = (dir.path().join("data.img"), dir.path().join("hash.img"));
        write_pattern(&data, 1 << 20);
        let custom = [
            "--salt=-",
            "--data-block-size=1024",
            "--hash-block-size=2048",
            "--hash=sha512",
        ];
        for args in [&[][..], &custom[..]] {
            let f = veritysetup_format(args, &data, &hash);
            let sb = parse_verity_superblock(&fs::read(&hash).unwrap()).unwrap();
            assert_eq!(sb.version, 1);
            assert_eq!(
                Guid::from_uuid_bytes(sb.uuid).to_string(),
                field(&f, "UUID")
            );
            let root = field(&f, "Root hash");
            let expected = format!(
                "{} /dev/loop1 /dev/loop2 {} {} {} 1 {} {root} {}",
                field(&f, "Hash type"),
                field(&f, "Data block size"),
                field(&f, "Hash block size"),
                field(&f, "Data blocks"),
                field(&f, "Hash algorithm"),
                field(&f, "Salt"),
            );
            assert_eq!(
                sb.dm_table("/dev/loop1", "/dev/loop2", root, 1, &[]),
                expected
            );

            // The tree starts one hash block in: the hash file is exactly that
            // long, and verification with these parameters but without the
            // superblock succeeds.
            let hash_blocks: u64 = field(&f, "Hash blocks").parse().unwrap();
            let hash_len = fs::metadata(&hash).unwrap().len();
            assert_eq!(hash_len, (1 + hash_blocks) * u64::from(sb.hash_block_size));
            let salt = match sb.salt.as_slice() {
                [] => "-".to_owned(),
                salt => crate::hex(salt),
            };
            run(
                &[
                    "veritysetup",
                    "verify",
                    "--no-superblock",
                    &format!("--hash-offset={}", sb.hash_block_size),
                    &format!("--data-blocks={}", sb.data_blocks),
                    &format!("--data-block-size={}", sb.data_block_size),
                    &format!("--hash-block-size={}", sb.hash_block_size),
                    &format!("--hash={}", sb.algorithm),
                    &format!("--salt={salt}"),
                    s(&data),
                    s(&hash),
                    root,
                ],
                b"",
            );
        }
    }

    // ---- sidecars ----

    #[test]
    fn sidecars_from_veritysetup_and_openssl() {
        require_tool("veritysetup", "--version");
        require_tool("openssl", "version");
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let (image, verity, roothash) = (
            at("foo.sysext.raw"),
            at("foo.sysext.verity"),
            at("foo.sysext.roothash"),
        );
        write_pattern(&image, 256 << 10);
        let f = veritysetup_format(&["--root-hash-file", s(&roothash)], &image, &verity);
        let (key, cert) = make_cert(dir.path());
        sign_der(&key, &cert, &roothash, &at("foo.sysext.roothash.p7s"));

        let found = find_sidecars(&image).unwrap();
        let hash = found.root_hash.unwrap();
        assert_eq!(hash.designator, DataDesignator::Root);
        assert_eq!(crate::hex(&hash.bytes), field(&f, "Root hash"));
        assert_eq!(found.signature.unwrap()[0], 0x30);
        assert_eq!(found.verity_data.as_deref(), Some(verity.as_path()));
        let sb = parse_verity_superblock(&fs::read(&verity).unwrap()).unwrap();
        assert_eq!(sb.data_blocks * u64::from(sb.data_block_size), 256 << 10);
    }

    #[test]
    fn image_name_of_255_bytes_has_no_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join(format!("{}.raw", "x".repeat(251)));
        fs::write(&image, b"").unwrap();
        assert_eq!(find_sidecars(&image).unwrap(), Sidecars::default());
    }

    #[test]
    fn sidecar_usrhash_and_stem_rules() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        let image = at("bar.raw");
        fs::write(&image, b"").unwrap();
        assert_eq!(find_sidecars(&image).unwrap(), Sidecars::default());

        fs::write(at("bar.usrhash"), format!("{HASH_HEX}\nignored\n")).unwrap();
        fs::write(at("bar.roothash.p7s"), b"not for usr").unwrap();
        let found = find_sidecars(&image).unwrap();
        let hash = found.root_hash.unwrap();
        assert_eq!(
            (hash.designator, crate::hex(&hash.bytes)),
            (DataDesignator::Usr, HASH_HEX.into())
        );
        assert_eq!(found.signature, None);
        fs::write(at("bar.usrhash.p7s"), b"sig").unwrap();
        assert_eq!(find_sidecars(&image).unwrap().signature.unwrap(), b"sig");

        fs::write(
            at("bar.roothash"),
            format!(" {}\r\n", HASH_HEX.to_uppercase()),
        )
        .unwrap();
        let found = find_sidecars(&image).unwrap();
        let hash = found.root_hash.unwrap();
        assert_eq!(
            (hash.designator, crate::hex(&hash.bytes)),
            (DataDesignator::Root, HASH_HEX.into())
        );
        assert_eq!(found.signature.unwrap(), b"not for usr");

        fs::write(at("baz.img.roothash"), HASH_HEX).unwrap();
        fs::create_dir(at("baz.img.verity")).unwrap();
        let found = find_sidecars(&at("baz.img")).unwrap();
        assert!(found.root_hash.is_some());
        assert_eq!(found.verity_data, Some(at("baz.img.verity")));
        assert_eq!(
            find_sidecars(Path::new("/dev/loop0")).unwrap(),
            Sidecars::default()
        );
    }

    #[test]
    fn sidecar_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (image, roothash) = (dir.path().join("e.raw"), dir.path().join("e.roothash"));
        for (text, reason) in [
            ("abc", "odd number of hex digits"),
            ("zz", "not hexadecimal"),
            ("", "shorter than 16 bytes"),
            ("00112233445566778899aabbccddee", "shorter than 16 bytes"),
        ] {
            fs::write(&roothash, text).unwrap();
            let err = find_sidecars(&image).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid root hash: {reason}"));
        }
        fs::write(&roothash, HASH_HEX).unwrap();
        let p7s = dir.path().join("e.roothash.p7s");
        fs::write(&p7s, b"").unwrap();
        let err = find_sidecars(&image).unwrap_err();
        assert!(
            matches!(&err, DdiError::EmptySignatureFile(p) if *p == p7s),
            "{err}"
        );
        fs::remove_file(&p7s).unwrap();
        fs::create_dir(&p7s).unwrap();
        assert!(matches!(find_sidecars(&image), Err(DdiError::File { .. })));
    }

    #[test]
    fn sidecar_xattr_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.raw");
        fs::write(&image, b"").unwrap();
        fs::write(dir.path().join("x.roothash"), "00".repeat(32)).unwrap();
        let xattr_hash = "ab".repeat(16);
        let set = |name: &str| {
            rustix::fs::setxattr(
                &image,
                name,
                xattr_hash.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
        };
        set("user.verity.usrhash").expect("user xattrs on the test directory");
        let hash = find_sidecars(&image).unwrap().root_hash.unwrap();
        assert_eq!(
            hash.designator,
            DataDesignator::Root,
            "roothash file beats usrhash xattr"
        );
        set("user.verity.roothash").unwrap();
        let hash = find_sidecars(&image).unwrap().root_hash.unwrap();
        assert_eq!(
            (hash.designator, crate::hex(&hash.bytes)),
            (DataDesignator::Root, xattr_hash.clone())
        );
        fs::remove_file(dir.path().join("x.roothash")).unwrap();
        rustix::fs::removexattr(&image, "user.verity.roothash").unwrap();
        let hash = find_sidecars(&image).unwrap().root_hash.unwrap();
        assert_eq!(
            (hash.designator, crate::hex(&hash.bytes)),
            (DataDesignator::Usr, xattr_hash)
        );
    }
}
