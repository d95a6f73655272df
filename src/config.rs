//! rdext's settings: the kernel command line (`rdext.KEY=VALUE`), then the
//! configuration files (`KEY=VALUE` lines, os-release syntax), first one to
//! set a key wins.
//!
//! In the initrd the files are the initrd's own `/etc/rdext.conf`; the
//! target root's `etc/rdext.conf` is writable by the running system, so it
//! is a separate, lesser layer: it may set only [`TARGET_MAY_SET`] outright,
//! and the trust-relevant keys (policy, required, download) only through
//! [`Settings::target`], which the callers use to tighten, never to loosen.
//! After boot, the root's file is the system's own configuration.

use std::path::Path;

use crate::cmdline::KernelCmdline;
use crate::envfile::EnvFile;

/// Where a setting came from, for log messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `rdext.KEY=` on the kernel command line.
    Cmdline,
    /// A configuration file.
    File(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Cmdline => write!(f, "kernel command line"),
            Source::File(path) => write!(f, "{path}"),
        }
    }
}

/// A value and where it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The raw value.
    pub value: String,
    /// Its origin.
    pub source: Source,
}

/// Keys the target root's file may set outright in the initrd: they only
/// say what to fetch from where, which the target decides
/// anyway with its own sysupdate.d definitions and extension directories
/// (every download is verified, every image judged by the policy).
pub const TARGET_MAY_SET: [&str; 4] = ["mirror", "download_ca", "pull", "registry_auth"];

/// The layered settings.
#[derive(Debug)]
pub struct Settings {
    cmdline: KernelCmdline,
    layers: Vec<(Source, EnvFile)>,
    /// The target root's file, in the initrd: it may only tighten.
    target: Option<(Source, EnvFile)>,
}

impl Settings {
    /// Layer the command line over the files that exist and parse; an
    /// unreadable or malformed file is reported and skipped.
    pub fn load(cmdline: KernelCmdline, files: &[&Path]) -> Settings {
        Settings {
            cmdline,
            layers: files.iter().filter_map(|path| read_layer(path)).collect(),
            target: None,
        }
    }

    /// [`Self::load`] with the files' contents at hand: (name for
    /// messages, bytes) each.
    pub fn from_contents(cmdline: KernelCmdline, files: &[(&str, &[u8])]) -> Settings {
        Settings {
            cmdline,
            layers: files
                .iter()
                .filter_map(|(name, bytes)| parse_layer(name, bytes))
                .collect(),
            target: None,
        }
    }

    /// Add the target root's file as the lesser layer (in the initrd).
    pub fn with_target(mut self, path: &Path) -> Settings {
        self.target = read_layer(path);
        self
    }

    /// The value of `key` (`rdext.KEY` on the command line, `KEY` in files);
    /// from the target's file only for [`TARGET_MAY_SET`].
    pub fn get(&self, key: &str) -> Option<Setting> {
        if let Some(value) = self.cmdline.get(&format!("rdext.{key}")) {
            return Some(Setting {
                value: value.to_string(),
                source: Source::Cmdline,
            });
        }
        let target = self.target.iter().filter(|_| TARGET_MAY_SET.contains(&key));
        self.layers
            .iter()
            .chain(target)
            .find_map(|(source, env)| setting(source, env, key))
    }

    /// The first of `keys` set by the first source that sets any of them,
    /// so a more trusted source decides as a whole (`image_policy` and
    /// `policy` say the same thing in two ways); the target's file is not
    /// consulted.
    pub fn first_of<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, Setting)> {
        let from_cmdline = keys.iter().find_map(|key| {
            let value = self.cmdline.get(&format!("rdext.{key}"))?;
            let source = Source::Cmdline;
            Some((
                *key,
                Setting {
                    value: value.to_string(),
                    source,
                },
            ))
        });
        from_cmdline.or_else(|| {
            self.layers
                .iter()
                .find_map(|(source, env)| first_in(source, env, keys))
        })
    }

    /// Every file's value of `key`, in precedence order, for settings that add up rather than
    /// override (`pull`); the target's file only for [`TARGET_MAY_SET`].
    pub fn file_values(&self, key: &str) -> Vec<Setting> {
        let target = self.target.iter().filter(|_| TARGET_MAY_SET.contains(&key));
        self.layers
            .iter()
            .chain(target)
            .filter_map(|(source, env)| setting(source, env, key))
            .collect()
    }

    /// `key` as the target root's file sets it, for the caller to tighten
    /// the trusted value with; None outside the initrd.
    pub fn target(&self, key: &str) -> Option<Setting> {
        self.target_first_of(&[key]).map(|(_, setting)| setting)
    }

    /// [`Self::first_of`] for the target root's file alone.
    pub fn target_first_of<'k>(&self, keys: &[&'k str]) -> Option<(&'k str, Setting)> {
        let (source, env) = self.target.as_ref()?;
        first_in(source, env, keys)
    }

    /// The kernel command line the settings were made from.
    pub fn cmdline(&self) -> &KernelCmdline {
        &self.cmdline
    }

    /// A comma- or space-separated list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(|s| s.words()).unwrap_or_default()
    }
}

