//! The merge pipeline and the commands around it: discover → open and
//! validate each image → plan → build overlays → attach → record.
//!
//! Unlike systemd-sysext (its issue #32762), one bad image does not stop
//! the others: it is skipped with a one-line reason. `strict` restores
//! all-or-nothing.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rustix::fs::OFlags;
use serde::Serialize;

use crate::class::Class;
use crate::cmdline::KernelCmdline;
use crate::envfile::EnvFile;
use crate::find::counting;
use crate::find::discover::{self, Candidate, Finding, Origin, SearchRoot};
use crate::find::release::{self, HostRelease};
use crate::mount::modules;
use crate::mount::origin::{self, ExtensionOrigin, Identity, MergeOrigin};
use crate::mount::overlay::{self, Extension, HierarchyPlan, Mutable, MutableSetup};
use crate::sys::fs::{
    file_identity, is_mount_point, open_dir, open_in_root, rename_noreplace, FileIdentity,
};
use crate::sys::mount::{PrivateNamespace, Workspace};
use crate::sys::mountcompat::Replaced;
use crate::verify::image::{self, Trust};
use crate::verify::policy::{self, ImagePolicy};
use crate::verify::probe::probe;
use crate::verify::signature;
use crate::verify::verity;

/// Where and what to merge; every environment input is explicit.
#[derive(Clone, Debug)]
pub struct Options {
    /// The root to extend (`/sysroot` in the initrd).
    pub root: PathBuf,
    /// The initrd's own root, whose `/run/extensions` and `/.extra/sysext`
    /// also count; None outside an initrd.
    pub initrd_root: Option<PathBuf>,
    /// The classes to merge.
    pub classes: Vec<Class>,
    /// Fail the whole merge if any image is rejected.
    pub strict: bool,
    /// Runtime state directory: the workspace is made under it and the
    /// record of the merge written to `rdext/` in it.
    pub run_dir: PathBuf,
    /// Host architecture in systemd notation.
    pub host_arch: String,
    /// The running kernel's modules, to load loop/overlay/squashfs/erofs
    /// from before they are needed.
    pub modules_dir: Option<PathBuf>,
    /// The kernel command line, for the options of modules rdext loads.
    pub cmdline: KernelCmdline,
    /// Extensions whose absence must stop the boot.
    pub required: Vec<String>,
    /// Which image policy applies.
    pub policy: PolicyChoice,
    /// In the initrd, the target root's own choice: it can only make
    /// `policy` stricter (the two are intersected).
    pub target_policy: Option<PolicyChoice>,
    /// Directories with trusted `*.crt` signing certificates, first wins
    /// per file name.
    pub verity_dirs: Vec<PathBuf>,
    /// Whether and where the merged hierarchies are writable.
    pub mutable: Mutable,
}

/// What to do about a merge already in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Refuse, as `systemd-sysext merge` does.
    Merge,
    /// Replace it, atomically per hierarchy; when nothing changed (same
    /// images, same mode) keep it unless `always`.
    Refresh {
        /// Rebuild even when nothing changed.
        always: bool,
    },
}

/// The image policy as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyChoice {
    /// systemd's class default, and its strict policy for images the
    /// initrd got from the ESP (`/.extra/`).
    Default,
    /// `rdext.policy=signed|verity|any`, for both classes.
    Level(String),
    /// `rdext.image_policy=`: the full grammar, for every image.
    Explicit(ImagePolicy),
}

impl Options {
    /// The policy for one candidate: the trusted choice, tightened by the
    /// target's.
    fn policy_for(&self, class: Class, candidate: &Candidate) -> ImagePolicy {
        let policy = self.policy.resolve(class, candidate);
        match &self.target_policy {
            Some(target) => policy.intersect(&target.resolve(class, candidate)),
            None => policy,
        }
    }
}

impl PolicyChoice {
    /// The policy for one candidate. A bad level refuses everything rather
    /// than silently falling back to a weaker default.
    fn resolve(&self, class: Class, candidate: &Candidate) -> ImagePolicy {
        let sysext = class == Class::Sysext;
        match self {
            PolicyChoice::Explicit(policy) => *policy,
            PolicyChoice::Level(level) => {
                policy::from_level(level, sysext).unwrap_or_else(|_| ImagePolicy::deny())
            }
            PolicyChoice::Default
                if candidate.origin == Origin::Initrd && candidate.entry.starts_with("/.extra") =>
            {
                if sysext {
                    ImagePolicy::sysext_strict()
                } else {
                    ImagePolicy::confext_strict()
                }
            }
            PolicyChoice::Default if sysext => ImagePolicy::sysext_default(),
            PolicyChoice::Default => ImagePolicy::confext_default(),
        }
    }
}

/// Why `merge` failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A required extension is not merged: the boot must not go on.
    #[error("required extension not merged: {}", .0.join("; "))]
    RequiredMissing(Vec<String>),
    /// Anything else; the boot goes on without (some) extensions.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What happened to one search-directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// Validated and merged (or mergeable, for `list`).
    Accepted,
    /// A candidate that failed to open or validate.
    Rejected(String),
    /// An empty directory masking its name.
    Masked,
    /// Lost its name to an earlier entry.
    Shadowed(PathBuf),
    /// Not an image.
    Ignored(String),
}

