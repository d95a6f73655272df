//! A small threaded HTTP/1.1 server on 127.0.0.1 for the download tests, plain or over rustls.
//!
//! It serves in-memory files with `Range` support, answers 404 for unknown paths, redirects with
//! 302, logs every request, and plays one-shot faults per path (cut the body after N bytes, stall,
//! answer with a status) so that resume, timeout and retry paths can be driven deterministically.
//! Every connection carries exactly one request (`Connection: close`).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A one-shot misbehaviour for the next request to a path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Send the headers and this many body bytes, then drop the connection.
    CutAfter(usize),
    /// Send the headers and this many body bytes, then go silent for the duration.
    Stall(usize, Duration),
    /// Answer with this status and an empty body.
    Status(u16),
    /// Send the body without a Content-Length, ended by closing the connection.
    NoLength,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    redirects: HashMap<String, String>,
    faults: HashMap<String, VecDeque<Fault>>,
    ignore_range: HashSet<String>,
    log: Vec<Request>,
    connections: usize,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

/// A running server; dropping it stops accepting and ends stalls.
pub struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Plain HTTP.
    pub fn start() -> Server {
        Server::spawn(None)
    }

    /// HTTPS with the given PEM certificate chain and private key.
    pub fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Server::spawn(Some(Arc::new(config)))
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    shared.state.lock().unwrap().connections += 1;
                    let shared = shared.clone();
                    let tls = tls.clone();
                    thread::spawn(move || match tls {
                        None => serve(&shared, stream.try_clone().unwrap(), &stream),
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            let tls_stream =
                                rustls::StreamOwned::new(conn, stream.try_clone().unwrap());
                            serve(&shared, tls_stream, &stream);
                        }
                    });
                }
            })
        };
        Server {
            addr,
            scheme,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn add_file(&self, path: &str, data: &[u8]) {
        self.state().files.insert(path.to_string(), data.to_vec());
    }

    /// Answer `from` with a 302 to `to` (a path on this server).
    pub fn redirect(&self, from: &str, to: &str) {
        self.state()
            .redirects
            .insert(from.to_string(), to.to_string());
    }

    /// Queue a fault for the next request to `path` that has none queued before it.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.state()
            .faults
            .entry(path.to_string())
            .or_default()
            .push_back(fault);
    }

    /// Serve `path` with 200 and the whole file even when a range is asked for.
    pub fn ignore_range(&self, path: &str) {
        self.state().ignore_range.insert(path.to_string());
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().log.clone()
    }

    /// Accepted TCP connections, including ones whose TLS handshake failed.
    pub fn connections(&self) -> usize {
        self.state().connections
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one request on `stream`; `tcp` is the raw socket, for cutting the connection.
fn serve(shared: &Shared, stream: impl Read + Write, tcp: &TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let (fault, redirect, file, ignore_range) = {
        let mut state = shared.state.lock().unwrap();
        state.log.push(Request {
            path: path.clone(),
            range: range.clone(),
        });
        let fault = state.faults.get_mut(&path).and_then(VecDeque::pop_front);
        (
            fault,
            state.redirects.get(&path).cloned(),
            state.files.get(&path).cloned(),
            state.ignore_range.contains(&path),
        )
    };
    let out = reader.get_mut();
    if let Some(Fault::Status(code)) = fault {
        respond(out, code, &[], &[]);
        return;
    }
    if let Some(to) = redirect {
        respond(out, 302, &[format!("Location: {to}")], &[]);
        return;
    }
    let Some(data) = file else {
        respond(out, 404, &[], b"not found\n");
        return;
    };
    let (status, headers, body) = match range.filter(|_| !ignore_range) {
        Some(range) => match parse_range(&range, data.len()) {
            Some((start, end)) => (
                206,
                vec![format!(
                    "Content-Range: bytes {start}-{}/{}",
                    end - 1,
                    data.len()
                )],
                &data[start..end],
            ),
            None => (
                416,
                vec![format!("Content-Range: bytes */{}", data.len())],
                &[][..],
            ),
        },
        None => (200, vec![], &data[..]),
    };
    match fault {
        Some(Fault::CutAfter(n)) => {
            send_head(out, status, &headers, body.len());
            let _ = out.write_all(&body[..n.min(body.len())]);
            let _ = out.flush();
            let _ = tcp.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall(n, duration)) => {
            send_head(out, status, &headers, body.len());
            let _ = out.write_all(&body[..n.min(body.len())]);
            let _ = out.flush();
            let until = Instant::now() + duration;
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = tcp.shutdown(Shutdown::Both);
        }
        Some(Fault::NoLength) => {
            let head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(body);
            let _ = out.flush();
            let _ = tcp.shutdown(Shutdown::Both);
        }
        _ => respond(out, status, &headers, body),
    }
}

/// `bytes=N-` or `bytes=N-M` as a half-open byte range within `len`; `None` is unsatisfiable.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let (first, last) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = first.parse().ok()?;
    let end = match last {
        "" => len,
        last => (last.parse::<usize>().ok()? + 1).min(len),
    };
    (start < end).then_some((start, end))
}

fn send_head(out: &mut impl Write, status: u16, headers: &[String], len: usize) {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
}

fn respond(out: &mut impl Write, status: u16, headers: &[String], body: &[u8]) {
    send_head(out, status, headers, body.len());
    let _ = out.write_all(body);
    let _ = out.flush();
}

/// A throw-away CA and a server certificate for 127.0.0.1 signed by it, in PEM.
pub struct TestPki {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Makes a [`TestPki`] in `dir` with the `openssl` command.
pub fn make_test_pki(dir: &Path) -> TestPki {
    let openssl = |args: &[&str]| {
        super::run_tool(Command::new("openssl").args(args).current_dir(dir));
    };
    // A distinct subject per CA, so a foreign CA fails as an unknown issuer.
    let ca_subject = format!(
        "/CN=rdext test CA {}",
        dir.file_name().unwrap().to_string_lossy()
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", &ca_subject][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    TestPki {
        ca_pem: read("ca.pem"),
        cert_pem: read("server.pem"),
        key_pem: read("server.key"),
    }
}
