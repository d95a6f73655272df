//! Verification of detached OpenPGP signatures, the way systemd-pull checks `SHA256SUMS`.
//!
//! systemd runs `gpg --verify` with `--trust-model=always` against exactly one keyring and only
//! looks at the exit status. rdext has no gpg in the initramfs, so this module reimplements the
//! part of OpenPGP (RFC 9580, v4 keys and signatures) that such a check needs, and nothing else:
//! reading binary, ASCII-armoured and GnuPG keybox keyrings, reading binary or armoured detached
//! signatures, and checking RSA and Ed25519 signatures. The maths is `ring`'s, which rdext
//! already uses for dm-verity signatures; the packet parsing is here.
//!
//! What gpg's exit status means, and therefore what is enforced here:
//! * every signature in the signature file must be good (gpg fails as soon as one is not);
//! * the signer may be any primary key of the keyring, or a subkey that carries a valid binding
//!   signature allowing signing together with the subkey's own back-signature (gpg refuses
//!   signing subkeys that are not cross-certified);
//! * an expired *signature* fails, and so does a key that claims to be newer than the signature;
//! * expired or revoked *keys* do not make gpg fail, so they are accepted here too, and user-ID
//!   self-signatures are not checked (the keyring is trusted local configuration).
//!
//! Deliberate differences: data signatures must use SHA-256, SHA-384 or SHA-512 (SHA-1 would let
//! a chosen-prefix collision reuse a publisher's signature; SHA-224 is unused in practice); RSA
//! keys must have 2048 to 8192 bits; DSA, ECDSA and v3/v5/v6 packets are not supported and are
//! reported as such instead of being guessed at; the local clock is only used for signature
//! expiry, since initramfs clocks are often unset.

use ring::digest;
use ring::signature::{self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a signature was not accepted; any of these means "do not trust the signed data".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The keyring or signature looked like ASCII armour but could not be decoded.
    #[error("bad ASCII armour: {0}")]
    Armor(&'static str),
    /// The packet stream is truncated or inconsistent; never guess what was meant.
    #[error("malformed OpenPGP data: {0}")]
    Malformed(&'static str),
    /// A keyring without any v4 primary key cannot vouch for anything.
    #[error("keyring contains no usable public key")]
    EmptyKeyring,
    /// A signature file must hold at least one signature packet.
    #[error("signature file contains no signature")]
    NoSignature,
    /// Something other than signature packets in a detached signature file, e.g. a key.
    #[error("signature file contains an OpenPGP packet of type {0}, not a signature")]
    NotASignature(u8),
    /// Only v4 signatures are produced by the gpg versions systemd runs with.
    #[error("unsupported signature version {0}")]
    UnsupportedVersion(u8),
    /// A certification or key signature cannot vouch for a file.
    #[error("signature type {0:#04x} is not a signature over data")]
    NotDataSignature(u8),
    /// Only RSA and Ed25519 signatures are implemented.
    #[error("unsupported public-key algorithm {0}")]
    UnsupportedAlgorithm(u8),
    /// The issuer's key is present but uses an algorithm, curve or size that is not implemented
    /// (DSA, ECDSA, RSA outside 2048–8192 bits, ...).
    #[error("key {0} uses an unsupported algorithm or key size")]
    UnsupportedKey(String),
    /// Only SHA-256, SHA-384 and SHA-512 are accepted for data signatures.
    #[error("unsupported or weak hash algorithm {0}")]
    UnsupportedHash(u8),
    /// RFC 9580 makes unknown critical subpackets invalidate the signature.
    #[error("signature has an unknown critical subpacket {0}")]
    CriticalSubpacket(u8),
    /// Without an issuer there is no key to check against; gpg always writes one.
    #[error("signature does not name its issuer key")]
    NoIssuer,
    /// The issuer is not in the keyring (or is an unbound or non-signing subkey).
    #[error("no key in the keyring matches issuer {0}")]
    UnknownKey(String),
    /// The issuer's key is present but the signature does not match the data.
    #[error("bad signature from key {0}")]
    BadSignature(String),
    /// gpg fails on signatures past their expiry time.
    #[error("signature from key {0} has expired")]
    Expired(String),
    /// gpg refuses a signature that predates its own key ("time conflict").
    #[error("key {0} is newer than its signature")]
    KeyNewerThanSignature(String),
}

/// Who made a good signature, for the log line that tells an admin which key was trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerInfo {
    /// Fingerprint of the certificate's primary key, upper-case hex as `gpg --list-keys` shows.
    pub fingerprint: String,
    /// Fingerprint of the key that made the signature; differs from `fingerprint` for subkeys.
    pub signing_key: String,
    /// First user ID of the certificate, if it has one.
    pub user_id: Option<String>,
}

/// Verifies that `signature` (a detached signature, binary or armoured) is a good signature over
/// `data` by a key from `keyring` (binary, armoured or a GnuPG keybox).
///
/// This is the check systemd delegates to `gpg --trust-model=always --keyring=… --verify`; when
/// the file holds several signatures, all of them must be good, as for gpg's exit status. The
/// returned info describes the first signature.
pub fn verify_detached(
    data: &[u8],
    signature: &[u8],
    keyring: &[u8],
) -> Result<SignerInfo, SignatureError> {
    let ring = keyring_packets(keyring)?;
    let certs = parse_keyring(&ring)?;
    if certs.is_empty() {
        return Err(SignatureError::EmptyKeyring);
    }
    let sig_bytes = if signature.is_empty() || is_binary(signature) {
        signature.to_vec()
    } else {
        dearmor(signature, "SIGNATURE")?
    };
    let mut first = None;
    for packet in packets(&sig_bytes)? {
        match packet.tag {
            TAG_SIGNATURE => {
                let info = verify_data_signature(data, packet.body, &certs)?;
                first.get_or_insert(info);
            }
            TAG_MARKER => {}
            tag => return Err(SignatureError::NotASignature(tag)),
        }
    }
    first.ok_or(SignatureError::NoSignature)
}

const TAG_SIGNATURE: u8 = 2;
const TAG_PUBLIC_KEY: u8 = 6;
const TAG_MARKER: u8 = 10;
const TAG_TRUST: u8 = 12;
const TAG_USER_ID: u8 = 13;
const TAG_PUBLIC_SUBKEY: u8 = 14;
const TAG_USER_ATTRIBUTE: u8 = 17;

const SIG_BINARY: u8 = 0x00;
const SIG_TEXT: u8 = 0x01;
const SIG_SUBKEY_BINDING: u8 = 0x18;
const SIG_PRIMARY_BINDING: u8 = 0x19;

const ALGO_RSA: u8 = 1;
const ALGO_RSA_SIGN_ONLY: u8 = 3;
const ALGO_EDDSA_LEGACY: u8 = 22;
const ALGO_ED25519: u8 = 27;

/// OID 1.3.6.1.4.1.11591.15.1, the only curve used with the legacy EdDSA algorithm id.
const OID_ED25519: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01];

