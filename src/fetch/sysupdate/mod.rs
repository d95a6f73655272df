//! systemd-sysupdate compatibility: transfer definitions, match patterns and update decisions.
//!
//! On first boot rdext downloads missing extension images exactly where and under the names
//! systemd-sysupdate would, so the booted system's `systemd-sysupdate -C NAME update` carries on
//! as if it had done the first install itself. This module owns everything that does not touch
//! the network: finding and parsing `sysupdate[.NAME].d/*.transfer|*.conf` below the target root
//! ([`load_components`]), the `@v` patterns ([`Pattern`]), and pure decisions over listings
//! ([`available_versions`], [`installed_versions`], [`plan_update`], [`vacuum`]).
//!
//! Semantics follow systemd v257–v260 (`sysupdate-transfer.c`, `sysupdate-pattern.c`,
//! `sysupdate-resource.c`, `sysupdate.c`). rdext is stricter where systemd only logs: a malformed
//! value or unknown specifier is an error for the whole component instead of a skipped line.
//! Only what the bakery and Flatcar use is supported (`url-file`/`regular-file` sources,
//! `regular-file` targets relative to the root, no `/` in patterns); anything else is refused
//! with [`SysupdateError::Unsupported`].

mod pattern;
mod plan;
mod transfer;

pub use pattern::{Instance, Metadata, Pattern};
pub use plan::{
    available_versions, installed_versions, plan_update, vacuum, Download, InstalledVersion,
    LinkUpdate, Mode, Release, SourceFile, TransferPlan, UpdatePlan,
};
pub use transfer::{Source, SourceKind, Target, Transfer};

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component as PathPart, Path, PathBuf};

/// Host facts that specifiers expand to; the caller reads them from the target root and the
/// running kernel so that this module stays free of os-release parsing.
///
/// Empty strings expand to nothing, as systemd does for missing os-release fields (on Flatcar
/// `%A` is empty because there is no `IMAGE_VERSION=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsInfo {
    /// `ID=` from the target's os-release (`%o`).
    pub id: String,
    /// `VERSION_ID=` (`%w`).
    pub version_id: String,
    /// `IMAGE_ID=` (`%M`).
    pub image_id: String,
    /// `IMAGE_VERSION=` (`%A`).
    pub image_version: String,
    /// `BUILD_ID=` (`%B`).
    pub build_id: String,
    /// `VARIANT_ID=` (`%W`).
    pub variant_id: String,
    /// Architecture in systemd notation, e.g. `x86-64` or `arm64` (`%a`).
    pub architecture: String,
    /// `uname -r` (`%v`).
    pub kernel_release: String,
    /// Machine ID as 32 lowercase hex digits (`%m`).
    pub machine_id: String,
    /// Full host name (`%H`); `%l` is its part before the first dot.
    pub hostname: String,
    /// `PRETTY_HOSTNAME=` (`%q`); systemd falls back to the short host name when it is unset.
    pub pretty_hostname: String,
    /// Boot ID as 32 lowercase hex digits (`%b`).
    pub boot_id: String,
}

