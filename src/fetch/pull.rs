//! Pulls named on the kernel command line: `rdext.pull=` (and systemd's own `rd.systemd.pull=`)
//! in systemd-import-generator's grammar, `OPTIONS:NAME:URL`, executed in the initrd before the
//! merge into the real root.
//!
//! `OPTIONS` is a comma-separated list: the type `raw` or `tar` and the class `sysext` or
//! `confext` (both mandatory, as in systemd), `verify=no|checksum|signature` (default
//! `signature`), `ro`/`rw`, `runtime=BOOL` (default: yes in the initrd). systemd's `blockdev` is
//! accepted and has no effect here; `bootorigin` needs the boot loader's EFI variable and is
//! refused; anything else is ignored with a warning, as systemd does. An empty `NAME` is derived
//! from the URL's last component with systemd's suffix stripping.
//!
//! The URL is `http://` or `https://`, or an OCI reference (`oci://`, `oci+http://`, see
//! [`crate::fetch::oci`]). What `verify=` means:
//!
//! * HTTP: `checksum` needs the file's line in `SHA256SUMS` next to it, `signature` also a good
//!   OpenPGP signature of that file (`SHA256SUMS.gpg` and the other names systemd tries) by a key
//!   of the import keyring, as systemd-importd does; `no` installs whatever arrives complete.
//! * OCI: every blob is checked against its digest whatever `verify=` says. `signature` (the
//!   default) requires the reference to be pinned by digest (`@sha256:`): the command line then
//!   names the exact bytes. A tag is accepted only with `checksum` or `no`.
//!
//! The image lands as `NAME.raw` in the runtime directory's `extensions/` (`confexts/`), or, with
//! `runtime=no`, in the target root's `var/lib/extensions/` (`var/lib/confexts/`), through the
//! same temporary-file-then-rename download as sysupdate transfers: a failed pull never replaces
//! or removes what is there. The merge judges the image like any other (image policy).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::class::Class;
use crate::fetch::http::{FetchConfig, Fetcher};
use crate::fetch::{manifest, oci, openpgp};

/// How the download is checked before it is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (HTTP); digests only (OCI).
    No,
    /// Against `SHA256SUMS` (HTTP) or the manifest's digests (OCI).
    Checksum,
    /// Also a signature (HTTP) or a digest-pinned reference (OCI).
    Signature,
}

/// One pull, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSpec {
    /// sysext or confext.
    pub class: Class,
    /// The checks.
    pub verify: Verify,
    /// Install read-only (mode 0444).
    pub read_only: bool,
    /// `runtime=`: into the runtime directory, not the target root; None is the default.
    pub runtime: Option<bool>,
    /// The local image name (without `.raw`).
    pub name: String,
    /// Where from.
    pub url: String,
    /// Options that were ignored, for the log.
    pub warnings: Vec<String>,
}

