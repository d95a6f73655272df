//! Kernel command line lookup with the rules dracut modules rely on (last
//! occurrence wins, a bare key means "1"), so rdext honours `rd.*` options the
//! same way the rest of the initramfs does.

/// A parsed kernel command line.
#[derive(Debug, Clone, Default)]
pub struct KernelCmdline {
    params: Vec<(String, Option<String>)>,
}

impl KernelCmdline {
    /// Split like the kernel does: whitespace separates words, double quotes
    /// group (and are removed), the first `=` splits key from value. Never
    /// fails, since a broken command line must not stop the boot.
    pub fn parse(text: &str) -> Self {
        let mut params = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        // The trailing space flushes the last word.
        for c in text.chars().chain([' ']) {
            match c {
                '"' => quoted = !quoted,
                c if c.is_ascii_whitespace() && !quoted => {
                    if !word.is_empty() {
                        params.push(split_param(&word));
                        word.clear();
                    }
                }
                c => word.push(c),
            }
        }
        Self { params }
    }

    /// The value of the LAST occurrence of `key`, so later options override
    /// earlier ones; a bare key (no `=`) counts as "1". None if absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| keys_equal(k, key))
            .map(|(_, v)| v.as_deref().unwrap_or("1"))
    }

    /// The values of every occurrence of `key`, in order, for options that may repeat; a bare
    /// key counts as "1".
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| keys_equal(k, key))
            .map(|(_, v)| v.as_deref().unwrap_or("1"))
            .collect()
    }

    /// The `MODULE.PARAM=VALUE` options for `module`, as the parameter
    /// string `finit_module` takes: the kernel leaves these to whoever loads
    /// the module (kmod does the same).
    pub fn module_options(&self, module: &str) -> String {
        let prefix = format!("{}.", module.replace('-', "_"));
        let mut out = Vec::new();
        for (key, value) in &self.params {
            let key = key.replace('-', "_");
            let Some(param) = key.strip_prefix(&prefix) else {
                continue;
            };
            match value {
                Some(v) if v.contains(char::is_whitespace) => out.push(format!("{param}=\"{v}\"")),
                Some(v) => out.push(format!("{param}={v}")),
                None => out.push(param.to_string()),
            }
        }
        out.join(" ")
    }

    /// `get` parsed as a systemd boolean; Some(Err) message if the value is not
    /// a boolean, so the caller can warn instead of guessing.
    pub fn get_bool(&self, key: &str) -> Option<Result<bool, String>> {
        self.get(key).map(|value| {
            parse_bool(value).ok_or_else(|| format!("{key}={value:?} is not a boolean"))
        })
    }
}

/// systemd's boolean spellings: 1 yes y true t on / 0 no n false f off (ASCII
/// case-insensitive), so rdext accepts whatever users already write for
/// systemd options.
pub fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const FALSE: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    let is_in = |set: &[&str]| set.iter().any(|w| w.eq_ignore_ascii_case(s));
    if is_in(&TRUE) {
        Some(true)
    } else if is_in(&FALSE) {
        Some(false)
    } else {
        None
    }
}

fn split_param(word: &str) -> (String, Option<String>) {
    match word.split_once('=') {
        Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
        None => (word.to_owned(), None),
    }
}

