//! `SHA256SUMS` manifests, their signature and keyring locations, and rdext's retraction list.
//!
//! rdext downloads what `systemd-sysupdate` would download, so a manifest must be accepted or
//! refused exactly as `resource_load_from_web()` does: the whole file is rejected when any line
//! is off, because a half-understood manifest is a tampering signal, not a formatting nit. The
//! signature file names and the keyring lookup follow `systemd-pull` (v258 and later).
//!
//! The retraction list (`SHA256SUMS.retracted`, see `docs/retraction.md`) is rdext's own
//! addition: sysupdate has no way to take back a published version (systemd#24082), so a
//! publisher lists the file names that must never be installed and stay installed.
//!
//! Checking the detached signatures is [`crate::fetch::openpgp::verify_detached`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// systemd-pull refuses checksum and signature files above 1 MiB; so does rdext, for the
/// manifest, the retraction list and their signatures.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// The manifest's name below a transfer's `Path=` URL.
pub const MANIFEST_NAME: &str = "SHA256SUMS";

/// Detached signatures of `SHA256SUMS`, in the order systemd-pull (v258+) asks for them: the next
/// name is tried only when the server answers 404 for the previous one. Before v258 only
/// `SHA256SUMS.gpg` existed, and it is still the one publishers normally ship.
pub const SIGNATURE_NAMES: &[&str] = &[
    "SHA256SUMS.sha256.asc",
    "SHA256SUMS.sha256.gpg",
    "SHA256SUMS.gpg",
    "SHA256SUMS.asc",
];

/// rdext's retraction list, published next to `SHA256SUMS`. A missing list means "nothing
/// retracted".
pub const RETRACTION_NAME: &str = "SHA256SUMS.retracted";

/// Detached signatures of the retraction list, tried in this order on 404, checked with the same
/// keyring as the manifest.
pub const RETRACTION_SIGNATURE_NAMES: &[&str] =
    &["SHA256SUMS.retracted.gpg", "SHA256SUMS.retracted.asc"];

/// Keyrings in systemd-pull's order of preference below the root: the admin's (current name, then
/// the pre-v258 name) before the vendor's. The last entry is the pre-v258 vendor name, which
/// systemd ≥ 258 no longer reads but v251–v257 hosts (Flatcar Stable, LTS) ship.
const KEYRINGS: &[&str] = &[
    "etc/systemd/import-pubring.pgp",
    "etc/systemd/import-pubring.gpg",
    "usr/lib/systemd/import-pubring.pgp",
    "usr/lib/systemd/import-pubring.gpg",
];

/// One file offered by a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// File name below the manifest's directory; a plain name, never a path.
    pub name: String,
    /// SHA-256 of the file as served (i.e. still compressed), checked after every download.
    pub sha256: [u8; 32],
}

/// One file name the publisher has taken back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retraction {
    /// The file name as it appears (or appeared) in `SHA256SUMS`.
    pub name: String,
    /// Free text for the log, so an admin learns why a version disappeared.
    pub reason: Option<String>,
}

/// Why a manifest or retraction list was refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Larger than [`MAX_FILE_SIZE`].
    #[error("file is larger than 1 MiB")]
    TooLarge,
    /// systemd refuses embedded NUL bytes rather than guess where the text ends.
    #[error("file contains a NUL byte")]
    NulByte,
    /// systemd refuses manifests that are not UTF-8.
    #[error("file is not valid UTF-8")]
    InvalidUtf8,
    /// One line broke the format; `line` is 1-based, as in systemd's log message.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based number of the offending line.
        line: usize,
        /// What is wrong with it.
        reason: LineError,
    },
    /// The same name twice would make the hash (or the reason) ambiguous.
    #[error("line {line}: {name:?} is listed twice")]
    Duplicate {
        /// 1-based number of the second occurrence.
        line: usize,
        /// The repeated file name.
        name: String,
    },
}