/// Parse one `OPTIONS:NAME:URL` expression. The error is a one-line reason.
pub fn parse(expr: &str) -> Result<PullSpec, String> {
    let (options, rest) = expr
        .split_once(':')
        .ok_or_else(|| format!("{expr:?}: not OPTIONS:NAME:URL"))?;
    let (name, url) = rest
        .split_once(':')
        .ok_or_else(|| format!("{expr:?}: not OPTIONS:NAME:URL"))?;
    if url.is_empty() {
        return Err(format!("{expr:?}: no URL"));
    }
    let mut raw = None;
    let mut class = None;
    let mut verify = Verify::Signature;
    let mut read_only = false;
    let mut runtime = None;
    let mut warnings = Vec::new();
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "raw" => raw = Some(true),
            "tar" => raw = Some(false),
            "sysext" => class = Some(Class::Sysext),
            "confext" => class = Some(Class::Confext),
            "machine" | "portable" => {
                return Err(format!("{expr:?}: class {option} is not an extension"))
            }
            "ro" => read_only = true,
            "rw" => read_only = false,
            "blockdev" => warnings.push("option blockdev has no effect here".to_string()),
            "bootorigin" => {
                return Err(format!(
                    "{expr:?}: bootorigin (URL relative to the boot loader's) is not supported"
                ))
            }
            _ => {
                if let Some(value) = option.strip_prefix("verify=") {
                    match value {
                        "no" => verify = Verify::No,
                        "checksum" => verify = Verify::Checksum,
                        "signature" => verify = Verify::Signature,
                        _ => warnings.push(format!("unknown verify={value} ignored")),
                    }
                } else if let Some(value) = option.strip_prefix("runtime=") {
                    match crate::cmdline::parse_bool(value) {
                        Some(b) => runtime = Some(b),
                        None => warnings.push(format!("unknown runtime={value} ignored")),
                    }
                } else {
                    warnings.push(format!("unknown option {option} ignored"));
                }
            }
        }
    }
    match raw {
        None => return Err(format!("{expr:?}: no image type (raw, tar)")),
        Some(false) => return Err(format!("{expr:?}: tar images are not supported, only raw")),
        Some(true) => {}
    }
    let class = class.ok_or_else(|| format!("{expr:?}: no image class (sysext, confext)"))?;
    let is_oci = oci::is_reference(url);
    if !is_oci && !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!(
            "{expr:?}: the URL must be http://, https://, oci:// or oci+http://"
        ));
    }
    if !is_oci {
        let last = last_component(url).ok_or_else(|| format!("{expr:?}: URL has no file name"))?;
        if let Some(ext) = [".xz", ".gz", ".bz2", ".zst"]
            .iter()
            .find(|e| last.ends_with(*e))
        {
            return Err(format!(
                "{expr:?}: compressed images ({ext}) are not supported"
            ));
        }
    }
    let name = if name.is_empty() {
        let derived = if is_oci {
            oci::Reference::parse(url)
                .map_err(|e| format!("{expr:?}: {e}"))?
                .repository
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            strip_raw_suffixes(last_component(url).unwrap_or_default())
        };
        if derived.is_empty() {
            return Err(format!("{expr:?}: cannot derive a name from the URL"));
        }
        derived
    } else {
        name.to_string()
    };
    if !crate::find::discover::valid_name(&name) || name.contains(['\\', ':']) {
        return Err(format!("{expr:?}: invalid image name {name:?}"));
    }
    if is_oci {
        oci::Reference::parse(url).map_err(|e| format!("{expr:?}: {e}"))?;
    }
    Ok(PullSpec {
        class,
        verify,
        read_only,
        runtime,
        name,
        url: url.to_string(),
        warnings,
    })
}

/// The last path component of an HTTP URL, without query or fragment and trailing slashes.
fn last_component(url: &str) -> Option<&str> {
    let after_scheme = url.split_once("://")?.1;
    let path = after_scheme.split_once('/')?.1;
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|c| !c.is_empty())
}

/// The URL with its last component replaced by `name` (the checksum file next to an image).
fn sibling_url(url: &str, name: &str) -> Option<String> {
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    let path = url[..path_end].trim_end_matches('/');
    let cut = path.rfind('/')?;
    (cut > url.find("://")? + 2).then(|| format!("{}/{name}", &path[..cut]))
}

/// systemd's suffix stripping for raw images, repeated until nothing changes.
fn strip_raw_suffixes(name: &str) -> String {
    const SUFFIXES: [&str; 10] = [
        ".xz",
        ".gz",
        ".bz2",
        ".zst",
        ".sysext.raw",
        ".confext.raw",
        ".raw",
        ".qcow2",
        ".img",
        ".bin",
    ];
    let mut name = name.to_string();
    while let Some(sfx) = SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        name.truncate(name.len() - sfx.len());
    }
    name
}

/// Every pull of the command line and the settings: `rdext.pull=` entries first, then
/// `rd.systemd.pull=` ones (sysext and confext only; left to systemd when the initrd has its
/// import generator), then `pull=` lines of the settings files. The first pull of a name wins.
/// Expressions that do not parse are logged and skipped.
pub fn collect(
    cmdline_pulls: &[String],
    systemd_pulls: &[String],
    file_pulls: &[(String, String)],
) -> Vec<PullSpec> {
    let mut specs: Vec<PullSpec> = Vec::new();
    let sources = cmdline_pulls
        .iter()
        .map(|e| (e.as_str(), "rdext.pull"))
        .chain(
            systemd_pulls
                .iter()
                .map(|e| (e.as_str(), "rd.systemd.pull")),
        )
        .chain(file_pulls.iter().map(|(e, src)| (e.as_str(), src.as_str())));
    for (expr, source) in sources {
        let spec = match parse(expr) {
            Ok(spec) => spec,
            Err(e) if source == "rd.systemd.pull" && e.contains("not an extension") => continue,
            Err(e) => {
                log::warn!("ignoring pull from {source}: {e}");
                continue;
            }
        };
        for w in &spec.warnings {
            log::warn!("pull {}: {w}", spec.name);
        }
        if specs
            .iter()
            .any(|s| s.name == spec.name && s.class == spec.class)
        {
            log::warn!(
                "ignoring pull of {} from {source}: an earlier pull names it",
                spec.name
            );
            continue;
        }
        specs.push(spec);
    }
    specs
}

