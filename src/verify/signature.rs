//! Userspace check of dm-verity root-hash signatures, the way systemd does it when the kernel
//! keyring cannot vouch for an image.
//!
//! A signature is a DER PKCS#7/CMS `SignedData` over the root hash as a lowercase hex string (no
//! newline). systemd hands it to OpenSSL's `PKCS7_verify` with `NOINTERN|NOVERIFY`: the signer
//! must be one of the `*.crt` certificates from the `verity.d` directories, certificates embedded
//! in the signature are never trusted, and no chain is built. This module does the same in pure
//! Rust, with `cms`/`x509-cert` for parsing and `ring` for the maths, so the static initramfs
//! binary needs no libcrypto.
//!
//! One deliberate difference: the signer's certificate must be within its validity period at the
//! time the caller passes in. The kernel and systemd ignore expiry, but an initramfs that accepts
//! a retired key forever gives key rotation no teeth.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo,
};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{ObjectIdentifier, OctetString, UintRef};
use der::{Decode, DecodePem, Encode};
use der::{Tag, Tagged};
use ring::{digest, signature};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// A trusted signing certificate (from a verity.d `*.crt` file).
///
/// Kept with its path so that logs and [`Verified`] can say which file made an image trusted.
#[derive(Clone, Debug)]
pub struct TrustedCert {
    cert: Certificate,
    path: PathBuf,
}

impl TrustedCert {
    /// The file the certificate came from, for logs that explain why an image was trusted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The subject in RFC 4514 form (`CN=…,O=…`), the name users know their keys by.
    pub fn subject(&self) -> String {
        distinguished_name(self.cert.tbs_certificate().subject())
    }

    fn bad_signature(&self) -> SignatureError {
        SignatureError::BadSignature {
            signer: self.subject(),
        }
    }
}

/// What was verified, so the caller can log who vouched for an image and through which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// RFC 4514 subject of the trusted certificate that made the signature.
    pub signer_subject: String,
    /// The verity.d file that certificate was loaded from.
    pub cert_path: PathBuf,
}

/// Why a root-hash signature was not accepted; each variant is a different thing to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The bytes are not a DER PKCS#7 `SignedData` this module understands.
    #[error("not a valid PKCS#7 signature: {0}")]
    Malformed(String),
    /// The signature may be fine, but nobody in verity.d vouches for its signer.
    #[error("signed by {0}, which is not in verity.d")]
    NotTrusted(String),
    /// A trusted certificate was found, but the signature is not by its key or the data changed.
    #[error("signature does not verify with {signer} (wrong key or tampered data)")]
    BadSignature {
        /// Subject of the trusted certificate that was tried.
        signer: String,
    },
    /// The signature carries its own content, and that is not this image's root hash.
    #[error("signature is for root hash {signed}, not {expected}")]
    ContentMismatch {
        /// The encapsulated content, escaped and shortened for a log line.
        signed: String,
        /// The root hash the image was to be checked against.
        expected: String,
    },
    /// The signer's certificate is past its notAfter date.
    #[error("certificate {subject} expired on {date}")]
    Expired {
        /// Subject of the signer's certificate.
        subject: String,
        /// notAfter, RFC 3339 in UTC.
        date: String,
    },
    /// The signer's certificate is not valid yet (or the clock is wrong).
    #[error("certificate {subject} is not valid before {date}")]
    NotYetValid {
        /// Subject of the signer's certificate.
        subject: String,
        /// notBefore, RFC 3339 in UTC.
        date: String,
    },
    /// A digest, signature algorithm, curve, key size or content type this module does not do.
    #[error("unsupported {0}")]
    Unsupported(String),
}

/// Loads every `*.crt` (PEM, possibly several certs per file) from `dirs`, systemd-style.
///
/// `dirs` go from highest to lowest priority (`/etc`, `/run`, `/usr/local/lib`, `/usr/lib`): the
/// first directory holding a file name wins for that name, so a later file of the same name is
/// ignored, and an empty file or a symlink to `/dev/null` masks the name. Files are taken in
/// name order whatever directory they come from. Hidden files, non-`.crt` names and entries that
/// are not regular files are skipped. A missing directory is normal; anything unreadable or
/// unparsable is reported in the returned warnings (one line each) rather than failing the load,
/// so one broken file cannot lock out every other key.
pub fn load_trusted(dirs: &[PathBuf]) -> (Vec<TrustedCert>, Vec<String>) {
    let mut warnings = Vec::new();
    // File name → the file that wins it, or `None` when the name is masked.
    let mut chosen: BTreeMap<OsString, Option<PathBuf>> = BTreeMap::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    warnings.push(format!("{}: {e}", dir.display()));
                    break;
                }
            };
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.starts_with(b".") || !bytes.ends_with(b".crt") || chosen.contains_key(&name) {
                continue;
            }
            let path = entry.path();
            // Follow symlinks: a link to /dev/null masks, a link to a regular file is that file.
            match fs::metadata(&path) {
                Ok(meta)
                    if meta.file_type().is_char_device() || (meta.is_file() && meta.len() == 0) =>
                {
                    chosen.insert(name, None);
                }
                Ok(meta) if meta.is_file() => {
                    chosen.insert(name, Some(path));
                }
                Ok(_) => {}
                Err(e) => warnings.push(format!("{}: {e}", path.display())),
            }
        }
    }

    let mut certs = Vec::new();
    for path in chosen.into_values().flatten() {
        match fs::read(&path) {
            Ok(data) => certs.extend(parse_pem_file(&data, &path, &mut warnings)),
            Err(e) => warnings.push(format!("{}: {e}", path.display())),
        }
    }
    (certs, warnings)
}