/// What is wrong with a single line.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// The file does not end in a newline, so its last line may be cut short.
    #[error("last line is not terminated by a newline")]
    Unterminated,
    /// `sha256sum` escapes odd names with a leading backslash; systemd does not unescape them.
    #[error("backslash-escaped file names are not supported")]
    Escaped,
    /// The line does not start with 64 hexadecimal digits.
    #[error("digest is not 64 hexadecimal digits")]
    BadDigest,
    /// The digest is not followed by a space.
    #[error("missing space after the digest")]
    MissingSeparator,
    /// The space is not followed by the text (` `) or binary (`*`) marker.
    #[error("missing text/binary marker after the digest")]
    MissingMarker,
    /// Nothing after the marker.
    #[error("empty file name")]
    EmptyName,
    /// `.`, `..`, a name with `/` or one longer than 255 bytes.
    #[error("not a valid file name")]
    InvalidName,
    /// Control characters (including CR and TAB) could forge log lines or hide names.
    #[error("file name contains a control character")]
    ControlCharacter,
    /// A retraction line that is neither blank, a `#` comment nor `retract NAME [REASON]`.
    #[error("not a comment or a 'retract' line")]
    UnknownDirective,
    /// `retract NAME ` with nothing after the second space.
    #[error("empty reason")]
    EmptyReason,
    /// The reason would be written to the log verbatim.
    #[error("reason contains a control character")]
    ReasonControlCharacter,
}

/// Parses a `SHA256SUMS` manifest with systemd-sysupdate's strict rules.
///
/// Each line is 64 hex digits (either case, as systemd's `unhexmem` accepts), one space, the text
/// or binary marker (` ` or `*`) and a file name, terminated by `\n`. An empty file is a valid,
/// empty manifest, as in systemd. Stricter than systemd: names with `/` are refused (systemd main
/// from late 2025 accepts relative paths, earlier releases did not), names listed twice are
/// refused (systemd keeps both), and C1 control characters count as control characters.
/// `BEST-BEFORE-*` marker lines are returned like any other entry.
pub fn parse_sha256sums(bytes: &[u8]) -> Result<Vec<ManifestEntry>, ManifestError> {
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for (line, text) in lines(bytes)? {
        let bad = |reason| ManifestError::BadLine { line, reason };
        if text.starts_with('\\') {
            return Err(bad(LineError::Escaped));
        }
        let raw = text.as_bytes();
        let sha256 = raw
            .get(..64)
            .and_then(decode_hex)
            .ok_or(bad(LineError::BadDigest))?;
        if raw.get(64) != Some(&b' ') {
            return Err(bad(LineError::MissingSeparator));
        }
        if !matches!(raw.get(65), Some(b' ' | b'*')) {
            return Err(bad(LineError::MissingMarker));
        }
        // Bytes 64 and 65 are ASCII, so byte 66 starts a character.
        let name = &text[66..];
        check_name(name).map_err(bad)?;
        if !seen.insert(name) {
            return Err(ManifestError::Duplicate {
                line,
                name: name.to_owned(),
            });
        }
        entries.push(ManifestEntry {
            name: name.to_owned(),
            sha256,
        });
    }
    Ok(entries)
}

/// Parses a retraction list (`docs/retraction.md`): blank lines, `#` comments and
/// `retract NAME [REASON]` lines, with the manifest's envelope rules (size, NUL, UTF-8, final
/// newline) and the manifest's file-name rules. Anything else rejects the whole list, so that a
/// typo never silently un-retracts a file.
pub fn parse_retractions(bytes: &[u8]) -> Result<Vec<Retraction>, ManifestError> {
    let mut retractions = Vec::new();
    let mut seen = HashSet::new();
    for (line, text) in lines(bytes)? {
        let bad = |reason| ManifestError::BadLine { line, reason };
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let rest = text
            .strip_prefix("retract ")
            .ok_or(bad(LineError::UnknownDirective))?;
        let (name, reason) = match rest.split_once(' ') {
            Some((name, reason)) => (name, Some(reason)),
            None => (rest, None),
        };
        check_name(name).map_err(bad)?;
        if let Some(reason) = reason {
            if reason.is_empty() {
                return Err(bad(LineError::EmptyReason));
            }
            if reason.chars().any(char::is_control) {
                return Err(bad(LineError::ReasonControlCharacter));
            }
        }
        if !seen.insert(name) {
            return Err(ManifestError::Duplicate {
                line,
                name: name.to_owned(),
            });
        }
        retractions.push(Retraction {
            name: name.to_owned(),
            reason: reason.map(str::to_owned),
        });
    }
    Ok(retractions)
}

