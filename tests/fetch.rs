//! Downloads against real HTTP(S) servers on 127.0.0.1: resume, retries, timeouts, redirects,
//! TLS trust, and what is left in the target directory after each outcome.

mod common;

use common::http_server::{self, Fault, Request, Server};
use common::sha256;
use rdext::fetch::http::{DownloadStats, FetchConfig, FetchError, Fetcher};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "ext_1.2.raw";

/// Short timeouts and no retries unless a test asks for them.
fn config() -> FetchConfig {
    FetchConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        retries: 0,
        ..FetchConfig::default()
    }
}

fn fetcher(cfg: FetchConfig) -> Fetcher {
    Fetcher::new(cfg).unwrap()
}

/// Deterministic bytes that do not repeat with any short period.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn partial_name() -> String {
    format!(".#rdext{NAME}.partial")
}

fn req(path: &str, range: Option<&str>) -> Request {
    Request {
        path: path.to_string(),
        range: range.map(str::to_string),
    }
}

/// Serves `data` at `/NAME` and returns the server and a scratch target directory.
fn setup(data: &[u8]) -> (Server, tempfile::TempDir) {
    let server = Server::start();
    server.add_file(&format!("/{NAME}"), data);
    (server, tempfile::tempdir().unwrap())
}

#[test]
fn plain_download_installs_the_verified_file_with_its_mode() {
    let data = payload(300_000);
    let (server, dir) = setup(&data);
    let target = dir.path().join("extensions");
    let stats = fetcher(config())
        .download(
            &server.url(&format!("/{NAME}")),
            &target,
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(
        stats,
        DownloadStats {
            size: 300_000,
            received: 300_000,
            requests: 1,
            resumed: false
        }
    );
    assert_eq!(fs::read(target.join(NAME)).unwrap(), data);
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o755,
        "created target dir"
    );
    let meta = fs::metadata(target.join(NAME)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(listing(&target), [NAME]);
}

#[test]
fn cut_connection_is_resumed_with_a_range_request() {
    let data = payload(500_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.fault(&path, Fault::CutAfter(123_456));
    let cfg = FetchConfig {
        retries: 2,
        ..config()
    };
    let stats = fetcher(cfg)
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(
        server.requests(),
        [req(&path, None), req(&path, Some("bytes=123456-"))]
    );
    assert_eq!(stats.requests, 2);
    assert!(stats.resumed);
    assert_eq!(stats.received, 500_000);
    assert_eq!(
        sha256(&fs::read(dir.path().join(NAME)).unwrap()),
        sha256(&data)
    );
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn partial_file_survives_a_failed_call_and_the_next_call_resumes_it() {
    let data = payload(200_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    let url = server.url(&path);
    server.fault(&path, Fault::CutAfter(70_000));
    let f = fetcher(config());
    let err = f
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        err.to_string()
            .contains("the body ended after 70000 of the 200000 bytes announced"),
        "{err}"
    );
    assert_eq!(listing(dir.path()), [partial_name()]);
    assert_eq!(
        fs::read(dir.path().join(partial_name())).unwrap(),
        &data[..70_000]
    );

    let stats = f
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap();
    assert_eq!(server.requests()[1], req(&path, Some("bytes=70000-")));
    assert!(stats.resumed);
    assert_eq!(stats.received, 130_000);
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn server_ignoring_the_range_restarts_from_zero() {
    let data = payload(100_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.ignore_range(&path);
    fs::write(dir.path().join(partial_name()), &data[..40_000]).unwrap();
    let stats = fetcher(config())
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(server.requests(), [req(&path, Some("bytes=40000-"))]);
    assert!(!stats.resumed);
    assert_eq!(stats.received, 100_000);
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn complete_partial_file_is_installed_on_416() {
    let data = payload(50_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    fs::write(dir.path().join(partial_name()), &data).unwrap();
    let stats = fetcher(config())
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o600,
            false,
        )
        .unwrap();
    assert_eq!(server.requests(), [req(&path, Some("bytes=50000-"))]);
    assert_eq!(
        stats,
        DownloadStats {
            size: 50_000,
            received: 0,
            requests: 1,
            resumed: true
        }
    );
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn wrong_416_partial_is_discarded_and_downloaded_afresh() {
    let data = payload(50_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    fs::write(dir.path().join(partial_name()), payload(60_000)).unwrap();
    let stats = fetcher(config())
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(
        server.requests(),
        [req(&path, Some("bytes=60000-")), req(&path, None)]
    );
    assert_eq!(stats.requests, 2);
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn wrong_hash_leaves_neither_final_nor_partial_file() {
    let data = payload(80_000);
    let (server, dir) = setup(&data);
    let url = server.url(&format!("/{NAME}"));
    let err = fetcher(config())
        .download(&url, dir.path(), NAME, &[0; 32], 0o644, false)
        .unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn corrupt_partial_prefix_is_caught_by_the_hash_and_downloaded_again() {
    let data = payload(80_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    // As a power cut can leave it: the right length, a block of zeros where the data was.
    let mut bad = data[..30_000].to_vec();
    bad[4096..8192].fill(0);
    fs::write(dir.path().join(partial_name()), bad).unwrap();
    let stats = fetcher(config())
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(
        server.requests(),
        [req(&path, Some("bytes=30000-")), req(&path, None)]
    );
    assert!(!stats.resumed);
    assert_eq!(stats.received, 50_000 + 80_000);
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

/// A server whose bytes are wrong from the start is not asked twice.
#[test]
fn wrong_bytes_without_a_resume_are_not_downloaded_again() {
    let data = payload(80_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    let err = fetcher(config())
        .download(&server.url(&path), dir.path(), NAME, &[7; 32], 0o644, false)
        .unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
    assert_eq!(server.requests(), [req(&path, None)]);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn not_found_is_none_for_small_documents_and_final_for_downloads() {
    let (server, dir) = setup(b"");
    let url = server.url("/missing");
    let cfg = FetchConfig {
        retries: 3,
        ..config()
    };
    let f = fetcher(cfg);
    assert_eq!(f.get_small(&url, 1000).unwrap(), None);
    let err = f
        .download(&url, dir.path(), NAME, &[0; 32], 0o644, false)
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
    assert_eq!(err.to_string(), format!("{url}: HTTP status 404"));
    assert_eq!(server.requests().len(), 2, "404 is not retried");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn server_errors_are_retried() {
    let data = payload(10_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.fault(&path, Fault::Status(503));
    server.fault("/SHA256SUMS", Fault::Status(500));
    server.add_file("/SHA256SUMS", b"sums\n");
    let cfg = FetchConfig {
        retries: 1,
        ..config()
    };
    let f = fetcher(cfg);
    let stats = f
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!(
        f.get_small(&server.url("/SHA256SUMS"), 100)
            .unwrap()
            .unwrap(),
        b"sums\n"
    );
    assert_eq!(server.requests().len(), 4);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn retries_are_bounded() {
    let (server, dir) = setup(b"x");
    let path = format!("/{NAME}");
    for _ in 0..5 {
        server.fault(&path, Fault::Status(502));
    }
    let cfg = FetchConfig {
        retries: 2,
        ..config()
    };
    let err = fetcher(cfg)
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(b"x"),
            0o644,
            false,
        )
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 502, .. }),
        "{err}"
    );
    assert_eq!(server.requests().len(), 3);
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn stalled_server_times_out_within_the_read_timeout() {
    let data = payload(100_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.fault(&path, Fault::Stall(10_000, Duration::from_secs(30)));
    let cfg = FetchConfig {
        read_timeout: Duration::from_millis(500),
        ..config()
    };
    let start = Instant::now();
    let err = fetcher(cfg)
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        matches!(
            err,
            FetchError::Http {
                source: ureq::Error::Timeout(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // What arrived before the stall is kept for the next call.
    assert_eq!(listing(dir.path()), [partial_name()]);
    assert_eq!(
        fs::read(dir.path().join(partial_name())).unwrap(),
        &data[..10_000]
    );
}

#[test]
fn stall_before_the_headers_times_out_too() {
    let (server, _dir) = setup(b"");
    server.add_file("/doc", b"document");
    server.fault("/doc", Fault::Stall(0, Duration::from_secs(30)));
    let cfg = FetchConfig {
        read_timeout: Duration::from_millis(300),
        ..config()
    };
    let start = Instant::now();
    let err = fetcher(cfg)
        .get_small(&server.url("/doc"), 100)
        .unwrap_err();
    assert!(matches!(err, FetchError::Http { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn redirects_are_followed() {
    let data = payload(20_000);
    let (server, dir) = setup(&data);
    server.redirect("/latest/ext.raw", &format!("/{NAME}"));
    server.add_file("/v2/SHA256SUMS", b"sums\n");
    server.redirect("/SHA256SUMS", "/v2/SHA256SUMS");
    let f = fetcher(config());
    f.download(
        &server.url("/latest/ext.raw"),
        dir.path(),
        NAME,
        &sha256(&data),
        0o644,
        false,
    )
    .unwrap();
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(
        f.get_small(&server.url("/SHA256SUMS"), 100)
            .unwrap()
            .unwrap(),
        b"sums\n"
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/latest/ext.raw",
            &format!("/{NAME}"),
            "/SHA256SUMS",
            "/v2/SHA256SUMS"
        ]
    );
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn redirect_loops_end_in_an_error() {
    let (server, dir) = setup(b"");
    server.redirect("/a", "/b");
    server.redirect("/b", "/a");
    let cfg = FetchConfig {
        max_redirects: 3,
        retries: 2,
        ..config()
    };
    let err = fetcher(cfg)
        .download(&server.url("/a"), dir.path(), NAME, &[0; 32], 0o644, false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Http {
                source: ureq::Error::TooManyRedirects,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.requests().len(), 4, "not retried");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn small_documents_are_capped() {
    let (server, _dir) = setup(b"");
    server.add_file("/SHA256SUMS", &[b'x'; 101]);
    let f = fetcher(config());
    let err = f.get_small(&server.url("/SHA256SUMS"), 100).unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { cap: 100, .. }),
        "{err}"
    );
    assert_eq!(
        f.get_small(&server.url("/SHA256SUMS"), 101)
            .unwrap()
            .unwrap()
            .len(),
        101
    );
}

#[test]
fn existing_final_file_is_kept_replaced_or_refused() {
    let data = payload(5_000);
    let (server, dir) = setup(&data);
    let url = server.url(&format!("/{NAME}"));
    let f = fetcher(config());
    let final_path = dir.path().join(NAME);

    // Already the right file: nothing is requested.
    fs::write(&final_path, &data).unwrap();
    let stats = f
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap();
    assert_eq!(stats.requests, 0);
    assert_eq!(stats.size, 5_000);

    // Another file under the name: refused unless replacing is allowed.
    fs::write(&final_path, b"older build").unwrap();
    let err = f
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap_err();
    assert!(matches!(err, FetchError::Exists(_)), "{err}");
    assert_eq!(fs::read(&final_path).unwrap(), b"older build");
    assert!(server.requests().is_empty());

    f.download(&url, dir.path(), NAME, &sha256(&data), 0o644, true)
        .unwrap();
    assert_eq!(fs::read(&final_path).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn progress_is_reported_sparingly_and_ends_complete() {
    let data = payload(3_000_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.fault(&path, Fault::CutAfter(1_000_000));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let cfg = FetchConfig {
        retries: 1,
        progress: Some(Box::new(move |done, total| {
            sink.lock().unwrap().push((done, total))
        })),
        ..config()
    };
    let start = Instant::now();
    fetcher(cfg)
        .download(
            &server.url(&path),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap();
    let elapsed = start.elapsed();
    let seen = seen.lock().unwrap();
    assert_eq!(*seen.last().unwrap(), (3_000_000, Some(3_000_000)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    // One per attempt start, one per 250 ms, one at the end.
    let bound = 3 + (elapsed.as_millis() / 250) as usize;
    assert!(seen.len() <= bound, "{} reports in {elapsed:?}", seen.len());
    assert!(
        seen.iter().all(|&(_, total)| total == Some(3_000_000)),
        "{seen:?}"
    );
}

#[test]
fn https_needs_the_pinned_ca() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = http_server::make_test_pki(pki_dir.path());
    let server = Server::start_tls(&pki.cert_pem, &pki.key_pem);
    let data = payload(40_000);
    server.add_file(&format!("/{NAME}"), &data);
    server.add_file("/SHA256SUMS", b"sums\n");
    let url = server.url(&format!("/{NAME}"));
    let dir = tempfile::tempdir().unwrap();

    // Built-in roots: the private CA is unknown, and that is not retried.
    let cfg = FetchConfig {
        retries: 2,
        ..config()
    };
    let err = fetcher(cfg)
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap_err();
    let FetchError::Http {
        source: ureq::Error::Io(io),
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "{err}"
    );
    assert_eq!(server.connections(), 1);
    assert!(listing(dir.path()).is_empty());

    let pinned = fetcher(FetchConfig {
        extra_ca_pem: Some(pki.ca_pem.clone()),
        ..config()
    });
    pinned
        .download(&url, dir.path(), NAME, &sha256(&data), 0o644, false)
        .unwrap();
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(
        pinned
            .get_small(&server.url("/SHA256SUMS"), 100)
            .unwrap()
            .unwrap(),
        b"sums\n"
    );

    // The target's bundle works the same way when nothing is pinned.
    let mut bundle = fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.extend_from_slice(&pki.ca_pem);
    let system = fetcher(FetchConfig {
        system_roots_pem: Some(bundle),
        ..config()
    });
    assert!(system
        .get_small(&server.url("/SHA256SUMS"), 100)
        .unwrap()
        .is_some());

    // A pinned CA is exclusive: the bundle that would trust the server is not consulted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = http_server::make_test_pki(other_dir.path());
    let err = fetcher(FetchConfig {
        extra_ca_pem: Some(other.ca_pem),
        system_roots_pem: Some(pki.ca_pem),
        ..config()
    })
    .get_small(&server.url("/SHA256SUMS"), 100)
    .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn https_cut_is_resumed() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = http_server::make_test_pki(pki_dir.path());
    let server = Server::start_tls(&pki.cert_pem, &pki.key_pem);
    let data = payload(400_000);
    let path = format!("/{NAME}");
    server.add_file(&path, &data);
    server.fault(&path, Fault::CutAfter(150_000));
    let dir = tempfile::tempdir().unwrap();
    let stats = fetcher(FetchConfig {
        extra_ca_pem: Some(pki.ca_pem),
        retries: 1,
        ..config()
    })
    .download(
        &server.url(&path),
        dir.path(),
        NAME,
        &sha256(&data),
        0o644,
        false,
    )
    .unwrap();
    assert!(stats.resumed);
    assert_eq!(server.requests()[1].range.as_deref(), Some("bytes=150000-"));
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
    assert_eq!(listing(dir.path()), [NAME]);
}

#[test]
fn unusable_ca_bundles_are_rejected_up_front() {
    let err = Fetcher::new(FetchConfig {
        extra_ca_pem: Some(b"not a certificate\n".to_vec()),
        ..config()
    })
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot use the pinned CA: no certificates in it"
    );
    let err = Fetcher::new(FetchConfig {
        system_roots_pem: Some(
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ..config()
    })
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("cannot use the system CA bundle: "),
        "{err}"
    );
}

/// Downloads `url` into `target` on a 64 KiB tmpfs mounted there in a mount namespace private
/// to one thread (needs root); the error and what is left in `target`.
fn download_to_small_tmpfs(url: String, target: &Path, data: &[u8]) -> (FetchError, Vec<String>) {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root to mount a small tmpfs"
    );
    let target = target.to_path_buf();
    let digest = sha256(data);
    std::thread::spawn(move || {
        use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
        // SAFETY: only this thread's mount namespace and fs context change; no other thread
        // shares state with it that depends on them.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .unwrap();
        mount("tmpfs", &target, "tmpfs", MountFlags::empty(), c"size=64k").unwrap();
        let err = fetcher(config())
            .download(&url, &target, NAME, &digest, 0o644, false)
            .unwrap_err();
        (err, listing(&target))
    })
    .join()
    .unwrap()
}

/// A disk-full refusal is an I/O error of kind StorageFull and leaves no file behind.
fn assert_storage_full_and_nothing_left(err: &FetchError, left: &[String]) {
    match err {
        FetchError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{err}")
        }
        _ => panic!("{err}"),
    }
    assert!(left.is_empty(), "{left:?}");
}

/// A body of unknown length (no Content-Length) runs into the kernel's ENOSPC.
#[test]
fn disk_full_removes_the_partial_file() {
    let data = payload(1_000_000);
    let (server, dir) = setup(&data);
    let path = format!("/{NAME}");
    server.fault(&path, Fault::NoLength);
    let (err, left) = download_to_small_tmpfs(server.url(&path), dir.path(), &data);
    assert!(
        err.to_string()
            .ends_with("No space left on device (os error 28)"),
        "{err}"
    );
    assert_storage_full_and_nothing_left(&err, &left);
}

/// An announced length larger than the file system can hold is refused before a byte is written.
#[test]
fn announced_length_larger_than_the_disk_is_refused_up_front() {
    let data = payload(1_000_000);
    let (server, dir) = setup(&data);
    let (err, left) = download_to_small_tmpfs(server.url(&format!("/{NAME}")), dir.path(), &data);
    let text = err.to_string();
    assert!(
        text.contains("no space left on device: the server announced 1000000 more bytes, ")
            && text.ends_with(" are available"),
        "{text}"
    );
    assert_storage_full_and_nothing_left(&err, &left);
}

/// A name the downloader did not create is never written through: a hard link or a symlink
/// planted under the partial file's name, or a file of another owner there, is removed and the
/// download starts afresh, leaving the file it pointed to untouched.
#[test]
fn planted_partial_files_are_removed_not_written_through() {
    use std::os::unix::fs::{symlink, MetadataExt};
    let data = payload(100_000);
    let (server, dir) = setup(&data);
    let url = server.url(&format!("/{NAME}"));
    let outside = tempfile::tempdir().unwrap();
    let precious = b"precious contents, not an image".repeat(100);
    let victim = outside.path().join("victim");
    let partial = dir.path().join(partial_name());
    let plant: [(&str, &dyn Fn()); 3] = [
        ("hard link", &|| fs::hard_link(&victim, &partial).unwrap()),
        ("symlink", &|| symlink(&victim, &partial).unwrap()),
        ("other owner", &|| {
            fs::write(&partial, &data[..5_000]).unwrap();
            std::os::unix::fs::chown(&partial, Some(65534), Some(65534)).unwrap();
        }),
    ];
    for (what, plant) in plant {
        fs::write(&victim, &precious).unwrap();
        let mode = fs::metadata(&victim).unwrap().mode();
        let _ = fs::remove_file(dir.path().join(NAME));
        plant();
        let result =
            fetcher(config()).download(&url, dir.path(), NAME, &sha256(&data), 0o640, true);
        assert!(
            fs::read(&victim).unwrap() == precious,
            "{what}: victim written"
        );
        let meta = fs::metadata(&victim).unwrap();
        assert_eq!(meta.mode(), mode, "{what}");
        assert_eq!(meta.nlink(), 1, "{what}");
        let stats = result.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!stats.resumed, "{what}");
        assert_eq!(stats.received, 100_000, "{what}");
        assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data, "{what}");
        assert_eq!(listing(dir.path()), [NAME], "{what}");
    }
}

/// A redirect from HTTPS to plain HTTP is not followed, and not retried; HTTPS to HTTPS is.
#[test]
fn https_is_never_redirected_to_http() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = http_server::make_test_pki(pki_dir.path());
    let tls = Server::start_tls(&pki.cert_pem, &pki.key_pem);
    let data = payload(10_000);
    let (plain, dir) = setup(&data);
    tls.add_file(&format!("/{NAME}"), &data);
    tls.redirect("/down", &plain.url(&format!("/{NAME}")));
    tls.redirect("/same", &format!("/{NAME}"));
    let f = fetcher(FetchConfig {
        extra_ca_pem: Some(pki.ca_pem.clone()),
        retries: 2,
        ..config()
    });
    let err = f
        .download(
            &tls.url("/down"),
            dir.path(),
            NAME,
            &sha256(&data),
            0o644,
            false,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Http {
                source: ureq::Error::RequireHttpsOnly(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert_eq!(tls.requests().len(), 1, "not retried");
    assert!(listing(dir.path()).is_empty());
    assert_eq!(f.get_small(&tls.url("/down"), 100_000).ok(), None);
    assert!(plain.requests().is_empty());
    f.download(
        &tls.url("/same"),
        dir.path(),
        NAME,
        &sha256(&data),
        0o644,
        false,
    )
    .unwrap();
    assert_eq!(fs::read(dir.path().join(NAME)).unwrap(), data);
}