/// Takes every `CERTIFICATE` block of a PEM file and skips anything around them, as OpenSSL's
/// PEM reader does, so comments or a stray key in the file do no harm.
fn parse_pem_file(data: &[u8], path: &Path, warnings: &mut Vec<String>) -> Vec<TrustedCert> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut blocks = 0;
    let mut rest = data;
    while let Some(start) = find(rest, BEGIN) {
        blocks += 1;
        rest = &rest[start..];
        let Some(end) = find(rest, END) else {
            warnings.push(format!("{}: certificate without END line", path.display()));
            return certs;
        };
        let block = &rest[..end + END.len()];
        rest = &rest[end + END.len()..];
        match Certificate::from_pem(block) {
            Ok(cert) => certs.push(TrustedCert {
                cert,
                path: path.to_owned(),
            }),
            Err(e) => warnings.push(format!(
                "{}: certificate {blocks} unparsable: {e}",
                path.display()
            )),
        }
    }
    if blocks == 0 {
        warnings.push(format!("{}: no PEM certificate found", path.display()));
    }
    certs
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Verifies a DER PKCS#7/CMS `SignedData` `signature` over `root_hash_hex` against `trusted`.
///
/// `root_hash_hex` is the lowercase hex string (no newline) that is the signed content. A
/// detached signature is checked against it; an encapsulated one must carry exactly it. Every
/// `SignerInfo` must be by a trusted certificate and verify, as with `PKCS7_verify`; the first
/// one is reported. `now` is in Unix seconds, and the signer's certificate must be valid then.
pub fn verify_root_hash(
    signature: &[u8],
    root_hash_hex: &str,
    trusted: &[TrustedCert],
    now: u64,
) -> Result<Verified, SignatureError> {
    let info = ContentInfo::from_der(signature).map_err(malformed)?;
    if info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(SignatureError::Malformed(format!(
            "content type {} is not signedData",
            info.content_type
        )));
    }
    let signed_data: SignedData = info.content.decode_as().map_err(malformed)?;
    check_content(&signed_data.encap_content_info, root_hash_hex)?;

    let mut signers = signed_data.signer_infos.0.iter();
    let first = signers
        .next()
        .ok_or_else(|| SignatureError::Malformed("no signer information".into()))?;
    let embedded = signed_data.certificates.as_ref();
    let content = root_hash_hex.as_bytes();
    let verified = verify_signer(first, embedded, content, trusted, now)?;
    for signer in signers {
        verify_signer(signer, embedded, content, trusted, now)?;
    }
    Ok(verified)
}

fn malformed(e: der::Error) -> SignatureError {
    SignatureError::Malformed(e.to_string())
}

fn check_content(
    encap: &EncapsulatedContentInfo,
    root_hash_hex: &str,
) -> Result<(), SignatureError> {
    if encap.econtent_type != rfc5911::ID_DATA {
        return Err(SignatureError::Unsupported(format!(
            "content type {}",
            encap.econtent_type
        )));
    }
    let Some(econtent) = &encap.econtent else {
        return Ok(());
    };
    let signed: OctetString = econtent.decode_as().map_err(malformed)?;
    if signed.as_bytes() != root_hash_hex.as_bytes() {
        return Err(SignatureError::ContentMismatch {
            signed: for_log(signed.as_bytes()),
            expected: root_hash_hex.to_owned(),
        });
    }
    Ok(())
}

/// Escapes and shortens attacker-controlled bytes so they stay one readable log line.
fn for_log(bytes: &[u8]) -> String {
    const MAX: usize = 160;
    let shown = bytes[..bytes.len().min(MAX)].escape_ascii().to_string();
    if bytes.len() > MAX {
        shown + "…"
    } else {
        shown
    }
}

