//! `MatchPattern=` strings: which file names are instances of a transfer, the fields encoded in
//! them, and the name of a new instance. Mirrors systemd's `sysupdate-pattern.c`, including its
//! quirks: a wildcard stops at the *first* occurrence of the next literal, and text after the
//! last element is not checked (`x-@v.raw` matches `x-1.raw.sig`).

use super::SysupdateError;

/// Values encoded in an instance name besides the version, or configured for new instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `@u`, GPT partition UUID.
    pub partition_uuid: Option<u128>,
    /// `@f`, GPT partition flags (hex in names).
    pub partition_flags: Option<u64>,
    /// `@t`, modification time in µs since the epoch; applied to new files.
    pub mtime: Option<u64>,
    /// `@m`, file mode (octal in names); applied to new files.
    pub mode: Option<u32>,
    /// `@s`, uncompressed size.
    pub size: Option<u64>,
    /// `@d`, boot-counting tries done.
    pub tries_done: Option<u64>,
    /// `@l`, boot-counting tries left.
    pub tries_left: Option<u64>,
    /// `@a`, GPT no-auto flag.
    pub no_auto: Option<bool>,
    /// `@r`, read-only flag; `Some(true)` drops the write bits of new files.
    pub read_only: Option<bool>,
    /// `@g`, GPT grow-file-system flag.
    pub growfs: Option<bool>,
    /// `@h`, SHA256 of the (compressed) file.
    pub sha256: Option<[u8; 32]>,
}

/// What a file name matched by a [`Pattern`] says about that instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// `@v`, never empty and only `[A-Za-z0-9._,+-]`.
    pub version: String,
    /// Every other wildcard that the pattern has.
    pub meta: Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Version,
    PartitionUuid,
    PartitionFlags,
    Mtime,
    Mode,
    Size,
    TriesDone,
    TriesLeft,
    NoAuto,
    ReadOnly,
    GrowFs,
    Sha256,
}

const FIELDS: [(char, Field); 12] = [
    ('v', Field::Version),
    ('u', Field::PartitionUuid),
    ('f', Field::PartitionFlags),
    ('t', Field::Mtime),
    ('m', Field::Mode),
    ('s', Field::Size),
    ('d', Field::TriesDone),
    ('l', Field::TriesLeft),
    ('a', Field::NoAuto),
    ('r', Field::ReadOnly),
    ('g', Field::GrowFs),
    ('h', Field::Sha256),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Literal(String),
    Field(Field),
}

/// A parsed `MatchPattern=` word such as `docker-@v-x86-64.raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    elements: Vec<Element>,
}

impl Pattern {
    /// Accepts what systemd's `pattern_valid()` accepts, minus `/` (subdirectory patterns are
    /// not supported by rdext).
    pub fn parse(text: &str) -> Result<Pattern, SysupdateError> {
        Pattern::split(text).map_err(|reason| SysupdateError::Pattern {
            pattern: text.to_string(),
            reason,
        })
    }