const KEY_FLAG_SIGN: u8 = 0x02;

/// Subpacket types whose meaning is understood (or harmless to ignore) when marked critical.
/// Notations (20) are absent on purpose: a critical notation must be understood to be honoured.
const KNOWN_SUBPACKETS: &[u8] = &[
    2, 3, 4, 7, 9, 11, 12, 16, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 37, 38,
    39,
];

/// One OpenPGP packet, borrowed from the decoded input.
struct Packet<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Splits a binary packet stream. Partial and indeterminate lengths only occur in message data,
/// never in keys or signatures, so they are refused.
fn packets(mut data: &[u8]) -> Result<Vec<Packet<'_>>, SignatureError> {
    let mut out = Vec::new();
    while let Some((&first, rest)) = data.split_first() {
        if first & 0x80 == 0 {
            return Err(SignatureError::Malformed(
                "packet header without its marker bit",
            ));
        }
        let mut r = Reader(rest);
        let (tag, len) = if first & 0x40 != 0 {
            let o1 = r.u8()?;
            let len = match o1 {
                0..=191 => usize::from(o1),
                192..=223 => ((usize::from(o1) - 192) << 8) + usize::from(r.u8()?) + 192,
                255 => r.be32()? as usize,
                _ => return Err(SignatureError::Malformed("partial body length")),
            };
            (first & 0x3f, len)
        } else {
            let len = match first & 0x03 {
                0 => usize::from(r.u8()?),
                1 => usize::from(r.be16()?),
                2 => r.be32()? as usize,
                _ => return Err(SignatureError::Malformed("indeterminate packet length")),
            };
            ((first >> 2) & 0x0f, len)
        };
        let body = r.take(len)?;
        out.push(Packet { tag, body });
        data = r.0;
    }
    Ok(out)
}

/// A cursor over packet bytes whose every read reports truncation as an error.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SignatureError> {
        if self.0.len() < n {
            return Err(SignatureError::Malformed("truncated data"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SignatureError> {
        Ok(self.take(1)?[0])
    }

    fn be16(&mut self) -> Result<u16, SignatureError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn be32(&mut self) -> Result<u32, SignatureError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A multiprecision integer: bit count, then the big-endian bytes.
    fn mpi(&mut self) -> Result<&'a [u8], SignatureError> {
        let bits = usize::from(self.be16()?);
        self.take(bits.div_ceil(8))
    }
}

/// Is this a binary packet stream (gpg's own test: the first octet has its high bit set)?
fn is_binary(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b & 0x80 != 0)
}

/// Turns a keyring file of any of the three formats gpg reads into one binary packet stream.
fn keyring_packets(keyring: &[u8]) -> Result<Vec<u8>, SignatureError> {
    if keyring.len() >= 12 && keyring[4] == 1 && &keyring[8..12] == b"KBXf" {
        keybox_keyblocks(keyring)
    } else if is_binary(keyring) || keyring.is_empty() {
        Ok(keyring.to_vec())
    } else {
        dearmor(keyring, "PUBLIC KEY BLOCK")
    }
}

/// Extracts the OpenPGP keyblocks from a GnuPG keybox, the format `gpg --keyring FILE --import`
/// writes when FILE does not exist yet, whatever its name.
fn keybox_keyblocks(mut data: &[u8]) -> Result<Vec<u8>, SignatureError> {
    const BLOB_OPENPGP: u8 = 2;
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut r = Reader(data);
        let len = r.be32()? as usize;
        if len < 16 || len > data.len() {
            return Err(SignatureError::Malformed("keybox blob length"));
        }
        let blob = &data[..len];
        if blob[4] == BLOB_OPENPGP {
            let mut r = Reader(&blob[8..]);
            let (offset, size) = (r.be32()? as usize, r.be32()? as usize);
            let end = offset.checked_add(size).filter(|&end| end <= len).ok_or(
                SignatureError::Malformed("keybox keyblock outside its blob"),
            )?;
            out.extend_from_slice(&blob[offset..end]);
        }
        data = &data[len..];
    }
    Ok(out)
}

