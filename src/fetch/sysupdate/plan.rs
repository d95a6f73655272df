//! Update decisions as pure functions over listings: which versions are offered and installed,
//! and what to delete, download and link. Follows systemd's update sets
//! (`context_discover_update_sets_by_flag()`), `transfer_vacuum()` and the naming and linking
//! of `transfer_compute_temporary_paths()`/`transfer_install_instance()`. Retraction is rdext's
//! own addition and only ever removes versions.

use super::{Component, Instance, Metadata, Pattern, SourceKind, SysupdateError, Transfer};
use crate::find::version::compare;
use std::cmp::Ordering;
use std::path::{Component as PathPart, Path, PathBuf};

/// A file offered by a transfer's source (a `SHA256SUMS` line or a source directory entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// File name as listed; append it to `Source.path` to fetch it.
    pub name: String,
    /// Fields from the source pattern. Set `meta.sha256` from the manifest if a target pattern
    /// has `@h`, as systemd does.
    pub instance: Instance,
}

/// A version that every transfer of a component offers, with the file each transfer would fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version, as spelled by the first transfer.
    pub version: String,
    /// One file per enabled transfer, in transfer order.
    pub files: Vec<SourceFile>,
}

/// A version with at least one instance in some transfer's target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledVersion {
    /// The version, as spelled by the first name found.
    pub version: String,
    /// Per transfer, the target file names with this version (usually zero or one).
    pub files: Vec<Vec<String>>,
    /// Some transfer lacks it; systemd still counts it as installed and repairs it.
    pub incomplete: bool,
}

/// When to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// First boot: install the newest offered version only if no complete, non-retracted
    /// version is installed.
    Missing,
    /// `systemd-sysupdate update`: install sysupdate's candidate, the newest offered version if
    /// it is newer than the newest installed one (or repairs it when incomplete).
    Update,
}

/// What to do for one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// The version being installed, if any.
    pub version: Option<String>,
    /// One entry per enabled transfer, in order. Apply in this order: every `vacuum`, every
    /// `download`, every `link`, then every `remove`.
    pub transfers: Vec<TransferPlan>,
}

/// What to do for one transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferPlan {
    /// Names in the target directory to delete before downloading (see [`vacuum`]).
    pub vacuum: Vec<String>,
    /// The file to fetch, if this transfer lacks the version being installed.
    pub download: Option<Download>,
    /// How to change `CurrentSymlink=` once all downloads are in place.
    pub link: Option<LinkUpdate>,
    /// Retracted instances to delete once the link no longer points at them.
    pub remove: Vec<String>,
}

/// A file to download and install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Source file name (see [`SourceFile::name`]).
    pub source: String,
    /// Final file name, from the first target pattern.
    pub file_name: String,
    /// Final absolute path below the root; write to a `.#` temporary in the same directory
    /// and rename it here.
    pub path: PathBuf,
    /// Fields for the new file: apply `meta.mode`, `meta.mtime` (µs) and, when
    /// `meta.read_only == Some(true)`, drop the write bits, as systemd does.
    pub instance: Instance,
}

/// A change to a transfer's `CurrentSymlink=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUpdate {
    /// Atomically (re)place the symlink at `path` with the relative `text`.
    Point {
        /// The link, absolute below the root.
        path: PathBuf,
        /// Link text relative to the link's directory, as sysupdate writes it.
        text: PathBuf,
    },
    /// Delete the link: it points at a retracted version and no good one is left.
    Remove {
        /// The link, absolute below the root.
        path: PathBuf,
    },
}