/// The keyring systemd would hand to gpg for a system below `root`: the first that exists, and
/// only that one (an admin keyring replaces the vendor keyring, it never adds to it).
///
/// Paths are joined below `root` without confining symlinks to it, as systemd's `access()` check
/// does for `/`.
pub fn keyring_path(root: &Path) -> Option<PathBuf> {
    KEYRINGS
        .iter()
        .map(|rel| root.join(rel))
        .find(|path| path.exists())
}

/// Checks the envelope shared by both formats and yields `(line number, line)` without the
/// newline.
fn lines(bytes: &[u8]) -> Result<impl Iterator<Item = (usize, &str)>, ManifestError> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(ManifestError::TooLarge);
    }
    if bytes.contains(&0) {
        return Err(ManifestError::NulByte);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::InvalidUtf8)?;
    let body = match text.strip_suffix('\n') {
        Some(body) => Some(body),
        None if text.is_empty() => None,
        None => {
            return Err(ManifestError::BadLine {
                line: text.split('\n').count(),
                reason: LineError::Unterminated,
            })
        }
    };
    Ok(body
        .into_iter()
        .flat_map(|body| body.split('\n'))
        .enumerate()
        .map(|(i, line)| (i + 1, line)))
}

/// systemd's `filename_is_valid()` plus its control-character check.
fn check_name(name: &str) -> Result<(), LineError> {
    if name.is_empty() {
        return Err(LineError::EmptyName);
    }
    if name == "." || name == ".." || name.contains('/') || name.len() > 255 {
        return Err(LineError::InvalidName);
    }
    if name.chars().any(char::is_control) {
        return Err(LineError::ControlCharacter);
    }
    Ok(())
}

