//! Version ordering per the UAPI "Version Format Specification", so that rdext
//! ranks extension image versions exactly like systemd (`strverscmp_improved`,
//! `systemd-analyze compare-versions`) would.

use std::cmp::Ordering;

/// Compare two version strings the way systemd does (newer is Greater).
///
/// Any string is accepted: bytes outside `[A-Za-z0-9~^.-]` only act as
/// segment separators, so malformed names still get a stable order instead of
/// an error.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        a = skip_ignored(a);
        b = skip_ignored(b);

        // '~' is checked before the end of input so that "1~rc" < "1".
        if let Some(order) = prefix(&mut a, &mut b, b'~') {
            return order;
        }
        if a.is_empty() || b.is_empty() {
            // Any remainder is newer, as the spec says; systemd built with a
            // signed `char` disagrees when it starts with a non-ASCII byte.
            return a.cmp(b);
        }
        for sep in [b'-', b'^', b'.'] {
            if let Some(order) = prefix(&mut a, &mut b, sep) {
                return order;
            }
        }

        let (order, rest_a, rest_b) = if starts_with_digit(a) || starts_with_digit(b) {
            let (run_a, rest_a) = split_run(a, u8::is_ascii_digit);
            let (run_b, rest_b) = split_run(b, u8::is_ascii_digit);
            // A number is newer than a missing one ("1.0" > "1.a", "1..0" < "1.0").
            let order = (!run_a.is_empty()).cmp(&!run_b.is_empty()).then_with(|| {
                let (x, y) = (strip_zeros(run_a), strip_zeros(run_b));
                (x.len(), x).cmp(&(y.len(), y))
            });
            (order, rest_a, rest_b)
        } else {
            let (run_a, rest_a) = split_run(a, u8::is_ascii_alphabetic);
            let (run_b, rest_b) = split_run(b, u8::is_ascii_alphabetic);
            // Lexicographic slice order is what we want: bytewise, then longer wins.
            (run_a.cmp(run_b), rest_a, rest_b)
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
}

fn skip_ignored(s: &[u8]) -> &[u8] {
    let meaningful = |c: &u8| c.is_ascii_alphanumeric() || b"~-^.".contains(c);
    let n = s.iter().take_while(|c| !meaningful(c)).count();
    &s[n..]
}

/// A side carrying `sep` where the other does not is older; a shared `sep` is
/// consumed from both.
fn prefix(a: &mut &[u8], b: &mut &[u8], sep: u8) -> Option<Ordering> {
    match (a.first() == Some(&sep), b.first() == Some(&sep)) {
        (true, true) => {
            *a = &a[1..];
            *b = &b[1..];
            None
        }
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => None,
    }
}

fn starts_with_digit(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_digit)
}

fn split_run(s: &[u8], class: fn(&u8) -> bool) -> (&[u8], &[u8]) {
    s.split_at(s.iter().take_while(|c| class(c)).count())
}

fn strip_zeros(s: &[u8]) -> &[u8] {
    &s[s.iter().take_while(|&&c| c == b'0').count()..]
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::{Equal, Greater, Less};

    fn assert_older(older: &str, newer: &str) {
        assert_eq!(compare(older, newer), Less, "{older:?} < {newer:?}");
        assert_eq!(compare(newer, older), Greater, "{newer:?} > {older:?}");
        assert_eq!(compare(older, older), Equal, "{older:?} == itself");
        assert_eq!(compare(newer, newer), Equal, "{newer:?} == itself");
    }

    fn assert_same(a: &str, b: &str) {
        assert_eq!(compare(a, b), Equal, "{a:?} == {b:?}");
        assert_eq!(compare(b, a), Equal, "{b:?} == {a:?}");
    }

    fn assert_chain(chain: &[&str]) {
        for (i, older) in chain.iter().enumerate() {
            for newer in &chain[i + 1..] {
                assert_older(older, newer);
            }
        }
    }

    #[test]
    fn spec_example_chain() {
        assert_chain(&[
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-a.1",
            "123-1",
            "123-1.1",
            "123^post1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124-1",
        ]);
    }

    #[test]
    fn systemd_test_chain() {
        assert_chain(&[
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ]);
    }

    #[test]
    fn pairs() {
        for (older, newer) in [
            ("1.0", "1.0.1"),
            ("1~", "1"),
            ("a", "b"),
            ("abc", "abcde"),
            ("1.9", "1.10"),
            ("foo-9", "foo-10"),
            ("", "1"),
            ("1.2-3", "1.2.3"),
            ("A", "a"),
            ("B", "a"),
            // systemd test-string-util.c
            ("123.45-67.88", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.89a"),
            ("123.45-67.ab", "123.45-67.89"),
            ("123.45-67.9", "123.45-67.89"),
            ("123.45-67", "123.45-67.89"),
            ("123.42-99.99", "123.45-67.89"),
            ("123-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123-45.67.89"),
            ("123~rc1-99.99", "123~rc2-67.89"),
            ("123~rc1-99.99", "123^aa2-67.89"),
            ("123-99.99", "123aa2-67.89"),
            ("123^45-67.89", "123.45-67.89"),
            ("123^aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123.ab2-67.89"),
            ("123", "123."),
            ("12_3", "123"),
            ("12", "12_3"),
            ("12.3", "12_3"),
            ("123", "123_0"),
            ("123..0", "123.0"),
            ("~", ""),
            // rpm cases as adopted by systemd
            ("10.1xyz", "10xyz"),
            ("xyz.4", "8"),
            ("6.0", "6.0.rc1"),
            ("4.999.9", "5.0"),
            ("2.0", "2_0"),
            ("1.0~rc1~git123", "1.0~rc1"),
            ("1.0", "1.0^"),
            ("1.0^git1", "1.01"),
            ("1.0^20160101", "1.0.1"),
            ("1.0^git1~pre", "1.0^git1"),
            ("1.fc17", "1b.fc17"),
            // spec examples
            ("bar-123", "foo-123"),
            ("123.a", "123.b"),
            ("0", "0."),
            ("~", "0"),
            ("1_", "1.2"),
            ("1.3.3", "1_2_3"),
        ] {
            assert_older(older, newer);
        }
    }

    #[test]
    fn equivalent() {
        for (a, b) in [
            ("0", "00"),
            ("5.2", "5.02"),
            ("1_2", "1_2"),
            ("10.0001", "10.1"),
            ("123_aa2-67.89", "123aa+2-67.89"),
            ("", "_"),
            ("_0_", "0"),
            ("~", "~"),
            ("a+", "a_"),
            ("1.1.α", "1.1.ββ"),
            ("systemd-123", "systemd-123"),
        ] {
            assert_same(a, b);
        }
    }
}