/// Decodes every `-----BEGIN PGP <kind>-----` block in `text` and concatenates their contents.
fn dearmor(text: &[u8], kind: &str) -> Result<Vec<u8>, SignatureError> {
    // Text around the blocks may be in any encoding; the blocks themselves are ASCII.
    let text = String::from_utf8_lossy(text);
    let begin = format!("-----BEGIN PGP {kind}-----");
    let end = format!("-----END PGP {kind}-----");
    let mut lines = text.lines().map(str::trim);
    let mut out = Vec::new();
    let mut blocks = 0;
    while lines.any(|l| l == begin) {
        blocks += 1;
        // Armour headers ("Key: value") run up to a blank line; tolerate a missing blank line.
        let mut body = String::new();
        let mut headers_done = false;
        let mut crc = None;
        loop {
            let line = lines
                .next()
                .ok_or(SignatureError::Armor("missing end line"))?;
            if line == end {
                break;
            }
            if !headers_done {
                if line.contains(':') {
                    continue;
                }
                headers_done = true;
                if line.is_empty() {
                    continue;
                }
            }
            if let Some(sum) = line.strip_prefix('=') {
                crc = Some(decode_base64(sum)?);
            } else if crc.is_some() {
                return Err(SignatureError::Armor("data after the checksum"));
            } else {
                body.push_str(line);
            }
        }
        let bytes = decode_base64(&body)?;
        if let Some(sum) = crc {
            let want = crc24(&bytes).to_be_bytes();
            if sum.as_slice() != &want[1..] {
                return Err(SignatureError::Armor("checksum mismatch"));
            }
        }
        out.extend_from_slice(&bytes);
    }
    if blocks == 0 {
        return Err(SignatureError::Armor("no armour block found"));
    }
    Ok(out)
}

/// Strict RFC 4648 base64 with padding, as armour writers produce it.
fn decode_base64(text: &str) -> Result<Vec<u8>, SignatureError> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(SignatureError::Armor("base64 length"));
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err(SignatureError::Armor("base64 padding"));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let mut acc = 0u32;
    for (i, &b) in bytes[..bytes.len() - padding].iter().enumerate() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(SignatureError::Armor("invalid base64 character")),
        };
        acc = (acc << 6) | u32::from(v);
        if i % 4 == 3 {
            out.extend_from_slice(&acc.to_be_bytes()[1..]);
            acc = 0;
        }
    }
    match padding {
        1 => out.extend_from_slice(&(acc << 6).to_be_bytes()[1..3]),
        2 => out.push((acc >> 4) as u8),
        _ => {}
    }
    Ok(out)
}

/// The armour checksum (RFC 9580, section 6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc = 0x00b7_04ceu32;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4cfb;
            }
        }
    }
    crc & 0x00ff_ffff
}

/// Key material this module can verify with; anything else is kept only for its fingerprint.
enum Material<'a> {
    /// Modulus and exponent, big-endian.
    Rsa {
        n: &'a [u8],
        e: &'a [u8],
    },
    /// The 32-byte compressed point.
    Ed25519(&'a [u8]),
    Unsupported,
}

/// A v4 public key or subkey packet.
struct PublicKey<'a> {
    body: &'a [u8],
    created: u32,
    algo: u8,
    fingerprint: [u8; 20],
    material: Material<'a>,
}

impl<'a> PublicKey<'a> {
    /// Parses a key packet; `None` for versions other than 4, which gpg 2.2/2.4 never create.
    fn parse(body: &'a [u8]) -> Result<Option<Self>, SignatureError> {
        let mut r = Reader(body);
        if r.u8()? != 4 {
            return Ok(None);
        }
        let created = r.be32()?;
        let algo = r.u8()?;
        let material = match algo {
            ALGO_RSA | ALGO_RSA_SIGN_ONLY => {
                let (n, e) = (r.mpi()?, r.mpi()?);
                // ring's limits; gpg would also take smaller keys, which are no longer safe.
                // An empty modulus (a zero-bit MPI) has no bits, not a negative count.
                let bits = n
                    .first()
                    .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
                if (2048..=8192).contains(&bits) {
                    Material::Rsa { n, e }
                } else {
                    Material::Unsupported
                }
            }
            ALGO_EDDSA_LEGACY => {
                let oid_len = usize::from(r.u8()?);
                let oid = r.take(oid_len)?;
                let point = r.mpi()?;
                match (oid == OID_ED25519, point) {
                    (true, [0x40, raw @ ..]) if raw.len() == 32 => Material::Ed25519(raw),
                    _ => Material::Unsupported,
                }
            }
            ALGO_ED25519 => Material::Ed25519(r.take(32)?),
            _ => Material::Unsupported,
        };
        let mut fingerprint = [0; 20];
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &framed(body)?);
        fingerprint.copy_from_slice(sha1.as_ref());
        Ok(Some(PublicKey {
            body,
            created,
            algo,
            fingerprint,
            material,
        }))
    }

    fn key_id(&self) -> &[u8] {
        &self.fingerprint[12..]
    }

    fn fingerprint_hex(&self) -> String {
        hex_upper(&self.fingerprint)
    }
}

/// A key packet framed as it is hashed for fingerprints and key signatures: `0x99`, a two-octet
/// length, the body.
fn framed(body: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let len = u16::try_from(body.len()).map_err(|_| SignatureError::Malformed("key too long"))?;
    Ok([&[0x99][..], &len.to_be_bytes(), body].concat())
}

/// One certificate from the keyring: its primary key and the subkeys allowed to sign.
struct Cert<'a> {
    primary: PublicKey<'a>,
    user_id: Option<String>,
    signing_subkeys: Vec<PublicKey<'a>>,
}

