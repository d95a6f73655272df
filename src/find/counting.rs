//! UAPI boot counting for `.v/` entries, as systemd-boot counts boot entries and vpick reads
//! them: `NAME_VERSION+LEFT[-DONE].raw` has LEFT tries left and DONE done. An entry picked for a
//! boot is renamed to count the try (`+LEFT-1`, `-DONE+1`) before it is merged; once the boot
//! is good (`boot-complete.target` reached) the counter is removed; an entry with `+0` left is
//! passed over by discovery, so the previous version is picked. Plain name arithmetic here; the
//! renames are done by the merge through `sys`.

/// A name's boot counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// Tries left.
    pub left: u32,
    /// Tries done, when the name says.
    pub done: Option<u32>,
}

/// Split `stem+LEFT[-DONE]suffix` into the stem, the counter and the suffix (`.raw` or empty,
/// for directories). None when the name carries no counter.
fn split(name: &str) -> Option<(&str, Counter, &str)> {
    let (body, suffix) = match name.strip_suffix(".raw") {
        Some(body) => (body, ".raw"),
        None => (name, ""),
    };
    let (stem, counter) = body.rsplit_once('+')?;
    let (left, done) = match counter.split_once('-') {
        Some((left, done)) => (left, Some(done)),
        None => (counter, None),
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let counter = Counter {
        left: number(left)?,
        done: match done {
            Some(d) => Some(number(d)?),
            None => None,
        },
    };
    (!stem.is_empty()).then_some((stem, counter, suffix))
}

/// The counter of an entry name, if it has one.
pub fn counter(name: &str) -> Option<Counter> {
    split(name).map(|(_, c, _)| c)
}

/// The name that records one more try, or None when there is no counter or no try left.
pub fn next_try(name: &str) -> Option<String> {
    let (stem, c, suffix) = split(name)?;
    let left = c.left.checked_sub(1)?;
    let done = c.done.unwrap_or(0).saturating_add(1);
    Some(format!("{stem}+{left}-{done}{suffix}"))
}

/// The name without its counter: the version is good.
pub fn blessed(name: &str) -> Option<String> {
    let (stem, _, suffix) = split(name)?;
    Some(format!("{stem}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_a_try() {
        assert_eq!(next_try("foo_2+3.raw").as_deref(), Some("foo_2+2-1.raw"));
        assert_eq!(next_try("foo_2+3-0.raw").as_deref(), Some("foo_2+2-1.raw"));
        assert_eq!(
            next_try("foo_2_x86-64+1-4.raw").as_deref(),
            Some("foo_2_x86-64+0-5.raw")
        );
        assert_eq!(
            next_try("foo_2+1"),
            Some("foo_2+0-1".to_string()),
            "directories"
        );
        assert_eq!(next_try("foo_2+0-3.raw"), None, "no try left");
        assert_eq!(next_try("foo_2.raw"), None, "not counted");
        assert_eq!(next_try("foo_1.2-rc+x.raw"), None);
        assert_eq!(next_try("+3.raw"), None);
    }

    #[test]
    fn blessing_and_reading() {
        assert_eq!(blessed("foo_2+2-1.raw").as_deref(), Some("foo_2.raw"));
        assert_eq!(blessed("foo_2+0-3").as_deref(), Some("foo_2"));
        assert_eq!(blessed("foo_2.raw"), None);
        assert_eq!(
            counter("foo_2+0-3.raw"),
            Some(Counter {
                left: 0,
                done: Some(3)
            })
        );
        assert_eq!(
            counter("foo_2+5.raw"),
            Some(Counter {
                left: 5,
                done: None
            })
        );
        assert_eq!(counter("foo_2+5-.raw"), None);
    }
}