/// The kernel treats `-` and `_` in parameter names as the same character.
fn keys_equal(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

#[cfg(test)]
mod tests {
    use super::{parse_bool, KernelCmdline};

    #[test]
    fn module_options_for_finit_module() {
        let c = KernelCmdline::parse(
            "quiet dm_verity.require_signatures=1 dm-verity.x=\"a b\" loop.max_loop=4 dm_verityx.y=2 dm_verity.flag\n",
        );
        assert_eq!(
            c.module_options("dm-verity"),
            "require_signatures=1 x=\"a b\" flag"
        );
        assert_eq!(c.module_options("loop"), "max_loop=4");
        assert_eq!(c.module_options("erofs"), "");
    }

    fn get(text: &str, key: &str) -> Option<String> {
        KernelCmdline::parse(text).get(key).map(str::to_owned)
    }

    #[test]
    fn repeated_keys_keep_every_value() {
        let c = KernelCmdline::parse("rdext.pull=a:b:c quiet rdext.pull=d:e:http://f rdext-pull");
        assert_eq!(c.get_all("rdext.pull"), ["a:b:c", "d:e:http://f"]);
        assert_eq!(c.get_all("rdext_pull"), ["1"]);
        assert!(c.get_all("rd.systemd.pull").is_empty());
    }

    #[test]
    fn bare_key_is_one() {
        assert_eq!(get("quiet rdext splash", "rdext").as_deref(), Some("1"));
    }

    #[test]
    fn last_occurrence_wins() {
        assert_eq!(get("rdext=0 rdext=1", "rdext").as_deref(), Some("1"));
        assert_eq!(get("rdext=1 rdext", "rdext").as_deref(), Some("1"));
        assert_eq!(get("rdext rdext=0", "rdext").as_deref(), Some("0"));
    }

    #[test]
    fn quoting() {
        let cmdline = KernelCmdline::parse(r#""a=b c" d="e f" g=x"y z"w "h" i="""#);
        assert_eq!(cmdline.get("a"), Some("b c"));
        assert_eq!(cmdline.get("d"), Some("e f"));
        assert_eq!(cmdline.get("g"), Some("xy zw"));
        assert_eq!(cmdline.get("h"), Some("1"));
        assert_eq!(cmdline.get("i"), Some(""));
        assert_eq!(cmdline.get("c"), None);
        assert_eq!(cmdline.get("f\""), None);
    }

    #[test]
    fn empty_absent_and_extra_equals() {
        let cmdline = KernelCmdline::parse("root=/dev/sda1 rd.x= opt=a=b");
        assert_eq!(cmdline.get("rd.x"), Some(""));
        assert_eq!(cmdline.get("opt"), Some("a=b"));
        assert_eq!(cmdline.get("rd.y"), None);
        assert_eq!(cmdline.get("root=/dev/sda1"), None);
        assert_eq!(KernelCmdline::parse("").get("root"), None);
    }

    #[test]
    fn dash_and_underscore_are_equal_in_keys_only() {
        let cmdline = KernelCmdline::parse("rd.foo_bar=a-b rd.baz-qux");
        assert_eq!(cmdline.get("rd.foo-bar"), Some("a-b"));
        assert_eq!(cmdline.get("rd.foo_bar"), Some("a-b"));
        assert_eq!(cmdline.get("rd.baz_qux"), Some("1"));
        assert_eq!(cmdline.get("rd.foo.bar"), None);
        assert_eq!(cmdline.get("rd.foo_ba"), None);
    }

    #[test]
    fn proc_cmdline_whitespace() {
        let cmdline = KernelCmdline::parse("BOOT_IMAGE=/vmlinuz\trd.a=1\n rdext=0\n");
        assert_eq!(cmdline.get("rd.a"), Some("1"));
        assert_eq!(cmdline.get("rdext"), Some("0"));
    }

    #[test]
    fn get_bool() {
        let cmdline = KernelCmdline::parse("a b=off c=YES d=maybe e=");
        assert_eq!(cmdline.get_bool("a"), Some(Ok(true)));
        assert_eq!(cmdline.get_bool("b"), Some(Ok(false)));
        assert_eq!(cmdline.get_bool("c"), Some(Ok(true)));
        assert!(cmdline
            .get_bool("d")
            .unwrap()
            .unwrap_err()
            .contains("maybe"));
        assert!(cmdline.get_bool("e").unwrap().is_err());
        assert_eq!(cmdline.get_bool("z"), None);
    }

    #[test]
    fn bool_spellings() {
        for s in ["1", "yes", "y", "true", "t", "on", "On", "TRUE"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["0", "no", "n", "false", "f", "off", "OFF", "No"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        for s in ["", "2", "yess", " on", "enable"] {
            assert_eq!(parse_bool(s), None, "{s}");
        }
    }
}