/// One line of `rdext list`, and the record of a merge.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    /// sysext or confext.
    pub class: &'static str,
    /// The extension name, when the entry is an image.
    pub name: Option<String>,
    /// The search-directory entry.
    pub entry: PathBuf,
    /// Whether the entry is in the initrd rather than the target root.
    pub initrd: bool,
    /// The resolved image.
    pub path: Option<PathBuf>,
    /// The version picked from a `.v/` directory.
    pub version: Option<String>,
    /// How an accepted image is protected: "signed by …", "verity",
    /// "unprotected".
    pub protection: Option<String>,
    /// The decision.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl ImageReport {
    fn for_candidate(class: Class, c: &Candidate, verdict: Verdict) -> Self {
        ImageReport {
            class: class.name(),
            name: Some(c.name.clone()),
            entry: c.entry.clone(),
            initrd: c.origin == Origin::Initrd,
            path: Some(c.path.clone()),
            version: c.version.clone(),
            protection: None,
            verdict,
        }
    }

    /// The entry as the user knows it.
    pub fn display_entry(&self) -> String {
        let entry = self.entry.display();
        if self.initrd {
            format!("{entry} (initrd)")
        } else {
            entry.to_string()
        }
    }
}

/// File identities of the images, taken in the caller's own mount
/// namespace: mount ids differ in a private copy of it.
type Identities = std::collections::HashMap<PathBuf, FileIdentity>;

/// The identity of every image discovery picked.
fn identities(findings: &[Finding]) -> Identities {
    findings
        .iter()
        .filter_map(|f| match f {
            Finding::Selected(c) => file_identity(&c.path).ok().map(|id| (c.path.clone(), id)),
            _ => None,
        })
        .collect()
}

/// How many images are opened at once. Opening one is mostly waiting
/// (loop device set-up, the file system's first reads through the loop
/// device), so more than one per CPU helps; beyond this the kernel's loop
/// and mount locks serialise the rest.
const OPEN_WORKERS: usize = 8;

/// `f` applied to every item by up to `workers` threads (the caller's one
/// of them), the results in item order. A thread that cannot be started
/// leaves its share to the others.
fn map_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = workers.min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut all = work();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The result of examining one class.
struct Examined {
    reports: Vec<ImageReport>,
    accepted: Vec<Extension>,
    /// Boot-counted entries renamed for this try, relative to the root.
    counted: Vec<String>,
    /// What each accepted image is, for the merge's `origin`.
    origins: Vec<ExtensionOrigin>,
}

/// Read the target root's os-release, resolved inside it.
pub fn host_release(root: &Path) -> Result<HostRelease> {
    let root_fd = open_dir(root).with_context(|| format!("cannot open root {}", root.display()))?;
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(fd) = open_in_root(&root_fd, Path::new(rel), OFlags::RDONLY) {
            let text = std::io::read_to_string(std::fs::File::from(fd))
                .with_context(|| format!("cannot read {}/{rel}", root.display()))?;
            let env = EnvFile::parse(text).with_context(|| format!("{}/{rel}", root.display()))?;
            return HostRelease::from_env(&env)
                .with_context(|| format!("{}/{rel}", root.display()));
        }
    }
    bail!("{} has no os-release", root.display())
}

fn search_roots(opts: &Options) -> Vec<SearchRoot> {
    let mut roots = vec![SearchRoot {
        path: opts.root.clone(),
        origin: Origin::Target,
    }];
    if let Some(initrd) = &opts.initrd_root {
        roots.push(SearchRoot {
            path: initrd.clone(),
            origin: Origin::Initrd,
        });
    }
    roots
}

/// The trusted certificates and the time to judge them at, read once per
/// run and only when an image is to be judged.
type TrustCache = std::cell::OnceCell<(Vec<signature::TrustedCert>, u64)>;

/// What examining images draws on besides the images.
#[derive(Clone, Copy)]
struct Examination<'a> {
    /// File identities taken in the caller's namespace.
    identities: &'a Identities,
    /// The trust material, once loaded.
    trust: &'a TrustCache,
    /// How many images to open at once.
    workers: usize,
    /// Loads the kernel modules images need as they need them.
    need_modules: image::NeedModules<'a>,
}

/// A selected image's policy and its identity as discovered.
type Judging<'a> = (ImagePolicy, Option<&'a FileIdentity>);