/// Checks one `SignerInfo` against every trusted certificate that matches its identifier.
fn verify_signer(
    signer: &SignerInfo,
    embedded: Option<&CertificateSet>,
    content: &[u8],
    trusted: &[TrustedCert],
    now: u64,
) -> Result<Verified, SignatureError> {
    let mut outcome = Err(SignatureError::NotTrusted(describe_signer(
        &signer.sid,
        embedded,
    )));
    for cert in trusted.iter().filter(|c| identifies(&signer.sid, &c.cert)) {
        match verify_with(signer, cert, content, now) {
            Ok(()) => {
                return Ok(Verified {
                    signer_subject: cert.subject(),
                    cert_path: cert.path.clone(),
                })
            }
            // Several files may hold the same certificate (or renewals with the same serial):
            // keep the most specific failure, a date or algorithm problem over "not trusted"
            // or "wrong key".
            Err(e) => {
                if matches!(
                    outcome,
                    Err(SignatureError::NotTrusted(_) | SignatureError::BadSignature { .. })
                ) {
                    outcome = Err(e);
                }
            }
        }
    }
    outcome
}

/// Names the signer of an untrusted signature as precisely as the message allows: by the
/// subject of an embedded certificate, else by what the signer identifier says.
fn describe_signer(sid: &SignerIdentifier, embedded: Option<&CertificateSet>) -> String {
    let embedded_cert = embedded
        .into_iter()
        .flat_map(|set| set.0.iter())
        .find_map(|choice| match choice {
            CertificateChoices::Certificate(cert) if identifies(sid, cert) => Some(cert),
            _ => None,
        });
    if let Some(cert) = embedded_cert {
        return distinguished_name(cert.tbs_certificate().subject());
    }
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => {
            format!(
                "a certificate issued by {} with serial {}",
                distinguished_name(&isn.issuer),
                isn.serial_number
            )
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            format!(
                "a certificate with key identifier {}",
                crate::hex(ski.0.as_bytes())
            )
        }
    }
}

fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => {
            *tbs.issuer() == isn.issuer && *tbs.serial_number() == isn.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            matches!(tbs.get_extension::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
        }
    }
}

/// Attribute types with an RFC 4514 short name, plus `serialNumber` and `emailAddress` as
/// OpenSSL names them.
const ATTRIBUTE_NAMES: [(ObjectIdentifier, &str); 11] = [
    (ObjectIdentifier::new_unwrap("2.5.4.3"), "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "serialNumber"),
    (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
    (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        "UID",
    ),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
        "DC",
    ),
    (
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1"),
        "emailAddress",
    ),
];

/// Formats a name the RFC 4514 way (`CN=…,O=…`, most specific part first), exactly as
/// `openssl x509 -nameopt RFC2253` prints it, so users can match the two.
///
/// `Name`'s own `Display` would do, but it looks attribute types up in const-oid's full OID
/// database, which adds about 190 KB to the static binary.
fn distinguished_name(name: &Name) -> String {
    // (RDN index, attribute), all reversed: OpenSSL reverses inside multi-valued RDNs too.
    let attributes: Vec<_> = name
        .iter_rdn()
        .enumerate()
        .flat_map(|(i, rdn)| rdn.iter().map(move |atv| (i, atv)))
        .collect();
    let mut out = String::new();
    let mut previous = None;
    for (rdn, atv) in attributes.into_iter().rev() {
        match previous {
            Some(p) if p == rdn => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        previous = Some(rdn);
        let short = ATTRIBUTE_NAMES.iter().find(|(oid, _)| *oid == atv.oid);
        let text = match atv.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                std::str::from_utf8(atv.value.value()).ok()
            }
            _ => None,
        };
        match (short, text) {
            (Some((_, short)), Some(text)) => {
                out.push_str(short);
                out.push('=');
                escape_dn_value(&mut out, text);
            }
            // RFC 4514: anything else is the dotted OID and the value's DER in hex.
            _ => {
                let der = atv.value.to_der().unwrap_or_default();
                out.push_str(&format!("{}=#{}", atv.oid, crate::hex(&der)));
            }
        }
    }
    out
}