    /// [`Pattern::parse`] with a bare reason, for callers that add file and key themselves.
    pub(super) fn split(text: &str) -> Result<Pattern, &'static str> {
        let mut elements: Vec<Element> = Vec::new();
        let (mut at, mut after_literal) = (false, true);
        let mut seen = Vec::new();
        for c in text.chars() {
            if c == '@' && !at {
                at = true;
                continue;
            }
            if at && c != '@' {
                let field = FIELDS
                    .iter()
                    .find(|(l, _)| *l == c)
                    .map(|(_, f)| *f)
                    .ok_or("unknown @ wildcard")?;
                if seen.contains(&field) {
                    return Err("a wildcard appears twice");
                }
                if !after_literal {
                    return Err("two wildcards need a literal between them");
                }
                seen.push(field);
                elements.push(Element::Field(field));
                (at, after_literal) = (false, false);
                continue;
            }
            at = false; // "@@" is a literal "@"
            if c == '/' {
                return Err("'/' (subdirectories) is not supported by rdext");
            }
            if !(' '..='~').contains(&c) || "$*?[]!\\|".contains(c) {
                return Err("invalid character");
            }
            after_literal = true;
            match elements.last_mut() {
                Some(Element::Literal(l)) => l.push(c),
                _ => elements.push(Element::Literal(c.to_string())),
            }
        }
        if at {
            return Err("trailing @");
        }
        if !seen.contains(&Field::Version) {
            return Err("@v is missing");
        }
        Ok(Pattern {
            text: text.to_string(),
            elements,
        })
    }

    /// The pattern as written in the definition.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches systemd's non-greedy way; `None` also when a field does not parse (an invalid
    /// version, a 63-digit hash, a mode with setuid bits …).
    pub fn matches(&self, name: &str) -> Option<Instance> {
        let mut rest = name;
        let mut found = Instance::default();
        for (i, element) in self.elements.iter().enumerate() {
            match element {
                Element::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Element::Field(field) => {
                    let end = match self.elements.get(i + 1) {
                        Some(Element::Literal(next)) => rest.find(next.as_str())?,
                        _ => rest.len(),
                    };
                    capture(&mut found, *field, &rest[..end])?;
                    rest = &rest[end..];
                }
            }
        }
        Some(found)
    }

    /// Names an instance; fails when a wildcard has no value in `fields`.
    pub fn format(&self, fields: &Instance) -> Result<String, SysupdateError> {
        let mut out = String::new();
        for element in &self.elements {
            let field = match element {
                Element::Literal(l) => {
                    out.push_str(l);
                    continue;
                }
                Element::Field(f) => *f,
            };
            let m = &fields.meta;
            let bool01 = |b: bool| if b { "1" } else { "0" }.to_string();
            let value = match field {
                Field::Version => Some(fields.version.clone()).filter(|v| !v.is_empty()),
                Field::PartitionUuid => m.partition_uuid.map(|u| format!("{u:032x}")),
                Field::PartitionFlags => m.partition_flags.map(|f| format!("{f:x}")),
                Field::Mtime => m.mtime.map(|t| t.to_string()),
                Field::Mode => m.mode.map(|x| format!("{x:03o}")),
                Field::Size => m.size.map(|s| s.to_string()),
                Field::TriesDone => m.tries_done.map(|s| s.to_string()),
                Field::TriesLeft => m.tries_left.map(|s| s.to_string()),
                Field::NoAuto => m.no_auto.map(bool01),
                Field::ReadOnly => m.read_only.map(bool01),
                Field::GrowFs => m.growfs.map(bool01),
                Field::Sha256 => m.sha256.map(|h| crate::hex(&h)),
            };
            out.push_str(&value.ok_or_else(|| {
                SysupdateError::Format {
                    pattern: self.text.clone(),
                    field: FIELDS
                        .iter()
                        .find(|(_, f)| *f == field)
                        .map_or('?', |(c, _)| *c),
                }
            })?);
        }
        Ok(out)
    }
}

/// Stores one wildcard's text, or `None` when systemd would not accept it.
fn capture(found: &mut Instance, field: Field, text: &str) -> Option<()> {
    let m = &mut found.meta;
    match field {
        Field::Version => found.version = Some(text.to_string()).filter(|v| version_is_valid(v))?,
        Field::PartitionUuid => m.partition_uuid = Some(parse_id128(text)?),
        Field::PartitionFlags => m.partition_flags = Some(parse_u64(text, 16)?),
        Field::Mtime => {
            // Must fit a timespec and must not be systemd's "infinity".
            let t =
                parse_u64(text, 0).filter(|&t| t != u64::MAX && t / 1_000_000 <= i64::MAX as u64);
            m.mtime = Some(t?);
        }
        // No setuid/setgid/sticky or world-writable files through names.
        Field::Mode => m.mode = Some(parse_mode(text).filter(|x| x & !0o775 == 0)?),
        Field::Size => m.size = Some(parse_u64(text, 0).filter(|&x| x != u64::MAX)?),
        Field::TriesDone => m.tries_done = Some(parse_u64(text, 0).filter(|&x| x != u64::MAX)?),
        Field::TriesLeft => m.tries_left = Some(parse_u64(text, 0).filter(|&x| x != u64::MAX)?),
        Field::NoAuto => m.no_auto = Some(parse_boolean(text)?),
        Field::ReadOnly => m.read_only = Some(parse_boolean(text)?),
        Field::GrowFs => m.growfs = Some(parse_boolean(text)?),
        Field::Sha256 => {
            let bytes = parse_hex(text).filter(|b| b.len() == 32)?;
            m.sha256 = Some(bytes.try_into().ok()?);
        }
    }
    Some(())
}

/// systemd's `version_is_valid()`: a non-empty file-name part of `[A-Za-z0-9._,+-]`.
pub(super) fn version_is_valid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._,+-".contains(&b))
}

