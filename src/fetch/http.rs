//! HTTP(S) downloads of extension images and their small companion documents.
//!
//! rdext runs in the initramfs and fetches the sysext images that the target root asks for but
//! does not have yet, the way `systemd-sysupdate` would on the booted system. A boot must not be
//! wrecked by a flaky network or a full disk, so the rules here are strict:
//!
//! * An image is streamed into `dir/.#rdext<name>.partial` and hashed with SHA-256 on the way.
//!   Only a file whose hash matches is fsynced, given its mode and renamed to its final name,
//!   after which the directory is fsynced too (the order `systemd-sysupdate` uses). No failure
//!   ever touches the final name.
//! * Downloads never write through a name they did not create: a new partial file is created
//!   fresh (`O_CREAT|O_EXCL`, no symlink followed), and a leftover one is resumed only if it is
//!   a regular file with one link owned by rdext's own user (root); anything else under that
//!   name (a hard link or symlink planted to make rdext overwrite another file) is removed,
//!   never opened, with a warning.
//! * A network failure keeps the partial file; the next attempt (in this call, or a later boot)
//!   continues it with `Range: bytes=N-`. A local failure (disk full, I/O error) and a hash
//!   mismatch delete it, because the bytes can no longer be trusted or they take space the boot
//!   needs. A mismatch after a resume (a kept tail that never reached the disk before a power
//!   cut) is downloaded once more from the start in the same call.
//! * Connection errors, idle timeouts and 5xx/408/429 answers are retried a bounded number of
//!   times with exponential backoff; every other answer (404 above all) is final.
//!
//! Proxies: the agent ignores `http_proxy`/`https_proxy`/`all_proxy`. In the initramfs those
//! variables come from whatever the kernel command line or a unit leaked into the environment, not
//! from a deliberate choice for this tool, and integrity never depends on the transport anyway.
//!
//! Trust roots, in this order: a pinned CA (exclusive), else a CA bundle (the target root's, else
//! the initramfs's). No root store is compiled in: it would cost more than 100 KB of a binary that
//! sits in every initramfs, and would go stale with it. Without any, HTTPS fails with an unknown
//! issuer (plain HTTP still works, since integrity comes from the signed `SHA256SUMS`).
//!
//! SHA-256 comes from `ring::digest`: ring is linked for TLS anyway, so this adds no second
//! implementation to the binary, and it has the accelerated code paths for large images.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use rustix::fs::{OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use ureq::http::{header, Response, StatusCode};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

/// Called with the bytes of the file written so far and its full size, when the server told it.
pub type ProgressFn = Box<dyn FnMut(u64, Option<u64>) + Send>;

/// How hard and how patiently to try, and whom to trust.
pub struct FetchConfig {
    /// Limits name resolution and, separately, the TCP plus TLS handshake of each attempt.
    pub connect_timeout: Duration,
    /// An attempt fails when no byte arrives for this long; there is deliberately no limit on
    /// the total time, since images can be large and links slow.
    pub read_timeout: Duration,
    /// Further attempts after a transient failure; each one continues the partial file.
    pub retries: u32,
    /// PEM CA certificate(s) that become the only trust anchors when set, for servers that
    /// belong to the image vendor.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// A CA bundle (e.g. the target root's `etc/ssl/certs/ca-certificates.crt`), so the admin's
    /// choice of CAs applies in the initramfs too. With neither, no server certificate verifies.
    pub system_roots_pem: Option<Vec<u8>>,
    /// Redirects followed per request; more is an error, 0 returns the redirect as a status.
    pub max_redirects: u32,
    /// Download progress, reported at most four times per second plus once at the end.
    pub progress: Option<ProgressFn>,
}

impl Default for FetchConfig {
    /// Values for a boot that should wait a little for a network that is still coming up.
    fn default() -> FetchConfig {
        FetchConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retries: 3,
            extra_ca_pem: None,
            system_roots_pem: None,
            max_redirects: 5,
            progress: None,
        }
    }
}