impl Setting {
    /// The value as a comma- or space-separated list.
    pub fn words(&self) -> Vec<String> {
        self.value
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A file that exists and parses; an unreadable or malformed one is
/// reported and skipped.
fn read_layer(path: &Path) -> Option<(Source, EnvFile)> {
    match std::fs::read(path) {
        Ok(bytes) => parse_layer(&path.display().to_string(), &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

/// A file's content that parses; a malformed one is reported and skipped.
fn parse_layer(name: &str, bytes: &[u8]) -> Option<(Source, EnvFile)> {
    match EnvFile::parse(bytes) {
        Ok(env) => Some((Source::File(name.to_string()), env)),
        Err(e) => {
            log::warn!("ignoring {name}: {e}");
            None
        }
    }
}

fn setting(source: &Source, env: &EnvFile, key: &str) -> Option<Setting> {
    env.get(key).map(|value| Setting {
        value: value.to_string(),
        source: source.clone(),
    })
}

fn first_in<'k>(source: &Source, env: &EnvFile, keys: &[&'k str]) -> Option<(&'k str, Setting)> {
    keys.iter()
        .find_map(|key| setting(source, env, key).map(|s| (*key, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_then_initrd_then_target() {
        let tmp = tempfile::tempdir().unwrap();
        let initrd = tmp.path().join("initrd.conf");
        let target = tmp.path().join("target.conf");
        std::fs::write(&initrd, "policy=verity\n").unwrap();
        std::fs::write(
            &target,
            "policy=any\nrequired=\"a, b\"\nmirror=http://10.0.2.2:8000\n",
        )
        .unwrap();
        let missing = tmp.path().join("missing.conf");
        let files = [initrd.as_path(), target.as_path(), missing.as_path()];

        let s = Settings::load(KernelCmdline::parse("quiet"), &files);
        assert_eq!(s.get("policy").unwrap().value, "verity");
        assert_eq!(
            s.get("policy").unwrap().source,
            Source::File(initrd.display().to_string())
        );
        assert_eq!(s.list("required"), ["a", "b"]);
        assert_eq!(
            s.get("mirror").unwrap().source.to_string(),
            target.display().to_string()
        );
        assert_eq!(s.get("download"), None);
        assert_eq!(
            s.file_values("policy")
                .iter()
                .map(|s| s.value.as_str())
                .collect::<Vec<_>>(),
            ["verity", "any"]
        );

        let s = Settings::load(
            KernelCmdline::parse("rdext.policy=signed rdext.required=c"),
            &files,
        );
        assert_eq!(
            s.get("policy").unwrap(),
            Setting {
                value: "signed".into(),
                source: Source::Cmdline
            }
        );
        assert_eq!(s.list("required"), ["c"]);
    }

    #[test]
    fn target_file_sets_only_what_it_may() {
        let tmp = tempfile::tempdir().unwrap();
        let initrd = tmp.path().join("initrd.conf");
        let target = tmp.path().join("target.conf");
        std::fs::write(&initrd, "download=missing\n").unwrap();
        std::fs::write(
            &target,
            "policy=any\nimage_policy=*\nrequired=a\ndownload=update\nmirror=http://m\ntrust_root_etc=1\n",
        )
        .unwrap();
        let s = Settings::load(KernelCmdline::parse(""), &[initrd.as_path()]).with_target(&target);
        assert_eq!(s.get("mirror").unwrap().value, "http://m");
        for key in ["policy", "image_policy", "required", "trust_root_etc"] {
            assert_eq!(s.get(key), None, "{key}");
        }
        assert_eq!(s.get("download").unwrap().value, "missing");
        assert_eq!(s.first_of(&["image_policy", "policy"]), None);
        assert_eq!(s.target("download").unwrap().value, "update");
        assert_eq!(
            s.target_first_of(&["image_policy", "policy"]).unwrap().0,
            "image_policy"
        );
        assert_eq!(s.target("required").unwrap().words(), ["a"]);
    }

    #[test]
    fn first_source_setting_either_key_decides() {
        let tmp = tempfile::tempdir().unwrap();
        let initrd = tmp.path().join("initrd.conf");
        std::fs::write(&initrd, "image_policy=root=verity\n").unwrap();
        let files = [initrd.as_path()];
        let s = Settings::load(KernelCmdline::parse("rdext.policy=signed"), &files);
        let (key, setting) = s.first_of(&["image_policy", "policy"]).unwrap();
        assert_eq!((key, setting.value.as_str()), ("policy", "signed"));
        let s = Settings::load(KernelCmdline::parse(""), &files);
        let (key, setting) = s.first_of(&["image_policy", "policy"]).unwrap();
        assert_eq!(
            (key, setting.source),
            ("image_policy", Source::File(initrd.display().to_string()))
        );
    }

    #[test]
    fn malformed_file_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad.conf");
        std::fs::write(&bad, b"policy=any\0\n").unwrap();
        let s = Settings::load(KernelCmdline::parse(""), &[bad.as_path()]);
        assert_eq!(s.get("policy"), None);
    }
}