/// Groups keyring packets into certificates. Keys of other versions are skipped with their
/// subkeys, so that one exotic key does not disable the whole keyring.
fn parse_keyring(data: &[u8]) -> Result<Vec<Cert<'_>>, SignatureError> {
    let mut certs: Vec<Cert<'_>> = Vec::new();
    // Some(None) while inside a certificate that is skipped.
    let mut current: Option<Option<usize>> = None;
    let mut subkey: Option<(PublicKey<'_>, Vec<&[u8]>)> = None;
    for packet in packets(data)? {
        match packet.tag {
            TAG_PUBLIC_KEY | TAG_PUBLIC_SUBKEY => {
                if let (Some((key, sigs)), Some(Some(i))) = (subkey.take(), current) {
                    bind_subkey(&mut certs[i], key, &sigs);
                }
                let key = PublicKey::parse(packet.body)?;
                if packet.tag == TAG_PUBLIC_KEY {
                    current = Some(key.map(|primary| {
                        certs.push(Cert {
                            primary,
                            user_id: None,
                            signing_subkeys: Vec::new(),
                        });
                        certs.len() - 1
                    }));
                } else if current.is_none() {
                    return Err(SignatureError::Malformed("subkey before any primary key"));
                } else {
                    subkey = key.map(|k| (k, Vec::new()));
                }
            }
            TAG_USER_ID => {
                if let Some(Some(i)) = current {
                    let cert = &mut certs[i];
                    if cert.user_id.is_none() && subkey.is_none() {
                        cert.user_id = Some(String::from_utf8_lossy(packet.body).into_owned());
                    }
                }
            }
            TAG_SIGNATURE => {
                if let Some((_, sigs)) = &mut subkey {
                    sigs.push(packet.body);
                }
            }
            TAG_USER_ATTRIBUTE | TAG_TRUST | TAG_MARKER => {}
            _ => return Err(SignatureError::Malformed("unexpected packet in keyring")),
        }
        if current.is_none() && packet.tag != TAG_MARKER {
            return Err(SignatureError::Malformed(
                "keyring does not start with a key",
            ));
        }
    }
    if let (Some((key, sigs)), Some(Some(i))) = (subkey, current) {
        bind_subkey(&mut certs[i], key, &sigs);
    }
    Ok(certs)
}

/// Keeps `subkey` as a signer if its newest valid binding signature allows signing and carries a
/// valid back-signature, which is what gpg demands before it accepts a subkey's signature.
fn bind_subkey<'a>(cert: &mut Cert<'a>, subkey: PublicKey<'a>, sigs: &[&[u8]]) {
    let Ok(framed_primary) = framed(cert.primary.body) else {
        return;
    };
    let Ok(framed_subkey) = framed(subkey.body) else {
        return;
    };
    let prefix = [framed_primary, framed_subkey].concat();
    let binding = sigs
        .iter()
        .filter_map(|body| Sig::parse(body).ok())
        .filter(|sig| sig.sigtype == SIG_SUBKEY_BINDING && sig.critical_unknown.is_none())
        .filter(|sig| check(&cert.primary, sig, &prefix, Usage::Key).is_ok())
        .max_by_key(|sig| sig.created);
    let Some(binding) = binding else {
        return;
    };
    let may_sign = binding
        .key_flags
        .is_none_or(|flags| flags & KEY_FLAG_SIGN != 0);
    let back_signed = binding.embedded.iter().any(|body| {
        Sig::parse(body).is_ok_and(|back| {
            back.sigtype == SIG_PRIMARY_BINDING
                && back.critical_unknown.is_none()
                && check(&subkey, &back, &prefix, Usage::Key).is_ok()
        })
    });
    if may_sign && back_signed {
        cert.signing_subkeys.push(subkey);
    }
}

/// A parsed v4 signature packet.
struct Sig<'a> {
    sigtype: u8,
    pk_algo: u8,
    hash_algo: u8,
    /// Version through the end of the hashed subpackets: the part covered by the digest.
    hashed: &'a [u8],
    created: Option<u32>,
    expires_after: Option<u32>,
    issuer_fingerprints: Vec<&'a [u8]>,
    issuer_ids: Vec<&'a [u8]>,
    key_flags: Option<u8>,
    embedded: Vec<&'a [u8]>,
    critical_unknown: Option<u8>,
    left16: &'a [u8],
    material: &'a [u8],
}

impl<'a> Sig<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, SignatureError> {
        let mut r = Reader(body);
        let version = r.u8()?;
        if version != 4 {
            return Err(SignatureError::UnsupportedVersion(version));
        }
        let (sigtype, pk_algo, hash_algo) = (r.u8()?, r.u8()?, r.u8()?);
        let hashed_len = usize::from(r.be16()?);
        let hashed_area = r.take(hashed_len)?;
        let hashed = &body[..6 + hashed_len];
        let unhashed_len = usize::from(r.be16()?);
        let unhashed_area = r.take(unhashed_len)?;
        let left16 = r.take(2)?;
        let mut sig = Sig {
            sigtype,
            pk_algo,
            hash_algo,
            hashed,
            created: None,
            expires_after: None,
            issuer_fingerprints: Vec::new(),
            issuer_ids: Vec::new(),
            key_flags: None,
            embedded: Vec::new(),
            critical_unknown: None,
            left16,
            material: r.0,
        };
        sig.read_subpackets(hashed_area, true)?;
        sig.read_subpackets(unhashed_area, false)?;
        Ok(sig)
    }

    /// Only the hashed area is authenticated, so only it may set times and flags; issuers and
    /// embedded back-signatures are self-authenticating and may come from either area.
    fn read_subpackets(&mut self, mut area: &'a [u8], hashed: bool) -> Result<(), SignatureError> {
        while !area.is_empty() {
            let mut r = Reader(area);
            let o1 = r.u8()?;
            let len = match o1 {
                0..=191 => usize::from(o1),
                192..=254 => ((usize::from(o1) - 192) << 8) + usize::from(r.u8()?) + 192,
                255 => r.be32()? as usize,
            };
            let packet = r.take(len)?;
            area = r.0;
            let (&kind, data) = packet
                .split_first()
                .ok_or(SignatureError::Malformed("empty subpacket"))?;
            let (critical, kind) = (kind & 0x80 != 0, kind & 0x7f);
            match (kind, hashed) {
                (2, true) => self.created = Some(be32(data)?),
                (3, true) => self.expires_after = Some(be32(data)?),
                (27, true) => self.key_flags = Some(data.first().copied().unwrap_or(0)),
                (16, _) if data.len() == 8 => self.issuer_ids.push(data),
                (33, _) if data.len() == 21 && data[0] == 4 => {
                    self.issuer_fingerprints.push(&data[1..])
                }
                (32, _) => self.embedded.push(data),
                _ => {}
            }
            if hashed && critical && !KNOWN_SUBPACKETS.contains(&kind) {
                self.critical_unknown.get_or_insert(kind);
            }
        }
        Ok(())
    }

    fn names(&self, key: &PublicKey<'_>) -> bool {
        self.issuer_fingerprints.contains(&&key.fingerprint[..])
            || self.issuer_ids.contains(&key.key_id())
    }

    fn issuer_hex(&self) -> String {
        self.issuer_fingerprints
            .first()
            .or(self.issuer_ids.first())
            .map_or_else(String::new, |id| hex_upper(id))
    }
}