/// Why a fetch failed; each message names the URL or file it is about.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A configured PEM bundle is unusable, so no TLS connection could be trusted.
    #[error("cannot use the {what}: {reason}")]
    Certificates {
        /// Which bundle: "pinned CA" or "system CA bundle".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be made or the transfer broke (DNS, connect, TLS, timeout, ...).
    #[error("{url}: {source}")]
    Http {
        /// The URL as requested (before redirects).
        url: String,
        /// The underlying error.
        source: ureq::Error,
    },
    /// The server answered with a status that does not deliver the document.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL as requested (before redirects).
        url: String,
        /// The final status after redirects, e.g. 404.
        status: u16,
    },
    /// A small document is bigger than its caller allows.
    #[error("{url}: larger than {cap} bytes")]
    TooLarge {
        /// The URL as requested.
        url: String,
        /// The caller's limit.
        cap: usize,
    },
    /// The downloaded bytes are not the expected ones; nothing was kept.
    #[error("{url}: SHA-256 {actual} does not match the expected {expected}")]
    HashMismatch {
        /// The URL as requested.
        url: String,
        /// Hex digest of what arrived.
        actual: String,
        /// Hex digest that was asked for.
        expected: String,
    },
    /// The final name is taken by a different file and replacing was not allowed.
    #[error("{} already exists with other content", .0.display())]
    Exists(PathBuf),
    /// The final name is not a single path component.
    #[error("invalid file name {0:?}")]
    InvalidName(String),
    /// A local file operation failed (ENOSPC included); a partial file it hit has been removed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done: "write", "rename", ...
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl FetchError {
    /// Whether trying again may help: the network, not the server's answer, was at fault.
    fn is_transient(&self) -> bool {
        match self {
            // rustls reports TLS failures (bad certificate, no common cipher) as InvalidData;
            // those do not fix themselves within seconds.
            FetchError::Http {
                source: ureq::Error::Io(e),
                ..
            } => e.kind() != io::ErrorKind::InvalidData,
            FetchError::Http { source, .. } => matches!(
                source,
                ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
            ),
            FetchError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

/// What a successful [`Fetcher::download`] did, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// Size of the installed file.
    pub size: u64,
    /// Body bytes received over the network in this call, discarded ones included.
    pub received: u64,
    /// HTTP requests sent in this call (redirect hops not counted); 0 when the file was already
    /// in place.
    pub requests: u32,
    /// Whether bytes kept from an earlier attempt or call were reused.
    pub resumed: bool,
}

/// A small document as [`Fetcher::get_document`] got it.
#[derive(Clone, Debug)]
pub struct Document {
    /// The final status after redirects.
    pub status: u16,
    /// Response headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, at most the caller's cap.
    pub body: Vec<u8>,
}

impl Document {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP agent shared by all fetches of a boot, so connections and TLS sessions are reused.
pub struct Fetcher {
    agent: Agent,
    retries: u32,
    progress: Mutex<Option<ProgressFn>>,
}

/// Size of the read and hash buffer.
const CHUNK: usize = 64 * 1024;
/// Minimum time between two progress reports.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Wait before the first retry; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Fetcher {
    /// Builds the agent once, so a bad CA bundle is reported before any download starts.
    pub fn new(cfg: FetchConfig) -> Result<Fetcher, FetchError> {
        let roots = match (&cfg.extra_ca_pem, &cfg.system_roots_pem) {
            (Some(pem), _) => parse_roots(pem, "pinned CA")?,
            (None, Some(pem)) => parse_roots(pem, "system CA bundle")?,
            (None, None) => RootCerts::new_with_certs(&[]),
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(cfg.max_redirects)
            .timeout_resolve(Some(cfg.connect_timeout))
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .timeout_per_write(Some(cfg.read_timeout))
            .user_agent(concat!("rdext/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(Fetcher {
            agent,
            retries: cfg.retries,
            progress: Mutex::new(cfg.progress),
        })
    }

    /// Small document (manifest, signature, retraction list) fully in memory, capped.
    ///
    /// `Ok(None)` means the server says the document does not exist (404 or 410), which callers
    /// treat as "nothing published" rather than as a failure.
    pub fn get_small(&self, url: &str, cap: usize) -> Result<Option<Vec<u8>>, FetchError> {
        self.with_retries(url, || {
            let response = self.request(url, 0)?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                return Ok(None);
            }
            if status != StatusCode::OK {
                return Err(status_error(url, status));
            }
            let mut data = Vec::new();
            response
                .into_body()
                .into_reader()
                .take((cap as u64).saturating_add(1))
                .read_to_end(&mut data)
                .map_err(|e| http_error(url, e))?;
            if data.len() > cap {
                return Err(FetchError::TooLarge {
                    url: url.to_string(),
                    cap,
                });
            }
            Ok(Some(data))
        })
    }

    /// Downloads `url` to `dir/final_name` if and only if its SHA-256 is `expected`.
    ///
    /// The bytes go to `dir/.#rdext<final_name>.partial` first; see the module documentation for
    /// when that file is kept for resuming. On success the file gets `mode` and is renamed into
    /// place with both the file and `dir` fsynced. An existing `final_name` with the expected
    /// content is left alone without any request; with other content it is an error unless
    /// `replace` is set. `dir` is created (0755) when missing.
    pub fn download(
        &self,
        url: &str,
        dir: &Path,
        final_name: &str,
        expected: &[u8; 32],
        mode: u32,
        replace: bool,
    ) -> Result<DownloadStats, FetchError> {
        self.download_as(url, &[], dir, final_name, Some(expected), mode, replace)
    }

    /// [`Fetcher::download`] with extra request headers (a registry's `Authorization`), and
    /// without a digest when `expected` is `None`: then any complete body is installed, and an
    /// existing final file is always fetched again.
    #[allow(clippy::too_many_arguments)]
    pub fn download_as(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        dir: &Path,
        final_name: &str,
        expected: Option<&[u8; 32]>,
        mode: u32,
        replace: bool,
    ) -> Result<DownloadStats, FetchError> {
        if final_name.is_empty()
            || final_name == "."
            || final_name == ".."
            || final_name.contains(['/', '\0'])
        {
            return Err(FetchError::InvalidName(final_name.to_string()));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| io_error("create", dir, e))?;
        let final_path = dir.join(final_name);
        if let Some(expected) = expected {
            if let Some(size) = existing_file(&final_path, expected, replace)? {
                return Ok(DownloadStats {
                    size,
                    ..DownloadStats::default()
                });
            }
        }
        let mut job = Job {
            url,
            headers,
            partial: dir.join(format!(".#rdext{final_name}.partial")),
            expected,
            stats: DownloadStats::default(),
            progress: Progress {
                sink: &self.progress,
                last: None,
            },
        };
        let file = match self.with_retries(url, || self.attempt(&mut job)) {
            // Bytes kept from an earlier attempt need not be the server's: a power cut can leave
            // a file whose tail never reached the disk. attempt() removed it; start from zero.
            Err(FetchError::HashMismatch { .. }) if job.stats.resumed => {
                log::warn!("{url}: the resumed file does not match its hash, downloading it again from the start");
                job.stats.resumed = false;
                self.with_retries(url, || self.attempt(&mut job))?
            }
            other => other?,
        };
        let result = install(&file, &job.partial, &final_path, mode, replace);
        if result.is_err() {
            discard(&job.partial);
        }
        result?;
        job.stats.size = file.metadata().map_or(0, |m| m.len());
        job.progress
            .report(job.stats.size, Some(job.stats.size), true);
        Ok(job.stats)
    }

    /// One attempt: a request (two when the kept partial file turns out useless), then the body
    /// appended to the partial file. Returns the verified file.
    fn attempt(&self, job: &mut Job) -> Result<File, FetchError> {
        let offset = job.kept_length();
        job.stats.requests += 1;
        let mut response = self.request_with(job.url, job.headers, offset)?;
        if offset > 0 {
            let restart = match response.status() {
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    // The kept file may already be the whole document.
                    let mut file = job.open_kept()?;
                    let digest = job.hash_prefix(&mut file, offset)?.finish();
                    if job.expected.is_some_and(|e| digest.as_ref() == e) {
                        job.stats.resumed = true;
                        return Ok(file);
                    }
                    true
                }
                StatusCode::PARTIAL_CONTENT => {
                    content_range(&response).map(|(start, _)| start) != Some(offset)
                }
                _ => false,
            };
            if restart {
                log::info!("{}: discarding the partial download", job.url);
                discard(&job.partial);
                job.stats.requests += 1;
                response = self.request_with(job.url, job.headers, 0)?;
            }
        }
        let (mut file, mut ctx, total) = match response.status() {
            StatusCode::OK => {
                let total = response.body().content_length();
                job.stats.resumed = false;
                (job.create()?, Context::new(&SHA256), total)
            }
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                log::info!("{}: resuming at byte {offset}", job.url);
                let total = content_range(&response).and_then(|(_, total)| total);
                let mut file = job.open_kept()?;
                let ctx = job.hash_prefix(&mut file, offset)?;
                job.stats.resumed = true;
                (file, ctx, total)
            }
            status => return Err(status_error(job.url, status)),
        };
        let mut done = file.metadata().map_err(|e| job.local("stat", e))?.len();
        if let Some(total) = total {
            job.check_space(&file, total.saturating_sub(done))?;
        }
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(body_error(job.url, e, done, total)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| job.local("write", e))?;
            ctx.update(&buf[..n]);
            done += n as u64;
            job.stats.received += n as u64;
            job.progress.report(done, total, false);
        }
        let actual = ctx.finish();
        if let Some(expected) = job.expected.filter(|e| actual.as_ref() != *e) {
            discard(&job.partial);
            return Err(FetchError::HashMismatch {
                url: job.url.to_string(),
                actual: crate::hex(actual.as_ref()),
                expected: crate::hex(expected),
            });
        }
        Ok(file)
    }

    /// A small document with its status and headers, whatever the status: a registry's 401
    /// carries the challenge to answer. Transient failures (5xx included) are retried.
    pub fn get_document(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        cap: usize,
    ) -> Result<Document, FetchError> {
        self.with_retries(url, || {
            let response = self.request_with(url, headers, 0)?;
            let status = response.status();
            if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                return Err(status_error(url, status));
            }
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let mut body = Vec::new();
            response
                .into_body()
                .into_reader()
                .take((cap as u64).saturating_add(1))
                .read_to_end(&mut body)
                .map_err(|e| http_error(url, e))?;
            if body.len() > cap {
                return Err(FetchError::TooLarge {
                    url: url.to_string(),
                    cap,
                });
            }
            Ok(Document {
                status: status.as_u16(),
                headers,
                body,
            })
        })
    }

    fn request(&self, url: &str, offset: u64) -> Result<Response<Body>, FetchError> {
        self.request_with(url, &[], offset)
    }

    fn request_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        offset: u64,
    ) -> Result<Response<Body>, FetchError> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        // What was asked for over HTTPS is never followed to plain HTTP.
        if url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"))
        {
            request = request.config().https_only(true).build();
        }
        request.call().map_err(|source| FetchError::Http {
            url: url.to_string(),
            source,
        })
    }

    /// Runs `f` until it succeeds, fails for good, or the retries are used up.
    fn with_retries<T>(
        &self,
        url: &str,
        mut f: impl FnMut() -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let mut delay = FIRST_BACKOFF;
        for _ in 0..self.retries {
            match f() {
                Err(e) if e.is_transient() => {
                    log::warn!("{e}; retrying in {} ms", delay.as_millis());
                    thread::sleep(delay);
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                result => return result,
            }
        }
        f().inspect_err(|e| {
            if e.is_transient() && self.retries > 0 {
                log::warn!("{url}: giving up after {} attempts", self.retries + 1);
            }
        })
    }
}

