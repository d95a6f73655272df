//! First boot: fetch the extensions the target root's sysupdate
//! definitions describe but does not have yet, before the merge, and
//! install them exactly where and as systemd-sysupdate would (so the booted
//! system's `systemd-sysupdate` carries on from there).
//!
//! Fail-safe: every component is on its own, every file is verified
//! against the (signed) `SHA256SUMS` while it streams into a temporary
//! file, and nothing already installed is deleted or relinked until all
//! downloads of the component are complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cmdline::KernelCmdline;
use crate::envfile::EnvFile;
use crate::fetch::http::{swap_symlink, FetchConfig, Fetcher};
use crate::fetch::manifest::{self, ManifestEntry};
use crate::fetch::openpgp;
use crate::fetch::sysupdate::{self, Component, LinkUpdate, Mode, OsInfo};

/// When to download, in increasing eagerness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DownloadMode {
    /// Never.
    No,
    /// Only what is not installed at all (the first-boot default).
    Missing,
    /// Also newer versions than those installed.
    Update,
}

impl DownloadMode {
    /// `rdext.download=missing|update|no` (booleans too: yes = missing).
    pub fn parse(word: &str) -> Option<DownloadMode> {
        match word {
            "missing" => Some(DownloadMode::Missing),
            "update" => Some(DownloadMode::Update),
            w => crate::cmdline::parse_bool(w).map(|b| {
                if b {
                    DownloadMode::Missing
                } else {
                    DownloadMode::No
                }
            }),
        }
    }
}

/// Whether this is the first boot of the target: no initialized
/// machine-id yet, or the provisioning tools say so on the command line.
pub fn first_boot(root: &Path, cmdline: &KernelCmdline) -> bool {
    if cmdline.get("ignition.firstboot").is_some() || cmdline.get("flatcar.first_boot").is_some() {
        return true;
    }
    match std::fs::read_to_string(root.join("etc/machine-id")) {
        Ok(id) => matches!(id.trim(), "" | "uninitialized"),
        Err(_) => true,
    }
}

/// What to download and from where.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// The target root.
    pub root: PathBuf,
    /// Missing or update.
    pub mode: DownloadMode,
    /// Replaces every transfer's `Path=` base URL.
    pub mirror: Option<String>,
    /// Architecture in systemd notation, for `%a`.
    pub host_arch: String,
    /// A pinned CA certificate (PEM); then the only TLS trust anchor.
    pub pinned_ca: Option<PathBuf>,
    /// Per-attempt connection timeout.
    pub connect_timeout: Duration,
    /// Give up on a stalled transfer after this long.
    pub read_timeout: Duration,
    /// Bounded retries per request.
    pub retries: u32,
}

/// The outcome for one component.
#[derive(Clone, Debug)]
pub struct ComponentOutcome {
    /// `None` for `sysupdate.d`.
    pub component: Option<String>,
    /// The version installed now, if one was.
    pub installed: Option<String>,
    /// Why nothing (or not everything) happened.
    pub error: Option<String>,
}

impl ComponentOutcome {
    fn label(&self) -> String {
        match &self.component {
            Some(name) => format!("component {name}"),
            None => "the default component (sysupdate.d)".to_string(),
        }
    }
}

/// Download for every component of the target root. Never fails as a
/// whole: each component's error is logged and reported.
pub fn run(opts: &DownloadOptions) -> Vec<ComponentOutcome> {
    let started = Instant::now();
    let names = match sysupdate::component_names(&opts.root) {
        Ok(names) => names,
        Err(e) => {
            log::warn!("no downloads: {e}");
            return Vec::new();
        }
    };
    if names.is_empty() {
        log::debug!("no sysupdate definitions: nothing to download");
        return Vec::new();
    }
    let os = os_info(&opts.root, &opts.host_arch);
    let mut manifests = ManifestCache::default();
    let mut outcomes = Vec::new();
    for name in names {
        let mut outcome = ComponentOutcome {
            component: name.clone(),
            installed: None,
            error: None,
        };
        match update_component(opts, name.as_deref(), &os, &mut manifests) {
            Ok(installed) => outcome.installed = installed,
            Err(e) => {
                let why = error_chain(&e);
                log::warn!(
                    "download of {} failed, keeping what is installed: {why}",
                    outcome.label()
                );
                outcome.error = Some(why);
            }
        }
        outcomes.push(outcome);
    }
    log::info!(
        "downloads: {} installed, {} failed, in {} ms",
        outcomes.iter().filter(|o| o.installed.is_some()).count(),
        outcomes.iter().filter(|o| o.error.is_some()).count(),
        started.elapsed().as_millis()
    );
    outcomes
}