fn decode_hex(digits: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let nibble = |c: u8| char::from(c).to_digit(16);
        *byte = (nibble(pair[0])? << 4 | nibble(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_SHA256: [u8; 32] = [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ];

    /// What a table row is called, its input, and the expected outcome.
    type Case<'a, I, T> = (&'a str, I, Result<Vec<T>, ManifestError>);

    fn bad(line: usize, reason: LineError) -> Result<Vec<String>, ManifestError> {
        Err(ManifestError::BadLine { line, reason })
    }

    fn names(input: &[u8]) -> Result<Vec<String>, ManifestError> {
        parse_sha256sums(input).map(|v| v.into_iter().map(|e| e.name).collect())
    }

    #[test]
    fn manifest_accepts_sha256sum_output() {
        let text = format!("{HEX}  foo-1.2-x86-64.raw\n{HEX} *bar_2.raw\n");
        let entries = parse_sha256sums(text.as_bytes()).unwrap();
        assert_eq!(
            entries,
            [
                ManifestEntry {
                    name: "foo-1.2-x86-64.raw".into(),
                    sha256: EMPTY_SHA256
                },
                ManifestEntry {
                    name: "bar_2.raw".into(),
                    sha256: EMPTY_SHA256
                },
            ]
        );
    }

    #[test]
    fn manifest_hostile_input_table() {
        let upper = HEX.to_uppercase();
        let long = "x".repeat(256);
        let max = "x".repeat(255);
        let ok = |n: &[&str]| Ok(n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        #[rustfmt::skip]
        let cases: Vec<Case<Vec<u8>, String>> = vec![
            ("valid", format!("{HEX}  a.raw\n").into(), ok(&["a.raw"])),
            ("empty file is an empty manifest", b"".to_vec(), ok(&[])),
            ("binary marker", format!("{HEX} *a.raw\n").into(), ok(&["a.raw"])),
            ("uppercase hex, as systemd's unhexmem", format!("{upper}  a.raw\n").into(), ok(&["a.raw"])),
            ("name of 255 bytes", format!("{HEX}  {max}\n").into(), ok(&[max.as_str()])),
            ("space starts the name (systemd agrees)", format!("{HEX}   a\n").into(), ok(&[" a"])),
            ("non-ASCII name", format!("{HEX}  ä€.raw\n").into(), ok(&["ä€.raw"])),
            ("CRLF", format!("{HEX}  a.raw\r\n").into(), bad(1, LineError::ControlCharacter)),
            ("missing final newline", format!("{HEX}  a\n{HEX}  b").into(), bad(2, LineError::Unterminated)),
            ("63 hex digits", format!("{}  a\n", &HEX[1..]).into(), bad(1, LineError::BadDigest)),
            ("65 hex digits", format!("0{HEX}  a\n").into(), bad(1, LineError::MissingSeparator)),
            ("non-hex digit", format!("g{}  a\n", &HEX[1..]).into(), bad(1, LineError::BadDigest)),
            ("one space, no marker", format!("{HEX} a\n").into(), bad(1, LineError::MissingMarker)),
            ("tab separator", format!("{HEX}\ta\n").into(), bad(1, LineError::MissingSeparator)),
            ("tab marker", format!("{HEX} \ta\n").into(), bad(1, LineError::MissingMarker)),
            ("nothing after the marker", format!("{HEX}  \n").into(), bad(1, LineError::EmptyName)),
            ("path traversal", format!("{HEX}  ../x\n").into(), bad(1, LineError::InvalidName)),
            ("subdirectory", format!("{HEX}  a/b\n").into(), bad(1, LineError::InvalidName)),
            ("dot", format!("{HEX}  .\n").into(), bad(1, LineError::InvalidName)),
            ("dot-dot", format!("{HEX}  ..\n").into(), bad(1, LineError::InvalidName)),
            ("name over 255 bytes", format!("{HEX}  {long}\n").into(), bad(1, LineError::InvalidName)),
            ("escape character", format!("{HEX}  a\x1b[31m\n").into(), bad(1, LineError::ControlCharacter)),
            ("tab in name", format!("{HEX}  a\tb\n").into(), bad(1, LineError::ControlCharacter)),
            ("DEL in name", format!("{HEX}  a\x7f\n").into(), bad(1, LineError::ControlCharacter)),
            ("C1 control in name", format!("{HEX}  a\u{85}\n").into(), bad(1, LineError::ControlCharacter)),
            ("NUL", format!("{HEX}  a\0b\n").into(), Err(ManifestError::NulByte)),
            ("invalid UTF-8", [format!("{HEX}  a").as_bytes(), b"\xff\n"].concat(), Err(ManifestError::InvalidUtf8)),
            ("backslash-escaped line", format!("\\{HEX}  a\\nb\n").into(), bad(1, LineError::Escaped)),
            ("bad line after good ones", format!("{HEX}  a\n{HEX}  b\nhello\n").into(), bad(3, LineError::BadDigest)),
            ("blank line", format!("{HEX}  a\n\n").into(), bad(2, LineError::BadDigest)),
            ("lone newline", b"\n".to_vec(), bad(1, LineError::BadDigest)),
            ("leading space", format!(" {HEX}  a\n").into(), bad(1, LineError::BadDigest)),
            ("comment", format!("# x\n{HEX}  a\n").into(), bad(1, LineError::BadDigest)),
            ("duplicate names", format!("{HEX}  a\n{HEX} *a\n").into(),
                Err(ManifestError::Duplicate { line: 2, name: "a".into() })),
        ];
        for (what, input, want) in cases {
            assert_eq!(names(&input), want, "{what}");
        }
    }

    #[test]
    fn manifest_size_cap_is_one_mebibyte() {
        let mut text = String::new();
        let mut lines = 0;
        while MAX_FILE_SIZE - text.len() > 600 {
            text.push_str(&format!("{HEX}  {lines:07}{}\n", "n".repeat(200)));
            lines += 1;
        }
        // Two more lines of 67 bytes plus their names fill the file to exactly 1 MiB.
        let left = MAX_FILE_SIZE - text.len();
        for (name, len) in [("p", left / 2), ("q", left - left / 2)] {
            text.push_str(&format!("{HEX}  {}\n", name.repeat(len - 67)));
            lines += 1;
        }
        assert_eq!(text.len(), MAX_FILE_SIZE);
        assert_eq!(parse_sha256sums(text.as_bytes()).unwrap().len(), lines);
        text.push('\n');
        assert_eq!(
            parse_sha256sums(text.as_bytes()),
            Err(ManifestError::TooLarge)
        );
    }

    #[test]
    fn errors_read_as_one_line() {
        let err = parse_sha256sums(format!("{HEX}  ../x\n").as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "line 1: not a valid file name");
        let err = parse_sha256sums(format!("{HEX}  a\n{HEX}  a\n").as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "line 2: \"a\" is listed twice");
    }

    #[test]
    fn retractions_parse() {
        let text = "# retracted after CVE-2026-0001\n\
                    \n\
                    retract docker-27.1-x86-64.raw\n\
                    retract docker-27.2-x86-64.raw breaks  overlay mounts: see #42\n";
        assert_eq!(
            parse_retractions(text.as_bytes()).unwrap(),
            [
                Retraction {
                    name: "docker-27.1-x86-64.raw".into(),
                    reason: None
                },
                Retraction {
                    name: "docker-27.2-x86-64.raw".into(),
                    reason: Some("breaks  overlay mounts: see #42".into())
                },
            ]
        );
        assert_eq!(parse_retractions(b"").unwrap(), []);
        assert_eq!(parse_retractions(b"# nothing yet\n").unwrap(), []);
    }

    #[test]
    fn retractions_hostile_input_table() {
        let bad = |line, reason| Err(ManifestError::BadLine { line, reason });
        #[rustfmt::skip]
        let cases: Vec<Case<&[u8], Retraction>> = vec![
            ("missing final newline", b"retract a", bad(1, LineError::Unterminated)),
            ("CRLF", b"retract a\r\n", bad(1, LineError::ControlCharacter)),
            ("CRLF after reason", b"retract a why\r\n", bad(1, LineError::ReasonControlCharacter)),
            ("typo", b"retarct a\n", bad(1, LineError::UnknownDirective)),
            ("upper case", b"RETRACT a\n", bad(1, LineError::UnknownDirective)),
            ("indented", b" retract a\n", bad(1, LineError::UnknownDirective)),
            ("indented comment", b" # x\n", bad(1, LineError::UnknownDirective)),
            ("tab separator", b"retract\ta\n", bad(1, LineError::UnknownDirective)),
            ("no name", b"retract\n", bad(1, LineError::UnknownDirective)),
            ("empty name", b"retract \n", bad(1, LineError::EmptyName)),
            ("two spaces", b"retract  a\n", bad(1, LineError::EmptyName)),
            ("trailing space", b"retract a \n", bad(1, LineError::EmptyReason)),
            ("path", b"retract ../a\n", bad(1, LineError::InvalidName)),
            ("tab in reason", b"retract a b\tc\n", bad(1, LineError::ReasonControlCharacter)),
            ("NUL", b"retract a\0\n", Err(ManifestError::NulByte)),
            ("invalid UTF-8", b"retract a \xff\n", Err(ManifestError::InvalidUtf8)),
            ("duplicate", b"retract a\n# again\nretract a other reason\n",
                Err(ManifestError::Duplicate { line: 3, name: "a".into() })),
        ];
        for (what, input, want) in cases {
            assert_eq!(parse_retractions(input), want, "{what}");
        }
        let big = format!("#{}\n", "x".repeat(MAX_FILE_SIZE));
        assert_eq!(
            parse_retractions(big.as_bytes()),
            Err(ManifestError::TooLarge)
        );
    }

    #[test]
    fn keyring_path_prefers_admin_then_vendor_and_never_merges() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert_eq!(keyring_path(r), None);
        fs::create_dir_all(r.join("etc/systemd")).unwrap();
        fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        for (rel, _) in KEYRINGS.iter().rev().zip(0..) {
            fs::write(r.join(rel), b"").unwrap();
            assert_eq!(keyring_path(r), Some(r.join(rel)), "{rel}");
        }
        assert_eq!(
            keyring_path(r),
            Some(r.join("etc/systemd/import-pubring.pgp"))
        );
        // A dangling symlink does not exist for access(F_OK) either.
        fs::remove_file(r.join("etc/systemd/import-pubring.pgp")).unwrap();
        std::os::unix::fs::symlink("missing", r.join("etc/systemd/import-pubring.pgp")).unwrap();
        assert_eq!(
            keyring_path(r),
            Some(r.join("etc/systemd/import-pubring.gpg"))
        );
    }

    #[test]
    fn signature_names_follow_systemd_pull() {
        assert_eq!(SIGNATURE_NAMES[0], format!("{MANIFEST_NAME}.sha256.asc"));
        assert!(SIGNATURE_NAMES.iter().all(|n| n.starts_with(MANIFEST_NAME)));
        assert!(RETRACTION_SIGNATURE_NAMES
            .iter()
            .all(|n| n.starts_with(RETRACTION_NAME)));
    }
}