/// The state of one [`Fetcher::download`] call across its attempts.
struct Job<'a> {
    url: &'a str,
    headers: &'a [(&'a str, &'a str)],
    partial: PathBuf,
    expected: Option<&'a [u8; 32]>,
    stats: DownloadStats,
    progress: Progress<'a>,
}

impl Job<'_> {
    /// The length of a kept partial file to resume, or 0; whatever else is under its name is
    /// removed without being opened.
    fn kept_length(&self) -> u64 {
        match fs::symlink_metadata(&self.partial) {
            Ok(meta) if is_own_file(&meta) => meta.len(),
            Ok(meta) => {
                log::warn!(
                    "{}: removing it without use: {}",
                    self.partial.display(),
                    not_own_file(&meta)
                );
                discard(&self.partial);
                0
            }
            Err(_) => 0,
        }
    }

    /// Creates a new partial file; whatever was under its name goes first, so nothing planted
    /// there is written through.
    fn create(&self) -> Result<File, FetchError> {
        discard(&self.partial);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&self.partial)
            .map_err(|e| self.local("create", e))
    }

    /// Opens the kept partial file to resume it, checking on the open file that it is still
    /// one [`kept_length`](Self::kept_length) accepted.
    fn open_kept(&self) -> Result<File, FetchError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(&self.partial)
            .map_err(|e| self.local("open", e))?;
        let meta = file.metadata().map_err(|e| self.local("stat", e))?;
        if !is_own_file(&meta) {
            let reason = io::Error::other(not_own_file(&meta));
            return Err(self.local("open", reason));
        }
        Ok(file)
    }

    /// Hashes the first `len` bytes of the partial file, leaving its position at `len`.
    fn hash_prefix(&self, file: &mut File, len: u64) -> Result<Context, FetchError> {
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0; CHUNK];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read(&mut buf[..want]) {
                Ok(0) => return Err(self.local("read", io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    left -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.local("read", e)),
            }
        }
        Ok(ctx)
    }

    /// Refuses, before any byte is written, a body whose announced length the file system
    /// cannot hold without its reserve for root, so an image too large for the disk does not
    /// fill it first. A body of unknown length still ends at the kernel's ENOSPC.
    fn check_space(&self, file: &File, needed: u64) -> Result<(), FetchError> {
        let Ok(fs) = rustix::fs::fstatvfs(file) else {
            return Ok(());
        };
        let available = fs.f_bavail.saturating_mul(fs.f_frsize);
        if needed <= available {
            return Ok(());
        }
        let why = format!(
            "no space left on device: the server announced {needed} more bytes, \
             {available} are available"
        );
        Err(self.local("write", io::Error::new(io::ErrorKind::StorageFull, why)))
    }

    /// A local failure on the partial file: the file goes, since it cannot be trusted or it
    /// takes space the boot needs.
    fn local(&self, op: &'static str, source: io::Error) -> FetchError {
        discard(&self.partial);
        io_error(op, &self.partial, source)
    }
}