/// An error and its causes on one line, leaving out a cause its parent
/// already spelled out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// The specifier values, from the target root and the running kernel.
fn os_info(root: &Path, arch: &str) -> OsInfo {
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap_or_default();
    let os_release = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .map(|p| read(p))
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let env = EnvFile::parse(os_release).ok();
    let get = |key: &str| {
        env.as_ref()
            .and_then(|e| e.get(key))
            .unwrap_or("")
            .to_string()
    };
    let hostname = read("etc/hostname").trim().to_string();
    OsInfo {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        image_id: get("IMAGE_ID"),
        image_version: get("IMAGE_VERSION"),
        build_id: get("BUILD_ID"),
        variant_id: get("VARIANT_ID"),
        architecture: arch.to_string(),
        kernel_release: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        machine_id: read("etc/machine-id").trim().to_string(),
        pretty_hostname: hostname.clone(),
        hostname,
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .replace('-', ""),
    }
}

/// Manifests and retraction lists, fetched once per base URL per run.
#[derive(Default)]
struct ManifestCache {
    by_url: HashMap<(String, bool), (Vec<ManifestEntry>, Vec<String>)>,
}

fn update_component(
    opts: &DownloadOptions,
    name: Option<&str>,
    os: &OsInfo,
    manifests: &mut ManifestCache,
) -> Result<Option<String>> {
    let component = sysupdate::load_component(&opts.root, name, os)?;
    for warning in &component.warnings {
        log::warn!("{warning}");
    }
    if component.transfers.is_empty() {
        return Ok(None);
    }
    let fetcher = fetcher(opts, None)?;
    let keyring = manifest::keyring_path(&opts.root)
        .map(std::fs::read)
        .transpose()?;

    let mut offered = Vec::new();
    let mut checksums = Vec::new();
    let mut retracted_versions = Vec::new();
    for transfer in &component.transfers {
        let base = base_url(opts, &transfer.source.path);
        let key = (base.clone(), transfer.verify);
        if !manifests.by_url.contains_key(&key) {
            let fetched = fetch_manifest(&fetcher, &base, transfer.verify, keyring.as_deref())?;
            manifests.by_url.insert(key.clone(), fetched);
        }
        let (entries, retracted_names) = &manifests.by_url[&key];
        for retracted in retracted_names {
            if let Some(instance) = transfer
                .source
                .patterns
                .iter()
                .find_map(|p| p.matches(retracted))
            {
                log::info!("{retracted} is retracted upstream");
                retracted_versions.push(instance.version);
            }
        }
        offered.push(entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>());
        checksums.push(
            entries
                .iter()
                .map(|e| (e.name.clone(), e.sha256))
                .collect::<HashMap<_, _>>(),
        );
    }
    let available = sysupdate::available_versions(&component, &offered);
    let listings = target_listings(&component)?;
    let current = current_links(&component);
    let mode = if opts.mode == DownloadMode::Update {
        Mode::Update
    } else {
        Mode::Missing
    };
    let plan = sysupdate::plan_update(
        &component,
        &available,
        &listings,
        &current,
        mode,
        &retracted_versions,
    )?;

    // Downloads first: until all are in place nothing installed is touched.
    for (i, (transfer, step)) in component.transfers.iter().zip(&plan.transfers).enumerate() {
        let Some(download) = &step.download else {
            continue;
        };
        let sha256 = checksums[i]
            .get(&download.source)
            .ok_or_else(|| anyhow!("{} is not in SHA256SUMS", download.source))?;
        let url = format!(
            "{}/{}",
            base_url(opts, &transfer.source.path),
            download.source
        );
        let dir = download
            .path
            .parent()
            .context("download path has no directory")?;
        let mode = download.instance.meta.mode.unwrap_or(0o644);
        log::info!("downloading {url}");
        let stats = fetcher_with_progress(opts, &download.file_name)?.download(
            &url,
            dir,
            &download.file_name,
            sha256,
            mode,
            false,
        )?;
        log::info!(
            "installed {} ({} bytes)",
            download.path.display(),
            stats.size
        );
    }
    for (transfer, step) in component.transfers.iter().zip(&plan.transfers) {
        let dir = target_dir(&component, transfer);
        for name in &step.vacuum {
            remove(&dir.join(name));
        }
        match &step.link {
            Some(LinkUpdate::Point { path, text }) => {
                swap_symlink(path, text)
                    .with_context(|| format!("cannot update {}", path.display()))?;
                log::info!("{} -> {}", path.display(), text.display());
            }
            Some(LinkUpdate::Remove { path }) => remove(path),
            None => {}
        }
        for name in &step.remove {
            log::info!("removing retracted {}", dir.join(name).display());
            remove(&dir.join(name));
        }
    }
    Ok(plan.version)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

fn base_url(opts: &DownloadOptions, path: &str) -> String {
    opts.mirror
        .as_deref()
        .unwrap_or(path)
        .trim_end_matches('/')
        .to_string()
}

fn fetcher(
    opts: &DownloadOptions,
    progress: Option<crate::fetch::http::ProgressFn>,
) -> Result<Fetcher> {
    let config = FetchConfig {
        connect_timeout: opts.connect_timeout,
        read_timeout: opts.read_timeout,
        retries: opts.retries,
        progress,
        ..FetchConfig::default()
    };
    fetcher_for_root(&opts.root, opts.pinned_ca.as_deref(), config)
}

/// A fetcher with the TLS trust of a target root: the pinned CA when one is
/// given, else the root's own CA bundle (downloads and pulls share this).
pub(crate) fn fetcher_for_root(
    root: &Path,
    pinned_ca: Option<&Path>,
    config: FetchConfig,
) -> Result<Fetcher> {
    let extra_ca_pem = match pinned_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    // The target's bundle, else the initramfs's own (dracut's rdext module adds it).
    let system_roots_pem = [root, Path::new("/")]
        .iter()
        .find_map(|base| std::fs::read(base.join("etc/ssl/certs/ca-certificates.crt")).ok());
    Ok(Fetcher::new(FetchConfig {
        extra_ca_pem,
        system_roots_pem,
        ..config
    })?)
}

/// A fetcher that logs a progress line every few seconds, so a long
/// download on the console does not look like a hang.
fn fetcher_with_progress(opts: &DownloadOptions, name: &str) -> Result<Fetcher> {
    let name = name.to_string();
    let mut last = Instant::now();
    let progress = Box::new(move |done: u64, total: Option<u64>| {
        if last.elapsed() < Duration::from_secs(3) {
            return;
        }
        last = Instant::now();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match total {
            Some(t) => log::info!("downloading {name}: {:.1} of {:.1} MiB", mib(done), mib(t)),
            None => log::info!("downloading {name}: {:.1} MiB", mib(done)),
        }
    });
    fetcher(opts, Some(progress))
}

/// `SHA256SUMS` (signature-checked when `verify`) and the names in the
/// retraction list next to it. A retraction list that is missing, unsigned
/// or malformed is ignored with a warning: it can only stop installs.
fn fetch_manifest(
    fetcher: &Fetcher,
    base: &str,
    verify: bool,
    keyring: Option<&[u8]>,
) -> Result<(Vec<ManifestEntry>, Vec<String>)> {
    let url = format!("{base}/{}", manifest::MANIFEST_NAME);
    let bytes = fetcher
        .get_small(&url, manifest::MAX_FILE_SIZE)?
        .ok_or_else(|| anyhow!("{url} does not exist"))?;
    if verify {
        check_signature(fetcher, base, &bytes, manifest::SIGNATURE_NAMES, keyring)
            .with_context(|| url.clone())?;
    }
    let entries = manifest::parse_sha256sums(&bytes).with_context(|| url.clone())?;

    let retraction_url = format!("{base}/{}", manifest::RETRACTION_NAME);
    let retracted = match fetcher.get_small(&retraction_url, manifest::MAX_FILE_SIZE) {
        Ok(Some(list)) => {
            let checked = if verify {
                check_signature(
                    fetcher,
                    base,
                    &list,
                    manifest::RETRACTION_SIGNATURE_NAMES,
                    keyring,
                )
            } else {
                Ok(())
            };
            match checked.map(|()| manifest::parse_retractions(&list)) {
                Ok(Ok(list)) => list.into_iter().map(|r| r.name).collect(),
                Ok(Err(e)) => {
                    log::warn!("ignoring {retraction_url}: {e}");
                    Vec::new()
                }
                Err(e) => {
                    log::warn!("ignoring {retraction_url}: {e:#}");
                    Vec::new()
                }
            }
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            log::warn!("ignoring {retraction_url}: {e}");
            Vec::new()
        }
    };
    Ok((entries, retracted))
}

/// Check `data` against the first detached signature found next to it.
fn check_signature(
    fetcher: &Fetcher,
    base: &str,
    data: &[u8],
    names: &[&str],
    keyring: Option<&[u8]>,
) -> Result<()> {
    let keyring =
        keyring.context("Verify=yes but the target root has no import-pubring keyring")?;
    for name in names {
        let url = format!("{base}/{name}");
        if let Some(signature) = fetcher.get_small(&url, manifest::MAX_FILE_SIZE)? {
            let signer = openpgp::verify_detached(data, &signature, keyring)
                .map_err(|e| anyhow!("bad signature {url}: {e}"))?;
            log::debug!("{url}: good signature by {}", signer.fingerprint);
            return Ok(());
        }
    }
    bail!("no signature ({}) next to it", names.join(", "))
}

fn target_dir(component: &Component, transfer: &sysupdate::Transfer) -> PathBuf {
    let rel = transfer
        .target
        .path
        .strip_prefix("/")
        .unwrap_or(&transfer.target.path);
    component.root.join(rel)
}

/// Regular files in each transfer's target directory.
fn target_listings(component: &Component) -> Result<Vec<Vec<String>>> {
    let mut listings = Vec::new();
    for transfer in &component.transfers {
        let dir = target_dir(component, transfer);
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    if entry.file_type()?.is_file() {
                        names.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        }
        names.sort();
        listings.push(names);
    }
    Ok(listings)
}

/// The file each `CurrentSymlink=` points at, when it points into the
/// transfer's target directory.
fn current_links(component: &Component) -> Vec<Option<String>> {
    component
        .transfers
        .iter()
        .map(|transfer| {
            let link = transfer.target.current_symlink.as_ref()?;
            let link = if link.is_absolute() {
                component.root.join(link.strip_prefix("/").ok()?)
            } else {
                target_dir(component, transfer).join(link)
            };
            let target = std::fs::read_link(&link).ok()?;
            let resolved = link.parent()?.join(&target);
            let dir = target_dir(component, transfer);
            let normalized: PathBuf = normalize(&resolved);
            (normalized.parent()? == normalize(&dir))
                .then(|| {
                    normalized
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .flatten()
        })
        .collect()
}

/// Resolve `.` and `..` lexically (the link text is relative and may
/// climb out of the link's directory).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_first_boot() {
        assert_eq!(DownloadMode::parse("missing"), Some(DownloadMode::Missing));
        assert_eq!(DownloadMode::parse("update"), Some(DownloadMode::Update));
        assert_eq!(DownloadMode::parse("no"), Some(DownloadMode::No));
        assert_eq!(DownloadMode::parse("1"), Some(DownloadMode::Missing));
        assert_eq!(DownloadMode::parse("sometimes"), None);

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let none = KernelCmdline::parse("");
        assert!(first_boot(root, &none), "no machine-id");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/machine-id"), "uninitialized\n").unwrap();
        assert!(first_boot(root, &none));
        std::fs::write(
            root.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        assert!(!first_boot(root, &none));
        assert!(first_boot(
            root,
            &KernelCmdline::parse("ignition.firstboot")
        ));
        assert!(first_boot(
            root,
            &KernelCmdline::parse("flatcar.first_boot=detected")
        ));
    }

    #[test]
    fn error_chains_do_not_repeat_causes() {
        let inner = anyhow!("io: connection reset");
        let outer = inner
            .context("http://x/SHA256SUMS: io: connection reset")
            .context("component a");
        assert_eq!(
            error_chain(&outer),
            "component a: http://x/SHA256SUMS: io: connection reset"
        );
    }

    #[test]
    fn lexical_normalization() {
        assert_eq!(
            normalize(Path::new("/r/etc/extensions/../../opt/x.raw")),
            Path::new("/r/opt/x.raw")
        );
    }
}