/// Versions offered by every transfer's source, newest first, without those older than any
/// `MinVersion=`. `listings[i]` holds the file names offered to transfer `i` (manifest names for
/// `url-file`; `BEST-BEFORE-*` markers are skipped as systemd does).
pub fn available_versions(component: &Component, listings: &[Vec<String>]) -> Vec<Release> {
    let per: Vec<Vec<(Instance, String)>> = component
        .transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let url = t.source.kind == SourceKind::UrlFile;
            sorted(listing(listings, i), |n| {
                let marker = url && n.starts_with("BEST-BEFORE-");
                first_match(&t.source.patterns, n).filter(|_| !marker)
            })
        })
        .collect();
    let mut out: Vec<Release> = Vec::new();
    for (candidate, _) in per.first().into_iter().flatten() {
        let v = &candidate.version;
        if out.last().is_some_and(|r| same(&r.version, v)) || obsolete(component, v) {
            continue;
        }
        // A version missing from any transfer is a partial publication: never offered.
        let files: Option<Vec<SourceFile>> = per
            .iter()
            .map(|found| {
                let (instance, name) = found.iter().find(|(i, _)| same(&i.version, v))?;
                let (instance, name) = (instance.clone(), name.clone());
                Some(SourceFile { name, instance })
            })
            .collect();
        if let Some(files) = files {
            let version = v.clone();
            out.push(Release { version, files });
        }
    }
    out
}

/// Versions present in the target directories, newest first. `listings[i]` holds the names of
/// regular files in transfer `i`'s target directory. Temporary (`.#*`) and interrupted
/// (`.sysupdate.partial.*`, `.sysupdate.pending.*`) entries do not count.
pub fn installed_versions(
    component: &Component,
    listings: &[Vec<String>],
) -> Vec<InstalledVersion> {
    let per: Vec<Vec<(Instance, String)>> = component
        .transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            sorted(listing(listings, i), |n| match classify(t, n) {
                Entry::Installed(inst) => Some(inst),
                _ => None,
            })
        })
        .collect();
    let mut versions: Vec<&String> = per.iter().flatten().map(|(i, _)| &i.version).collect();
    versions.sort_by(|a, b| compare(b, a));
    versions.dedup_by(|a, b| same(a, b));
    let with = |v: &str, found: &[(Instance, String)]| -> Vec<String> {
        let hits = found.iter().filter(|(i, _)| same(&i.version, v));
        hits.map(|(_, n)| n.clone()).collect()
    };
    versions
        .into_iter()
        .map(|v| {
            let files: Vec<Vec<String>> = per.iter().map(|found| with(v, found)).collect();
            let incomplete = files.iter().any(Vec::is_empty);
            InstalledVersion {
                version: v.clone(),
                files,
                incomplete,
            }
        })
        .collect()
}

