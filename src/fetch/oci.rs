//! Extension images from OCI registries, over the OCI distribution API and the same HTTP client
//! as every other download.
//!
//! A reference is `oci://REGISTRY/REPOSITORY@sha256:DIGEST` or `oci://REGISTRY/REPOSITORY:TAG`
//! (HTTPS); `oci+http://` talks plain HTTP, for a test or air-gapped mirror. `docker.io` means
//! Docker Hub's API host. A tag is resolved to the manifest's digest, which is logged.
//!
//! The manifest (or an image index, from which this architecture's manifest is taken, or the
//! only one when no entry names a platform) must describe an extension artifact:
//!
//! * artifact type (`artifactType`, else the config's media type):
//!   `application/vnd.kairos.sysext.raw` (sysext pulls only), `application/vnd.kairos.confext.raw`
//!   (confext pulls only), or oras's default `application/vnd.unknown.artifact.v1`;
//! * a layer holding the raw image: media type `application/vnd.kairos.sysext.raw`,
//!   `application/vnd.kairos.confext.raw`, or, with an `org.opencontainers.image.title` annotation
//!   ending in `.raw` (what `oras push REF NAME.raw` writes), oras's default
//!   `application/vnd.oci.image.layer.v1.tar` or `application/octet-stream`. The layer titled
//!   `NAME.raw` (or `NAME.sysext.raw`/`NAME.confext.raw`) wins; otherwise there must be exactly one.
//!
//! Manifests and blobs are checked against their digests (the blob while it streams into the
//! temporary file): a mismatch installs nothing. Authentication: anonymous first; a `401` with a
//! `Bearer` challenge is answered with a token from its realm (asked for with the registry's
//! credentials when there are some), a `Basic` challenge with the credentials. Credentials come
//! from a docker/podman-style JSON file (`{"auths": {"REGISTRY": {"auth": "BASE64(user:pass)"}}}`,
//! or `username`/`password` fields).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::Value;

use crate::class::Class;
use crate::fetch::http::{Document, Fetcher};

/// Manifests and token answers are small; this is the cap.
const MAX_DOCUMENT: usize = 4 * 1024 * 1024;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const TITLE: &str = "org.opencontainers.image.title";
const SYSEXT_TYPE: &str = "application/vnd.kairos.sysext.raw";
const CONFEXT_TYPE: &str = "application/vnd.kairos.confext.raw";
const ORAS_DEFAULT_ARTIFACT: &str = "application/vnd.unknown.artifact.v1";
/// Layer types that hold the file as it is when titled `*.raw`.
const PLAIN_FILE_LAYERS: [&str; 2] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/octet-stream",
];

/// Whether `url` is an OCI reference rather than an HTTP URL.
pub fn is_reference(url: &str) -> bool {
    url.starts_with("oci://") || url.starts_with("oci+http://")
}

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `https` or `http`.
    pub scheme: &'static str,
    /// `HOST[:PORT]` as written.
    pub registry: String,
    /// `a/b/c`.
    pub repository: String,
    /// The tag, when there is no digest.
    pub tag: Option<String>,
    /// The pinned manifest digest.
    pub digest: Option<[u8; 32]>,
}

impl Reference {
    /// Parse `oci[+http]://REGISTRY/REPOSITORY(:TAG|@sha256:HEX)`.
    pub fn parse(url: &str) -> Result<Reference, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("oci://") {
            ("https", rest)
        } else if let Some(rest) = url.strip_prefix("oci+http://") {
            ("http", rest)
        } else {
            return Err(format!("{url}: not an oci:// reference"));
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url}: no repository"))?;
        if registry.is_empty() || registry.contains(['@', '?', '#']) {
            return Err(format!("{url}: bad registry {registry:?}"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => (
                path,
                Some(parse_digest(digest).map_err(|e| format!("{url}: {e}"))?),
            ),
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && c.as_bytes()[0].is_ascii_alphanumeric()
            });
        if !repo_ok {
            return Err(format!("{url}: bad repository name {repository:?}"));
        }
        if let Some(tag) = tag {
            let ok = tag.len() <= 128
                && tag
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(format!("{url}: bad tag {tag:?}"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "{url}: needs a tag or digest (:TAG or @sha256:...)"
            ));
        }
        Ok(Reference {
            scheme,
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: if digest.is_some() {
                None
            } else {
                tag.map(str::to_string)
            },
            digest,
        })
    }

