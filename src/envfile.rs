//! systemd's env-file dialect (os-release, extension-release, `rdext.conf`, sysupdate's
//! os-release reads): shared by every stage that reads such a file, so it sits below them all.

/// Why an os-release style file was refused as a whole; systemd then reads no data from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// systemd refuses files with embedded NUL bytes rather than guess where they end.
    #[error("file contains a NUL byte")]
    NulByte,
    /// A key or value that is not UTF-8 makes systemd drop the whole file, not just that line.
    #[error("invalid UTF-8 in the assignment on line {line}")]
    InvalidUtf8 {
        /// 1-based line on which the assignment starts.
        line: usize,
    },
}

/// The assignments of an os-release style file, in the order keys first appear.
///
/// Keys are stored exactly as written (systemd does not check that they are valid variable names
/// when it loads release files), and a repeated key replaces the earlier value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pairs: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
}

impl EnvFile {
    /// Parses with systemd's env-file rules so that exotic quoting gives the same values as there.
    ///
    /// Bytes, not `&str`, because invalid UTF-8 is only an error inside assignments: a Latin-1
    /// comment is fine for systemd and must be fine here. Lines without `=` are silently skipped,
    /// CR counts as a line end, quotes open only at the start of a value (or right after a closing
    /// quote), and an unterminated quote runs to the end of the file.
    pub fn parse(data: impl AsRef<[u8]>) -> Result<EnvFile, ParseError> {
        let data = data.as_ref();
        if data.contains(&0) {
            return Err(ParseError::NulByte);
        }
        let mut env = EnvFile::default();
        let (mut key, mut value) = (Vec::new(), Vec::new());
        // Where trailing blanks of the key / unquoted value start, if they are still trailing.
        let (mut key_ws, mut value_ws) = (None, None);
        let (mut line, mut key_line) = (1, 1);
        let mut state = State::PreKey;
        for &c in data {
            let newline = c == b'\n' || c == b'\r';
            let blank = c == b' ' || c == b'\t';
            state = match state {
                State::PreKey if c == b'#' || c == b';' => State::Comment,
                State::PreKey if newline || blank => State::PreKey,
                State::PreKey => {
                    (key, key_ws, key_line) = (vec![c], None, line);
                    State::Key
                }
                State::Key if newline => State::PreKey,
                State::Key if c == b'=' => {
                    (value, value_ws) = (Vec::new(), None);
                    State::PreValue
                }
                State::Key => {
                    track_blank(&mut key_ws, blank, key.len());
                    key.push(c);
                    State::Key
                }
                State::PreValue | State::Value if newline => {
                    env.push(cut(&key, key_ws), cut(&value, value_ws), key_line)?;
                    State::PreKey
                }
                State::PreValue if c == b'\'' => State::Single,
                State::PreValue if c == b'"' => State::Double,
                State::PreValue | State::Value if c == b'\\' => {
                    value_ws = None;
                    State::ValueEscape
                }
                State::PreValue if blank => State::PreValue,
                State::PreValue | State::Value => {
                    track_blank(&mut value_ws, blank, value.len());
                    value.push(c);
                    State::Value
                }
                State::ValueEscape => {
                    if !newline {
                        value.push(c);
                    }
                    State::Value
                }
                State::Single if c == b'\'' => State::PreValue,
                State::Double if c == b'"' => State::PreValue,
                State::Double if c == b'\\' => State::DoubleEscape,
                State::Single | State::Double => {
                    value.push(c);
                    state
                }
                State::DoubleEscape => {
                    // Only shell-special characters lose their backslash; `\<LF>` joins lines.
                    if c != b'\n' {
                        if !b"\"\\`$".contains(&c) {
                            value.push(b'\\');
                        }
                        value.push(c);
                    }
                    State::Double
                }
                State::Comment if newline => State::PreKey,
                State::Comment => State::Comment,
            };
            if c == b'\n' {
                line += 1;
            }
        }
        if !matches!(state, State::PreKey | State::Key | State::Comment) {
            env.push(cut(&key, key_ws), cut(&value, value_ws), key_line)?;
        }
        Ok(env)
    }

    fn push(&mut self, key: &[u8], value: &[u8], line: usize) -> Result<(), ParseError> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec());
        let (Ok(key), Ok(value)) = (text(key), text(value)) else {
            return Err(ParseError::InvalidUtf8 { line });
        };
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((key, value)),
        }
        Ok(())
    }

    /// Whether the file assigned nothing at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of the last assignment to `key`.
    ///
    /// `KEY=` yields `Some("")`: whether empty means unset depends on the key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Drops trailing blanks recorded by [`track_blank`].
fn cut(bytes: &[u8], blanks_from: Option<usize>) -> &[u8] {
    &bytes[..blanks_from.unwrap_or(bytes.len())]
}

/// Remembers where a run of blanks began, forgetting it once a non-blank follows.
fn track_blank(start: &mut Option<usize>, blank: bool, len: usize) {
    if !blank {
        *start = None;
    } else if start.is_none() {
        *start = Some(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_follows_systemd_env_file_rules() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("  A  =  x y \t\n", "A", Some("x y")),
            ("# A=1\n ;A=2\nA", "A", None),
            ("A=1 # not a comment", "A", Some("1 # not a comment")),
            // A comment never continues over an escaped newline (systemd v254+).
            ("#x\\\nA=1", "A", Some("1")),
            ("A=", "A", Some("")),
            ("A=1\r\nA=2\r\n", "A", Some("2")),
            ("FOO BAR = z", "FOO BAR", Some("z")),
            (r#"A='a \"b\" \$c'"#, "A", Some(r#"a \"b\" \$c"#)),
            (
                r#"A="q\" b\\ d\$ t\` n\n x\a""#,
                "A",
                Some(r#"q" b\ d$ t` n\n x\a"#),
            ),
            ("A=\"one\\\ntwo\"", "A", Some("onetwo")),
            ("A=\"multi\nline\"\nB=2", "A", Some("multi\nline")),
            // Parts after a closing quote join, blanks between them are dropped ...
            (r#"A="a" 'b'  c d  "#, "A", Some("abc d")),
            // ... but once a value has started unquoted, quotes are ordinary characters.
            (r#"A=a"b c""#, "A", Some(r#"a"b c""#)),
            ("A='open\nB=1", "A", Some("open\nB=1")),
            (r"A=a\ b\\c\'d\x", "A", Some(r"a b\c'dx")),
            ("A=one\\\ntwo\nB=1", "A", Some("onetwo")),
            ("A=x\\ \nB=1", "A", Some("x ")),
            ("A=$HOME${X}", "A", Some("$HOME${X}")),
        ];
        for (text, key, want) in cases {
            assert_eq!(EnvFile::parse(text).unwrap().get(key), *want, "{text:?}");
        }
        assert_eq!(EnvFile::parse("A=1\nB=2\nA=3").unwrap().pairs.len(), 2);
        assert_eq!(EnvFile::parse("A=1\0"), Err(ParseError::NulByte));
        let bad = EnvFile::parse(b"A=1\nB=\xff\n");
        assert_eq!(bad, Err(ParseError::InvalidUtf8 { line: 2 }));
        let latin1_comment = EnvFile::parse(b"# caf\xe9\nA=1").unwrap();
        assert_eq!(latin1_comment.get("A"), Some("1"));
    }
}