const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// systemd's `safe_atou64` (`base` 0) and `safe_atoux64` (16): leading whitespace, a sign
/// (`-` only for zero), and for base 0 the prefixes `0x`, `0o`, `0b` and `0` (octal).
pub(super) fn parse_u64(s: &str, base: u32) -> Option<u64> {
    let s = s.trim_start_matches(WHITESPACE);
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let prefix = |p: &str| {
        body.get(..2)
            .filter(|h| h.eq_ignore_ascii_case(p))
            .map(|_| &body[2..])
    };
    let (radix, digits) = match (base, prefix("0b"), prefix("0o"), prefix("0x")) {
        (0, Some(d), _, _) if body.len() == s.len() => (2, d),
        (0, _, Some(d), _) if body.len() == s.len() => (8, d),
        (0 | 16, _, _, Some(d)) => (16, d),
        (0, ..) if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        (0, ..) => (10, body),
        _ => (base, body),
    };
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()?;
    (!negative || v == 0).then_some(v)
}

/// systemd's `parse_mode()`: octal, no sign, at most `07777`.
pub(super) fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim_start_matches(WHITESPACE);
    if s.starts_with(['+', '-']) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|&m| m <= 0o7777)
}

/// systemd's `parse_boolean()`.
pub(super) fn parse_boolean(s: &str) -> Option<bool> {
    let s = s.to_ascii_lowercase();
    match s.as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// `sd_id128_from_string()`: 32 hex digits, optionally in 8-4-4-4-12 UUID form.
pub(super) fn parse_id128(s: &str) -> Option<u128> {
    let plain: String = match s.len() {
        32 => s.to_string(),
        36 if [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-') => s.replace('-', ""),
        _ => return None,
    };
    let bytes = parse_hex(&plain).filter(|b| b.len() == 16)?;
    Some(bytes.iter().fold(0, |acc, &b| acc << 8 | u128::from(b)))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(pattern: &str, name: &str) -> Option<String> {
        Pattern::parse(pattern)
            .unwrap()
            .matches(name)
            .map(|i| i.version)
    }

    #[test]
    fn match_table() {
        let h = "a".repeat(64);
        let hashed = format!("x-1.0-{h}.raw");
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<&str>)] = &[
            ("docker-@v-x86-64.raw", "docker-24.0.9-x86-64.raw", Some("24.0.9")),
            ("docker-@v-x86-64.raw", "docker-24.0.9-arm64.raw", None),
            ("docker-@v-x86-64.raw", "docker_compose-2.0-x86-64.raw", None),
            // Non-greedy: the version stops at the first "-x86-64.raw" …
            ("docker-@v-x86-64.raw", "docker-1-x86-64.raw-x86-64.raw", Some("1")),
            // … so a later wildcard gets the rest, where a greedy match would have succeeded.
            ("x-@v-@l.raw", "x-1.0-rc1-3.raw", None),
            ("x-@v-@l.raw", "x-1.0-3.raw", Some("1.0")),
            ("kubernetes-v1.32.@v-x86-64.raw", "kubernetes-v1.32.2-x86-64.raw", Some("2")),
            ("kubernetes-v1.32.@v-x86-64.raw", "kubernetes-v1.33.0-x86-64.raw", None),
            // A hyphen inside the version is fine as long as the next literal comes later.
            ("x_@v.raw", "x_1.0-rc1.raw", Some("1.0-rc1")),
            ("x-@v-x86-64.raw", "x-1.0-rc1-x86-64.raw", Some("1.0-rc1")),
            // Trailing text after the last literal is accepted, as in systemd.
            ("x-@v.raw", "x-1.raw.sig", Some("1")),
            ("x-@v.raw", "x-1.ra", None),
            // A trailing @v takes everything and must still be a valid version.
            ("x-@v", "x-1.2_3,4+5", Some("1.2_3,4+5")),
            ("x-@v", "x-1 2", None),
            ("x-@v", "x-1~rc1", None),
            ("x-@v", "x-", None),
            ("x-@v.raw", "x-.raw", None),
            ("@v", "anything.at.all", Some("anything.at.all")),
            ("a@@b-@v", "a@b-3", Some("3")),
            ("x-@v-@h.raw", &hashed, Some("1.0")),
            ("x-@v-@h.raw", "x-1.0-abc.raw", None),
            ("x-@v+@l-@d.raw", "x-2+3-0.raw", Some("2")),
            ("x-@v+@l-@d.raw", "x-2+three-0.raw", None),
            ("x-@v_@m", "x-1_0755", Some("1")),
            ("x-@v_@m", "x-1_0777", None),
            ("x-@v_@m", "x-1_4755", None),
            ("x-@v_@r", "x-1_yes", Some("1")),
            ("x-@v_@r", "x-1_maybe", None),
        ];
        for (pattern, name, want) in table {
            assert_eq!(
                version(pattern, name).as_deref(),
                *want,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn captured_fields() {
        let p = Pattern::parse("x-@v+@l-@d_@m_@t_@s_@f_@u_@h").unwrap();
        let h = "0123456789abcdef".repeat(4);
        let name = format!(
            "x-7+0x10-010_644_1700000000000000_4096_ff_{}_{h}",
            "ab".repeat(16)
        );
        let i = p.matches(&name).unwrap();
        assert_eq!(i.version, "7");
        assert_eq!(i.meta.tries_left, Some(16));
        assert_eq!(i.meta.tries_done, Some(8)); // a leading 0 is octal, as in systemd
        assert_eq!(i.meta.mode, Some(0o644));
        assert_eq!(i.meta.mtime, Some(1_700_000_000_000_000));
        assert_eq!(i.meta.size, Some(4096));
        assert_eq!(i.meta.partition_flags, Some(0xff));
        assert_eq!(i.meta.partition_uuid, Some(u128::from_be_bytes([0xab; 16])));
        assert_eq!(i.meta.sha256.unwrap()[..2], [0x01, 0x23]);
        let back = p.format(&i).unwrap();
        assert_eq!(
            back,
            format!(
                "x-7+16-8_644_1700000000000000_4096_ff_{}_{h}",
                "ab".repeat(16)
            )
        );
    }

    #[test]
    fn invalid_patterns() {
        for (p, reason) in [
            ("x.raw", "@v is missing"),
            ("x-@v@l.raw", "two wildcards need a literal between them"),
            ("x-@v-@v.raw", "a wildcard appears twice"),
            ("x-@v-@x.raw", "unknown @ wildcard"),
            ("x-@v@", "trailing @"),
            ("x-@v*.raw", "invalid character"),
            ("x-@v\u{e9}.raw", "invalid character"),
            (
                "dir/x-@v.raw",
                "'/' (subdirectories) is not supported by rdext",
            ),
        ] {
            assert_eq!(Pattern::split(p).unwrap_err(), reason, "{p}");
        }
        let e = Pattern::parse("x").unwrap_err().to_string();
        assert_eq!(e, "invalid MatchPattern \"x\": @v is missing");
    }

    #[test]
    fn format_needs_every_field() {
        let p = Pattern::parse("x-@v+@l.raw").unwrap();
        let mut i = Instance {
            version: "1.2".into(),
            ..Instance::default()
        };
        let e = p.format(&i).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot name a new instance after \"x-@v+@l.raw\": no value for @l"
        );
        i.meta.tries_left = Some(3);
        assert_eq!(p.format(&i).unwrap(), "x-1.2+3.raw");
        assert_eq!(
            Pattern::parse("a@@@v").unwrap().format(&i).unwrap(),
            "a@1.2"
        );
    }

    #[test]
    fn number_parsing_like_systemd() {
        assert_eq!(parse_u64(" 12", 0), Some(12));
        assert_eq!(parse_u64("+12", 0), Some(12));
        assert_eq!(parse_u64("-0", 0), Some(0));
        assert_eq!(parse_u64("-1", 0), None);
        assert_eq!(parse_u64("0x1f", 0), Some(31));
        assert_eq!(parse_u64("0b101", 0), Some(5));
        assert_eq!(parse_u64("0o17", 0), Some(15));
        assert_eq!(parse_u64("017", 0), Some(15));
        assert_eq!(parse_u64("08", 0), None);
        assert_eq!(parse_u64("1f", 16), Some(31));
        assert_eq!(parse_u64("0x", 16), None);
        assert_eq!(parse_u64("", 0), None);
        assert_eq!(parse_u64("+-1", 0), None);
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("+644"), None);
        assert_eq!(parse_mode("17777"), None);
        assert_eq!(parse_boolean("On"), Some(true));
        assert_eq!(parse_boolean("nope"), None);
        let uuid = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
        assert_eq!(parse_id128(uuid), parse_id128(&uuid.replace('-', "")));
        assert_eq!(parse_id128("4f68bce3e8cd4db196e7fbcaf984b70"), None);
    }
}