/// Whether a kept partial file may be resumed: a regular file, no other name for it, made by
/// this user (root in the initrd).
fn is_own_file(meta: &fs::Metadata) -> bool {
    meta.is_file() && meta.nlink() == 1 && meta.uid() == rustix::process::geteuid().as_raw()
}

/// Why [`is_own_file`] refuses it.
fn not_own_file(meta: &fs::Metadata) -> String {
    if !meta.is_file() {
        "not a regular file".to_string()
    } else if meta.nlink() != 1 {
        format!("it has {} links", meta.nlink())
    } else {
        format!("owned by uid {}", meta.uid())
    }
}

/// Rate-limited progress reporting.
struct Progress<'a> {
    sink: &'a Mutex<Option<ProgressFn>>,
    last: Option<Instant>,
}

impl Progress<'_> {
    fn report(&mut self, done: u64, total: Option<u64>, force: bool) {
        let now = Instant::now();
        if !force && self.last.is_some_and(|t| now - t < PROGRESS_INTERVAL) {
            return;
        }
        self.last = Some(now);
        if let Some(f) = self.sink.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(done, total);
        }
    }
}

/// Atomically point the symlink `link` at `target_rel` (a relative link text): create `link`'s
/// parent (0755) if missing, make a temp symlink next to it, rename over.
///
/// The link text must be relative because the target root is mounted somewhere else in the
/// initramfs than at `/` on the booted system; an absolute text is refused as `InvalidInput`.
pub fn swap_symlink(link: &Path, target_rel: &Path) -> io::Result<()> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    if target_rel.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "symlink target must be relative",
        ));
    }
    let (Some(parent), Some(name)) = (link.parent(), link.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "symlink path has no file name",
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)?;
    let tmp = parent.join(format!(
        ".#rdext{}.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover from an earlier boot can carry the same name, as PIDs repeat in the initramfs.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(target_rel, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(parent)?.sync_all()
}

/// Reads a PEM bundle into trust anchors; an empty or broken bundle is an error rather than a
/// silent fallback, since the caller asked for exactly these roots.
fn parse_roots(pem: &[u8], what: &'static str) -> Result<RootCerts, FetchError> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(FetchError::Certificates {
                    what,
                    reason: e.to_string(),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(FetchError::Certificates {
            what,
            reason: "no certificates in it".to_string(),
        });
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// Checks what is at the final name: `Some(size)` if it is already the expected file, `None` if
/// the name is free or may be replaced, an error otherwise.
fn existing_file(
    path: &Path,
    expected: &[u8; 32],
    replace: bool,
) -> Result<Option<u64>, FetchError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("stat", path, e)),
    };
    if meta.is_file() {
        let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0; CHUNK];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => ctx.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("read", path, e)),
            }
        }
        if ctx.finish().as_ref() == expected {
            return Ok(Some(meta.len()));
        }
    }
    if replace {
        Ok(None)
    } else {
        Err(FetchError::Exists(path.to_path_buf()))
    }
}