/// Where pulls go and how patiently.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The target root (keyring, CA bundle, registry credentials, `runtime=no` destination).
    pub root: PathBuf,
    /// The runtime directory (`/run`): `runtime=yes` destination.
    pub run_dir: PathBuf,
    /// Whether `runtime=` defaults to yes (in the initrd).
    pub runtime_default: bool,
    /// Architecture in systemd notation, for picking from an OCI image index.
    pub host_arch: String,
    /// A pinned CA certificate (PEM); then the only TLS trust anchor.
    pub pinned_ca: Option<PathBuf>,
    /// Registry credential files, first existing wins.
    pub auth_files: Vec<PathBuf>,
    /// Import keyrings (`verify=signature` over HTTP), first existing wins.
    pub keyrings: Vec<PathBuf>,
    /// Per-attempt connection timeout.
    pub connect_timeout: Duration,
    /// Give up on a stalled transfer after this long.
    pub read_timeout: Duration,
    /// Bounded retries per request.
    pub retries: u32,
}

/// What one pull did.
#[derive(Clone, Debug)]
pub struct PullOutcome {
    /// The image name.
    pub name: String,
    /// The installed file, when the pull succeeded.
    pub installed: Option<PathBuf>,
    /// The one-line reason it failed.
    pub error: Option<String>,
}

/// The directory a pull installs into.
pub fn destination(opts: &PullOptions, spec: &PullSpec) -> PathBuf {
    let runtime = spec.runtime.unwrap_or(opts.runtime_default);
    let dir = match spec.class {
        Class::Sysext => "extensions",
        Class::Confext => "confexts",
    };
    if runtime {
        opts.run_dir.join(dir)
    } else {
        opts.root.join("var/lib").join(dir)
    }
}

/// Run every pull; each failure is logged on one line and the boot goes on.
pub fn run(opts: &PullOptions, specs: &[PullSpec]) -> Vec<PullOutcome> {
    if specs.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let fetcher = match fetcher(opts) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("no pulls: {e:#}");
            return Vec::new();
        }
    };
    for spec in specs {
        let dir = destination(opts, spec);
        let result = pull_one(opts, &fetcher, spec, &dir);
        let outcome = match result {
            Ok(path) => {
                log::info!("pulled {} into {}", spec.url, path.display());
                PullOutcome {
                    name: spec.name.clone(),
                    installed: Some(path),
                    error: None,
                }
            }
            Err(e) => {
                let why = crate::fetch::download::error_chain(&e);
                log::warn!("pull of {} failed, boot goes on: {why}", spec.name);
                PullOutcome {
                    name: spec.name.clone(),
                    installed: None,
                    error: Some(why),
                }
            }
        };
        outcomes.push(outcome);
    }
    log::info!(
        "pulls: {} installed, {} failed, in {} ms",
        outcomes.iter().filter(|o| o.installed.is_some()).count(),
        outcomes.iter().filter(|o| o.error.is_some()).count(),
        started.elapsed().as_millis()
    );
    outcomes
}

fn fetcher(opts: &PullOptions) -> Result<Fetcher> {
    let config = FetchConfig {
        connect_timeout: opts.connect_timeout,
        read_timeout: opts.read_timeout,
        retries: opts.retries,
        ..FetchConfig::default()
    };
    crate::fetch::download::fetcher_for_root(&opts.root, opts.pinned_ca.as_deref(), config)
}