/// Decides what to install, delete and link for one component.
///
/// `available` comes from [`available_versions`]; `listings` as for [`installed_versions`];
/// `current[i]` is the file name transfer `i`'s `CurrentSymlink=` points at (only when it points
/// into the target directory). Versions equal to an entry of `retracted` (by version
/// comparison) are never installed; their instances are removed and a link to one is moved to
/// the newest good instance, or deleted when there is none.
pub fn plan_update(
    component: &Component,
    available: &[Release],
    listings: &[Vec<String>],
    current: &[Option<String>],
    mode: Mode,
    retracted: &[String],
) -> Result<UpdatePlan, SysupdateError> {
    let is_retracted = |v: &str| retracted.iter().any(|r| same(r, v));
    let (bad, good): (Vec<_>, Vec<_>) = installed_versions(component, listings)
        .into_iter()
        .partition(|i| is_retracted(&i.version));
    let offers: Vec<&Release> = available
        .iter()
        .filter(|r| !is_retracted(&r.version))
        .collect();
    let chosen = match mode {
        Mode::Missing if good.iter().any(|i| !i.incomplete) => None,
        Mode::Missing => offers.first().copied(),
        Mode::Update => candidate(&good, &offers),
    };

    let mut transfers = Vec::new();
    for (i, t) in component.transfers.iter().enumerate() {
        let mut plan = TransferPlan {
            remove: bad
                .iter()
                .flat_map(|b| b.files[i].iter().cloned())
                .collect(),
            ..TransferPlan::default()
        };
        let present = |v: &str| {
            good.iter()
                .any(|g| same(&g.version, v) && !g.files[i].is_empty())
        };
        let fetch = chosen
            .filter(|r| !present(&r.version))
            .and_then(|r| Some((r, r.files.get(i)?)));
        if let Some((release, source)) = fetch {
            let instance = new_instance(t, &source.instance);
            let pattern = t.target.patterns.first().ok_or(SysupdateError::Missing {
                file: t.id.clone(),
                key: "Target.MatchPattern",
            })?;
            let file_name = pattern.format(&instance)?;
            if file_name == "." || file_name == ".." {
                return Err(SysupdateError::Format {
                    pattern: pattern.as_str().to_string(),
                    field: 'v',
                });
            }
            let kept: Vec<String> = listing(listings, i)
                .iter()
                .filter(|n| !plan.remove.contains(n))
                .cloned()
                .collect();
            plan.vacuum = vacuum(t, &kept, std::slice::from_ref(&release.version));
            // rdext downloads afresh, so staged copies of this version would only confuse
            // the next sysupdate run.
            let stale: Vec<String> = kept
                .iter()
                .filter(|n| match classify(t, n) {
                    Entry::Leftover(i) => same(&i.version, &release.version),
                    _ => false,
                })
                .filter(|n| !plan.vacuum.contains(n))
                .cloned()
                .collect();
            plan.vacuum.extend(stale);
            plan.link = t
                .target
                .current_symlink
                .as_ref()
                .map(|l| point(component, t, l, &file_name));
            plan.download = Some(Download {
                source: source.name.clone(),
                path: below(&component.root, &t.target.path.join(&file_name)),
                file_name,
                instance,
            });
        } else if let (Some(link), Some(Some(cur))) = (&t.target.current_symlink, current.get(i)) {
            if plan.remove.contains(cur) {
                plan.link = Some(match good.iter().find_map(|g| g.files[i].first()) {
                    Some(name) => point(component, t, link, name),
                    None => LinkUpdate::Remove {
                        path: below(&component.root, &link_in_root(t, link)),
                    },
                });
            }
        }
        transfers.push(plan);
    }
    Ok(UpdatePlan {
        version: chosen.map(|r| r.version.clone()),
        transfers,
    })
}

/// Names to delete from a target directory before installing a new version, in systemd's
/// order: `.#*` temporaries (with `RemoveTemporary=yes`), then interrupted `.sysupdate.partial.*`
/// and `.sysupdate.pending.*` files, then the oldest instances until at most `InstancesMax-1`
/// remain. Versions in `ProtectVersion=` or `keep_also` (exact strings, as in systemd) are never
/// deleted, even if that means deleting newer ones or keeping more.
pub fn vacuum(transfer: &Transfer, names: &[String], keep_also: &[String]) -> Vec<String> {
    let keep = |v: &str| {
        transfer
            .protect_versions
            .iter()
            .chain(keep_also)
            .any(|k| k == v)
    };
    let (mut delete, mut leftovers) = (Vec::new(), Vec::new());
    for name in names {
        match classify(transfer, name) {
            Entry::Temporary => delete.push(name.clone()),
            Entry::Leftover(i) if !keep(&i.version) => leftovers.push(name.clone()),
            _ => {}
        }
    }
    delete.append(&mut leftovers);
    let mut instances = sorted(names, |n| match classify(transfer, n) {
        Entry::Installed(i) => Some(i),
        _ => None,
    });
    let limit =
        usize::try_from(transfer.target.instances_max.saturating_sub(1)).unwrap_or(usize::MAX);
    while instances.len() > limit {
        let Some(oldest) = instances.iter().rposition(|(i, _)| !keep(&i.version)) else {
            break;
        };
        delete.push(instances.remove(oldest).1);
    }
    delete
}

enum Entry {
    Temporary,
    Leftover(Instance),
    Installed(Instance),
    Other,
}

/// How a name in a target directory counts; the prefixes are systemd v260's acquire/install
/// staging names, matched with the prefix stripped.
fn classify(t: &Transfer, name: &str) -> Entry {
    if t.target.remove_temporary && name.starts_with(".#") {
        return Entry::Temporary;
    }
    let staged = name
        .strip_prefix(".sysupdate.partial.")
        .or_else(|| name.strip_prefix(".sysupdate.pending."));
    match (
        first_match(&t.target.patterns, staged.unwrap_or(name)),
        staged,
    ) {
        (Some(i), Some(_)) => Entry::Leftover(i),
        (Some(i), None) => Entry::Installed(i),
        (None, _) => Entry::Other,
    }
}