/// Open and validate every image of `class` that discovery found
/// (`findings`). Images are mounted in `workspace` when there is one;
/// without it only directories can be judged.
fn examine(
    opts: &Options,
    class: Class,
    host: &HostRelease,
    workspace: Option<&Workspace>,
    count_tries: bool,
    findings: Vec<Finding>,
    how: &Examination<'_>,
) -> Result<Examined> {
    let Examination {
        identities,
        trust,
        workers,
        need_modules,
    } = *how;
    let mut counted = Vec::new();
    // Boot counting renames, one entry after the other, before anything
    // is opened; the identity is the one taken before the rename.
    let findings: Vec<(Finding, Option<Judging<'_>>)> = findings
        .into_iter()
        .map(|finding| match finding {
            Finding::Selected(mut c) => {
                let known_identity = identities.get(&c.path);
                if count_tries {
                    counted.extend(count_try(&opts.root, &mut c));
                }
                let policy = opts.policy_for(class, &c);
                (Finding::Selected(c), Some((policy, known_identity)))
            }
            other => (other, None),
        })
        .collect();
    let needs_trust = findings.iter().any(
        |(f, _)| matches!(f, Finding::Selected(c) if c.kind != discover::SourceKind::Directory),
    );
    let no_trust = (Vec::new(), 0);
    let (trusted, now) = if needs_trust {
        trust.get_or_init(|| trust_material(opts))
    } else {
        &no_trust
    };
    // Each job's position among the findings names the mount point of an
    // image with a long name (see image_mount_point).
    let jobs: Vec<(usize, &Candidate, &ImagePolicy)> = findings
        .iter()
        .enumerate()
        .filter_map(|(index, (finding, selected))| match (finding, selected) {
            (Finding::Selected(c), Some((policy, _))) => Some((index, c, policy)),
            _ => None,
        })
        .collect();
    let mut checks = map_parallel(&jobs, workers, |&(index, c, policy)| {
        let trust = Trust {
            policy,
            trusted,
            now: *now,
        };
        let opened = open_and_validate(
            class,
            c,
            host,
            &opts.host_arch,
            workspace.map(|ws| image_mount_point(ws, class, &c.name, index)),
            &trust,
            need_modules,
        )?;
        let extension = stackable(class, &c.name, &opened.root)?;
        Ok((opened, extension))
    })
    .into_iter();
    drop(jobs);
    let mut reports = Vec::new();
    let mut accepted = Vec::new();
    let mut origins = Vec::new();
    let root = std::fs::canonicalize(&opts.root).unwrap_or_else(|_| opts.root.clone());
    for (finding, selected) in findings {
        let report = match finding {
            Finding::Selected(c) => match checks.next() {
                Some(Ok((opened, extension))) => {
                    let known_identity = selected.and_then(|(_, known)| known);
                    match extension_origin(&c, &root, opened.root_hash.clone(), known_identity) {
                        Ok(origin) => origins.push(origin),
                        Err(e) => log::warn!("cannot identify {}: {e}", c.path.display()),
                    }
                    accepted.push(extension);
                    let mut report = ImageReport::for_candidate(class, &c, Verdict::Accepted);
                    report.protection = Some(describe_protection(&opened.verdict));
                    report
                }
                Some(Err(reason)) => {
                    ImageReport::for_candidate(class, &c, Verdict::Rejected(reason))
                }
                None => unreachable!("one check per selected image"),
            },
            Finding::Masked(c) => ImageReport::for_candidate(class, &c, Verdict::Masked),
            Finding::Shadowed { candidate, by } => {
                ImageReport::for_candidate(class, &candidate, Verdict::Shadowed(by))
            }
            Finding::Ignored { entry, reason } => ImageReport {
                class: class.name(),
                name: None,
                entry,
                initrd: false,
                path: None,
                version: None,
                protection: None,
                verdict: Verdict::Ignored(reason),
            },
        };
        reports.push(report);
    }
    Ok(Examined {
        reports,
        accepted,
        counted,
        origins,
    })
}

/// Count this boot's try of a boot-counted `.v/` entry of the target root (`+LEFT[-DONE]`) by
/// renaming it, before it is merged. Returns the new path relative to the root, for
/// `rdext bless`. A rename that fails (read-only root) is logged and the entry merged uncounted.
fn count_try(root: &Path, candidate: &mut Candidate) -> Option<String> {
    if candidate.origin != Origin::Target || candidate.version.is_none() {
        return None;
    }
    let name = candidate.path.file_name()?.to_str()?;
    let next = counting::next_try(name)?;
    let new_path = candidate.path.with_file_name(&next);
    let rel = new_path.strip_prefix(root).ok()?.to_str()?.to_string();
    match rename_noreplace(&candidate.path, &new_path) {
        Ok(()) => {
            log::info!(
                "{}: counting this boot's try of {name}: now {next}",
                candidate.entry.display()
            );
            candidate.path = new_path;
            Some(format!("/{rel}"))
        }
        Err(e) => {
            log::warn!(
                "{}: cannot count the try of {name} ({e}); merging it uncounted",
                candidate.entry.display()
            );
            None
        }
    }
}

/// How systemd-sysext identifies an accepted image in `origin`: its root
/// hash, else where the file is and when it was made.
fn extension_origin(
    c: &Candidate,
    root: &Path,
    root_hash: Option<Vec<u8>>,
    known: Option<&FileIdentity>,
) -> std::io::Result<ExtensionOrigin> {
    let identity = match root_hash {
        Some(hash) => Identity::VerityHash(hash),
        None => {
            let id = match known {
                Some(id) => id.clone(),
                None => file_identity(&c.path)?,
            };
            let (crtime_usec, mtime_usec) = match c.kind {
                discover::SourceKind::RawFile => (id.btime_usec, id.mtime_usec),
                discover::SourceKind::Directory => (id.btime_usec, 0),
                discover::SourceKind::BlockDevice => (0, 0),
            };
            Identity::File {
                mount_id: id.mount_id,
                handle: id.handle,
                inode: id.inode,
                crtime_usec,
                mtime_usec,
            }
        }
    };
    Ok(ExtensionOrigin {
        name: c.name.clone(),
        path: origin::without_root(&c.path, root),
        identity,
    })
}

fn describe_protection(verdict: &verity::Verdict) -> String {
    match verdict {
        verity::Verdict::Unprotected => "unprotected".to_string(),
        verity::Verdict::Verity => "verity".to_string(),
        verity::Verdict::Signed { signer, .. } => format!("signed by {signer}"),
        verity::Verdict::KernelSigned { .. } => "signed, checked by the kernel keyring".to_string(),
    }
}

/// The trusted certificates (warnings logged) and the time to judge
/// their validity at.
fn trust_material(opts: &Options) -> (Vec<signature::TrustedCert>, u64) {
    let (trusted, warnings) = signature::load_trusted(&opts.verity_dirs);
    for warning in warnings {
        log::warn!("{warning}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (trusted, now)
}

/// Resolve what stacking one extension involves (its layers, its kernel
/// module metadata), so a fault in it refuses it alone rather than the
/// merge of its whole class.
fn stackable(class: Class, name: &str, tree: &Path) -> Result<Extension, String> {
    let extension = Extension::resolve(class, name, tree)
        .map_err(|e| format!("cannot plan its overlay: {e}"))?;
    for (_, layer) in &extension.layers {
        overlay::check_layer_path(layer)?;
    }
    if let Some(usr) = extension.layer("usr") {
        modules::check_layer(usr)?;
    }
    Ok(extension)
}

/// Where an image is mounted in the workspace: under its name, or, for a
/// name too long to leave its layer paths short enough for the overlay
/// mount (see [`overlay::MAX_LAYER_PATH`]), under its position among the
/// class's entries (`images/sysext.long/N`, beside the named ones).
fn image_mount_point(workspace: &Workspace, class: Class, name: &str, index: usize) -> PathBuf {
    let images = workspace.path().join("images");
    if name.len() <= LONG_NAME {
        images.join(class.name()).join(name)
    } else {
        images
            .join(format!("{}.long", class.name()))
            .join(index.to_string())
    }
}

/// Extension names longer than this are not used in mount point paths.
const LONG_NAME: usize = 64;

/// Open one candidate and judge it; the error is the one-line reason.
/// `mount_point`: where to mount it in the workspace (none without one).
fn open_and_validate(
    class: Class,
    candidate: &Candidate,
    host: &HostRelease,
    host_arch: &str,
    mount_point: Option<PathBuf>,
    trust: &Trust<'_>,
    need_modules: image::NeedModules<'_>,
) -> Result<image::Opened, String> {
    let mount_point = match mount_point {
        Some(path) => path,
        None if candidate.kind == discover::SourceKind::Directory => PathBuf::new(),
        None => return Err("not inspected (mounting images needs root)".into()),
    };
    let opened = image::open(
        candidate,
        &mount_point,
        class.mount_attrs(),
        trust,
        need_modules,
    )
    .map_err(|e| e.to_string())?;
    let root = opened.root.clone();
    let root_fd = open_dir(&root).map_err(|e| format!("cannot open image root: {e}"))?;
    if open_in_root(
        &root_fd,
        Path::new(class.forbidden_os_release()),
        OFlags::PATH,
    )
    .is_ok()
    {
        return Err(format!("carries its own /{}", class.forbidden_os_release()));
    }
    let release_path = release::find_release_file(&root, class, &candidate.name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "no {}/extension-release.{}",
                class.release_dir(),
                candidate.name
            )
        })?;
    let text = std::fs::read(&release_path)
        .map_err(|e| format!("cannot read {}: {e}", release_path.display()))?;
    let env = EnvFile::parse(text).map_err(|e| format!("bad extension-release: {e}"))?;
    release::validate(class, &env, host, "system", host_arch).map_err(|e| e.to_string())?;
    Ok(opened)
}

/// What `merge` did for one class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassOutcome {
    /// sysext or confext.
    pub class: &'static str,
    /// Names merged, ascending.
    pub merged: Vec<String>,
    /// Hierarchies overlaid, e.g. `/usr`.
    pub hierarchies: Vec<String>,
    /// Every entry and its verdict.
    pub images: Vec<ImageReport>,
    /// Boot-counted entries whose try this boot counted (paths in the root), for `rdext bless`.
    pub counted: Vec<String>,
}

