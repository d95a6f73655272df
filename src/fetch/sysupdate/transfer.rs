//! One transfer definition: systemd's INI dialect, the `[Transfer]`/`[Source]`/`[Target]` keys
//! with their defaults, and `%` specifiers, following `sysupdate-transfer.c` and `conf-parser.c`.

use super::pattern::{parse_boolean, parse_id128, parse_mode, parse_u64, version_is_valid};
use super::{Metadata, OsInfo, Pattern, SysupdateError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where new versions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `url-file`: `Path=` is a base URL with a `SHA256SUMS` manifest listing the files.
    UrlFile,
    /// `regular-file`: `Path=` is a directory below the target root.
    RegularFile,
}

/// The `[Source]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `Type=`.
    pub kind: SourceKind,
    /// `Path=` after specifier expansion: a URL or an absolute path inside the target root.
    pub path: String,
    /// `MatchPattern=`, duplicates dropped, in order.
    pub patterns: Vec<Pattern>,
}

/// The `[Target]` section (always `Type=regular-file`, `PathRelativeTo=root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `Path=`, an absolute normalized directory inside the target root.
    pub path: PathBuf,
    /// `MatchPattern=`, or the source patterns when unset; the first one names new instances.
    pub patterns: Vec<Pattern>,
    /// Values configured for new instances (`Mode=`, `ReadOnly=`, `TriesLeft=`, `TriesDone=`,
    /// `PartitionUUID=`, `PartitionFlags=`, `PartitionNoAuto=`, `PartitionGrowFileSystem=`);
    /// they take precedence over fields captured from the source name.
    pub overrides: Metadata,
    /// `InstancesMax=`, default 3, never below 2.
    pub instances_max: u64,
    /// `RemoveTemporary=`, default yes: delete `.#*` leftovers before installing.
    pub remove_temporary: bool,
    /// `CurrentSymlink=`, simplified; relative paths are relative to [`Target::path`].
    pub current_symlink: Option<PathBuf>,
}

/// A parsed `*.transfer` (or legacy `*.conf`) file plus its drop-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// File name without `.transfer`/`.conf`, systemd's transfer ID.
    pub id: String,
    /// `MinVersion=`: older versions are never installed.
    pub min_version: Option<String>,
    /// `ProtectVersion=`: versions vacuuming never deletes (compared as exact strings).
    pub protect_versions: Vec<String>,
    /// `Verify=`, default yes: whether the manifest signature must be checked.
    pub verify: bool,
    /// `Features=`: enabled when any of these features is enabled (or when empty).
    pub features: Vec<String>,
    /// `RequisiteFeatures=`: disabled unless all of these features are enabled.
    pub requisite_features: Vec<String>,
    /// The `[Source]` section.
    pub source: Source,
    /// The `[Target]` section.
    pub target: Target,
    /// Lines systemd would warn about and ignore.
    pub warnings: Vec<String>,
}

const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

impl Transfer {
    /// Parses `files` as (display name, text) in order: the main file, then its drop-ins.
    /// `file_name` is the main file's name, from which the ID is derived.
    pub fn parse<F: AsRef<str>, T: AsRef<str>>(
        file_name: &str,
        files: &[(F, T)],
        os: &OsInfo,
    ) -> Result<Transfer, SysupdateError> {
        let mut draft = Draft::default();
        let mut warnings = Vec::new();
        for (file, text) in files {
            let sections = ["Transfer", "Source", "Target"];
            for a in parse_ini(file.as_ref(), text.as_ref(), &sections, &mut warnings)? {
                draft.apply(&a, os, &mut warnings)?;
            }
        }
        let id = file_name
            .strip_suffix(".transfer")
            .or_else(|| file_name.strip_suffix(".conf"))
            .unwrap_or(file_name);
        let main = files.first().map_or(file_name, |f| f.0.as_ref());
        draft.finish(id, main, warnings)
    }