fn pull_one(opts: &PullOptions, fetcher: &Fetcher, spec: &PullSpec, dir: &Path) -> Result<PathBuf> {
    let file_name = format!("{}.raw", spec.name);
    let mode = if spec.read_only { 0o444 } else { 0o644 };
    if oci::is_reference(&spec.url) {
        let reference = oci::Reference::parse(&spec.url).map_err(|e| anyhow!(e))?;
        if spec.verify == Verify::Signature && reference.digest.is_none() {
            bail!(
                "{}: verify=signature needs a reference pinned by digest (@sha256:...), \
                 or verify=checksum for a tag",
                spec.url
            );
        }
        let credentials = oci::Credentials::load(&opts.auth_files, &reference.registry)?;
        let client = oci::Client::new(fetcher, &reference, credentials);
        let layer = client.resolve(&opts.host_arch, spec.class, &spec.name)?;
        client.download_layer(&layer, dir, &file_name, mode)?;
        return Ok(dir.join(file_name));
    }
    let expected = match spec.verify {
        Verify::No => None,
        Verify::Checksum | Verify::Signature => Some(checksum_for(opts, fetcher, spec)?),
    };
    fetcher.download_as(
        &spec.url,
        &[],
        dir,
        &file_name,
        expected.as_ref(),
        mode,
        true,
    )?;
    Ok(dir.join(file_name))
}