/// Merge every enabled class. Errors of one class (e.g. already merged)
/// are returned after the other classes had their turn; a missing required
/// extension outranks them.
pub fn merge(opts: &Options) -> Result<Vec<ClassOutcome>, MergeError> {
    run(opts, Action::Merge)
}

/// Merge every enabled class again from what is there now, replacing the
/// merges in place; see [`Action::Refresh`].
pub fn refresh(opts: &Options, always: bool) -> Result<Vec<ClassOutcome>, MergeError> {
    run(opts, Action::Refresh { always })
}

fn run(opts: &Options, action: Action) -> Result<Vec<ClassOutcome>, MergeError> {
    let started = Instant::now();
    // Each class's search directories are read once here; a class whose
    // search fails searches again (and reports why) when it is merged.
    let mut found: Vec<(Class, Option<Vec<Finding>>)> = opts
        .classes
        .iter()
        .map(|&class| {
            let findings = discover::discover(class, &search_roots(opts), &opts.host_arch).ok();
            (class, findings)
        })
        .collect();
    // Modules load when an image first needs them: a set of plain squashfs
    // images loads neither erofs nor device-mapper, the idle path nothing.
    let modules = opts
        .modules_dir
        .as_deref()
        .map(|dir| modules::OnDemand::new(dir, &opts.cmdline));
    let host = match host_release(&opts.root) {
        Ok(host) => host,
        Err(e) if !opts.required.is_empty() => {
            return Err(MergeError::RequiredMissing(
                opts.required
                    .iter()
                    .map(|n| format!("{n}: {e:#}"))
                    .collect(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    let trust = TrustCache::new();
    for (class, findings) in found.drain(..) {
        match merge_class(
            opts,
            class,
            &host,
            action,
            findings,
            &trust,
            modules.as_ref(),
        ) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                log::error!("{}: {e:#}", class.name());
                errors.push(format!("{}: {e:#}", class.name()));
            }
        }
    }
    let count = |name: &str| {
        outcomes
            .iter()
            .find(|o| o.class == name)
            .map_or(0, |o| o.merged.len())
    };
    log::info!(
        "merged {} sysext, {} confext in {} ms",
        count("sysext"),
        count("confext"),
        started.elapsed().as_millis()
    );
    let missing = missing_required(&opts.required, &outcomes);
    if !missing.is_empty() {
        return Err(MergeError::RequiredMissing(missing));
    }
    if !errors.is_empty() {
        return Err(anyhow::anyhow!("{}", errors.join("; ")).into());
    }
    Ok(outcomes)
}

/// Each required name that no class merged, with the reason.
fn missing_required(required: &[String], outcomes: &[ClassOutcome]) -> Vec<String> {
    required
        .iter()
        .filter(|name| !outcomes.iter().any(|o| o.merged.contains(name)))
        .map(|name| {
            let report = outcomes.iter().flat_map(|o| &o.images).find(|r| {
                r.name.as_ref() == Some(name) && !matches!(r.verdict, Verdict::Shadowed(_))
            });
            let why = match report.map(|r| &r.verdict) {
                Some(Verdict::Rejected(reason)) => reason.clone(),
                Some(Verdict::Masked) => "masked by an empty directory".to_string(),
                Some(Verdict::Accepted) => "its class could not be merged".to_string(),
                _ => "not found".to_string(),
            };
            format!("{name}: {why}")
        })
        .collect()
}

/// A merge built and ready to be put in place.
struct Prepared {
    outcome: ClassOutcome,
    /// Each hierarchy's plan and detached overlay.
    built: Vec<(HierarchyPlan, OwnedFd)>,
}

/// What examining and building decided.
enum Decision {
    /// Mount these.
    Place(Prepared),
    /// Nothing to merge: leave the root as it is (merge) or remove the
    /// merge there (refresh).
    Nothing(ClassOutcome),
    /// A refresh found the same images in the same mode.
    Unchanged(ClassOutcome),
}

/// Merge (or refresh) one class; `findings` is what discovery found in the
/// caller's namespace, None to search again.
fn merge_class(
    opts: &Options,
    class: Class,
    host: &HostRelease,
    action: Action,
    findings: Option<Vec<Finding>>,
    trust: &TrustCache,
    modules: Option<&modules::OnDemand<'_>>,
) -> Result<ClassOutcome> {
    let targets: Vec<(&str, PathBuf)> = class
        .hierarchies()
        .iter()
        .map(|h| (*h, opts.root.join(h)))
        .collect();
    let merged: Vec<&(&str, PathBuf)> = targets
        .iter()
        .filter(|(_, t)| overlay::merged_state(class, t).is_some())
        .collect();
    if action == Action::Merge {
        if let Some((h, _)) = merged.first() {
            bail!("/{h} is already merged; run 'rdext unmerge' or 'rdext refresh'");
        }
    }
    // What is merged now, read before anything moves.
    let old_state = merged
        .first()
        .and_then(|(_, t)| overlay::merged_state(class, t));
    let old_origin = merged
        .iter()
        .find_map(|(_, t)| std::fs::read_to_string(t.join(class.meta_dir()).join("origin")).ok());
    let old_work_dirs: Vec<(&str, PathBuf)> = merged
        .iter()
        .filter_map(|(h, t)| overlay::recorded_work_dir(class, &opts.root, t).map(|w| (*h, w)))
        .collect();

    let findings = match findings {
        Some(findings) => findings,
        None => discover::discover(class, &search_roots(opts), &opts.host_arch)
            .with_context(|| format!("cannot search for {} images", class.name()))?,
    };
    let identities = identities(&findings);
    let need_modules = |names: &[&str]| {
        if let Some(modules) = modules {
            modules.need(names);
        }
    };
    // The new overlays need the hierarchies as they are below the merge:
    // they are built in a private copy of the mount namespace where the
    // old merge is taken off (and the search directories are read again),
    // then put in place in the real one. setns(2) back to the original
    // needs a process without other threads: images are opened one by one
    // there.
    let prepare_new = |findings, workers| {
        prepare(
            opts,
            class,
            host,
            action,
            Previous {
                state: old_state.as_ref(),
                origin: old_origin.as_deref(),
            },
            findings,
            &Examination {
                identities: &identities,
                trust,
                workers,
                need_modules: &need_modules,
            },
        )
    };
    let decision = if merged.is_empty() {
        prepare_new(Some(findings), OPEN_WORKERS)
    } else {
        let namespace = PrivateNamespace::enter()
            .context("cannot make a private mount namespace to build the new merge in")?;
        let decision = merged
            .iter()
            .try_for_each(|(_, t)| overlay::uncover(class, t).map_err(anyhow::Error::from))
            .and_then(|()| prepare_new(None, 1));
        namespace
            .leave()
            .context("cannot return to the original mount namespace")?;
        decision
    }?;

    let prepared = match decision {
        Decision::Unchanged(outcome) => {
            log::info!(
                "{}: nothing changed, keeping the merge of {}",
                class.name(),
                outcome.merged.join(", ")
            );
            return Ok(outcome);
        }
        Decision::Nothing(outcome) => {
            for (h, target) in &merged {
                overlay::unmerge(class, &opts.root, target)?;
                log::info!("unmerged {} from /{h}", class.name());
            }
            if !merged.is_empty() {
                let _ = std::fs::remove_file(
                    opts.run_dir
                        .join("rdext")
                        .join(format!("{}.json", class.name())),
                );
            }
            return Ok(outcome);
        }
        Decision::Place(prepared) => prepared,
    };
    let Prepared { mut outcome, built } = prepared;
    let mut fallback = false;
    for (plan, mount) in &built {
        let replaced = overlay::place(class, plan, mount)?;
        fallback |= replaced == Some(Replaced::UnmountThenMount);
        if replaced.is_some() {
            let old = old_work_dirs.iter().find(|(h, _)| *h == plan.hierarchy);
            if let Some((_, dir)) = old.filter(|(_, dir)| Some(dir) != plan.work.as_ref()) {
                overlay::remove_work_dir(dir);
            }
        }
        outcome.hierarchies.push(format!("/{}", plan.hierarchy));
    }
    // A hierarchy the new merge does not cover loses the old one.
    for (h, target) in &merged {
        if !built.iter().any(|(p, _)| p.hierarchy == *h) {
            overlay::unmerge(class, &opts.root, target)?;
            log::info!("unmerged {} from /{h}", class.name());
        }
    }
    let how = match (action, merged.is_empty(), fallback) {
        (Action::Merge, _, _) | (_, true, _) => "merged",
        (_, false, false) => "refreshed (atomically)",
        (_, false, true) => "refreshed (unmount, then mount)",
    };
    log::info!(
        "{how} {} {} into {}",
        class.name(),
        if outcome.merged.is_empty() {
            "no extensions".to_string()
        } else {
            outcome.merged.join(", ")
        },
        outcome.hierarchies.join(", ")
    );
    record(opts, &outcome)?;
    Ok(outcome)
}

/// The merge in place before a refresh, read before anything moved.
struct Previous<'a> {
    /// What it stacks.
    state: Option<&'a overlay::MergedHierarchy>,
    /// Its `origin` record.
    origin: Option<&'a str>,
}

/// Examine, judge and build one class's merge (in whatever mount
/// namespace the caller is in); nothing is attached.
fn prepare(
    opts: &Options,
    class: Class,
    host: &HostRelease,
    action: Action,
    previous: Previous<'_>,
    findings: Option<Vec<Finding>>,
    how: &Examination<'_>,
) -> Result<Decision> {
    let findings = match findings {
        Some(findings) => findings,
        None => discover::discover(class, &search_roots(opts), &opts.host_arch)
            .with_context(|| format!("cannot search for {} images", class.name()))?,
    };
    // Nothing found, nothing to mount (the idle path): no workspace.
    let workspace = if findings.iter().any(|f| matches!(f, Finding::Selected(_))) {
        Some(Workspace::create(&opts.run_dir).context("cannot set up the workspace")?)
    } else {
        None
    };
    let examined = examine(
        opts,
        class,
        host,
        workspace.as_ref(),
        action == Action::Merge,
        findings,
        how,
    )?;
    let mut failures = Vec::new();
    let mut kept_back = Vec::new();
    let Previous {
        state: old_state,
        origin: old_origin,
    } = previous;
    let old_names = old_state.map(|s| s.extensions.as_slice()).unwrap_or(&[]);
    for report in &examined.reports {
        match &report.verdict {
            Verdict::Rejected(reason) => {
                log::warn!(
                    "skipping {} {}: {reason}",
                    class.name(),
                    report.display_entry()
                );
                failures.push(report.display_entry());
                if report.name.as_ref().is_some_and(|n| old_names.contains(n)) {
                    kept_back.push(format!("{}: {reason}", report.display_entry()));
                }
            }
            Verdict::Accepted => log::info!(
                "using {} {} ({})",
                class.name(),
                report.display_entry(),
                report.protection.as_deref().unwrap_or("unprotected")
            ),
            Verdict::Ignored(reason) if reason == discover::NOT_RAW => log::debug!(
                "ignoring {} {}: {reason}",
                class.name(),
                report.display_entry()
            ),
            Verdict::Ignored(reason) => log::warn!(
                "ignoring {} {}: {reason}",
                class.name(),
                report.display_entry()
            ),
            Verdict::Masked => log::info!(
                "{} {} masks its name (empty directory)",
                class.name(),
                report.display_entry()
            ),
            Verdict::Shadowed(by) => log::info!(
                "{} {} is shadowed by {}",
                class.name(),
                report.display_entry(),
                by.display()
            ),
        }
    }
    if opts.strict && !failures.is_empty() {
        bail!(
            "strict mode: not merging because of {}",
            failures.join(", ")
        );
    }
    // A refresh never drops a merged extension because its new image is
    // bad: the old merge stays until the image is fixed or removed.
    if !kept_back.is_empty() {
        bail!(
            "not refreshing, the merged images stay: {}",
            kept_back.join("; ")
        );
    }
    let mut names: Vec<String> = examined.accepted.iter().map(|e| e.name.clone()).collect();
    overlay::sort_names(&mut names);
    let mut outcome = ClassOutcome {
        class: class.name(),
        merged: Vec::new(),
        hierarchies: Vec::new(),
        images: examined.reports,
        counted: examined.counted,
    };
    // Unlike systemd-sysext, a class without extensions is not overlaid
    // just to be writable: one --mutable covers both classes here.
    // (Something accepted was found, so there is a workspace.)
    let (false, Some(workspace)) = (names.is_empty(), workspace) else {
        log::info!("no {} images to merge", class.name());
        return Ok(Decision::Nothing(outcome));
    };
    let mode = effective_mutable(opts, class);
    let setup = |mode| MutableSetup {
        mode,
        ephemeral_base: workspace.path().join("ephemeral").join(class.name()),
        merge_id: merge_id(),
    };
    let mut mode = mode;
    let plans = match overlay::plan(class, &opts.root, &examined.accepted, &setup(mode)) {
        Ok(plans) => plans,
        // In the initrd a mutable layer that cannot be set up must not
        // cost the boot: merge read-only instead.
        Err(e) if opts.initrd_root.is_some() && mode != Mutable::No => {
            log::warn!(
                "{}: --mutable={} not possible ({e}); merging read-only",
                class.name(),
                mode.name()
            );
            mode = Mutable::No;
            overlay::plan(class, &opts.root, &examined.accepted, &setup(mode))
                .context("cannot plan the overlays")?
        }
        Err(e) => return Err(e).context("cannot plan the overlays"),
    };
    let root = std::fs::canonicalize(&opts.root).unwrap_or_else(|_| opts.root.clone());
    let merge_origin = MergeOrigin {
        mode: mode.name(),
        mutable_dirs: plans
            .iter()
            .filter_map(|p| {
                let dir = p.mutable_dir.as_ref()?;
                Some((
                    format!("/{}", p.hierarchy),
                    origin::without_root(dir, &root),
                ))
            })
            .collect(),
        extensions: examined.origins,
    };
    if let Action::Refresh { always } = action {
        if old_origin.is_some_and(|old| merge_origin.same_as(old)) && !always {
            outcome.merged = old_names.to_vec();
            outcome.hierarchies = old_state
                .map(|_| {
                    class
                        .hierarchies()
                        .iter()
                        .filter(|h| overlay::merged_state(class, &opts.root.join(h)).is_some())
                        .map(|h| format!("/{h}"))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Decision::Unchanged(outcome));
        }
    }
    let origin_text = merge_origin.file_content();
    (how.need_modules)(&["overlay"]);
    let mut built = Vec::new();
    for plan in plans {
        let meta = workspace
            .path()
            .join("meta")
            .join(class.name())
            .join(plan.hierarchy);
        let extra = if plan.hierarchy == "usr" && !plan.layers.is_empty() {
            modules::merged_metadata(&plan.layers, plan.base.as_deref())
                .context("cannot merge the kernel module metadata")?
        } else {
            Vec::new()
        };
        if !extra.is_empty() {
            log::info!(
                "merged kernel module metadata of {} layers",
                plan.layers.len() + 1
            );
        }
        let mount = overlay::build(class, &plan, &meta, &names, &origin_text, &extra)
            .with_context(|| format!("cannot build the overlay for /{}", plan.hierarchy))?;
        built.push((plan, mount));
    }
    outcome.merged = names;
    Ok(Decision::Place(Prepared { outcome, built }))
}

/// The mutable mode to use. In the initrd the persistent modes need the
/// target's /var: when the target mounts a separate /var that is not
/// mounted yet, the merge is read-only (with a warning), never a failure.
fn effective_mutable(opts: &Options, class: Class) -> Mutable {
    let mode = opts.mutable;
    let needs_var = matches!(
        mode,
        Mutable::Auto | Mutable::Yes | Mutable::Import | Mutable::EphemeralImport
    );
    if opts.initrd_root.is_some() && needs_var && !var_available(&opts.root) {
        log::warn!(
            "{}: --mutable={} needs {}/var, which is not mounted yet; merging read-only",
            class.name(),
            mode.name(),
            opts.root.display()
        );
        return Mutable::No;
    }
    mode
}

/// Whether ROOT/var is the /var the system will use: ROOT's fstab either
/// has no separate /var, or it is mounted.
fn var_available(root: &Path) -> bool {
    let fstab = std::fs::read_to_string(root.join("etc/fstab")).unwrap_or_default();
    let separate = fstab.lines().any(|line| {
        let line = line.trim();
        !line.starts_with('#') && line.split_whitespace().nth(1) == Some("/var")
    });
    !separate || is_mount_point(&root.join("var")).unwrap_or(false)
}

/// A name unique to this merge, for its work directories.
fn merge_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// Write what was merged to `run_dir/rdext/CLASS.json`. In an initrd, also
/// keep the booted system's systemd-sysext.service (which would merge again
/// with its weaker default policy) from running while that record exists.
fn record(opts: &Options, outcome: &ClassOutcome) -> Result<()> {
    let dir = opts.run_dir.join("rdext");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.json", outcome.class));
    let json = serde_json::to_string_pretty(outcome)?;
    std::fs::write(&path, json + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    if opts.initrd_root.is_some() {
        let class = if outcome.class == "sysext" {
            Class::Sysext
        } else {
            Class::Confext
        };
        let dropin_dir = opts
            .run_dir
            .join("systemd/system")
            .join(format!("{}.d", class.systemd_unit()));
        std::fs::create_dir_all(&dropin_dir)
            .with_context(|| format!("cannot create {}", dropin_dir.display()))?;
        let dropin = format!(
            "# rdext merged the {} images in the initrd; remove {} to hand over to systemd.\n\
             [Unit]\nConditionPathExists=!/run/rdext/{}.json\n",
            outcome.class,
            Path::new("/run/rdext")
                .join(path.file_name().unwrap_or_default())
                .display(),
            outcome.class
        );
        let path = dropin_dir.join("50-rdext.conf");
        std::fs::write(&path, dropin)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Every entry of every class with its verdict, without merging. Images
/// are mounted to be judged when the workspace can be made (root).
pub fn list(opts: &Options) -> Result<Vec<ImageReport>> {
    let host = host_release(&opts.root)?;
    let workspace = Workspace::create(&opts.run_dir).ok();
    let trust = TrustCache::new();
    let how = Examination {
        identities: &Identities::new(),
        trust: &trust,
        workers: OPEN_WORKERS,
        need_modules: &|_| {},
    };
    let mut reports = Vec::new();
    for &class in &opts.classes {
        let findings = discover::discover(class, &search_roots(opts), &opts.host_arch)
            .with_context(|| format!("cannot search for {} images", class.name()))?;
        reports.extend(
            examine(
                opts,
                class,
                &host,
                workspace.as_ref(),
                false,
                findings,
                &how,
            )?
            .reports,
        );
    }
    Ok(reports)
}

/// What `rdext verify` reports about one image file.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The image.
    pub image: PathBuf,
    /// "ddi" or the file system of a naked image.
    pub kind: String,
    /// DDI partitions: name, offset, size.
    pub partitions: Vec<(String, u64, u64)>,
    /// The root hash as hex.
    pub root_hash: Option<String>,
    /// Where it came from.
    pub root_hash_source: Option<&'static str>,
    /// Whether a signature is present.
    pub signed: bool,
    /// The policy applied, canonical form.
    pub policy: String,
    /// "signed by …", "verity", "unprotected", or the refusal.
    pub verdict: String,
    /// Whether the policy accepts the image.
    pub accepted: bool,
}

/// Inspect one image file and judge it as `merge` would for `class`,
/// without activating anything.
pub fn verify(opts: &Options, class: Class, image: &Path) -> Result<VerifyReport> {
    let file =
        std::fs::File::open(image).with_context(|| format!("cannot open {}", image.display()))?;
    let naked = probe(&file).with_context(|| image.display().to_string())?;
    let inspection =
        verity::inspect(&file, image, naked).with_context(|| image.display().to_string())?;
    let candidate = Candidate {
        name: String::new(),
        entry: image.to_path_buf(),
        origin: Origin::Target,
        path: image.to_path_buf(),
        kind: discover::SourceKind::RawFile,
        version: None,
    };
    let policy = opts.policy_for(class, &candidate);
    let (trusted, now) = trust_material(opts);
    let judged = verity::judge(&inspection, &policy, &trusted, now);
    // Only activation can tell whether the kernel's keyrings accept it.
    let undecided = matches!(judged, Ok(verity::Verdict::KernelSigned { .. }));
    Ok(VerifyReport {
        image: image.to_path_buf(),
        kind: inspection.kind.clone(),
        partitions: inspection.partitions.clone(),
        root_hash: inspection.root_hash_hex(),
        root_hash_source: inspection.root_hash_source,
        signed: inspection.signature.is_some(),
        policy: policy.to_string(),
        accepted: judged.is_ok() && !undecided,
        verdict: match judged {
            Ok(verity::Verdict::KernelSigned { userspace }) => {
                format!("{userspace}; only the kernel keyring could accept it")
            }
            Ok(v) => describe_protection(&v),
            Err(e) => e.to_string(),
        },
    })
}

/// One row of `rdext status`, as systemd-sysext prints it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusRow {
    /// e.g. `/usr`.
    pub hierarchy: String,
    /// Merged names, or the string "none".
    pub extensions: serde_json::Value,
    /// When it was merged (µs since the epoch), if it is.
    pub since: Option<u64>,
}

/// The merge state of every hierarchy of `classes` under `root`.
pub fn status(root: &Path, classes: &[Class]) -> Vec<StatusRow> {
    let mut rows = Vec::new();
    for &class in classes {
        for h in class.hierarchies() {
            let state = overlay::merged_state(class, &root.join(h));
            rows.push(StatusRow {
                hierarchy: format!("/{h}"),
                extensions: match &state {
                    Some(s) => serde_json::json!(s.extensions),
                    None => serde_json::json!("none"),
                },
                since: state.map(|s| s.since_usec),
            });
        }
    }
    rows
}

/// Undo every merge under `root`, and forget the record.
pub fn unmerge(root: &Path, classes: &[Class], run_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for &class in classes {
        for h in class.hierarchies() {
            let n = overlay::unmerge(class, root, &root.join(h))?;
            if n > 0 {
                log::info!("unmerged {} from /{h}", class.name());
            }
            removed += n;
        }
        let _ = std::fs::remove_file(run_dir.join("rdext").join(format!("{}.json", class.name())));
    }
    Ok(removed)
}

/// The boot is good: remove the boot counter of every entry the merge in this boot counted
/// (recorded in `run_dir/rdext/CLASS.json`), so that version stays picked. Returns how many
/// entries were blessed; an entry already gone or renamed is skipped.
pub fn bless(root: &Path, run_dir: &Path) -> Result<usize> {
    let mut blessed = 0;
    for class in Class::ALL {
        let record = run_dir.join("rdext").join(format!("{}.json", class.name()));
        let text = match std::fs::read(&record) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", record.display())),
        };
        let json: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", record.display()))?;
        let counted = json["counted"].as_array().cloned().unwrap_or_default();
        for rel in counted.iter().filter_map(|v| v.as_str()) {
            let path = root.join(rel.trim_start_matches('/'));
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(good) = counting::blessed(name) else {
                continue;
            };
            match rename_noreplace(&path, &path.with_file_name(&good)) {
                Ok(()) => {
                    log::info!("blessed {}: now {good}", path.display());
                    blessed += 1;
                }
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => log::warn!("cannot bless {}: {e}", path.display()),
            }
        }
    }
    Ok(blessed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_item_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..50).collect();
        for workers in [1, 3, 8, 100] {
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            let out = map_parallel(&items, workers, |&i| {
                threads.lock().unwrap().insert(std::thread::current().id());
                // Early items take longest, so later ones finish first.
                std::thread::sleep(std::time::Duration::from_micros((50 - i) * 100));
                i * 2
            });
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            let used = threads.into_inner().unwrap().len();
            assert!(
                used <= workers.min(items.len()),
                "{used} threads for {workers}"
            );
            if workers > 1 {
                assert!(used > 1, "{workers} workers ran on one thread");
            }
        }
        assert!(map_parallel(&[] as &[u8], 8, |_| 0).is_empty());
    }
}