/// Makes the verified partial file durable and gives it its final name.
fn install(
    file: &File,
    partial: &Path,
    final_path: &Path,
    mode: u32,
    replace: bool,
) -> Result<(), FetchError> {
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_error("chmod", partial, e))?;
    file.sync_all().map_err(|e| io_error("fsync", partial, e))?;
    let renamed = if replace {
        fs::rename(partial, final_path)
    } else {
        match rustix::fs::renameat_with(CWD, partial, CWD, final_path, RenameFlags::NOREPLACE) {
            Err(Errno::EXIST) => return Err(FetchError::Exists(final_path.to_path_buf())),
            // Some file systems (NFS, old FUSE) lack RENAME_NOREPLACE; check, then rename.
            Err(Errno::INVAL) | Err(Errno::NOSYS) => match fs::symlink_metadata(final_path) {
                Ok(_) => return Err(FetchError::Exists(final_path.to_path_buf())),
                Err(_) => fs::rename(partial, final_path),
            },
            other => other.map_err(io::Error::from),
        }
    };
    renamed.map_err(|e| io_error("rename", partial, e))?;
    let dir = final_path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync", dir, e))
}

/// The start offset and, unless it is `*`, the full length from a 206 response's
/// `Content-Range: bytes A-B/N`.
pub fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