/// Escapes what RFC 4514 requires, and control characters so a name stays on one log line.
fn escape_dn_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => out.push('\\'),
            '#' if i == 0 => out.push('\\'),
            ' ' if i == 0 || i == last => out.push('\\'),
            _ => {}
        }
        if c.is_control() {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

fn verify_with(
    signer: &SignerInfo,
    cert: &TrustedCert,
    content: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let hash = Hash::from_oid(&signer.digest_alg.oid)?;
    let algorithm = verification_algorithm(signer, hash, cert)?;
    // With signed attributes the signature covers their DER (as a SET OF, not the [0] it is
    // stored with), and the content is bound through the messageDigest attribute.
    let signed_attrs;
    let message = match &signer.signed_attrs {
        None => content,
        Some(attrs) => {
            let mut digests = attrs
                .iter()
                .filter(|a| a.oid == rfc5911::ID_MESSAGE_DIGEST)
                .flat_map(|a| a.values.iter());
            let (Some(value), None) = (digests.next(), digests.next()) else {
                return Err(SignatureError::Malformed(
                    "signed attributes need exactly one messageDigest".into(),
                ));
            };
            let digest_value: OctetString = value.decode_as().map_err(malformed)?;
            if digest_value.as_bytes() != digest::digest(hash.digest(), content).as_ref() {
                return Err(cert.bad_signature());
            }
            signed_attrs = attrs.to_der().map_err(malformed)?;
            &signed_attrs
        }
    };
    let key = cert
        .cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    signature::UnparsedPublicKey::new(algorithm, key)
        .verify(message, signer.signature.as_bytes())
        .map_err(|_| cert.bad_signature())?;
    check_validity(cert, now)
}

fn check_validity(cert: &TrustedCert, now: u64) -> Result<(), SignatureError> {
    let validity = cert.cert.tbs_certificate().validity();
    if now < validity.not_before.to_unix_duration().as_secs() {
        return Err(SignatureError::NotYetValid {
            subject: cert.subject(),
            date: validity.not_before.to_string(),
        });
    }
    if now > validity.not_after.to_unix_duration().as_secs() {
        return Err(SignatureError::Expired {
            subject: cert.subject(),
            date: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// The digests `SignerInfo.digestAlgorithm` may name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &ObjectIdentifier) -> Result<Hash, SignatureError> {
        match *oid {
            rfc5912::ID_SHA_256 => Ok(Hash::Sha256),
            rfc5912::ID_SHA_384 => Ok(Hash::Sha384),
            rfc5912::ID_SHA_512 => Ok(Hash::Sha512),
            _ => Err(SignatureError::Unsupported(format!(
                "digest algorithm {oid}"
            ))),
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }
}

/// Picks ring's verifier from the signature algorithm, the digest and the certificate's key.
///
/// A key of the wrong type for the algorithm cannot have made the signature, so that is a bad
/// signature, not an unsupported one.
fn verification_algorithm(
    signer: &SignerInfo,
    hash: Hash,
    cert: &TrustedCert,
) -> Result<&'static dyn signature::VerificationAlgorithm, SignatureError> {
    let sig_alg = &signer.signature_algorithm.oid;
    let spki = cert.cert.tbs_certificate().subject_public_key_info();
    // Signature algorithms that name a digest must agree with digestAlgorithm.
    let (is_rsa, implied) = match *sig_alg {
        rfc5912::RSA_ENCRYPTION => (true, None),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => (true, Some(Hash::Sha256)),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => (true, Some(Hash::Sha384)),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => (true, Some(Hash::Sha512)),
        rfc5912::ID_EC_PUBLIC_KEY => (false, None),
        rfc5912::ECDSA_WITH_SHA_256 => (false, Some(Hash::Sha256)),
        rfc5912::ECDSA_WITH_SHA_384 => (false, Some(Hash::Sha384)),
        rfc5912::ECDSA_WITH_SHA_512 => (false, Some(Hash::Sha512)),
        _ => {
            return Err(SignatureError::Unsupported(format!(
                "signature algorithm {sig_alg}"
            )))
        }
    };
    if implied.is_some_and(|h| h != hash) {
        return Err(SignatureError::Malformed(format!(
            "signature algorithm {sig_alg} contradicts the digest algorithm"
        )));
    }
    if is_rsa {
        if spki.algorithm.oid != rfc5912::RSA_ENCRYPTION {
            return Err(cert.bad_signature());
        }
        check_rsa_size(spki.subject_public_key.raw_bytes())?;
        return Ok(match hash {
            Hash::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Hash::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Hash::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        });
    }
    if spki.algorithm.oid != rfc5912::ID_EC_PUBLIC_KEY {
        return Err(cert.bad_signature());
    }
    let curve: ObjectIdentifier = spki
        .algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| SignatureError::Malformed("EC key without curve".into()))?
        .decode_as()
        .map_err(malformed)?;
    match (curve, hash) {
        (rfc5912::SECP_256_R_1, Hash::Sha256) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
        (rfc5912::SECP_256_R_1, Hash::Sha384) => Ok(&signature::ECDSA_P256_SHA384_ASN1),
        (rfc5912::SECP_384_R_1, Hash::Sha256) => Ok(&signature::ECDSA_P384_SHA256_ASN1),
        (rfc5912::SECP_384_R_1, Hash::Sha384) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
        _ => Err(SignatureError::Unsupported(format!(
            "ECDSA on curve {curve} with digest {}",
            signer.digest_alg.oid
        ))),
    }
}

/// ring refuses RSA moduli outside 2048–8192 bits with the same opaque error as a wrong
/// signature; checking first gives the user the real reason.
fn check_rsa_size(rsa_public_key: &[u8]) -> Result<(), SignatureError> {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    let integers = Vec::<UintRef<'_>>::from_der(rsa_public_key).map_err(malformed)?;
    let modulus = integers
        .first()
        .map(UintRef::as_bytes)
        .ok_or_else(|| SignatureError::Malformed("RSA key without modulus".into()))?;
    let bits = match modulus.first() {
        Some(top) => modulus.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !(2048..=8192).contains(&bits) {
        return Err(SignatureError::Unsupported(format!(
            "RSA key size of {bits} bits (2048 to 8192 are accepted)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;
    use std::time::{SystemTime, UNIX_EPOCH};
    use tempfile::TempDir;

    const ROOT_HASH: &str = "8f4ac4bb55b2a1e58f2a6e0b8e2b5f6f0e4c4b1f6ad3e6b0f95a8e2c2b7c1d9e";
    const OTHER_HASH: &str = "0d1f3e5a7c9b2d4f6e8a0c2e4f6a8b0d1c3e5f7a9b1d3f5e7a9c1b3d5f7e9a1c";

    // Signature styles: the openssl sub-command and its flags. SMIME_NOATTR is what the
    // sysext docs suggest for .roothash.p7s files, REPART what systemd-repart embeds in DDIs.
    const SMIME_NOATTR: &str = "smime -nocerts -noattr";
    const REPART: &str = "smime -noattr";
    const SMIME: &str = "smime";
    const CMS: &str = "cms";

    // Key specs for `Fixture::key`.
    const RSA: &str = "RSA rsa_keygen_bits:2048";
    const P256: &str = "EC ec_paramgen_curve:P-256";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A scratch directory where openssl makes keys, certificates and signatures.
    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let fixture = Fixture {
                dir: TempDir::new().unwrap(),
            };
            fs::write(fixture.path("hash"), ROOT_HASH).unwrap();
            fs::write(fixture.path("other"), OTHER_HASH).unwrap();
            fixture
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Runs openssl in the fixture directory; arguments are split at blanks.
        fn openssl(&self, args: &str) {
            self.openssl_args(&args.split_whitespace().collect::<Vec<_>>());
        }

        fn openssl_args(&self, args: &[&str]) {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .expect("openssl must be installed for these tests");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "openssl {args:?}: {stderr}");
        }

        /// Makes `name.key`; `spec` is the algorithm and one `-pkeyopt`, e.g. [`RSA`].
        fn key(&self, name: &str, spec: &str) {
            let (algorithm, option) = spec.split_once(' ').unwrap();
            self.openssl(&format!(
                "genpkey -algorithm {algorithm} -pkeyopt {option} -out {name}.key"
            ));
        }

        /// Makes `name.key` and a self-signed `name.crt` with subject `CN=name`, valid for 30
        /// days; `extra` goes to `openssl req`.
        fn cert(&self, name: &str, spec: &str, extra: &str) {
            self.key(name, spec);
            self.openssl(&format!(
                "req -x509 -new -key {name}.key -subj /CN={name} -days 30 {extra} -out {name}.crt"
            ));
        }

        /// Like [`Fixture::cert`] (RSA) but valid from `start` to `end` (`YYYYMMDDHHMMSSZ`):
        /// `openssl req` of OpenSSL 3.0 cannot backdate, `openssl ca -selfsign` can.
        fn dated_cert(&self, name: &str, start: &str, end: &str) {
            self.key(name, RSA);
            let ca = format!("ca-{name}");
            fs::create_dir(self.path(&ca)).unwrap();
            fs::write(self.path(&format!("{ca}/index.txt")), "").unwrap();
            fs::write(self.path(&format!("{ca}/serial")), "01\n").unwrap();
            let config = format!(
                "[ca]\ndefault_ca = dflt\n[dflt]\ndatabase = {ca}/index.txt\nnew_certs_dir = {ca}\n\
                 serial = {ca}/serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n"
            );
            fs::write(self.path(&format!("{ca}/ca.cnf")), config).unwrap();
            self.openssl(&format!(
                "req -new -key {name}.key -subj /CN={name} -out {ca}/req.csr"
            ));
            self.openssl(&format!(
                "ca -batch -config {ca}/ca.cnf -selfsign -keyfile {name}.key -in {ca}/req.csr \
                 -startdate {start} -enddate {end} -notext -out {name}.crt"
            ));
        }

        /// Signs the file `content` in `style` (sub-command and flags) by each of `signers`.
        fn sign(&self, style: &str, content: &str, signers: &[&str]) -> Vec<u8> {
            let (command, flags) = style.split_once(' ').unwrap_or((style, ""));
            let signers: String = signers
                .iter()
                .map(|s| format!(" -signer {s}.crt -inkey {s}.key"))
                .collect();
            // The flags go after the signers because -keyopt applies to the one before it.
            self.openssl(&format!(
                "{command} -sign -binary {signers} {flags} -in {content} -outform der -out sig.p7s"
            ));
            fs::read(self.path("sig.p7s")).unwrap()
        }

        /// Loads the named certificates through [`load_trusted`], as if they were in verity.d.
        fn trust(&self, names: &[&str]) -> Vec<TrustedCert> {
            let store = self.path(&format!("verity.d-{}", names.join("-")));
            fs::create_dir(&store).unwrap();
            for name in names {
                let file = format!("{name}.crt");
                fs::copy(self.path(&file), store.join(&file)).unwrap();
            }
            let (certs, warnings) = load_trusted(&[store]);
            assert_eq!(warnings, Vec::<String>::new());
            certs
        }
    }

    /// Unwraps an error and checks that it reads as one log line.
    fn error(result: Result<Verified, SignatureError>) -> SignatureError {
        let e = result.expect_err("verification should fail");
        assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
        e
    }

    #[test]
    fn every_openssl_style_verifies_with_rsa_and_p256() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("p256", P256, "");
        let trusted = f.trust(&["p256", "rsa"]);
        for (signer, index) in [("rsa", 1), ("p256", 0)] {
            for style in [SMIME_NOATTR, REPART, SMIME, CMS] {
                let sig = f.sign(style, "hash", &[signer]);
                let verified = verify_root_hash(&sig, ROOT_HASH, &trusted, now())
                    .unwrap_or_else(|e| panic!("{signer} {style}: {e}"));
                assert_eq!(verified.signer_subject, format!("CN={signer}"));
                assert_eq!(verified.cert_path, trusted[index].path());
            }
        }
    }

    #[test]
    fn sha384_sha512_and_p384_verify() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("p384", "EC ec_paramgen_curve:P-384", "");
        let trusted = f.trust(&["rsa", "p384"]);
        let cases = [
            ("rsa", "sha384"),
            ("rsa", "sha512"),
            ("p384", "sha384"),
            ("p384", "sha256"),
        ];
        for (signer, md) in cases {
            for style in [SMIME_NOATTR, CMS] {
                let style = format!("{style} -md {md}");
                let sig = f.sign(&style, "hash", &[signer]);
                verify_root_hash(&sig, ROOT_HASH, &trusted, now())
                    .unwrap_or_else(|e| panic!("{signer} {style}: {e}"));
            }
        }
    }

    #[test]
    fn signer_named_by_subject_key_identifier_verifies() {
        let f = Fixture::new();
        f.cert("p256", P256, "");
        let sig = f.sign("cms -keyid", "hash", &["p256"]);
        let verified = verify_root_hash(&sig, ROOT_HASH, &f.trust(&["p256"]), now()).unwrap();
        assert_eq!(verified.signer_subject, "CN=p256");
    }

    #[test]
    fn encapsulated_signature_over_the_root_hash_verifies() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        let sig = f.sign("cms -nodetach", "hash", &["rsa"]);
        verify_root_hash(&sig, ROOT_HASH, &f.trust(&["rsa"]), now()).unwrap();
    }

    #[test]
    fn signer_missing_from_verity_d_is_not_trusted() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("p256", P256, "");
        // Same subject and issuer as "rsa", but another serial and key: not the signer.
        f.cert("twin", RSA, "-subj /CN=rsa");
        let trusted = f.trust(&["p256", "twin"]);
        // With the certificate embedded, the error can name the signer's subject.
        let sig = f.sign(SMIME, "hash", &["rsa"]);
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
        assert_eq!(e.to_string(), "signed by CN=rsa, which is not in verity.d");
        // Without it, only the issuer and serial are known.
        let sig = f.sign(SMIME_NOATTR, "hash", &["rsa"]);
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
        let named = |who: &str| who.starts_with("a certificate issued by CN=rsa with serial ");
        assert!(
            matches!(&e, SignatureError::NotTrusted(who) if named(who)),
            "{e}"
        );
        // An empty trust store trusts nobody.
        let e = error(verify_root_hash(&sig, ROOT_HASH, &[], now()));
        assert!(matches!(e, SignatureError::NotTrusted(_)), "{e}");
    }

    #[test]
    fn tampered_root_hash_or_signature_does_not_verify() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("p256", P256, "");
        let trusted = f.trust(&["rsa", "p256"]);
        for signer in ["rsa", "p256"] {
            for style in [SMIME_NOATTR, SMIME, CMS] {
                let sig = f.sign(style, "hash", &[signer]);
                let e = error(verify_root_hash(&sig, OTHER_HASH, &trusted, now()));
                assert!(
                    matches!(e, SignatureError::BadSignature { .. }),
                    "{signer} {style}: {e}"
                );
            }
        }
        // The signature value is the last thing in an -noattr signature.
        let mut sig = f.sign(SMIME_NOATTR, "hash", &["rsa"]);
        *sig.last_mut().unwrap() ^= 1;
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
        let reason = "signature does not verify with CN=rsa (wrong key or tampered data)";
        assert_eq!(e.to_string(), reason);
    }

    #[test]
    fn trusted_issuer_and_serial_with_another_key_does_not_verify() {
        let f = Fixture::new();
        f.cert("real", RSA, "-set_serial 7");
        f.cert("impostor", RSA, "-set_serial 7 -subj /CN=real");
        let sig = f.sign(SMIME_NOATTR, "hash", &["impostor"]);
        let e = error(verify_root_hash(
            &sig,
            ROOT_HASH,
            &f.trust(&["real"]),
            now(),
        ));
        assert_eq!(
            e,
            SignatureError::BadSignature {
                signer: "CN=real".into()
            }
        );
    }

    #[test]
    fn encapsulated_signature_over_another_hash_is_a_content_mismatch() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        let sig = f.sign("cms -nodetach", "other", &["rsa"]);
        let e = error(verify_root_hash(&sig, ROOT_HASH, &f.trust(&["rsa"]), now()));
        let reason = format!("signature is for root hash {OTHER_HASH}, not {ROOT_HASH}");
        assert_eq!(e.to_string(), reason);
        assert!(matches!(e, SignatureError::ContentMismatch { .. }));
    }

    #[test]
    fn signer_outside_its_validity_period_is_refused() {
        let f = Fixture::new();
        f.dated_cert("old", "20000101000000Z", "20010101000000Z");
        f.dated_cert("future", "20990101000000Z", "21000101000000Z");
        let trusted = f.trust(&["old", "future"]);

        let sig = f.sign(SMIME_NOATTR, "hash", &["old"]);
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
        assert_eq!(
            e.to_string(),
            "certificate CN=old expired on 2001-01-01T00:00:00Z"
        );
        // Both bounds are inclusive, as in RFC 5280.
        let (not_before, not_after) = (946_684_800, 978_307_200);
        for time in [not_before, not_after] {
            verify_root_hash(&sig, ROOT_HASH, &trusted, time).unwrap();
        }
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, not_after + 1));
        assert!(matches!(e, SignatureError::Expired { .. }), "{e}");
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, not_before - 1));
        assert!(matches!(e, SignatureError::NotYetValid { .. }), "{e}");

        let sig = f.sign(SMIME, "hash", &["future"]);
        let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
        assert_eq!(
            e.to_string(),
            "certificate CN=future is not valid before 2099-01-01T00:00:00Z"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        let trusted = f.trust(&["rsa"]);
        let sig = f.sign(SMIME, "hash", &["rsa"]);
        f.openssl("x509 -in rsa.crt -outform der -out rsa.der");
        f.openssl("crl2pkcs7 -nocrl -certfile rsa.crt -outform der -out certs.p7b");
        let cases = [
            ("empty", Vec::new()),
            ("text", b"not a signature at all\n".to_vec()),
            (
                "noise",
                (1..200u32).map(|i| (i * 7919 % 251) as u8).collect(),
            ),
            ("truncated", sig[..sig.len() / 2].to_vec()),
            ("trailing bytes", [&sig[..], b"\0"].concat()),
            ("a certificate", fs::read(f.path("rsa.der")).unwrap()),
            ("no signer", fs::read(f.path("certs.p7b")).unwrap()),
        ];
        for (what, bytes) in cases {
            let e = error(verify_root_hash(&bytes, ROOT_HASH, &trusted, now()));
            assert!(matches!(e, SignatureError::Malformed(_)), "{what}: {e}");
        }
    }

    #[test]
    fn unsupported_algorithms_are_named() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("small", "RSA rsa_keygen_bits:1024", "");
        let trusted = f.trust(&["rsa", "small"]);
        let cases = [
            (
                "cms -md sha1",
                "rsa",
                "unsupported digest algorithm 1.3.14.3.2.26",
            ),
            (
                "cms -keyopt rsa_padding_mode:pss",
                "rsa",
                "unsupported signature algorithm 1.2.840.113549.1.1.10",
            ),
            (
                SMIME_NOATTR,
                "small",
                "unsupported RSA key size of 1024 bits (2048 to 8192 are accepted)",
            ),
        ];
        for (style, signer, reason) in cases {
            let sig = f.sign(style, "hash", &[signer]);
            let e = error(verify_root_hash(&sig, ROOT_HASH, &trusted, now()));
            assert_eq!(e.to_string(), reason);
        }
    }

    #[test]
    fn every_signer_must_be_trusted() {
        let f = Fixture::new();
        f.cert("rsa", RSA, "");
        f.cert("p256", P256, "");
        let sig = f.sign(CMS, "hash", &["rsa", "p256"]);
        let verified =
            verify_root_hash(&sig, ROOT_HASH, &f.trust(&["rsa", "p256"]), now()).unwrap();
        assert!(["CN=rsa", "CN=p256"].contains(&verified.signer_subject.as_str()));
        // SignerInfos is a SET, ordered by DER sorting, not by openssl's order: try both ways.
        let e = error(verify_root_hash(&sig, ROOT_HASH, &f.trust(&["rsa"]), now()));
        assert_eq!(e.to_string(), "signed by CN=p256, which is not in verity.d");
        let e = error(verify_root_hash(
            &sig,
            ROOT_HASH,
            &f.trust(&["p256"]),
            now(),
        ));
        assert_eq!(e.to_string(), "signed by CN=rsa, which is not in verity.d");
    }

    #[test]
    fn names_are_formatted_like_openssl_rfc2253() {
        let f = Fixture::new();
        f.key("k", P256);
        let subject = r"/C=DE/O=Acme, Inc./OU=a\+b;c/CN=x+UID=y/serialNumber=42/CN=#lead trail ";
        let args = [
            "req", "-x509", "-new", "-key", "k.key", "-subj", subject, "-out", "k.crt",
        ];
        f.openssl_args(&args);
        let (certs, _) = load_trusted(&[f.dir.path().to_owned()]);
        // What `openssl x509 -noout -subject -nameopt RFC2253` prints for it.
        let expected =
            r"CN=\#lead trail\ ,serialNumber=42,UID=y+CN=x,OU=a\+b\;c,O=Acme\, Inc.,C=DE";
        assert_eq!(certs[0].subject(), expected);
    }

    #[test]
    fn load_trusted_overrides_and_masks_by_name() {
        let f = Fixture::new();
        for name in ["etc-a", "usr-a", "usr-b", "usr-e", "usr-g"] {
            f.cert(name, P256, "");
        }
        let pem = |name: &str| fs::read_to_string(f.path(&format!("{name}.crt"))).unwrap();
        let (etc, usr) = (f.path("etc"), f.path("usr"));
        fs::create_dir(&etc).unwrap();
        fs::create_dir(&usr).unwrap();
        // The first directory overrides a.crt, masks b.crt with an empty file and c.crt with
        // a symlink to /dev/null.
        fs::write(etc.join("a.crt"), pem("etc-a")).unwrap();
        fs::write(etc.join("b.crt"), "").unwrap();
        symlink("/dev/null", etc.join("c.crt")).unwrap();
        fs::write(usr.join("a.crt"), pem("usr-a")).unwrap();
        fs::write(usr.join("b.crt"), pem("usr-b")).unwrap();
        fs::write(usr.join("c.crt"), pem("usr-b")).unwrap();
        // Other suffixes, hidden files and directories are not certificates.
        fs::write(etc.join("d.pem"), pem("etc-a")).unwrap();
        fs::write(etc.join("d.crt.bak"), pem("etc-a")).unwrap();
        fs::write(etc.join(".hidden.crt"), pem("etc-a")).unwrap();
        fs::create_dir(etc.join("dir.crt")).unwrap();
        // Two certificates in one file, with text around them and CRLF line ends.
        let two = format!("# two keys\n{}\nsome text\n{}", pem("usr-e"), pem("usr-g"));
        fs::write(usr.join("e.crt"), two.replace('\n', "\r\n")).unwrap();
        // A symlink to a regular file is that file.
        symlink(f.path("usr-g.crt"), usr.join("f.crt")).unwrap();
        // Broken files are reported, and the rest still loads.
        let bad_pem = "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n";
        fs::write(usr.join("h.crt"), bad_pem).unwrap();
        fs::write(usr.join("i.crt"), "no certificate here\n").unwrap();

        let (certs, warnings) = load_trusted(&[etc.clone(), f.path("missing"), usr.clone()]);
        let got: Vec<(String, PathBuf)> = certs
            .iter()
            .map(|c| (c.subject(), c.path().to_owned()))
            .collect();
        let expected = [
            ("CN=etc-a", etc.join("a.crt")),
            ("CN=usr-e", usr.join("e.crt")),
            ("CN=usr-g", usr.join("e.crt")),
            ("CN=usr-g", usr.join("f.crt")),
        ]
        .map(|(subject, path)| (subject.to_string(), path));
        assert_eq!(got, expected);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let h = usr.join("h.crt");
        assert!(warnings[0].starts_with(&format!("{}: certificate 1 unparsable: ", h.display())));
        assert_eq!(
            warnings[1],
            format!("{}: no PEM certificate found", usr.join("i.crt").display())
        );
    }
}