/// Why transfer definitions could not be loaded or an instance could not be named.
#[derive(Debug, thiserror::Error)]
pub enum SysupdateError {
    /// A definition directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path as seen from the initramfs.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line that systemd also refuses to parse (broken section header, non-UTF-8 file).
    #[error("{}: {reason}", at(file, *line))]
    Syntax {
        /// Definition file, as a path inside the target root.
        file: String,
        /// 1-based line number (0 for the whole file).
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value that cannot be used; systemd would ignore the line, rdext refuses the file.
    #[error("{}: {key}={value}: {reason}", at(file, *line))]
    Value {
        /// Definition file, as a path inside the target root.
        file: String,
        /// 1-based line number, 0 when checked after parsing (then not shown).
        line: usize,
        /// `Section.Key` naming the setting.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid systemd setting that rdext does not implement.
    #[error("{file}: {key}={value} is not supported by rdext")]
    Unsupported {
        /// Definition file, as a path inside the target root.
        file: String,
        /// `Section.Key` naming the setting.
        key: String,
        /// The value that needs the missing feature.
        value: String,
    },
    /// A mandatory setting is absent.
    #[error("{file}: {key}= is missing")]
    Missing {
        /// Definition file, as a path inside the target root.
        file: String,
        /// `Section.Key` naming the setting.
        key: &'static str,
    },
    /// A pattern string given to [`Pattern::parse`] is not valid.
    #[error("invalid MatchPattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The first target pattern needs a field that neither the configuration nor the source
    /// instance provides, so the new file cannot be named (systemd fails with ENXIO here).
    #[error("cannot name a new instance after {pattern:?}: no value for @{field}")]
    Format {
        /// The target pattern.
        pattern: String,
        /// The wildcard letter lacking a value.
        field: char,
    },
}

fn at(file: &str, line: usize) -> String {
    match line {
        0 => file.to_string(),
        n => format!("{file}:{n}"),
    }
}

/// One independent update target: all its transfers move in lock-step to the same version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `None` for `sysupdate.d/`, `Some(NAME)` for `sysupdate.NAME.d/` (`-C NAME`).
    pub name: Option<String>,
    /// The target root the definitions were read from; target paths live below it.
    pub root: PathBuf,
    /// Enabled transfers in file-name order; only these take part in decisions.
    pub transfers: Vec<Transfer>,
    /// Transfers switched off by `Features=`/`RequisiteFeatures=`. systemd wipes their instances
    /// on its next vacuum; rdext leaves them alone.
    pub disabled: Vec<Transfer>,
    /// Things systemd would log as warnings (legacy `.conf` suffix, ignored keys, …).
    pub warnings: Vec<String>,
}

/// Search directories below the root, highest priority first (systemd's `CONF_PATHS`).
const CONF_DIRS: [&str; 4] = ["etc", "run", "usr/local/lib", "usr/lib"];

/// Loads every component defined below `root`, default component first, then by name.
///
/// Fails on the first broken component; use [`component_names`] and [`load_component`] to keep
/// going past one. Components without any (unmasked) transfer file are left out, as systemd
/// refuses to run them.
pub fn load_components(root: &Path, os: &OsInfo) -> Result<Vec<Component>, SysupdateError> {
    let mut out = Vec::new();
    for name in component_names(root)? {
        let component = load_component(root, name.as_deref(), os)?;
        if !component.transfers.is_empty() || !component.disabled.is_empty() {
            out.push(component);
        }
    }
    Ok(out)
}

/// Lists the components that have a definition directory (`None` is the default one), like
/// `systemd-sysupdate components`.
pub fn component_names(root: &Path) -> Result<Vec<Option<String>>, SysupdateError> {
    let mut default = false;
    let mut names = Vec::new();
    for base in CONF_DIRS {
        for entry in read_dir_names(&chase(root, Path::new(base)))? {
            if !chase(root, &Path::new(base).join(&entry)).is_dir() {
                continue;
            }
            if entry == "sysupdate.d" {
                default = true;
            } else if let Some(name) = entry
                .strip_prefix("sysupdate.")
                .and_then(|s| s.strip_suffix(".d"))
                .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
            {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    let named = names.into_iter().map(Some);
    Ok(default.then_some(None).into_iter().chain(named).collect())
}

/// Loads one component: features, then `*.transfer` files (or `*.conf` when there is none),
/// each with its `FILE.d/*.conf` drop-ins, highest-priority file of each name winning.
pub fn load_component(
    root: &Path,
    name: Option<&str>,
    os: &OsInfo,
) -> Result<Component, SysupdateError> {
    let dir_name = match name {
        Some(n) => format!("sysupdate.{n}.d"),
        None => "sysupdate.d".to_string(),
    };
    let dirs: Vec<PathBuf> = CONF_DIRS
        .iter()
        .map(|b| Path::new(b).join(&dir_name))
        .collect();
    let mut component = Component {
        name: name.map(str::to_string),
        root: root.to_path_buf(),
        transfers: Vec::new(),
        disabled: Vec::new(),
        warnings: Vec::new(),
    };

    let mut features = BTreeMap::new();
    for (file, path) in conf_files(root, &dirs, ".feature")? {
        let texts = read_with_dropins(root, &dirs, &file, &path)?;
        let enabled = transfer::parse_feature(&texts, &mut component.warnings)?;
        let id = file.strip_suffix(".feature").unwrap_or(&file);
        features.insert(id.to_string(), enabled);
    }

    let mut files = conf_files(root, &dirs, ".transfer")?;
    if files.is_empty() {
        files = conf_files(root, &dirs, ".conf")?;
        if !files.is_empty() {
            component.warnings.push(format!(
                "{dir_name}: *.conf transfer definitions are deprecated since systemd v257, \
                 rename them to *.transfer"
            ));
        }
    }
    for (file, path) in files {
        let texts = read_with_dropins(root, &dirs, &file, &path)?;
        let t = Transfer::parse(&file, &texts, os)?;
        if t.enabled_by(&features) {
            component.transfers.push(t);
        } else {
            component.disabled.push(t);
        }
    }
    Ok(component)
}

/// Reads a definition and its drop-ins as (display name, text), main file first.
fn read_with_dropins(
    root: &Path,
    dirs: &[PathBuf],
    file: &str,
    path: &Path,
) -> Result<Vec<(String, String)>, SysupdateError> {
    let dropin_dirs: Vec<PathBuf> = dirs.iter().map(|d| d.join(format!("{file}.d"))).collect();
    let mut out = vec![(display(root, path), read_text(root, path)?)];
    for (_, p) in conf_files(root, &dropin_dirs, ".conf")? {
        out.push((display(root, &p), read_text(root, &p)?));
    }
    Ok(out)
}

fn read_text(root: &Path, path: &Path) -> Result<String, SysupdateError> {
    let bytes = fs::read(path).map_err(|source| SysupdateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| SysupdateError::Syntax {
        file: display(root, path),
        line: 0,
        reason: "file is not UTF-8",
    })
}

/// Shows a resolved path as the target system sees it, for messages.
fn display(root: &Path, path: &Path) -> String {
    Path::new("/")
        .join(path.strip_prefix(root).unwrap_or(path))
        .display()
        .to_string()
}

/// systemd's `conf_files_list`: files ending in `suffix` from `dirs` (relative to `root`,
/// highest priority first), first of each name wins, an empty file or a link to `/dev/null`
/// masks lower-priority ones, hidden and non-regular entries are skipped. Sorted by name.
fn conf_files(
    root: &Path,
    dirs: &[PathBuf],
    suffix: &str,
) -> Result<Vec<(String, PathBuf)>, SysupdateError> {
    let mut found: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for dir in dirs {
        for name in read_dir_names(&chase(root, dir))? {
            if name.starts_with('.') || !name.ends_with(suffix) || found.contains_key(&name) {
                continue;
            }
            let path = chase(root, &dir.join(&name));
            // A link to /dev/null masks even when the root has no /dev/null.
            if path == root.join("dev/null") {
                found.insert(name, None);
                continue;
            }
            match fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() > 0 => found.insert(name, Some(path)),
                Ok(m) if m.is_file() || m.file_type().is_char_device() => found.insert(name, None),
                _ => None,
            };
        }
    }
    Ok(found
        .into_iter()
        .filter_map(|(n, p)| Some((n, p?)))
        .collect())
}

/// Names in a directory; a missing directory (or a non-directory) is simply empty.
fn read_dir_names(dir: &Path) -> Result<Vec<String>, SysupdateError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(source) => {
            return Err(SysupdateError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysupdateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Resolves `rel` below `root` following symlinks as if `root` were `/` (systemd's
/// `CHASE_PREFIX_ROOT`), so `/etc/x -> /usr/lib/x` stays inside the target. Missing parts
/// are kept as written; more than 32 links give up and return the path unresolved.
fn chase(root: &Path, rel: &Path) -> PathBuf {
    let mut todo: Vec<OsString> = rel_parts(rel);
    todo.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == OsStr::new("..") {
            done.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&done);
        here.push(&part);
        match fs::read_link(&here) {
            Ok(target) if links < 32 => {
                links += 1;
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(rel_parts(&target).into_iter().rev());
            }
            Ok(_) => return root.join(rel),
            Err(_) => done.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    out
}

fn rel_parts(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            PathPart::Normal(n) => Some(n.to_os_string()),
            PathPart::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn os() -> OsInfo {
        OsInfo {
            architecture: "x86-64".into(),
            ..OsInfo::default()
        }
    }

    // Generated by flatcar/sysext-bakery lib/generate.sh from lib/sysupdate.conf.tmpl
    // with default arguments (the docker.conf release asset).
    pub(super) const DOCKER: &str = "[Transfer]\nVerify=false\n\n[Source]\nType=url-file\n\
        Path=https://extensions.flatcar.org/extensions/docker/\nMatchPattern=docker-@v-%a.raw\n\n\
        [Target]\nInstancesMax=3\nType=regular-file\nPath=/opt/extensions/docker\n\
        CurrentSymlink=/etc/extensions/docker.raw\n";
    // kubernetes.sysext/create.sh: the minor-pinned kubernetes-v1.32.conf.
    pub(super) const KUBERNETES: &str = "[Transfer]\nVerify=false\n\n[Source]\nType=url-file\n\
        Path=https://extensions.flatcar.org/extensions/kubernetes/\n\
        MatchPattern=kubernetes-v1.32.@v-%a.raw\n\n[Target]\nInstancesMax=3\nType=regular-file\n\
        Path=/opt/extensions/kubernetes\nCurrentSymlink=/etc/extensions/kubernetes.raw\n";
    // Legacy release_build.sh output (before March 2025), still on older hosts.
    pub(super) const WASMTIME: &str = "[Transfer]\nVerify=false\n[Source]\nType=url-file\n\
        Path=https://github.com/flatcar/sysext-bakery/releases/latest/download/\n\
        MatchPattern=wasmtime-@v-%a.raw\n[Target]\nInstancesMax=3\nType=regular-file\n\
        Path=/opt/extensions/wasmtime\nCurrentSymlink=/etc/extensions/wasmtime.raw\n";
    // The noop.conf the bakery docs (and Flatcar) put into /etc/sysupdate.d/.
    pub(super) const NOOP: &str =
        "[Source]\nType=regular-file\nPath=/\nMatchPattern=invalid@v.raw\n\
        [Target]\nType=regular-file\nPath=/\n";

    const T: &str = "[Source]\nType=url-file\nPath=https://example.com/x/\n\
                     MatchPattern=x-@v.raw\n[Target]\nType=regular-file\nPath=/opt/x\n";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn ids(c: &Component) -> Vec<&str> {
        c.transfers.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn bakery_layout_end_to_end() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "etc/sysupdate.docker.d/docker.conf", DOCKER);
        write(root, "etc/sysupdate.d/noop.conf", NOOP);
        let all = load_components(root, &os()).unwrap();
        assert_eq!(all.len(), 2);
        let docker = &all[1];
        let manifest: Vec<String> = ["24.0.9-x86-64", "24.0.9-arm64", "25.0.3-x86-64"]
            .map(|s| format!("docker-{s}.raw"))
            .into();
        let available = available_versions(docker, &[manifest]);
        let p = plan_update(docker, &available, &[], &[], Mode::Missing, &[]).unwrap();
        let d = p.transfers[0].download.as_ref().unwrap();
        assert_eq!(
            d.path,
            root.join("opt/extensions/docker/docker-25.0.3-x86-64.raw")
        );
        let link = LinkUpdate::Point {
            path: root.join("etc/extensions/docker.raw"),
            text: "../../opt/extensions/docker/docker-25.0.3-x86-64.raw".into(),
        };
        assert_eq!(p.transfers[0].link, Some(link));
    }

    #[test]
    fn components_are_listed_default_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "usr/lib/sysupdate.d/b.transfer", T);
        write(root, "etc/sysupdate.docker.d/docker.conf", T);
        write(root, "run/sysupdate.alpha.d/a.conf", T);
        fs::create_dir_all(root.join("etc/sysupdate.empty.d")).unwrap();
        let names = component_names(root).unwrap();
        assert_eq!(
            names,
            [
                None,
                Some("alpha".into()),
                Some("docker".into()),
                Some("empty".into())
            ]
        );
        let all = load_components(root, &os()).unwrap();
        let got: Vec<_> = all.iter().map(|c| c.name.clone()).collect();
        assert_eq!(got, [None, Some("alpha".into()), Some("docker".into())]);
        assert!(all[2].warnings[0].contains("deprecated"));
        assert!(all[0].warnings.is_empty());
    }

    #[test]
    fn transfer_files_win_over_conf_and_override_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let other = T.replace("x-@v", "y-@v");
        write(root, "usr/lib/sysupdate.c.d/20-b.conf", T);
        write(root, "usr/lib/sysupdate.c.d/10-a.transfer", T);
        write(root, "etc/sysupdate.c.d/10-a.transfer", &other);
        write(root, "usr/lib/sysupdate.c.d/05-z.transfer", T);
        let c = load_component(root, Some("c"), &os()).unwrap();
        assert_eq!(ids(&c), ["05-z", "10-a"]);
        assert_eq!(c.transfers[1].source.patterns[0].as_str(), "y-@v.raw");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn masking_by_empty_file_and_dev_null() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "usr/lib/sysupdate.c.d/a.transfer", T);
        write(root, "usr/lib/sysupdate.c.d/b.transfer", T);
        write(root, "usr/lib/sysupdate.c.d/c.conf", T);
        write(root, "etc/sysupdate.c.d/a.transfer", "");
        symlink("/dev/null", root.join("etc/sysupdate.c.d/b.transfer")).unwrap();
        // Every .transfer is masked, so systemd falls back to the .conf files.
        let c = load_component(root, Some("c"), &os()).unwrap();
        assert_eq!(ids(&c), ["c"]);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn absolute_links_resolve_inside_root_and_dropins_apply() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "usr/share/x.transfer", T);
        fs::create_dir_all(root.join("etc/sysupdate.d")).unwrap();
        symlink(
            "/usr/share/x.transfer",
            root.join("etc/sysupdate.d/x.transfer"),
        )
        .unwrap();
        write(
            root,
            "run/sysupdate.d/x.transfer.d/50-max.conf",
            "[Target]\nInstancesMax=5\n",
        );
        write(
            root,
            "usr/lib/sysupdate.d/x.transfer.d/50-max.conf",
            "[Target]\nInstancesMax=9\n",
        );
        write(
            root,
            "usr/lib/sysupdate.d/x.transfer.d/60-ro.conf",
            "[Target]\nReadOnly=yes\n",
        );
        let c = load_component(root, None, &os()).unwrap();
        assert_eq!(c.transfers[0].target.instances_max, 5);
        assert_eq!(c.transfers[0].target.overrides.read_only, Some(true));
    }

    #[test]
    fn features_enable_transfers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let with = |f: &str| format!("[Transfer]\n{f}\n{T}");
        write(
            root,
            "usr/lib/sysupdate.c.d/a.transfer",
            &with("Features=on"),
        );
        write(
            root,
            "usr/lib/sysupdate.c.d/b.transfer",
            &with("Features=off"),
        );
        write(
            root,
            "usr/lib/sysupdate.c.d/c.transfer",
            &with("RequisiteFeatures=on off"),
        );
        write(
            root,
            "usr/lib/sysupdate.c.d/d.transfer",
            &with("Features=unknown on"),
        );
        write(
            root,
            "usr/lib/sysupdate.c.d/on.feature",
            "[Feature]\nDescription=x\n",
        );
        write(
            root,
            "etc/sysupdate.c.d/on.feature.d/x.conf",
            "[Feature]\nEnabled=yes\n",
        );
        write(
            root,
            "usr/lib/sysupdate.c.d/off.feature",
            "[Feature]\nEnabled=yes\n",
        );
        write(root, "etc/sysupdate.c.d/off.feature", "");
        let c = load_component(root, Some("c"), &os()).unwrap();
        assert_eq!(ids(&c), ["a", "d"]);
        let off: Vec<_> = c.disabled.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(off, ["b", "c"]);
    }

    #[test]
    fn broken_definition_names_file_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "etc/sysupdate.c.d/a.transfer",
            &format!("{T}Mode=999\n"),
        );
        let err = load_component(root, Some("c"), &os())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/etc/sysupdate.c.d/a.transfer:8: Target.Mode=999: not an octal file mode"
        );
    }
}