    /// The host the API is served from (Docker Hub's differs from its name).
    fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        }
    }

    /// `https://HOST/v2/REPOSITORY`.
    fn base(&self) -> String {
        format!(
            "{}://{}/v2/{}",
            self.scheme,
            self.api_host(),
            self.repository
        )
    }

    /// The tag or `sha256:HEX`, as the manifest URL takes it.
    fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("sha256:{}", crate::hex(d)),
            (None, Some(t)) => t.clone(),
            (None, None) => unreachable!("parse requires a tag or digest"),
        }
    }
}

fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    let hex = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {text:?} is not sha256:"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("digest {text:?} is not 64 lowercase hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Registry credentials: user name and password (or token) for Basic and token requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.user)
    }
}

impl Credentials {
    /// The credentials for `registry` from the first of `files` that exists. A file that exists
    /// but cannot be read or parsed is an error naming it.
    pub fn load(files: &[PathBuf], registry: &str) -> Result<Option<Credentials>> {
        let Some(path) = files.iter().find(|p| p.exists()) else {
            return Ok(None);
        };
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Credentials::from_auth_file(&text, registry)
            .with_context(|| format!("registry credentials {}", path.display()))
    }

    fn from_auth_file(text: &[u8], registry: &str) -> Result<Option<Credentials>> {
        let json: Value = serde_json::from_slice(text).context("not JSON")?;
        let auths = json.get("auths").and_then(Value::as_object);
        let Some(auths) = auths else { return Ok(None) };
        let hub = matches!(
            registry,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        );
        let entry = auths.iter().find(|(key, _)| {
            let key = key
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host = key.split('/').next().unwrap_or(key);
            host == registry || (hub && host == "index.docker.io")
        });
        let Some((_, entry)) = entry else {
            return Ok(None);
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .context("\"auth\" is not base64")?;
            let decoded = String::from_utf8(decoded).context("\"auth\" is not UTF-8")?;
            let (user, password) = decoded
                .split_once(':')
                .context("\"auth\" is not USER:PASSWORD")?;
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(user), Some(password)) => Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            })),
            _ => bail!("the entry for {registry} has neither \"auth\" nor username/password"),
        }
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// `SCHEME k="v",k2=v2` (the first challenge only; values may hold commas when quoted).
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = match header.split_once(' ') {
            Some((s, r)) => (s, r.trim_start()),
            None => (header, ""),
        };
        let mut params = Vec::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_ascii_lowercase();
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.push((key, value));
            rest = after.trim_start().trim_start_matches(',').trim_start();
        }
        (!scheme.is_empty()).then(|| Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The layer chosen to be the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Its digest.
    pub digest: [u8; 32],
    /// Its size as the manifest gives it.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Its `org.opencontainers.image.title`, if any.
    pub title: Option<String>,
}

/// systemd's architecture names to OCI's.
fn oci_arch(systemd_arch: &str) -> &str {
    match systemd_arch {
        "x86-64" => "amd64",
        "x86" => "386",
        "ppc64-le" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// From an image index: the digest of the manifest for this architecture (on Linux), or of the
/// only manifest when none names a platform.
fn pick_from_index(index: &Value, host_arch: &str) -> Result<[u8; 32]> {
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .context("image index without manifests")?;
    let arch = oci_arch(host_arch);
    let with_platform = manifests.iter().filter(|m| m.get("platform").is_some());
    let chosen = match with_platform.clone().count() {
        0 if manifests.len() == 1 => &manifests[0],
        0 => bail!(
            "image index has {} manifests and no platforms",
            manifests.len()
        ),
        _ => with_platform
            .clone()
            .find(|m| {
                let p = &m["platform"];
                p["architecture"].as_str() == Some(arch)
                    && p["os"].as_str().is_none_or(|os| os == "linux")
            })
            .with_context(|| {
                let offered: Vec<&str> = with_platform
                    .filter_map(|m| m["platform"]["architecture"].as_str())
                    .collect();
                format!(
                    "image index has no {arch} manifest (offers {})",
                    offered.join(", ")
                )
            })?,
    };
    let digest = chosen["digest"]
        .as_str()
        .context("index entry without digest")?;
    parse_digest(digest).map_err(|e| anyhow!(e))
}

/// From a manifest: the layer holding the `class` image `name` (see the module documentation).
fn pick_layer(manifest: &Value, class: Class, name: &str) -> Result<Layer> {
    let artifact_type = manifest["artifactType"]
        .as_str()
        .or_else(|| manifest["config"]["mediaType"].as_str())
        .unwrap_or("");
    let (own, other) = match class {
        Class::Sysext => (SYSEXT_TYPE, CONFEXT_TYPE),
        Class::Confext => (CONFEXT_TYPE, SYSEXT_TYPE),
    };
    if artifact_type == other {
        bail!("artifact type {artifact_type} is not a {}", class.name());
    }
    if artifact_type != own && artifact_type != ORAS_DEFAULT_ARTIFACT {
        bail!(
            "artifact type {artifact_type:?} is not an extension image \
             ({own} or {ORAS_DEFAULT_ARTIFACT})"
        );
    }
    let layers = manifest["layers"]
        .as_array()
        .context("manifest without layers")?;
    let mut candidates = Vec::new();
    for layer in layers {
        let media_type = layer["mediaType"].as_str().unwrap_or("");
        let title = layer["annotations"][TITLE].as_str().map(str::to_string);
        let titled_raw = title
            .as_deref()
            .is_some_and(|t| t.ends_with(".raw") && !t.contains('/'));
        let holds_image =
            media_type == own || (PLAIN_FILE_LAYERS.contains(&media_type) && titled_raw);
        if !holds_image {
            continue;
        }
        let digest = layer["digest"].as_str().context("layer without digest")?;
        candidates.push(Layer {
            digest: parse_digest(digest).map_err(|e| anyhow!(e))?,
            size: layer["size"].as_u64().unwrap_or(0),
            media_type: media_type.to_string(),
            title,
        });
    }
    let wanted = [
        format!("{name}.raw"),
        format!("{name}.{}.raw", class.name()),
    ];
    if let Some(layer) = candidates
        .iter()
        .find(|l| l.title.as_ref().is_some_and(|t| wanted.contains(t)))
    {
        return Ok(layer.clone());
    }
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => bail!("no layer holds a raw image (a {own} layer, or a file titled *.raw)"),
        n => bail!("{n} layers hold raw images and none is titled {name}.raw"),
    }
}

/// A client for one reference; remembers the authorization that worked.
pub struct Client<'a> {
    fetcher: &'a Fetcher,
    reference: &'a Reference,
    credentials: Option<Credentials>,
    authorization: RefCell<Option<String>>,
}

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