    /// systemd's `transfer_decide_if_enabled()`; unknown or masked features count as disabled.
    pub(super) fn enabled_by(&self, features: &BTreeMap<String, bool>) -> bool {
        let on = |f: &String| features.get(f).copied().unwrap_or(false);
        self.requisite_features.iter().all(on)
            && (self.features.is_empty() || self.features.iter().any(on))
    }
}

/// Reads a `*.feature` file and its drop-ins; returns `Enabled=` (default off).
pub(super) fn parse_feature(
    files: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<bool, SysupdateError> {
    let mut enabled = false;
    for (file, text) in files {
        for a in parse_ini(file, text, &["Feature"], warnings)? {
            match a.key.as_str() {
                "Enabled" => enabled = a.boolean()?,
                "Description" | "Documentation" | "AppStream" => {}
                k if k.starts_with("X-") => {}
                _ => warnings.push(format!(
                    "{}:{}: unknown key {}, ignored",
                    a.file, a.line, a.key
                )),
            }
        }
    }
    Ok(enabled)
}

/// One `Key=value` with where it came from.
struct Assignment {
    file: String,
    line: usize,
    section: String,
    key: String,
    value: String,
}

impl Assignment {
    fn invalid(&self, reason: impl Into<String>) -> SysupdateError {
        SysupdateError::Value {
            file: self.file.clone(),
            line: self.line,
            key: format!("{}.{}", self.section, self.key),
            value: self.value.clone(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self) -> SysupdateError {
        SysupdateError::Unsupported {
            file: self.file.clone(),
            key: format!("{}.{}", self.section, self.key),
            value: self.value.clone(),
        }
    }

    fn warn(&self, warnings: &mut Vec<String>, what: &str) {
        warnings.push(format!(
            "{}:{}: {}.{} {what}",
            self.file, self.line, self.section, self.key
        ));
    }

    fn boolean(&self) -> Result<bool, SysupdateError> {
        parse_boolean(&self.value).ok_or_else(|| self.invalid("not a boolean"))
    }

    fn tristate(&self) -> Result<Option<bool>, SysupdateError> {
        match self.value.as_str() {
            "" => Ok(None),
            _ => self.boolean().map(Some),
        }
    }

    fn number(&self) -> Result<u64, SysupdateError> {
        parse_u64(&self.value, 0).ok_or_else(|| self.invalid("not an unsigned number"))
    }

    fn expand(&self, text: &str, os: &OsInfo, max: usize) -> Result<String, SysupdateError> {
        let out = expand_specifiers(text, os)
            .map_err(|c| self.invalid(format!("unknown specifier %{c}")))?;
        if out.len() > max {
            return Err(self.invalid("too long after expanding specifiers"));
        }
        Ok(out)
    }
}

/// systemd's `specifier_printf()` with sysupdate's table; `Err` carries an unknown specifier.
/// `%` before a character that cannot be a specifier, and a trailing `%`, stay as written.
fn expand_specifiers(text: &str, os: &OsInfo) -> Result<String, char> {
    let short = os.hostname.split('.').next().unwrap_or_default();
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(s) = chars.next() else {
            out.push('%');
            break;
        };
        out.push_str(match s {
            '%' => "%",
            'a' => &os.architecture,
            'A' => &os.image_version,
            'b' => &os.boot_id,
            'B' => &os.build_id,
            'H' => &os.hostname,
            'l' => short,
            'q' if os.pretty_hostname.is_empty() => short,
            'q' => &os.pretty_hostname,
            'm' => &os.machine_id,
            'M' => &os.image_id,
            'o' => &os.id,
            'v' => &os.kernel_release,
            'w' => &os.version_id,
            'W' => &os.variant_id,
            'T' => "/tmp",
            'V' => "/var/tmp",
            _ if s.is_ascii_alphanumeric() => return Err(s),
            _ => {
                out.push('%');
                out.push(s);
                continue;
            }
        });
    }
    Ok(out)
}

/// systemd's INI dialect: `#`/`;` comment lines, a trailing backslash continues the line,
/// `[Section]` headers, unknown sections and keyless lines ignored with a warning.
fn parse_ini(
    file: &str,
    text: &str,
    sections: &[&str],
    warnings: &mut Vec<String>,
) -> Result<Vec<Assignment>, SysupdateError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut out, mut section, mut ignored) = (Vec::new(), None::<String>, false);
    let (mut continued, mut last) = (None::<String>, 0);
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, Some(l)));
    // A continuation still open at the end is parsed as if one more line followed.
    while let Some((n, raw)) = lines
        .next()
        .or_else(|| continued.is_some().then_some((last + 1, None)))
    {
        last = n;
        let raw = raw.unwrap_or_default();
        if raw.trim_start_matches(WHITESPACE).starts_with(['#', ';']) {
            continue; // even inside a continuation, as systemd does
        }
        let mut line = continued.take().unwrap_or_default();
        line.push_str(raw);
        if line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1 {
            line.pop();
            line.push(' ');
            continued = Some(line);
            continue;
        }
        let l = line.trim_matches(WHITESPACE);
        if l.is_empty() {
            continue;
        }
        if let Some(header) = l.strip_prefix('[') {
            let name = header.strip_suffix(']').ok_or(SysupdateError::Syntax {
                file: file.to_string(),
                line: n,
                reason: "invalid section header",
            })?;
            ignored = !sections.contains(&name);
            if ignored && !name.starts_with("X-") {
                warnings.push(format!("{file}:{n}: unknown section [{name}], ignored"));
            }
            section = (!ignored).then(|| name.to_string());
            continue;
        }
        let Some(section) = &section else {
            if !ignored {
                warnings.push(format!(
                    "{file}:{n}: assignment outside of a section, ignored"
                ));
            }
            continue;
        };
        match l.split_once('=') {
            Some((k, v)) if !k.trim_matches(WHITESPACE).is_empty() => out.push(Assignment {
                file: file.to_string(),
                line: n,
                section: section.clone(),
                key: k.trim_matches(WHITESPACE).to_string(),
                value: v.trim_matches(WHITESPACE).to_string(),
            }),
            _ => warnings.push(format!("{file}:{n}: not a Key=value line, ignored")),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Side {
    path: Option<String>,
    patterns: Vec<Pattern>,
}

#[derive(Default)]
struct Draft {
    min_version: Option<String>,
    protect: Vec<String>,
    verify: Option<bool>,
    features: Vec<String>,
    requisite: Vec<String>,
    source_kind: Option<SourceKind>,
    target_type_set: bool,
    source: Side,
    target: Side,
    overrides: Metadata,
    instances_max: Option<u64>,
    remove_temporary: Option<bool>,
    current_symlink: Option<PathBuf>,
}

impl Draft {
    fn apply(
        &mut self,
        a: &Assignment,
        os: &OsInfo,
        warnings: &mut Vec<String>,
    ) -> Result<(), SysupdateError> {
        let v = a.value.as_str();
        match (a.section.as_str(), a.key.as_str()) {
            // systemd validates the unexpanded value, so specifiers make it ignore the line.
            ("Transfer", "MinVersion") if version_is_valid(v) => self.min_version = Some(v.into()),
            ("Transfer", "MinVersion") => a.warn(warnings, "is not a valid version, ignored"),
            ("Transfer", "ProtectVersion") => match a.expand(v, os, NAME_MAX)? {
                p if version_is_valid(&p) => self.protect.push(p),
                _ => a.warn(warnings, "expands to an invalid version, ignored"),
            },
            ("Transfer", "Verify") => self.verify = Some(a.boolean()?),
            ("Transfer", "ChangeLog" | "AppStream") | ("Target", "MatchPartitionType") => {}
            ("Transfer", "Features") => words(&mut self.features, v),
            ("Transfer", "RequisiteFeatures") => words(&mut self.requisite, v),
            ("Source", "Type") => {
                self.source_kind = Some(match v {
                    "url-file" => SourceKind::UrlFile,
                    "regular-file" => SourceKind::RegularFile,
                    "url-tar" | "tar" | "directory" | "subvolume" => return Err(a.unsupported()),
                    _ => return Err(a.invalid("not a source type")),
                })
            }
            ("Target", "Type") => match v {
                "regular-file" => self.target_type_set = true,
                "partition" | "directory" | "subvolume" => return Err(a.unsupported()),
                _ => return Err(a.invalid("not a target type")),
            },
            ("Source" | "Target", "Path") if v == "auto" => return Err(a.unsupported()),
            ("Source" | "Target", "Path") => self.side(a).path = Some(a.expand(v, os, PATH_MAX)?),
            ("Source" | "Target", "PathRelativeTo") => match v {
                "" | "root" => {}
                "esp" | "xbootldr" | "boot" | "explicit" => return Err(a.unsupported()),
                _ => return Err(a.invalid("not root, esp, xbootldr, boot or explicit")),
            },
            ("Source" | "Target", "MatchPattern") if v.is_empty() => self.side(a).patterns.clear(),
            ("Source" | "Target", "MatchPattern") => {
                for word in v.split(WHITESPACE).filter(|w| !w.is_empty()) {
                    let text = a.expand(word, os, NAME_MAX)?;
                    if text.contains('/') {
                        return Err(a.unsupported());
                    }
                    let p = Pattern::split(&text).map_err(|r| a.invalid(format!("{text}: {r}")))?;
                    if !self.side(a).patterns.contains(&p) {
                        self.side(a).patterns.push(p);
                    }
                }
            }
            ("Target", "PartitionUUID") => {
                let uuid = parse_id128(v).ok_or_else(|| a.invalid("not a UUID"))?;
                self.overrides.partition_uuid = Some(uuid);
            }
            ("Target", "PartitionFlags") => self.overrides.partition_flags = Some(a.number()?),
            ("Target", "PartitionNoAuto") => self.overrides.no_auto = a.tristate()?,
            ("Target", "PartitionGrowFileSystem") => self.overrides.growfs = a.tristate()?,
            ("Target", "ReadOnly") => self.overrides.read_only = a.tristate()?,
            ("Target", "Mode") => {
                let mode = parse_mode(v).ok_or_else(|| a.invalid("not an octal file mode"))?;
                self.overrides.mode = Some(mode);
            }
            ("Target", "TriesLeft") => self.overrides.tries_left = Some(a.number()?),
            ("Target", "TriesDone") => self.overrides.tries_done = Some(a.number()?),
            ("Target", "InstancesMax") if v.is_empty() => self.instances_max = None,
            ("Target", "InstancesMax") => {
                let n = a.number()?;
                if n < 2 {
                    a.warn(warnings, "is below 2, using 2");
                }
                self.instances_max = Some(n.max(2));
            }
            ("Target", "RemoveTemporary") => self.remove_temporary = Some(a.boolean()?),
            ("Target", "CurrentSymlink") => {
                let p = a.expand(v, os, NAME_MAX)?;
                let p = simplify(&p).ok_or_else(|| a.invalid("not a path without .."))?;
                self.current_symlink = Some(p);
            }
            (_, k) if k.starts_with("X-") => {}
            _ => a.warn(warnings, "is not a known key, ignored"),
        }
        Ok(())
    }

    fn side(&mut self, a: &Assignment) -> &mut Side {
        match a.section.as_str() {
            "Source" => &mut self.source,
            _ => &mut self.target,
        }
    }

    fn finish(
        self,
        id: &str,
        file: &str,
        warnings: Vec<String>,
    ) -> Result<Transfer, SysupdateError> {
        let missing = |key| SysupdateError::Missing {
            file: file.to_string(),
            key,
        };
        let bad = |key: &str, value: &str, reason: &str| SysupdateError::Value {
            file: file.to_string(),
            line: 0,
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let kind = self.source_kind.ok_or_else(|| missing("Source.Type"))?;
        let source_path = self.source.path.ok_or_else(|| missing("Source.Path"))?;
        let ok = match kind {
            SourceKind::UrlFile => ["http://", "https://", "file://"].iter().any(|s| {
                source_path
                    .strip_prefix(s)
                    .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_graphic()))
            }),
            SourceKind::RegularFile => is_normalized_absolute(&source_path),
        };
        if !ok {
            return Err(bad(
                "Source.Path",
                &source_path,
                "not a URL or normalized absolute path",
            ));
        }
        if self.source.patterns.is_empty() {
            return Err(missing("Source.MatchPattern"));
        }
        let target_path = self.target.path.ok_or_else(|| missing("Target.Path"))?;
        if !self.target_type_set && target_path.starts_with("/dev/") {
            return Err(SysupdateError::Unsupported {
                file: file.to_string(),
                key: "Target.Type".to_string(),
                value: "partition".to_string(),
            });
        }
        if !is_normalized_absolute(&target_path) {
            return Err(bad(
                "Target.Path",
                &target_path,
                "not a normalized absolute path",
            ));
        }
        let target_patterns = if self.target.patterns.is_empty() {
            self.source.patterns.clone()
        } else {
            self.target.patterns
        };
        Ok(Transfer {
            id: id.to_string(),
            min_version: self.min_version,
            protect_versions: self.protect,
            verify: self.verify.unwrap_or(true),
            features: self.features,
            requisite_features: self.requisite,
            source: Source {
                kind,
                path: source_path,
                patterns: self.source.patterns,
            },
            target: Target {
                path: PathBuf::from(target_path),
                patterns: target_patterns,
                overrides: self.overrides,
                instances_max: self.instances_max.unwrap_or(3),
                remove_temporary: self.remove_temporary.unwrap_or(true),
                current_symlink: self.current_symlink,
            },
            warnings,
        })
    }
}

/// `config_parse_strv`: whitespace-separated words appended, an empty value resets.
fn words(list: &mut Vec<String>, value: &str) {
    if value.is_empty() {
        list.clear();
    }
    list.extend(
        value
            .split(WHITESPACE)
            .filter(|w| !w.is_empty())
            .map(str::to_string),
    );
}

/// systemd's `path_is_normalized()` plus absoluteness: no `.`/`..` parts, no `//`.
fn is_normalized_absolute(p: &str) -> bool {
    p.starts_with('/') && !p.contains("//") && p.split('/').all(|c| c != "." && c != "..")
}

/// `path_simplify()`: drops `.` parts, duplicate and trailing slashes; refuses `..` so that a
/// link can never be placed outside the root.
fn simplify(p: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    let lead = if p.starts_with('/') { "/" } else { "" };
    Some(PathBuf::from(format!("{lead}{}", parts.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::sysupdate::tests::{DOCKER, KUBERNETES, NOOP, WASMTIME};

    fn os() -> OsInfo {
        OsInfo {
            id: "flatcar".into(),
            version_id: "4593.2.5".into(),
            architecture: "x86-64".into(),
            hostname: "node1.example.com".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            kernel_release: "6.6.100-flatcar".into(),
            ..OsInfo::default()
        }
    }

    fn parse(name: &str, text: &str) -> Result<Transfer, SysupdateError> {
        Transfer::parse(name, &[(name, text)], &os())
    }

    fn err(text: &str) -> String {
        parse("t.transfer", text).unwrap_err().to_string()
    }

    const BASE: &str = "[Source]\nType=url-file\nPath=https://e.org/x/\nMatchPattern=x-@v.raw\n\
                        [Target]\nPath=/opt/x\n";

    #[test]
    fn bakery_configs_parse_unchanged() {
        for (name, text, ext) in [
            ("docker.conf", DOCKER, "docker"),
            ("kubernetes-v1.32.conf", KUBERNETES, "kubernetes"),
            ("wasmtime.conf", WASMTIME, "wasmtime"),
        ] {
            let t = parse(name, text).unwrap();
            assert_eq!(t.id, name.trim_end_matches(".conf"));
            assert!(!t.verify);
            assert_eq!(t.source.kind, SourceKind::UrlFile);
            assert_eq!(t.target.instances_max, 3);
            assert!(t.target.remove_temporary);
            assert_eq!(
                t.target.path,
                PathBuf::from(format!("/opt/extensions/{ext}"))
            );
            let link = PathBuf::from(format!("/etc/extensions/{ext}.raw"));
            assert_eq!(t.target.current_symlink, Some(link));
            assert_eq!(t.source.patterns, t.target.patterns);
            assert!(t.source.patterns[0].as_str().ends_with("@v-x86-64.raw"));
            assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        }
        let k = parse("kubernetes-v1.32.conf", KUBERNETES).unwrap();
        assert_eq!(
            k.source.patterns[0].as_str(),
            "kubernetes-v1.32.@v-x86-64.raw"
        );
        let v = k.source.patterns[0]
            .matches("kubernetes-v1.32.10-x86-64.raw")
            .unwrap();
        assert_eq!(v.version, "10");
        let noop = parse("noop.conf", NOOP).unwrap();
        assert_eq!(noop.source.kind, SourceKind::RegularFile);
        assert!(noop.verify && noop.target.current_symlink.is_none());
    }

    #[test]
    fn keys_defaults_and_lists() {
        let text = format!(
            "# comment\n; comment\n[Transfer]\nMinVersion=1.2\nProtectVersion=%A\n\
             ProtectVersion=%w\nProtectVersion=0.9\nFeatures=a b\nFeatures=\nFeatures=c\n\
             RequisiteFeatures= d  e \n{BASE}MatchPattern=y-@v.raw z-@v.raw\nMatchPattern=\n\
             MatchPattern=t-@v.raw \\\n  t-@v.raw u-@v.raw\nMode=0444\nReadOnly=1\nTriesLeft=5\n\
             InstancesMax=1\nRemoveTemporary=off\nCurrentSymlink=//run//x/./cur.raw/\n\
             X-Custom=1\nBogus=1\n[X-Ext]\nA=1\n[Other]\nB=2\n"
        );
        let t = parse("t.transfer", &text).unwrap();
        assert_eq!(t.min_version.as_deref(), Some("1.2"));
        // %A is empty on Flatcar: systemd ignores that ProtectVersion= line.
        assert_eq!(t.protect_versions, ["4593.2.5", "0.9"]);
        assert_eq!(t.features, ["c"]);
        assert_eq!(t.requisite_features, ["d", "e"]);
        let pats: Vec<_> = t.target.patterns.iter().map(Pattern::as_str).collect();
        assert_eq!(pats, ["t-@v.raw", "u-@v.raw"]);
        assert_eq!(t.target.overrides.mode, Some(0o444));
        assert_eq!(t.target.overrides.read_only, Some(true));
        assert_eq!(t.target.overrides.tries_left, Some(5));
        assert_eq!(t.target.instances_max, 2);
        assert!(!t.target.remove_temporary);
        assert_eq!(
            t.target.current_symlink,
            Some(PathBuf::from("/run/x/cur.raw"))
        );
        let w = t.warnings.join("\n");
        assert!(
            w.contains("ProtectVersion expands to an invalid version"),
            "{w}"
        );
        assert!(w.contains("Target.InstancesMax is below 2"), "{w}");
        assert!(w.contains("Target.Bogus is not a known key"), "{w}");
        assert!(w.contains("unknown section [Other]"), "{w}");
        assert_eq!(t.warnings.len(), 4, "{w}");
    }

    #[test]
    fn min_version_with_specifier_is_ignored_like_systemd() {
        let t = parse("t.transfer", &format!("[Transfer]\nMinVersion=%w\n{BASE}")).unwrap();
        assert_eq!(t.min_version, None);
        assert_eq!(t.warnings.len(), 1);
    }

    #[test]
    fn dropins_override_in_order() {
        let files = [
            ("/usr/lib/sysupdate.d/t.transfer", BASE),
            (
                "/etc/sysupdate.d/t.transfer.d/a.conf",
                "[Target]\nInstancesMax=7\nMatchPattern=\n",
            ),
            (
                "/etc/sysupdate.d/t.transfer.d/b.conf",
                "[Target]\nMatchPattern=q-@v\n",
            ),
        ];
        let t = Transfer::parse("t.transfer", &files, &os()).unwrap();
        assert_eq!((t.id.as_str(), t.target.instances_max), ("t", 7));
        assert_eq!(t.target.patterns[0].as_str(), "q-@v");
        assert_eq!(t.source.patterns[0].as_str(), "x-@v.raw");
    }

    #[test]
    fn specifiers() {
        let o = os();
        let cases = [
            ("%a-%o-%w-%v", "x86-64-flatcar-4593.2.5-6.6.100-flatcar"),
            (
                "%H|%l|%q|%m",
                "node1.example.com|node1|node1|0123456789abcdef0123456789abcdef",
            ),
            ("%A%B%M%W%b.", "."),
            ("%T %V 100%% %- %", "/tmp /var/tmp 100% %- %"),
        ];
        for (text, want) in cases {
            assert_eq!(expand_specifiers(text, &o).unwrap(), want, "{text}");
        }
        assert_eq!(expand_specifiers("x-%z", &o), Err('z'));
        assert_eq!(expand_specifiers("x-%u", &o), Err('u'));
        let e = err(&BASE.replace("x-@v.raw", "x-@v-%Y.raw"));
        assert_eq!(
            e,
            "t.transfer:4: Source.MatchPattern=x-@v-%Y.raw: unknown specifier %Y"
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        // (text in BASE, replaced by, the error)
        #[rustfmt::skip]
        let cases = [
            ("url-file", "url-tar", "t.transfer: Source.Type=url-tar is not supported by rdext"),
            ("Path=/opt/x\n", "Path=/opt/x\nType=partition\n", "t.transfer: Target.Type=partition is not supported by rdext"),
            ("Path=/opt/x\n", "Path=/opt/x\nPathRelativeTo=esp\n", "t.transfer: Target.PathRelativeTo=esp is not supported by rdext"),
            ("Path=/opt/x", "Path=/dev/sda", "t.transfer: Target.Type=partition is not supported by rdext"),
            ("x-@v.raw", "d/x-@v.raw", "t.transfer: Source.MatchPattern=d/x-@v.raw is not supported by rdext"),
            ("x-@v.raw", "x.raw", "t.transfer:4: Source.MatchPattern=x.raw: x.raw: @v is missing"),
            ("Type=url-file\n", "", "t.transfer: Source.Type= is missing"),
            ("Path=/opt/x\n", "", "t.transfer: Target.Path= is missing"),
            ("MatchPattern=x-@v.raw\n", "", "t.transfer: Source.MatchPattern= is missing"),
            ("/opt/x", "/opt/../x", "t.transfer: Target.Path=/opt/../x: not a normalized absolute path"),
            ("https://e.org/x/", "e.org", "t.transfer: Source.Path=e.org: not a URL or normalized absolute path"),
            ("[Source]", "[Transfer]\nVerify=maybe\n[Source]", "t.transfer:2: Transfer.Verify=maybe: not a boolean"),
            ("Path=/opt/x\n", "Path=/opt/x\nInstancesMax=lots\n", "t.transfer:7: Target.InstancesMax=lots: not an unsigned number"),
            ("Path=/opt/x\n", "Path=/opt/x\nCurrentSymlink=../x\n", "t.transfer:7: Target.CurrentSymlink=../x: not a path without .."),
            ("[Source]", "[Source\n[Source]", "t.transfer:1: invalid section header"),
        ];
        for (from, to, want) in cases {
            assert_eq!(err(&BASE.replace(from, to)), want, "{from:?} → {to:?}");
        }
    }

    #[test]
    fn ini_quirks() {
        let mut w = Vec::new();
        let text = "\u{feff}A=outside\n[Source]\n  Key  =  a b \\\n# skipped\n c\nnoequals\n=x\n";
        let a = parse_ini("f", text, &["Source"], &mut w).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].key.as_str(), a[0].value.as_str(), a[0].line),
            ("Key", "a b   c", 5)
        );
        assert_eq!(w.len(), 3, "{w:?}");
    }
}
