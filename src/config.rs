//! rdext's settings: the kernel command line (`rdext.KEY=VALUE`), then the
//! initrd's `/etc/rdext.conf`, then the target root's `etc/rdext.conf`
//! (`KEY=VALUE` lines, os-release syntax), first one to set a key wins.
//!
//! The initrd is part of the verified boot chain while the target's `/etc`
//! is writable by the running system, so the initrd's file outranks it.

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

/// The layered settings.
#[derive(Debug)]
pub struct Settings {
    cmdline: KernelCmdline,
    layers: Vec<(Source, EnvFile)>,
}

impl Settings {
    /// Layer the command line over the files that exist and parse; an
    /// unreadable or malformed file is reported and skipped.
    pub fn load(cmdline: KernelCmdline, files: &[&Path]) -> Settings {
        let mut layers = Vec::new();
        for path in files {
            match std::fs::read(path) {
                Ok(bytes) => match EnvFile::parse(bytes) {
                    Ok(env) => layers.push((Source::File(path.display().to_string()), env)),
                    Err(e) => log::warn!("ignoring {}: {e}", path.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("ignoring {}: {e}", path.display()),
            }
        }
        Settings { cmdline, layers }
    }

    /// The value of `key` (`rdext.KEY` on the command line, `KEY` in files).
    pub fn get(&self, key: &str) -> Option<Setting> {
        if let Some(value) = self.cmdline.get(&format!("rdext.{key}")) {
            return Some(Setting {
                value: value.to_string(),
                source: Source::Cmdline,
            });
        }
        self.layers.iter().find_map(|(source, env)| {
            env.get(key).map(|value| Setting {
                value: value.to_string(),
                source: source.clone(),
            })
        })
    }

    /// Every file's value of `key`, in precedence order, for settings that add up rather than
    /// override (`pull`).
    pub fn file_values(&self, key: &str) -> Vec<Setting> {
        self.layers
            .iter()
            .filter_map(|(source, env)| {
                env.get(key).map(|value| Setting {
                    value: value.to_string(),
                    source: source.clone(),
                })
            })
            .collect()
    }

    /// The kernel command line the settings were made from.
    pub fn cmdline(&self) -> &KernelCmdline {
        &self.cmdline
    }

    /// A comma- or space-separated list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|s| {
                s.value
                    .split([',', ' '])
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
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
    fn malformed_file_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad.conf");
        std::fs::write(&bad, b"policy=any\0\n").unwrap();
        let s = Settings::load(KernelCmdline::parse(""), &[bad.as_path()]);
        assert_eq!(s.get("policy"), None);
    }
}