impl<'a> Client<'a> {
    /// A client; nothing is sent yet.
    pub fn new(
        fetcher: &'a Fetcher,
        reference: &'a Reference,
        credentials: Option<Credentials>,
    ) -> Client<'a> {
        Client {
            fetcher,
            reference,
            credentials,
            authorization: RefCell::new(None),
        }
    }

    /// GET with the current authorization; a 401 is answered once (token or Basic).
    fn get(&self, url: &str, accept: Option<&str>) -> Result<Document> {
        let mut answered = false;
        loop {
            let auth = self.authorization.borrow().clone();
            let mut headers: Vec<(&str, &str)> = Vec::new();
            if let Some(accept) = accept {
                headers.push(("Accept", accept));
            }
            if let Some(auth) = auth.as_deref() {
                headers.push(("Authorization", auth));
            }
            let doc = self.fetcher.get_document(url, &headers, MAX_DOCUMENT)?;
            if doc.status != 401 || answered {
                return Ok(doc);
            }
            answered = true;
            let challenge = doc
                .header("www-authenticate")
                .and_then(Challenge::parse)
                .with_context(|| format!("{url}: HTTP status 401 without a usable challenge"))?;
            let authorization = match challenge.scheme.as_str() {
                "bearer" => self.token(&challenge)?,
                "basic" => match &self.credentials {
                    Some(c) => c.basic(),
                    None => bail!(
                        "{url}: the registry wants a login and there are no credentials for {}",
                        self.reference.registry
                    ),
                },
                other => bail!("{url}: unsupported authentication scheme {other}"),
            };
            *self.authorization.borrow_mut() = Some(authorization);
        }
    }

    /// A bearer token from the challenge's realm.
    fn token(&self, challenge: &Challenge) -> Result<String> {
        let realm = challenge
            .param("realm")
            .context("Bearer challenge without realm")?;
        let default_scope = format!("repository:{}:pull", self.reference.repository);
        let mut query = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(format!("service={}", url_encode(service)));
        }
        query.push(format!(
            "scope={}",
            url_encode(challenge.param("scope").unwrap_or(&default_scope))
        ));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let basic = self.credentials.as_ref().map(Credentials::basic);
        let headers: Vec<(&str, &str)> = basic
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let doc = self.fetcher.get_document(&url, &headers, MAX_DOCUMENT)?;
        if doc.status != 200 {
            bail!("token request {realm}: HTTP status {}", doc.status);
        }
        let json: Value = serde_json::from_slice(&doc.body)
            .with_context(|| format!("token answer from {realm} is not JSON"))?;
        let token = json["token"]
            .as_str()
            .or_else(|| json["access_token"].as_str())
            .with_context(|| format!("token answer from {realm} has no token"))?;
        Ok(format!("Bearer {token}"))
    }

    /// The manifest named by `reference` (tag or `sha256:HEX`), checked against `pinned`.
    fn manifest(&self, reference: &str, pinned: Option<&[u8; 32]>) -> Result<(Value, [u8; 32])> {
        let url = format!("{}/manifests/{reference}", self.reference.base());
        let doc = self.get(&url, Some(ACCEPT))?;
        match doc.status {
            200 => {}
            404 => bail!("{url}: manifest unknown (HTTP status 404)"),
            s => bail!("{url}: HTTP status {s}"),
        }
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &doc.body)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        if let Some(pinned) = pinned {
            if &digest != pinned {
                bail!(
                    "{url}: manifest digest sha256:{} does not match the pinned sha256:{}",
                    crate::hex(&digest),
                    crate::hex(pinned)
                );
            }
        }
        if let Some(header) = doc.header("docker-content-digest") {
            if header != format!("sha256:{}", crate::hex(&digest)) {
                bail!(
                    "{url}: the registry says the manifest is {header}, its bytes say sha256:{}",
                    crate::hex(&digest)
                );
            }
        }
        let json: Value =
            serde_json::from_slice(&doc.body).with_context(|| format!("{url}: not JSON"))?;
        Ok((json, digest))
    }

    /// Resolve the reference to the layer holding the `class` image `name`.
    pub fn resolve(&self, host_arch: &str, class: Class, name: &str) -> Result<Layer> {
        let r = self.reference;
        let (mut manifest, digest) = self.manifest(&r.manifest_ref(), r.digest.as_ref())?;
        if let Some(tag) = &r.tag {
            log::info!(
                "{}/{}:{tag} is sha256:{}",
                r.registry,
                r.repository,
                crate::hex(&digest)
            );
        }
        let media_type = manifest["mediaType"].as_str().unwrap_or("").to_string();
        if media_type == OCI_INDEX
            || media_type == DOCKER_LIST
            || manifest.get("manifests").is_some()
        {
            let child = pick_from_index(&manifest, host_arch)?;
            let child_ref = format!("sha256:{}", crate::hex(&child));
            manifest = self.manifest(&child_ref, Some(&child))?.0;
        }
        let media_type = manifest["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            bail!("{}: unsupported manifest type {media_type}", r.repository);
        }
        pick_layer(&manifest, class, name)
    }

    /// Download the layer into `dir/file_name` through a temporary file, checked against its
    /// digest while it streams.
    pub fn download_layer(
        &self,
        layer: &Layer,
        dir: &Path,
        file_name: &str,
        mode: u32,
    ) -> Result<()> {
        let url = format!(
            "{}/blobs/sha256:{}",
            self.reference.base(),
            crate::hex(&layer.digest)
        );
        let auth = self.authorization.borrow().clone();
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.fetcher.download_as(
            &url,
            &headers,
            dir,
            file_name,
            Some(&layer.digest),
            mode,
            true,
        )?;
        Ok(())
    }
}