/// sysupdate's candidate: the newest offer unless an equal or newer complete version is
/// installed; an incomplete newest installed version that is offered gets repaired.
fn candidate<'a>(installed: &[InstalledVersion], offers: &[&'a Release]) -> Option<&'a Release> {
    let offer = *offers.first()?;
    let newest = installed.first();
    match installed
        .iter()
        .position(|i| same(&i.version, &offer.version))
    {
        Some(0) if newest.is_some_and(|n| n.incomplete) => Some(offer),
        Some(_) => None,
        None if newest.is_some_and(|n| {
            !n.incomplete && compare(&n.version, &offer.version) != Ordering::Less
        }) =>
        {
            None
        }
        None => Some(offer),
    }
}

/// systemd's `compile_pattern_fields()`: configured values win over source fields, and boot
/// counting starts at `TriesDone=0`, `TriesLeft=3`.
fn new_instance(t: &Transfer, source: &Instance) -> Instance {
    let (c, s) = (&t.target.overrides, &source.meta);
    Instance {
        version: source.version.clone(),
        meta: Metadata {
            partition_uuid: c.partition_uuid.or(s.partition_uuid),
            partition_flags: c.partition_flags.or(s.partition_flags),
            mtime: s.mtime,
            mode: c.mode.or(s.mode),
            size: s.size,
            tries_done: c.tries_done.or(s.tries_done).or(Some(0)),
            tries_left: c.tries_left.or(s.tries_left).or(Some(3)),
            no_auto: c.no_auto.or(s.no_auto),
            read_only: c.read_only.or(s.read_only),
            growfs: c.growfs.or(s.growfs),
            sha256: s.sha256,
        },
    }
}

/// The link to `file_name`, with text relative to the link's directory. Paths are compared as
/// written inside the root; symlinked directories on the way are not resolved, which yields a
/// different but equivalent text where systemd would resolve them.
fn point(component: &Component, t: &Transfer, link: &Path, file_name: &str) -> LinkUpdate {
    let link = link_in_root(t, link);
    let from = link.parent().unwrap_or(Path::new("/"));
    LinkUpdate::Point {
        path: below(&component.root, &link),
        text: relative(from, &t.target.path.join(file_name)),
    }
}

/// A relative `CurrentSymlink=` is relative to the target directory.
fn link_in_root(t: &Transfer, link: &Path) -> PathBuf {
    t.target.path.join(link)
}