fn content_range(response: &Response<Body>) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(header::CONTENT_RANGE)?;
    parse_content_range(value.to_str().ok()?)
}

/// Removes a partial file whose bytes are of no further use; a failure leaves only a hidden
/// `.#` file behind, which the next attempt overwrites or resumes.
fn discard(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> FetchError {
    FetchError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn http_error(url: &str, e: io::Error) -> FetchError {
    FetchError::Http {
        url: url.to_string(),
        source: ureq::Error::from(e),
    }
}

/// A read error in the middle of a body. When the server announced the length, the message
/// says how much of it arrived: a cut connection and a server announcing more than it sends
/// look alike, and "peer disconnected" alone does not tell which file was short.
fn body_error(url: &str, e: io::Error, done: u64, total: Option<u64>) -> FetchError {
    let source = match (ureq::Error::from(e), total) {
        (ureq::Error::Io(e), Some(total)) if done < total => ureq::Error::Io(io::Error::new(
            e.kind(),
            format!("the body ended after {done} of the {total} bytes announced: {e}"),
        )),
        (source, _) => source,
    };
    FetchError::Http {
        url: url.to_string(),
        source,
    }
}

fn status_error(url: &str, status: StatusCode) -> FetchError {
    FetchError::Status {
        url: url.to_string(),
        status: status.as_u16(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn sha256(data: &[u8]) -> [u8; 32] {
        ring::digest::digest(&SHA256, data)
            .as_ref()
            .try_into()
            .unwrap()
    }

    fn status(status: u16) -> FetchError {
        FetchError::Status {
            url: "http://h/x".into(),
            status,
        }
    }

    fn transport(source: ureq::Error) -> FetchError {
        FetchError::Http {
            url: "http://h/x".into(),
            source,
        }
    }

    #[test]
    fn content_range_values() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range(" bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes 1-2"), None);
    }

    #[test]
    fn only_network_trouble_is_transient() {
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 416] {
            assert!(!status(code).is_transient(), "{code}");
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(transport(ureq::Error::Io(reset)).is_transient());
        assert!(transport(ureq::Error::HostNotFound).is_transient());
        assert!(transport(ureq::Error::Timeout(ureq::Timeout::PerRead)).is_transient());
        let tls = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert!(!transport(ureq::Error::Io(tls)).is_transient());
        assert!(!transport(ureq::Error::TooManyRedirects).is_transient());
        assert!(!transport(ureq::Error::BadUri("x".into())).is_transient());
        assert!(!FetchError::InvalidName("a/b".into()).is_transient());
    }

    #[test]
    fn messages_are_one_line_and_name_the_subject() {
        assert_eq!(status(404).to_string(), "http://h/x: HTTP status 404");
        let e = FetchError::Io {
            op: "write",
            path: "/sysroot/var/lib/extensions/.#rdexta.raw.partial".into(),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            e.to_string(),
            "cannot write /sysroot/var/lib/extensions/.#rdexta.raw.partial: \
             No space left on device (os error 28)"
        );
        let e = FetchError::HashMismatch {
            url: "http://h/x".into(),
            actual: crate::hex(&[0xab; 32]),
            expected: crate::hex(&[0x01; 32]),
        };
        assert!(!e.to_string().contains('\n'));
        assert!(e.to_string().starts_with("http://h/x: SHA-256 abab"));
    }

    #[test]
    fn a_body_short_of_its_announced_length_says_how_short() {
        let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "Peer disconnected");
        let e = body_error("http://h/x", eof(), 3_000, Some(6_000));
        assert_eq!(
            e.to_string(),
            "http://h/x: io: the body ended after 3000 of the 6000 bytes announced: \
             Peer disconnected"
        );
        assert!(e.is_transient(), "a cut connection is retried");
        let e = body_error("http://h/x", eof(), 3_000, None);
        assert_eq!(e.to_string(), "http://h/x: io: Peer disconnected");
        let timeout = io::Error::other(ureq::Error::Timeout(ureq::Timeout::PerRead));
        let e = body_error("http://h/x", timeout, 3_000, Some(6_000));
        assert!(
            matches!(
                e,
                FetchError::Http {
                    source: ureq::Error::Timeout(_),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(crate::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn final_names_must_be_single_components() {
        let f = Fetcher::new(FetchConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["", ".", "..", "a/b", "/abs", "nul\0byte"] {
            let err = f
                .download(
                    "http://127.0.0.1:9/x",
                    dir.path(),
                    name,
                    &[0; 32],
                    0o644,
                    false,
                )
                .unwrap_err();
            assert!(matches!(err, FetchError::InvalidName(_)), "{name:?}: {err}");
        }
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn ca_bundles_without_certificates_are_refused() {
        for pem in [&b""[..], b"# comment only\n"] {
            let cfg = FetchConfig {
                system_roots_pem: Some(pem.to_vec()),
                ..FetchConfig::default()
            };
            let err = Fetcher::new(cfg).err().unwrap();
            assert_eq!(
                err.to_string(),
                "cannot use the system CA bundle: no certificates in it"
            );
        }
    }

    #[test]
    fn existing_final_file_is_judged_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.raw");
        let want = sha256(b"image");
        assert_eq!(existing_file(&path, &want, false).unwrap(), None);
        fs::write(&path, b"image").unwrap();
        assert_eq!(existing_file(&path, &want, false).unwrap(), Some(5));
        fs::write(&path, b"other").unwrap();
        assert!(matches!(
            existing_file(&path, &want, false),
            Err(FetchError::Exists(_))
        ));
        assert_eq!(existing_file(&path, &want, true).unwrap(), None);
        // A symlink to the right content is still not the file itself.
        fs::remove_file(&path).unwrap();
        fs::write(dir.path().join("real"), b"image").unwrap();
        std::os::unix::fs::symlink("real", &path).unwrap();
        assert!(matches!(
            existing_file(&path, &want, false),
            Err(FetchError::Exists(_))
        ));
    }

    #[test]
    fn retries_stop_at_the_bound_or_the_first_final_error() {
        let f = Fetcher::new(FetchConfig {
            retries: 1,
            ..FetchConfig::default()
        })
        .unwrap();
        let mut calls = 0;
        let r: Result<(), _> = f.with_retries("u", || {
            calls += 1;
            Err(status(503))
        });
        assert!(matches!(r, Err(FetchError::Status { status: 503, .. })));
        assert_eq!(calls, 2);
        calls = 0;
        let r: Result<(), _> = f.with_retries("u", || {
            calls += 1;
            Err(status(404))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn progress_is_rate_limited_but_forced_reports_pass() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let cb: ProgressFn = Box::new(move |done, total| sink.lock().unwrap().push((done, total)));
        let slot = Mutex::new(Some(cb));
        let mut p = Progress {
            sink: &slot,
            last: None,
        };
        for i in 0..1000 {
            p.report(i, Some(1000), false);
        }
        p.report(1000, Some(1000), true);
        assert_eq!(*seen.lock().unwrap(), [(0, Some(1000)), (1000, Some(1000))]);
    }

    #[test]
    fn symlink_is_swapped_atomically_and_parent_created() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("etc/extensions/ext.raw");
        swap_symlink(&link, Path::new("../../var/lib/extensions/ext_1.raw")).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../../var/lib/extensions/ext_1.raw")
        );
        let parent = fs::metadata(link.parent().unwrap()).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o755);
        swap_symlink(&link, Path::new("../../var/lib/extensions/ext_2.raw")).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../../var/lib/extensions/ext_2.raw")
        );
        assert_eq!(names(link.parent().unwrap()), ["ext.raw"]);
    }

    #[test]
    fn symlink_swap_refuses_absolute_targets_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ext.raw");
        let err = swap_symlink(&link, Path::new("/var/lib/extensions/ext.raw")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        fs::create_dir(&link).unwrap();
        assert!(swap_symlink(&link, Path::new("x")).is_err());
        assert!(link.is_dir());
        assert_eq!(names(dir.path()), ["ext.raw"]);
    }
}