/// Percent-encoding for query values.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references() {
        let r = Reference::parse(&format!("oci+http://10.0.2.2:5000/fleet/tools@{D}")).unwrap();
        assert_eq!(r.scheme, "http");
        assert_eq!(r.registry, "10.0.2.2:5000");
        assert_eq!(r.repository, "fleet/tools");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.base(), "http://10.0.2.2:5000/v2/fleet/tools");
        let r = Reference::parse("oci://ghcr.io/o/conf:1.0").unwrap();
        assert_eq!((r.scheme, r.tag.as_deref()), ("https", Some("1.0")));
        let r = Reference::parse("oci://docker.io/library/x:latest").unwrap();
        assert_eq!(r.base(), "https://registry-1.docker.io/v2/library/x");
        // A tag before the digest is informative only: the digest decides.
        let r = Reference::parse(&format!("oci://h/r:1.0@{D}")).unwrap();
        assert_eq!((r.tag, r.repository.as_str()), (None, "r"));
        for (bad, why) in [
            ("oci://h/r", "needs a tag or digest"),
            ("oci://h", "no repository"),
            ("oci://h/R:1", "bad repository"),
            ("oci://h/r:-x", "bad tag"),
            ("oci://h/r@sha512:00", "not sha256"),
            ("oci://h/r@sha256:ABCD", "64 lowercase hex"),
            ("http://h/r:1", "not an oci"),
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("service"), Some("registry.example"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.param("realm")),
            ("basic", Some("Registry Realm"))
        );
        let c = Challenge::parse("Bearer realm=http://h/t, service=s").unwrap();
        assert_eq!(c.param("realm"), Some("http://h/t"));
        assert_eq!(c.param("service"), Some("s"));
        assert_eq!(
            url_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn credentials_from_auth_files() {
        let file = br#"{"auths": {"https://reg.example:5000": {"auth": "dXNlcjpwYTpzcw=="},
                       "other": {"username": "u2", "password": "p2"}}}"#;
        let c = Credentials::from_auth_file(file, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pa:ss"));
        assert_eq!(c.basic(), "Basic dXNlcjpwYTpzcw==");
        let c = Credentials::from_auth_file(file, "other").unwrap().unwrap();
        assert_eq!(c.user, "u2");
        assert_eq!(Credentials::from_auth_file(file, "nowhere").unwrap(), None);
        assert!(Credentials::from_auth_file(b"{", "x").is_err());
        let hub = br#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}}"#;
        assert!(Credentials::from_auth_file(hub, "docker.io")
            .unwrap()
            .is_some());
        assert!(!format!("{c:?}").contains("p2"), "no password in logs");
    }

    fn oras_manifest(artifact: &str, layers: Value) -> Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": D, "size": 2},
            "layers": layers,
        })
    }

    fn layer(media_type: &str, title: Option<&str>) -> Value {
        let mut l = json!({"mediaType": media_type, "digest": D, "size": 7});
        if let Some(t) = title {
            l["annotations"] = json!({TITLE: t});
        }
        l
    }

    #[test]
    fn layers_as_oras_pushes_them() {
        // oras push --artifact-type application/vnd.kairos.sysext.raw REF tools.raw
        let m = oras_manifest(
            SYSEXT_TYPE,
            json!([layer(
                "application/vnd.oci.image.layer.v1.tar",
                Some("tools.raw")
            )]),
        );
        let l = pick_layer(&m, Class::Sysext, "whatever").unwrap();
        assert_eq!((l.title.as_deref(), l.size), (Some("tools.raw"), 7));
        let e = pick_layer(&m, Class::Confext, "tools")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a confext"), "{e}");
        // Without --artifact-type; two files, the one named for the image wins.
        let m = oras_manifest(
            ORAS_DEFAULT_ARTIFACT,
            json!([
                layer("application/vnd.oci.image.layer.v1.tar", Some("a.raw")),
                layer("application/octet-stream", Some("b.sysext.raw")),
                layer("application/vnd.oci.image.layer.v1.tar", Some("README"))
            ]),
        );
        assert_eq!(
            pick_layer(&m, Class::Sysext, "b").unwrap().title.as_deref(),
            Some("b.sysext.raw")
        );
        let e = pick_layer(&m, Class::Sysext, "c").unwrap_err().to_string();
        assert!(e.contains("2 layers hold raw images"), "{e}");
        // A typed layer needs no title.
        let m = oras_manifest(SYSEXT_TYPE, json!([layer(SYSEXT_TYPE, None)]));
        assert!(pick_layer(&m, Class::Sysext, "x").is_ok());
        // A real tar layer (no .raw title) and container images are refused.
        let m = oras_manifest(
            SYSEXT_TYPE,
            json!([
                layer("application/vnd.oci.image.layer.v1.tar+gzip", Some("t.raw")),
                layer("application/vnd.oci.image.layer.v1.tar", None)
            ]),
        );
        let e = pick_layer(&m, Class::Sysext, "t").unwrap_err().to_string();
        assert!(e.contains("no layer holds a raw image"), "{e}");
        let image = json!({"mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}, "layers": []});
        let e = pick_layer(&image, Class::Sysext, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an extension image"), "{e}");
    }

    #[test]
    fn index_entries_by_architecture() {
        let d_amd = format!("sha256:{}", "a".repeat(64));
        let d_arm = format!("sha256:{}", "b".repeat(64));
        let index = json!({"mediaType": OCI_INDEX, "manifests": [
            {"digest": d_arm, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": d_amd, "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(pick_from_index(&index, "x86-64").unwrap(), [0xaa; 32]);
        assert_eq!(pick_from_index(&index, "arm64").unwrap(), [0xbb; 32]);
        let e = pick_from_index(&index, "riscv64").unwrap_err().to_string();
        assert!(
            e.contains("no riscv64 manifest (offers arm64, amd64)"),
            "{e}"
        );
        let single = json!({"manifests": [{"digest": d_amd}]});
        assert_eq!(pick_from_index(&single, "arm64").unwrap(), [0xaa; 32]);
    }
}