fn be32(data: &[u8]) -> Result<u32, SignatureError> {
    Reader(data).be32()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// Which digests a signature may use: data signatures must not use SHA-1, while keys made before
/// 2019 still carry SHA-1 binding signatures that gpg accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Usage {
    Data,
    Key,
}

const HASH_SHA1: u8 = 2;
const HASH_SHA256: u8 = 8;
const HASH_SHA384: u8 = 9;
const HASH_SHA512: u8 = 10;

/// Checks `sig` cryptographically against `key` over `prefix` (the signed data or key material).
fn check(
    key: &PublicKey<'_>,
    sig: &Sig<'_>,
    prefix: &[u8],
    usage: Usage,
) -> Result<(), SignatureError> {
    let bad = || SignatureError::BadSignature(key.fingerprint_hex());
    let (hash, rsa): (_, &RsaParameters) = match (sig.hash_algo, usage) {
        (HASH_SHA1, Usage::Key) => (
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        (HASH_SHA256, _) => (&digest::SHA256, &signature::RSA_PKCS1_2048_8192_SHA256),
        (HASH_SHA384, _) => (&digest::SHA384, &signature::RSA_PKCS1_2048_8192_SHA384),
        (HASH_SHA512, _) => (&digest::SHA512, &signature::RSA_PKCS1_2048_8192_SHA512),
        (other, _) => return Err(SignatureError::UnsupportedHash(other)),
    };
    // The digest covers the data, the hashed part of the signature and a v4 trailer.
    let hashed_len = u32::try_from(sig.hashed.len()).map_err(|_| bad())?;
    let message = [prefix, sig.hashed, &[4, 0xff], &hashed_len.to_be_bytes()].concat();
    let digest = digest::digest(hash, &message);
    if digest.as_ref()[..2] != *sig.left16 {
        return Err(bad());
    }
    if key.algo != sig.pk_algo {
        return Err(bad());
    }
    let mut r = Reader(sig.material);
    match key.material {
        Material::Rsa { n, e } => {
            // An MPI drops leading zero bytes; ring wants the signature as long as the modulus.
            let value = r.mpi()?;
            let mut padded = vec![0; n.len().checked_sub(value.len()).ok_or_else(bad)?];
            padded.extend_from_slice(value);
            RsaPublicKeyComponents { n, e }
                .verify(rsa, &message, &padded)
                .map_err(|_| bad())
        }
        Material::Ed25519(point) => {
            let mut raw = [0u8; 64];
            if sig.pk_algo == ALGO_ED25519 {
                raw.copy_from_slice(r.take(64)?);
            } else {
                // Legacy EdDSA stores R and S as MPIs, again without leading zero bytes.
                for half in raw.chunks_mut(32) {
                    let value = r.mpi()?;
                    let start = 32usize.checked_sub(value.len()).ok_or_else(bad)?;
                    half[start..].copy_from_slice(value);
                }
            }
            // OpenPGP's EdDSA signs the digest, not the message.
            UnparsedPublicKey::new(&signature::ED25519, point)
                .verify(digest.as_ref(), &raw)
                .map_err(|_| bad())
        }
        Material::Unsupported => Err(SignatureError::UnsupportedKey(key.fingerprint_hex())),
    }
}

/// Line endings as a text-mode signature hashes them: every line end becomes CR LF.
fn canonical_text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut bytes = data.iter().peekable();
    while let Some(&b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}

/// Checks one data signature against every key it names (a key-ID collision only costs another
/// attempt) and applies gpg's time rules to the key that verifies it.
fn verify_data_signature(
    data: &[u8],
    body: &[u8],
    certs: &[Cert<'_>],
) -> Result<SignerInfo, SignatureError> {
    let sig = Sig::parse(body)?;
    let text;
    let signed = match sig.sigtype {
        SIG_BINARY => data,
        SIG_TEXT => {
            text = canonical_text(data);
            &text
        }
        other => return Err(SignatureError::NotDataSignature(other)),
    };
    if let Some(kind) = sig.critical_unknown {
        return Err(SignatureError::CriticalSubpacket(kind));
    }
    if !matches!(
        sig.pk_algo,
        ALGO_RSA | ALGO_RSA_SIGN_ONLY | ALGO_EDDSA_LEGACY | ALGO_ED25519
    ) {
        return Err(SignatureError::UnsupportedAlgorithm(sig.pk_algo));
    }
    let created = sig
        .created
        .ok_or(SignatureError::Malformed("signature without creation time"))?;
    if sig.issuer_fingerprints.is_empty() && sig.issuer_ids.is_empty() {
        return Err(SignatureError::NoIssuer);
    }
    let candidates = certs.iter().flat_map(|cert| {
        std::iter::once(&cert.primary)
            .chain(&cert.signing_subkeys)
            .map(move |key| (cert, key))
    });
    let mut last_error = None;
    for (cert, key) in candidates.filter(|(_, key)| sig.names(key)) {
        match check(key, &sig, signed, Usage::Data) {
            Ok(()) => {
                let signer = key.fingerprint_hex();
                if key.created > created {
                    return Err(SignatureError::KeyNewerThanSignature(signer));
                }
                if let Some(after) = sig.expires_after.filter(|&after| after != 0) {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    if u64::from(created) + u64::from(after) <= now {
                        return Err(SignatureError::Expired(signer));
                    }
                }
                return Ok(SignerInfo {
                    fingerprint: cert.primary.fingerprint_hex(),
                    signing_key: signer,
                    user_id: cert.user_id.clone(),
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| SignatureError::UnknownKey(sig.issuer_hex())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    const DATA: &[u8] =
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.raw\n";

    /// Keys and signatures made by the real gpg once per test run, in a throw-away GNUPGHOME.
    struct Fixture {
        /// Primary fingerprints of the RSA key, the Ed25519 signing primary, and the Ed25519
        /// certify-only primary whose signing subkey is `ed_subkey`.
        rsa: String,
        ed_primary: String,
        ed_cert: String,
        ed_subkey: String,
        /// Those three certificates, binary, armoured, and the RSA one alone in a keybox.
        keyring: Vec<u8>,
        keyring_armored: Vec<u8>,
        keybox: Vec<u8>,
        /// The RSA certificate plus an RSA-1024 and a DSA key, which gpg accepts and rdext not.
        keyring_with_weak: Vec<u8>,
        sig_rsa: Vec<u8>,
        sig_rsa_armored: Vec<u8>,
        sig_ed_primary: Vec<u8>,
        sig_subkey: Vec<u8>,
        sig_outsider: Vec<u8>,
        sig_text: Vec<u8>,
        sig_expired: Vec<u8>,
        sig_critical_notation: Vec<u8>,
        sig_sha1: Vec<u8>,
        sig_rsa1024: Vec<u8>,
        sig_dsa: Vec<u8>,
    }

    fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the OpenPGP tests need gpg (Debian package gnupg)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "gpg {args:?} failed: {stderr}");
        out.stdout
    }

    /// Makes a key for `email` and returns the fingerprints of its primary key and subkeys.
    fn new_key(home: &Path, email: &str, algo: &str, usage: &str) -> Vec<String> {
        let uid = format!("Test <{email}>");
        gpg(home, &["--quick-gen-key", &uid, algo, usage, "never"]);
        fingerprints(home, email)
    }

    fn fingerprints(home: &Path, email: &str) -> Vec<String> {
        let listing = gpg(home, &["--with-colons", "--list-keys", email]);
        String::from_utf8(listing)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .collect()
    }

    fn sign(home: &Path, file: &Path, key: &str, extra: &[&str]) -> Vec<u8> {
        let file = file.to_str().unwrap();
        let args = [
            &["--local-user", key, "--detach-sign", "-o", "-"],
            extra,
            &[file],
        ]
        .concat();
        gpg(home, &args)
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let (home, import_home) = (dir.path().join("home"), dir.path().join("import"));
            for d in [&home, &import_home] {
                std::fs::create_dir(d).unwrap();
                std::fs::set_permissions(d, PermissionsExt::from_mode(0o700)).unwrap();
            }
            let h = home.as_path();
            let data = dir.path().join("SHA256SUMS");
            std::fs::write(&data, DATA).unwrap();

            let ed_primary = new_key(h, "edp@example.org", "ed25519", "sign").remove(0);
            // The expiring signature comes first so that the other key generations outlast it.
            let expired_at = Instant::now() + Duration::from_secs(2);
            let sig_expired = sign(
                h,
                &data,
                &ed_primary,
                &["--default-sig-expire", "seconds=1"],
            );
            let rsa = new_key(h, "rsa@example.org", "rsa2048", "default").remove(0);
            let ed_cert = new_key(h, "ed@example.org", "ed25519", "cert").remove(0);
            gpg(
                h,
                &["--quick-add-key", &ed_cert, "ed25519", "sign", "never"],
            );
            let ed_subkey = fingerprints(h, "ed@example.org").remove(1);
            new_key(h, "out@example.org", "ed25519", "sign");
            new_key(h, "small@example.org", "rsa1024", "sign");
            new_key(h, "dsa@example.org", "dsa2048", "sign");

            // `gpg --keyring NEW --import` writes a keybox; a fresh home keeps this home's trust
            // database, which names keys the keybox lacks, from failing the import.
            let exported = dir.path().join("export.pgp");
            let kbx = dir.path().join("import-pubring.gpg");
            gpg(h, &["-o", exported.to_str().unwrap(), "--export", &rsa]);
            let (kbx_name, exported_name) = (kbx.to_str().unwrap(), exported.to_str().unwrap());
            gpg(
                &import_home,
                &[
                    "--no-default-keyring",
                    "--keyring",
                    kbx_name,
                    "--import",
                    exported_name,
                ],
            );

            let three = [rsa.as_str(), &ed_primary, &ed_cert];
            let fixture = Fixture {
                keyring: gpg(h, &[&["--export"][..], &three].concat()),
                keyring_armored: gpg(h, &[&["--armor", "--export"][..], &three].concat()),
                keybox: std::fs::read(kbx).unwrap(),
                keyring_with_weak: gpg(
                    h,
                    &["--export", &rsa, "small@example.org", "dsa@example.org"],
                ),
                sig_rsa: sign(h, &data, &rsa, &[]),
                sig_rsa_armored: sign(h, &data, &rsa, &["--armor"]),
                sig_ed_primary: sign(h, &data, &ed_primary, &[]),
                sig_subkey: sign(h, &data, &ed_cert, &[]),
                sig_outsider: sign(h, &data, "out@example.org", &[]),
                sig_text: sign(h, &data, &ed_primary, &["--textmode"]),
                sig_expired,
                sig_critical_notation: sign(
                    h,
                    &data,
                    &rsa,
                    &["--sig-notation", "!x@example.org=1"],
                ),
                sig_sha1: sign(h, &data, &rsa, &["--digest-algo", "SHA1"]),
                sig_rsa1024: sign(h, &data, "small@example.org", &[]),
                sig_dsa: sign(h, &data, "dsa@example.org", &[]),
                rsa,
                ed_primary,
                ed_cert,
                ed_subkey,
            };
            for home in [h, &import_home] {
                let _ = Command::new("gpgconf")
                    .env("GNUPGHOME", home)
                    .args(["--kill", "all"])
                    .status();
            }
            if let Some(wait) = expired_at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            fixture
        })
    }

    fn signer(primary: &str, signing: &str, uid: &str) -> Result<SignerInfo, SignatureError> {
        Ok(SignerInfo {
            fingerprint: primary.into(),
            signing_key: signing.into(),
            user_id: Some(uid.into()),
        })
    }

    #[test]
    fn good_binary_rsa_signature() {
        let f = fixture();
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa, &f.keyring),
            signer(&f.rsa, &f.rsa, "Test <rsa@example.org>")
        );
    }

    #[test]
    fn good_armored_signature() {
        let f = fixture();
        assert!(f
            .sig_rsa_armored
            .starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa_armored, &f.keyring),
            signer(&f.rsa, &f.rsa, "Test <rsa@example.org>")
        );
    }

    #[test]
    fn good_ed25519_primary_signature() {
        let f = fixture();
        let p = &f.ed_primary;
        assert_eq!(
            verify_detached(DATA, &f.sig_ed_primary, &f.keyring),
            signer(p, p, "Test <edp@example.org>")
        );
    }

    #[test]
    fn signature_by_subkey_names_both_keys() {
        let f = fixture();
        assert_eq!(
            verify_detached(DATA, &f.sig_subkey, &f.keyring),
            signer(&f.ed_cert, &f.ed_subkey, "Test <ed@example.org>")
        );
    }

    #[test]
    fn armored_keyring_and_keybox_work() {
        let f = fixture();
        assert!(f
            .keyring_armored
            .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(verify_detached(DATA, &f.sig_subkey, &f.keyring_armored).is_ok());
        assert!(verify_detached(DATA, &f.sig_rsa_armored, &f.keyring_armored).is_ok());
        assert_eq!(&f.keybox[8..12], b"KBXf", "gpg --keyring writes a keybox");
        assert!(verify_detached(DATA, &f.sig_rsa, &f.keybox).is_ok());
        // Two armour blocks in one file, as `cat a.asc b.asc` makes.
        let doubled = [&f.keyring_armored[..], &f.keyring_armored].concat();
        assert!(verify_detached(DATA, &f.sig_rsa, &doubled).is_ok());
    }

    #[test]
    fn key_not_in_keyring_is_refused() {
        let f = fixture();
        assert!(matches!(
            verify_detached(DATA, &f.sig_outsider, &f.keyring),
            Err(SignatureError::UnknownKey(_))
        ));
        // Only the keybox's key counts.
        assert!(matches!(
            verify_detached(DATA, &f.sig_subkey, &f.keybox),
            Err(SignatureError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampered_data_or_signature_is_refused() {
        let f = fixture();
        let mut data = DATA.to_vec();
        data[0] ^= 1;
        for sig in [&f.sig_rsa, &f.sig_ed_primary, &f.sig_subkey] {
            assert!(matches!(
                verify_detached(&data, sig, &f.keyring),
                Err(SignatureError::BadSignature(_))
            ));
            let mut sig = sig.clone();
            *sig.last_mut().unwrap() ^= 1;
            assert!(matches!(
                verify_detached(DATA, &sig, &f.keyring),
                Err(SignatureError::BadSignature(_))
            ));
        }
        assert!(verify_detached(b"", &f.sig_rsa, &f.keyring).is_err());
    }

    #[test]
    fn every_signature_in_the_file_must_be_good() {
        let f = fixture();
        let two_good = [&f.sig_rsa[..], &f.sig_ed_primary].concat();
        assert_eq!(
            verify_detached(DATA, &two_good, &f.keyring)
                .unwrap()
                .fingerprint,
            f.rsa
        );
        let one_unknown = [&f.sig_rsa[..], &f.sig_outsider].concat();
        assert!(matches!(
            verify_detached(DATA, &one_unknown, &f.keyring),
            Err(SignatureError::UnknownKey(_))
        ));
    }

    #[test]
    fn text_mode_signature_ignores_line_endings() {
        let f = fixture();
        assert!(verify_detached(DATA, &f.sig_text, &f.keyring).is_ok());
        let crlf = String::from_utf8(DATA.to_vec())
            .unwrap()
            .replace('\n', "\r\n");
        assert!(verify_detached(crlf.as_bytes(), &f.sig_text, &f.keyring).is_ok());
        assert!(verify_detached(&DATA[1..], &f.sig_text, &f.keyring).is_err());
    }

    #[test]
    fn expired_signature_and_critical_notation_are_refused() {
        let f = fixture();
        assert_eq!(
            verify_detached(DATA, &f.sig_expired, &f.keyring),
            Err(SignatureError::Expired(f.ed_primary.clone()))
        );
        assert_eq!(
            verify_detached(DATA, &f.sig_critical_notation, &f.keyring),
            Err(SignatureError::CriticalSubpacket(20))
        );
    }

    #[test]
    fn unsupported_keys_are_named_and_do_not_spoil_the_keyring() {
        let f = fixture();
        let ring = &f.keyring_with_weak;
        assert!(verify_detached(DATA, &f.sig_rsa, ring).is_ok());
        assert!(matches!(
            verify_detached(DATA, &f.sig_rsa1024, ring),
            Err(SignatureError::UnsupportedKey(_))
        ));
        assert_eq!(
            verify_detached(DATA, &f.sig_dsa, ring),
            Err(SignatureError::UnsupportedAlgorithm(17))
        );
    }

    #[test]
    fn sha1_data_signature_is_refused() {
        let f = fixture();
        assert_eq!(
            verify_detached(DATA, &f.sig_sha1, &f.keyring),
            Err(SignatureError::UnsupportedHash(2))
        );
    }

    #[test]
    fn subkey_without_binding_signature_cannot_sign() {
        let f = fixture();
        // Drop the signature packets that follow the signing subkey.
        let mut stripped = Vec::new();
        let mut after_subkey = false;
        let mut rest = &f.keyring[..];
        for packet in packets(&f.keyring).unwrap() {
            let start = packet.body.as_ptr() as usize - rest.as_ptr() as usize;
            let end = start + packet.body.len();
            let raw = &rest[..end];
            rest = &rest[end..];
            if packet.tag == TAG_PUBLIC_KEY || packet.tag == TAG_PUBLIC_SUBKEY {
                let key = PublicKey::parse(packet.body).unwrap().unwrap();
                after_subkey = key.fingerprint_hex() == f.ed_subkey;
            } else if packet.tag == TAG_SIGNATURE && after_subkey {
                continue;
            }
            stripped.extend_from_slice(raw);
        }
        assert!(stripped.len() < f.keyring.len());
        assert!(matches!(
            verify_detached(DATA, &f.sig_subkey, &stripped),
            Err(SignatureError::UnknownKey(_))
        ));
        assert!(verify_detached(DATA, &f.sig_rsa, &stripped).is_ok());
    }

    #[test]
    fn hostile_signature_files() {
        let f = fixture();
        let ring = &f.keyring;
        let truncated = &f.sig_rsa[..f.sig_rsa.len() - 5];
        assert_eq!(
            verify_detached(DATA, truncated, ring),
            Err(SignatureError::Malformed("truncated data"))
        );
        assert_eq!(
            verify_detached(DATA, b"", ring),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify_detached(DATA, &f.keyring, ring),
            Err(SignatureError::NotASignature(TAG_PUBLIC_KEY))
        );
        assert_eq!(
            verify_detached(DATA, &f.keyring_armored, ring),
            Err(SignatureError::Armor("no armour block found"))
        );
        assert_eq!(
            verify_detached(DATA, b"hello", ring),
            Err(SignatureError::Armor("no armour block found"))
        );
        assert_eq!(
            verify_detached(DATA, &[0xc2, 0xe0, 0, 0], ring),
            Err(SignatureError::Malformed("partial body length"))
        );
        assert_eq!(
            verify_detached(DATA, &[0xff; 16], ring),
            Err(SignatureError::Malformed("truncated data"))
        );
        // A flipped armour checksum.
        let text = String::from_utf8(f.sig_rsa_armored.clone()).unwrap();
        let crc_line = text.lines().find(|l| l.starts_with('=')).unwrap();
        let flipped = if crc_line.ends_with('A') { "B" } else { "A" };
        let bad_crc = text.replace(crc_line, &format!("{}{flipped}", &crc_line[..4]));
        assert_eq!(
            verify_detached(DATA, bad_crc.as_bytes(), ring),
            Err(SignatureError::Armor("checksum mismatch"))
        );
        // Without the optional checksum line the armour still decodes.
        let no_crc = text.replace(&format!("{crc_line}\n"), "");
        assert!(verify_detached(DATA, no_crc.as_bytes(), ring).is_ok());
        let bad_base64 = text.replacen("\n\n", "\n\n*", 1);
        assert!(matches!(
            verify_detached(DATA, bad_base64.as_bytes(), ring),
            Err(SignatureError::Armor(_))
        ));
    }

    #[test]
    fn hostile_keyrings() {
        let f = fixture();
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa, b""),
            Err(SignatureError::EmptyKeyring)
        );
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa, &f.sig_rsa),
            Err(SignatureError::Malformed(
                "keyring does not start with a key"
            ))
        );
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa, &f.keyring[..f.keyring.len() - 1]),
            Err(SignatureError::Malformed("truncated data"))
        );
        let mut kbx = f.keybox.clone();
        kbx.truncate(kbx.len() - 1);
        assert_eq!(
            verify_detached(DATA, &f.sig_rsa, &kbx),
            Err(SignatureError::Malformed("keybox blob length"))
        );
    }

    #[test]
    fn rsa_key_with_empty_modulus_is_unsupported() {
        // Version 4, creation time, RSA, n = MPI of 0 bits, e = 65537.
        let body = [4, 0, 0, 0, 0, ALGO_RSA, 0, 0, 0, 17, 1, 0, 1];
        let key = PublicKey::parse(&body).unwrap().unwrap();
        assert!(matches!(key.material, Material::Unsupported));
        // As a keyring (an old-format public-key packet), it signs nothing.
        let mut ring = vec![0x98, body.len() as u8];
        ring.extend_from_slice(&body);
        let f = fixture();
        assert!(verify_detached(DATA, &f.sig_rsa, &ring).is_err());
    }

    #[test]
    fn canonical_text_turns_every_line_end_into_crlf() {
        assert_eq!(canonical_text(b"a\nb\r\nc\rd\r"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(canonical_text(b""), b"");
    }

    #[test]
    fn base64_and_crc24_known_answers() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGV5").unwrap(), b"hey");
        assert!(decode_base64("aGV").is_err());
        assert!(decode_base64("a===").is_err());
        // RFC 4880's reference implementation gives 0x21cf02 for "123456789".
        assert_eq!(crc24(b"123456789"), 0x21_cf02);
    }
}