/// The image's SHA-256 from the `SHA256SUMS` next to it, signature-checked for
/// `verify=signature`.
fn checksum_for(opts: &PullOptions, fetcher: &Fetcher, spec: &PullSpec) -> Result<[u8; 32]> {
    let file = last_component(&spec.url).context("URL has no file name")?;
    let sums_url = sibling_url(&spec.url, manifest::MANIFEST_NAME)
        .with_context(|| format!("{}: no directory to find SHA256SUMS in", spec.url))?;
    let sums = fetcher
        .get_small(&sums_url, manifest::MAX_FILE_SIZE)?
        .ok_or_else(|| anyhow!("{sums_url} does not exist (needed by verify=checksum)"))?;
    if spec.verify == Verify::Signature {
        let keyring_path = opts
            .keyrings
            .iter()
            .find(|p| p.exists())
            .context("verify=signature but there is no import keyring")?;
        let keyring = std::fs::read(keyring_path)
            .with_context(|| format!("cannot read {}", keyring_path.display()))?;
        let mut checked = false;
        for name in manifest::SIGNATURE_NAMES {
            let url = sibling_url(&spec.url, name).unwrap_or_default();
            if let Some(signature) = fetcher.get_small(&url, manifest::MAX_FILE_SIZE)? {
                let signer = openpgp::verify_detached(&sums, &signature, &keyring)
                    .map_err(|e| anyhow!("bad signature {url}: {e}"))?;
                log::debug!("{url}: good signature by {}", signer.fingerprint);
                checked = true;
                break;
            }
        }
        if !checked {
            bail!(
                "{sums_url}: no signature ({}) next to it",
                manifest::SIGNATURE_NAMES.join(", ")
            );
        }
    }
    let entries = manifest::parse_sha256sums(&sums).with_context(|| sums_url.clone())?;
    entries
        .iter()
        .find(|e| e.name == file)
        .map(|e| e.sha256)
        .ok_or_else(|| anyhow!("{file} is not listed in {sums_url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_documented_examples() {
        // systemd-import-generator(8), EXAMPLES: a confext with the name from the URL
        // (compressed, which rdext refuses with a reason), a tarball, a machine image.
        let e = parse("raw,confext::https://example.com/myconfext.raw.gz").unwrap_err();
        assert!(
            e.contains("compressed images (.gz) are not supported"),
            "{e}"
        );
        let e = parse("tar,sysext,verify=no::https://example.com/mysysext.tar.gz").unwrap_err();
        assert!(e.contains("tar images are not supported"), "{e}");
        let e = parse("raw,machine,verify=no,blockdev:image:https://example.com/image.raw.xz")
            .unwrap_err();
        assert!(e.contains("class machine is not an extension"), "{e}");

        let s = parse("raw,confext::https://example.com/myconfext.raw").unwrap();
        assert_eq!(s.name, "myconfext");
        assert_eq!(s.class, Class::Confext);
        assert_eq!(s.verify, Verify::Signature, "signature is the default");
        assert_eq!(s.runtime, None);
        assert!(!s.read_only);
        assert_eq!(s.url, "https://example.com/myconfext.raw");
    }

    #[test]
    fn options_names_and_urls() {
        let s = parse("raw,sysext,verify=checksum,ro,runtime=no:foo:http://10.0.2.2:8080/a/b.raw")
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.verify, s.read_only, s.runtime),
            ("foo", Verify::Checksum, true, Some(false))
        );
        assert_eq!(
            s.url, "http://10.0.2.2:8080/a/b.raw",
            "colons stay in the URL"
        );
        let s = parse("sysext,raw,verify=no:x:https://h/p/x.raw?token=1").unwrap();
        assert_eq!(s.verify, Verify::No);
        // Names from URLs: systemd's suffixes, repeatedly; query and trailing slash ignored.
        for (url, name) in [
            ("https://h/d/foo.sysext.raw", "foo"),
            ("https://h/d/foo_1.2.raw?x=y", "foo_1.2"),
            ("https://h/d/foo.img.raw", "foo"),
            ("https://h/d/bar/", "bar"),
        ] {
            assert_eq!(
                parse(&format!("raw,sysext::{url}")).unwrap().name,
                name,
                "{url}"
            );
        }
        // Unknown options and values are ignored with a warning, as systemd does.
        let s = parse("raw,sysext,verify=maybe,fast,blockdev,runtime=perhaps:n:https://h/n.raw")
            .unwrap();
        assert_eq!(s.verify, Verify::Signature);
        assert_eq!(s.warnings.len(), 4, "{:?}", s.warnings);
    }

    #[test]
    fn bad_expressions_say_why() {
        for (expr, why) in [
            ("raw,sysext", "not OPTIONS:NAME:URL"),
            ("raw,sysext:n", "not OPTIONS:NAME:URL"),
            ("raw,sysext:n:", "no URL"),
            ("sysext:n:https://h/n.raw", "no image type"),
            ("raw:n:https://h/n.raw", "no image class"),
            ("raw,sysext:n:file:///srv/n.raw", "must be http://"),
            ("raw,sysext:n:ftp://h/n.raw", "must be http://"),
            ("raw,sysext::https://h/", "URL has no file name"),
            ("raw,sysext:../x:https://h/n.raw", "invalid image name"),
            ("raw,sysext:.#x:https://h/n.raw", "invalid image name"),
            ("raw,sysext,bootorigin:n:n.raw", "bootorigin"),
            ("raw,sysext:n:oci://registry.example/repo", "tag or digest"),
        ] {
            let e = parse(expr).unwrap_err();
            assert!(e.contains(why), "{expr}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn oci_references_name_the_image_after_the_repository() {
        let digest = "a".repeat(64);
        let s = parse(&format!(
            "raw,sysext::oci+http://10.0.2.2:5000/fleet/tools@sha256:{digest}"
        ))
        .unwrap();
        assert_eq!(s.name, "tools");
        let s = parse("raw,confext,verify=checksum:conf:oci://ghcr.io/o/conf:1.0").unwrap();
        assert_eq!((s.name.as_str(), s.class), ("conf", Class::Confext));
    }

    #[test]
    fn urls_next_to_the_image() {
        assert_eq!(
            sibling_url("http://h:8/a/b/x.raw?q", "SHA256SUMS").as_deref(),
            Some("http://h:8/a/b/SHA256SUMS")
        );
        assert_eq!(
            sibling_url("http://h/x.raw", "S").as_deref(),
            Some("http://h/S")
        );
        assert_eq!(sibling_url("http://h", "S"), None);
        assert_eq!(last_component("http://h/a/x.raw#f"), Some("x.raw"));
        assert_eq!(last_component("http://h/"), None);
    }

    #[test]
    fn first_pull_of_a_name_wins_and_systemd_machines_are_left_alone() {
        let specs = collect(
            &["raw,sysext:a:https://one/a.raw".into()],
            &[
                "raw,sysext:a:https://two/a.raw".into(),
                "raw,machine:m:https://two/m.raw".into(),
                "raw,confext:a:https://two/a.raw".into(),
            ],
            &[(
                "raw,sysext::https://three/b.raw".into(),
                "/etc/rdext.conf".into(),
            )],
        );
        let got: Vec<_> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.class, s.url.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Class::Sysext, "https://one/a.raw"),
                ("a", Class::Confext, "https://two/a.raw"),
                ("b", Class::Sysext, "https://three/b.raw"),
            ]
        );
    }

    #[test]
    fn destinations() {
        let opts = PullOptions {
            root: "/sysroot".into(),
            run_dir: "/run".into(),
            runtime_default: true,
            host_arch: "x86-64".into(),
            pinned_ca: None,
            auth_files: Vec::new(),
            keyrings: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 0,
        };
        let s = parse("raw,sysext:a:https://h/a.raw").unwrap();
        assert_eq!(destination(&opts, &s), Path::new("/run/extensions"));
        let s = parse("raw,confext,runtime=no:a:https://h/a.raw").unwrap();
        assert_eq!(
            destination(&opts, &s),
            Path::new("/sysroot/var/lib/confexts")
        );
    }
}