fn below(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// `path_make_relative()` for normalized absolute paths.
fn relative(from_dir: &Path, to: &Path) -> PathBuf {
    fn parts(p: &Path) -> Vec<PathPart<'_>> {
        p.components()
            .filter(|c| matches!(c, PathPart::Normal(_)))
            .collect()
    }
    let (from, to) = (parts(from_dir), parts(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out: PathBuf = from[common..].iter().map(|_| "..").collect();
    out.extend(&to[common..]);
    out
}

fn obsolete(component: &Component, v: &str) -> bool {
    component.transfers.iter().any(|t| {
        t.min_version
            .as_deref()
            .is_some_and(|m| compare(m, v) == Ordering::Greater)
    })
}

fn first_match(patterns: &[Pattern], name: &str) -> Option<Instance> {
    patterns.iter().find_map(|p| p.matches(name))
}

fn listing(listings: &[Vec<String>], i: usize) -> &[String] {
    listings.get(i).map_or(&[], Vec::as_slice)
}

fn same(a: &str, b: &str) -> bool {
    compare(a, b) == Ordering::Equal
}

/// The names `recognise` accepts, newest first, then by name (systemd's `instance_cmp()`).
fn sorted(
    names: &[String],
    recognise: impl Fn(&str) -> Option<Instance>,
) -> Vec<(Instance, String)> {
    let mut found: Vec<(Instance, String)> = names
        .iter()
        .filter_map(|n| Some((recognise(n)?, n.clone())))
        .collect();
    found.sort_by(|(a, an), (b, bn)| compare(&b.version, &a.version).then_with(|| an.cmp(bn)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::sysupdate::OsInfo;

    fn transfer(name: &str, extra: &str) -> Transfer {
        let text = format!(
            "[Source]\nType=url-file\nPath=https://e.org/{name}/\n\
             MatchPattern={name}-@v-%a.raw\n[Target]\nType=regular-file\n\
             Path=/opt/extensions/{name}\nCurrentSymlink=/etc/extensions/{name}.raw\n{extra}"
        );
        let os = OsInfo {
            architecture: "x86-64".into(),
            ..OsInfo::default()
        };
        Transfer::parse(name, &[(name, &text)], &os).unwrap()
    }

    fn component(transfers: Vec<Transfer>) -> Component {
        Component {
            name: Some("docker".into()),
            root: PathBuf::from("/sysroot"),
            transfers,
            disabled: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn docker(extra: &str) -> Component {
        component(vec![transfer("docker", extra)])
    }

    fn names(ext: &str, versions: &[&str]) -> Vec<String> {
        versions
            .iter()
            .map(|v| format!("{ext}-{v}-x86-64.raw"))
            .collect()
    }

    fn versions(r: &[Release]) -> Vec<&str> {
        r.iter().map(|r| r.version.as_str()).collect()
    }

    /// The plan for `docker` with these versions offered and installed; the
    /// last installed one is current (the `CurrentSymlink=` target).
    fn plan(
        c: &Component,
        offered: &[&str],
        installed: &[&str],
        mode: Mode,
        retracted: &[&str],
    ) -> UpdatePlan {
        let available = available_versions(c, &[names("docker", offered)]);
        let current = installed.last().map(|v| format!("docker-{v}-x86-64.raw"));
        let retracted: Vec<String> = retracted.iter().map(|s| s.to_string()).collect();
        let listings = [names("docker", installed)];
        plan_update(c, &available, &listings, &[current], mode, &retracted).unwrap()
    }

    #[test]
    fn version_order_matches_systemd_analyze() {
        // Each pair checked with `systemd-analyze compare-versions A B` (systemd 252).
        #[rustfmt::skip]
        let table = [
            ("v1.32.2", "v1.32.10", Ordering::Less), ("24.0.9", "25.0.3", Ordering::Less),
            ("1.0~rc1", "1.0", Ordering::Less), ("2.2.5", "2.2.5-1", Ordering::Less),
            ("1.2", "1.2.0", Ordering::Less), ("1.2a", "1.2", Ordering::Greater),
            ("0.39.1", "0.40.0", Ordering::Less), ("v1.33.12", "v1.33.2", Ordering::Greater),
            ("28.0.0", "28.0.0^1", Ordering::Less), ("1_2", "1.2", Ordering::Greater),
            ("1.2-rc1", "1.2", Ordering::Greater), ("2.1+build", "2.1", Ordering::Greater),
            ("1.0", "1.00", Ordering::Equal), ("v1.2", "1.2", Ordering::Less),
            ("1.2.3", "1.2.3.0", Ordering::Less), ("1.10", "1.9.9", Ordering::Greater),
            ("2.0-beta1", "2.0", Ordering::Greater), ("2.0~beta1", "2.0-beta1", Ordering::Less),
            ("1.2.3a", "1.2.3b", Ordering::Less), ("24.0.9", "24.0.10", Ordering::Less),
            ("1,2", "1.2", Ordering::Greater), ("0.9", "1.0~rc1", Ordering::Less),
            ("latest", "1.0", Ordering::Less),
        ];
        for (a, b, want) in table {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn available_needs_every_transfer_and_min_version() {
        let c = component(vec![
            transfer("a", "[Transfer]\nMinVersion=1.1"),
            transfer("b", ""),
        ]);
        let a = names("a", &["1.0", "1.1", "1.2", "1.3", "1.10", "1.00"]);
        let mut b = names("b", &["1.0", "1.1", "1.2", "1.10"]);
        b.push("BEST-BEFORE-2030-01-01".into());
        b.push("b-1.3-arm64.raw".into());
        let r = available_versions(&c, &[a, b]);
        // 1.3 is only half published, 1.0 is below MinVersion.
        assert_eq!(versions(&r), ["1.10", "1.2", "1.1"]);
        assert_eq!(r[0].files[1].name, "b-1.10-x86-64.raw");
        assert_eq!(available_versions(&c, &[]), []);
    }

    #[test]
    fn installed_marks_incomplete_versions() {
        let c = component(vec![transfer("a", ""), transfer("b", "")]);
        let mut a = names("a", &["1", "2"]);
        a.extend([
            ".#sysupdatea-3-x86-64.raw1234".into(),
            ".sysupdate.pending.a-3-x86-64.raw".into(),
        ]);
        let i = installed_versions(&c, &[a, names("b", &["2"])]);
        let got: Vec<_> = i
            .iter()
            .map(|i| (i.version.as_str(), i.incomplete))
            .collect();
        assert_eq!(got, [("2", false), ("1", true)]);
        assert_eq!(i[1].files, [vec!["a-1-x86-64.raw".to_string()], vec![]]);
    }

    #[test]
    fn first_boot_installs_newest_with_relative_link() {
        let c = docker("");
        let available = available_versions(&c, &[names("docker", &["1.2", "1.3"])]);
        let staged = [
            ".#sysupdatedocker-1.3-x86-64.rawXy12",
            ".sysupdate.pending.docker-1.3-x86-64.raw",
        ];
        let listing = [staged.map(String::from).to_vec()];
        let p = plan_update(&c, &available, &listing, &[None], Mode::Missing, &[]).unwrap();
        assert_eq!(p.transfers[0].vacuum, staged);
        let p = plan(&c, &["1.2", "1.3"], &[], Mode::Missing, &[]);
        assert_eq!(p.version.as_deref(), Some("1.3"));
        let t = &p.transfers[0];
        let d = t.download.as_ref().unwrap();
        assert_eq!(d.source, "docker-1.3-x86-64.raw");
        assert_eq!(d.file_name, "docker-1.3-x86-64.raw");
        assert_eq!(
            d.path,
            Path::new("/sysroot/opt/extensions/docker/docker-1.3-x86-64.raw")
        );
        assert_eq!(d.instance.meta.tries_left, Some(3));
        let link = LinkUpdate::Point {
            path: "/sysroot/etc/extensions/docker.raw".into(),
            text: "../../opt/extensions/docker/docker-1.3-x86-64.raw".into(),
        };
        assert_eq!(t.link, Some(link));
        assert!(t.vacuum.is_empty() && t.remove.is_empty());
    }

    #[test]
    fn missing_keeps_what_is_installed_update_moves_on() {
        let c = docker("");
        let p = plan(&c, &["1.2", "1.3"], &["1.2"], Mode::Missing, &[]);
        assert_eq!(p.version, None);
        assert_eq!(p.transfers[0], TransferPlan::default());
        let p = plan(&c, &["1.2", "1.3"], &["1.2"], Mode::Update, &[]);
        assert_eq!(p.version.as_deref(), Some("1.3"));
        // Newer or equal installed: nothing, as sysupdate.
        let p = plan(&c, &["1.2", "1.3"], &["1.4"], Mode::Update, &[]);
        assert_eq!(p.version, None);
    }

    #[test]
    fn retracted_offer_is_never_chosen() {
        let c = docker("");
        let p = plan(&c, &["1.2", "1.3"], &["1.2"], Mode::Update, &["1.3"]);
        assert_eq!(p.version, None);
        assert_eq!(p.transfers[0], TransferPlan::default());
        let p = plan(&c, &["1.2", "1.3"], &[], Mode::Missing, &["1.3"]);
        assert_eq!(p.version.as_deref(), Some("1.2"));
    }

    #[test]
    fn retracted_current_is_repointed_and_removed() {
        let c = docker("");
        let p = plan(&c, &["1.2", "1.3"], &["1.2", "1.3"], Mode::Update, &["1.3"]);
        assert_eq!(p.version, None);
        let t = &p.transfers[0];
        assert_eq!(t.remove, ["docker-1.3-x86-64.raw"]);
        let link = LinkUpdate::Point {
            path: "/sysroot/etc/extensions/docker.raw".into(),
            text: "../../opt/extensions/docker/docker-1.2-x86-64.raw".into(),
        };
        assert_eq!(t.link, Some(link));
        // Only the retracted version installed, a newer good one offered: install it instead.
        let p = plan(&c, &["1.3", "1.4"], &["1.3"], Mode::Missing, &["1.3"]);
        assert_eq!(p.version.as_deref(), Some("1.4"));
        assert_eq!(p.transfers[0].remove, ["docker-1.3-x86-64.raw"]);
        assert!(p.transfers[0].vacuum.is_empty());
        // Nothing good left at all: the link goes too.
        let p = plan(&c, &["1.3"], &["1.3"], Mode::Missing, &["1.3"]);
        let gone = LinkUpdate::Remove {
            path: "/sysroot/etc/extensions/docker.raw".into(),
        };
        assert_eq!(p.transfers[0].link, Some(gone));
    }

    #[test]
    fn incomplete_install_is_repaired_per_transfer() {
        let c = component(vec![transfer("a", ""), transfer("b", "")]);
        let available = available_versions(&c, &[names("a", &["2"]), names("b", &["2"])]);
        let listings = [names("a", &["1", "2"]), names("b", &["1"])];
        let p = plan_update(&c, &available, &listings, &[None, None], Mode::Update, &[]).unwrap();
        assert_eq!(p.version.as_deref(), Some("2"));
        assert_eq!(p.transfers[0], TransferPlan::default());
        assert_eq!(
            p.transfers[1].download.as_ref().unwrap().file_name,
            "b-2-x86-64.raw"
        );
    }

    #[test]
    fn vacuum_keeps_protected_and_new_version() {
        let t = transfer("docker", "[Transfer]\nProtectVersion=1.0");
        let mut listing = names("docker", &["1.1", "1.0", "1.2"]);
        listing.extend([
            ".#sysupdate-tmp".into(),
            ".sysupdate.partial.docker-0.9-x86-64.raw".into(),
        ]);
        listing.push("unrelated.txt".into());
        let mut two = t.clone();
        two.target.instances_max = 2;
        let del = vacuum(&two, &listing, &["1.3".into()]);
        assert_eq!(
            del,
            [
                ".#sysupdate-tmp",
                ".sysupdate.partial.docker-0.9-x86-64.raw",
                "docker-1.1-x86-64.raw",
                "docker-1.2-x86-64.raw"
            ]
        );
        // Default InstancesMax=3 keeps two; the version being installed is kept as well.
        let del = vacuum(&t, &listing, &["1.1".into()]);
        assert_eq!(del[2..], ["docker-1.2-x86-64.raw"]);
        let mut keep_tmp = t;
        keep_tmp.target.remove_temporary = false;
        let listing = [".#x".to_string(), "docker-1-x86-64.raw".to_string()];
        assert_eq!(vacuum(&keep_tmp, &listing, &[]), Vec::<String>::new());
    }

    #[test]
    fn naming_uses_first_target_pattern_and_defaults() {
        let c =
            docker("MatchPattern=docker_@v+@l-@d.raw docker-@v-x86-64.raw\nCurrentSymlink=cur.raw");
        let p = plan(&c, &["1.3"], &["1.2"], Mode::Update, &[]);
        let t = &p.transfers[0];
        assert_eq!(t.download.as_ref().unwrap().file_name, "docker_1.3+3-0.raw");
        let link = LinkUpdate::Point {
            path: "/sysroot/opt/extensions/docker/cur.raw".into(),
            text: "docker_1.3+3-0.raw".into(),
        };
        assert_eq!(t.link, Some(link));
        let c = docker("MatchPattern=docker-@v-@h.raw");
        let available = available_versions(&c, &[names("docker", &["1"])]);
        let e = plan_update(&c, &available, &[], &[], Mode::Missing, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot name a new instance after \"docker-@v-@h.raw\": no value for @h"
        );
    }
}
