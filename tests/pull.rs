//! `rdext.pull=` end to end with the built binary: HTTP pulls from a real server on 127.0.0.1
//! with signed SHA256SUMS, and OCI pulls from the real CNCF distribution registry (Debian's
//! `docker-registry`) with images pushed by the real `oras` client (fetched by
//! `tests-qemu/get-oras.sh`, which `.ci/setup` runs).

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::http_server::Server;
use common::{gpg, run_tool, sha256_hex, Scratch};

fn run(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_tool(cmd)).into_owned()
}

/// A real squashfs extension image named `name` whose file says `version`.
fn image(s: &Scratch, name: &str, version: &str) -> Vec<u8> {
    s.published_image(name, version, &format!("usr/lib/{name}/version"))
}

/// `rdext download` with `cmdline` as the kernel command line; (exit status, stderr).
fn pull(s: &Scratch, cmdline: &str) -> (i32, String) {
    s.download(cmdline)
}

/// The one line of `stderr` that contains `needle`.
fn line_with<'a>(stderr: &'a str, needle: &str) -> &'a str {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?} in:\n{stderr}");
    lines[0]
}

/// A machine id, so `download` does not also run first-boot sysupdate downloads.
fn not_first_boot(s: &Scratch) {
    s.write("root/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
}

#[test]
fn http_pull_checks_the_signed_checksum_and_never_replaces_a_good_image_on_failure() {
    let s = Scratch::new();
    not_first_boot(&s);
    let server = Server::start();
    let gnupg = s.trusted_gpg_key();

    let v1 = image(&s, "tools", "1");
    let sums = format!("{}  tools.raw\n", sha256_hex(&v1));
    server.add_file("/ext/tools.raw", &v1);
    server.add_file("/ext/SHA256SUMS", sums.as_bytes());
    fs::write(s.path("sums"), &sums).unwrap();
    let sig = gpg(
        &gnupg,
        &[
            "--detach-sign",
            "--output",
            "-",
            s.path("sums").to_str().unwrap(),
        ],
    );
    server.add_file("/ext/SHA256SUMS.gpg", &sig);

    // systemd's grammar, name derived from the URL, default verify=signature, runtime=yes by
    // request (outside an initrd the default is the root's /var/lib/extensions).
    let url = server.url("/ext/tools.raw");
    let (rc, err) = pull(&s, &format!("rdext.pull=raw,sysext,runtime=yes::{url}"));
    assert_eq!(rc, 0);
    assert_eq!(fs::read(s.path("run/extensions/tools.raw")).unwrap(), v1);
    assert!(err.contains("pulls: 1 installed, 0 failed"), "{err}");

    // runtime=no: into the target root; ro: read-only file.
    let (rc, _) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,ro,runtime=no:tools:{url}"),
    );
    assert_eq!(rc, 0);
    let installed = s.path("root/var/lib/extensions/tools.raw");
    assert_eq!(fs::read(&installed).unwrap(), v1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o444
    );

    // A new version is published (signed), but the bytes served are not it: the installed
    // image stays, no partial file is left.
    let v2 = image(&s, "tools", "2");
    let sign = |sums: &str| {
        fs::write(s.path("sums"), sums).unwrap();
        gpg(
            &gnupg,
            &[
                "--detach-sign",
                "--output",
                "-",
                s.path("sums").to_str().unwrap(),
            ],
        )
    };
    let sums2 = format!("{}  tools.raw\n", sha256_hex(&v2));
    server.add_file("/ext/SHA256SUMS", sums2.as_bytes());
    server.add_file("/ext/SHA256SUMS.gpg", &sign(&sums2));
    let mut corrupt = v2.clone();
    corrupt[100] ^= 0xff;
    server.add_file("/ext/tools.raw", &corrupt);
    let (rc, err) = pull(&s, &format!("rdext.pull=raw,sysext,runtime=no:tools:{url}"));
    assert_eq!(rc, 0, "a failed pull does not fail the command");
    let why = line_with(&err, "pull of tools failed");
    assert!(why.contains("does not match the expected"), "{why}");
    assert_eq!(fs::read(&installed).unwrap(), v1, "the good image is kept");
    let leftovers: Vec<_> = fs::read_dir(installed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["tools.raw"], "no partial file left");
    server.add_file("/ext/tools.raw", &v2);
    let (_, err) = pull(&s, &format!("rdext.pull=raw,sysext,runtime=no:tools:{url}"));
    assert!(err.contains("pulls: 1 installed"), "{err}");
    assert_eq!(fs::read(&installed).unwrap(), v2);

    // A manifest changed after signing: refused. verify=checksum accepts it; verify=no takes
    // any bytes.
    let v3 = image(&s, "tools", "3");
    server.add_file("/ext/tools.raw", &v3);
    server.add_file(
        "/ext/SHA256SUMS",
        format!("{}  tools.raw\n", sha256_hex(&v3)).as_bytes(),
    );
    let (_, err) = pull(&s, &format!("rdext.pull=raw,sysext,runtime=no:tools:{url}"));
    assert!(
        line_with(&err, "pull of tools failed").contains("bad signature"),
        "{err}"
    );
    assert_eq!(fs::read(&installed).unwrap(), v2);
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,verify=checksum,runtime=no:tools:{url}"),
    );
    assert!(err.contains("pulls: 1 installed"), "{err}");
    assert_eq!(fs::read(&installed).unwrap(), v3);
    server.add_file("/ext/tools.raw", &v1);
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,verify=no,runtime=no:tools:{url}"),
    );
    assert!(err.contains("pulls: 1 installed"), "{err}");
    assert_eq!(fs::read(&installed).unwrap(), v1);

    // Settings files hold whitespace-separated expressions; a bad one is skipped with a reason.
    s.write(
        "root/etc/rdext.conf",
        &format!("pull=\"raw,sysext,verify=no,runtime=yes:fromconf:{url} tar,sysext::{url}\"\n"),
    );
    let (_, err) = pull(&s, "quiet");
    assert!(
        line_with(&err, "ignoring pull from").contains("tar images are not supported"),
        "{err}"
    );
    assert_eq!(fs::read(s.path("run/extensions/fromconf.raw")).unwrap(), v1);
}

/// A running `docker-registry` on 127.0.0.1 with its storage in `dir`.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl Registry {
    fn start(dir: &Path, auth: &str) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).unwrap();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            storage,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file holding blob `digest` (hex) in the registry's storage.
    fn blob_file(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oras() -> PathBuf {
    let path = std::env::var_os("RDEXT_ORAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/rdext-qemu/tools/oras".into());
    assert!(
        path.exists(),
        "{} missing: run tests-qemu/get-oras.sh (.ci/setup does) or set RDEXT_ORAS",
        path.display()
    );
    path
}

/// `oras push` of `file` (as a relative name, so it is the layer title) to `reference`;
/// returns the manifest digest.
fn oras_push(dir: &Path, reference: &str, file: &str, extra: &[&str]) -> String {
    let out = run(Command::new(oras())
        .current_dir(dir)
        .args(["push", "--plain-http", "--disable-path-validation"])
        .args(extra)
        .arg(reference)
        .arg(file));
    out.lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in oras output: {out}"))
        .trim()
        .to_string()
}

fn manifest_layer_digest(registry: &Registry, digest: &str) -> String {
    let path = registry
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest["sha256:".len().."sha256:".len() + 2])
        .join(&digest["sha256:".len()..])
        .join("data");
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn oci_pull_from_a_real_registry_by_digest_and_tag() {
    let s = Scratch::new();
    not_first_boot(&s);
    let registry = Registry::start(&s.path("registry"), "");
    let host = registry.host();
    let data = image(&s, "tools", "1");
    fs::create_dir_all(s.path("push")).unwrap();
    fs::write(s.path("push/tools.raw"), &data).unwrap();
    let digest = oras_push(
        &s.path("push"),
        &format!("{host}/fleet/tools:1.0"),
        "tools.raw",
        &["--artifact-type", "application/vnd.kairos.sysext.raw"],
    );

    // By digest, verify defaulting to signature: the pinned digest is what that asks for.
    let (rc, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes::oci+http://{host}/fleet/tools@{digest}"),
    );
    assert_eq!(rc, 0);
    assert!(err.contains("pulls: 1 installed, 0 failed"), "{err}");
    assert_eq!(fs::read(s.path("run/extensions/tools.raw")).unwrap(), data);

    // By tag: refused with the default verify=signature, resolved and logged with checksum.
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes:t:oci+http://{host}/fleet/tools:1.0"),
    );
    assert!(
        line_with(&err, "pull of t failed").contains("pinned by digest"),
        "{err}"
    );
    let (_, err) = pull(
        &s,
        &format!(
            "rdext.pull=raw,sysext,verify=checksum,runtime=yes:t:oci+http://{host}/fleet/tools:1.0"
        ),
    );
    assert!(
        err.contains(&format!("fleet/tools:1.0 is {digest}")),
        "{err}"
    );
    assert_eq!(fs::read(s.path("run/extensions/t.raw")).unwrap(), data);

    // A confext pull of a sysext artifact is refused.
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,confext,runtime=yes:c:oci+http://{host}/fleet/tools@{digest}"),
    );
    assert!(
        line_with(&err, "pull of c failed").contains("is not a confext"),
        "{err}"
    );

    // A digest the registry does not have: one line, nothing installed.
    let other = format!("sha256:{}", "0".repeat(64));
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes:w:oci+http://{host}/fleet/tools@{other}"),
    );
    assert!(
        line_with(&err, "pull of w failed").contains("manifest unknown"),
        "{err}"
    );
    assert!(!s.path("run/extensions/w.raw").exists());

    // The registry serves bytes that are not the layer's digest (its storage corrupted): the
    // pulled image already there stays as it was, nothing else is left behind.
    let layer = manifest_layer_digest(&registry, &digest);
    let blob = registry.blob_file(&layer["sha256:".len()..]);
    let mut corrupt = data.clone();
    corrupt[100] ^= 0xff;
    fs::write(&blob, &corrupt).unwrap();
    fs::write(
        s.path("run/extensions/tools.raw"),
        b"the good image of an earlier pull",
    )
    .unwrap();
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes::oci+http://{host}/fleet/tools@{digest}"),
    );
    let why = line_with(&err, "pull of tools failed");
    assert!(why.contains("does not match the expected"), "{why}");
    assert_eq!(
        fs::read(s.path("run/extensions/tools.raw")).unwrap(),
        b"the good image of an earlier pull"
    );
    let names: Vec<_> = fs::read_dir(s.path("run/extensions"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The blob gone from the registry.
    fs::remove_file(&blob).unwrap();
    let (_, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes:m:oci+http://{host}/fleet/tools@{digest}"),
    );
    assert!(
        line_with(&err, "pull of m failed").contains("/blobs/sha256:"),
        "{err}"
    );

    // The registry down.
    drop(registry);
    let (rc, err) = pull(
        &s,
        &format!("rdext.pull=raw,sysext,runtime=yes:d:oci+http://{host}/fleet/tools@{digest}"),
    );
    assert_eq!(rc, 0);
    assert!(line_with(&err, "pull of d failed").contains(&host), "{err}");
}

#[test]
fn oci_pull_with_basic_auth_from_htpasswd() {
    let s = Scratch::new();
    not_first_boot(&s);
    let hash = run(Command::new("/usr/bin/python3").args([
        "-W",
        "ignore",
        "-c",
        "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
    ]));
    s.write("registry/htpasswd", &format!("fleet:{}", hash.trim()));
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: rdext-test\n    path: {}\n",
        s.path("registry/htpasswd").display()
    );
    let registry = Registry::start(&s.path("registry"), &auth);
    let host = registry.host();
    let data = image(&s, "tools", "1");
    fs::create_dir_all(s.path("push")).unwrap();
    fs::write(s.path("push/tools.raw"), &data).unwrap();
    let digest = oras_push(
        &s.path("push"),
        &format!("{host}/fleet/tools:1.0"),
        "tools.raw",
        &["-u", "fleet", "-p", "s3cret"],
    );
    let spec = format!("rdext.pull=raw,sysext,runtime=yes::oci+http://{host}/fleet/tools@{digest}");
    let (_, err) = pull(&s, &spec);
    assert!(
        line_with(&err, "pull of tools failed").contains("no credentials"),
        "{err}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode("fleet:s3cret");
    s.write(
        "root/root/.docker/config.json",
        &format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{b64}\"}}}}}}"),
    );
    let (_, err) = pull(&s, &spec);
    assert!(err.contains("pulls: 1 installed"), "{err}");
    assert_eq!(fs::read(s.path("run/extensions/tools.raw")).unwrap(), data);
}

/// A token server for the registry's `auth: token` (none is packaged in Debian): it answers
/// `GET /token?service=..&scope=..` with an ES256 JWT for the asked scope, signed by a key whose
/// self-signed certificate (`x5c`) is the registry's `rootcertbundle`, when the request carries
/// the right Basic credentials. Returns the port; the thread serves until the test ends.
fn token_server(dir: &Path, user_pass: &str) -> u16 {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "token.key",
        "-out",
        "token.crt",
        "-days",
        "2",
        "-subj",
        "/CN=rdext-test-token",
    ]));
    run(Command::new("openssl").current_dir(dir).args([
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "token.key",
        "-outform",
        "DER",
        "-out",
        "token.p8",
    ]));
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-in",
        "token.crt",
        "-outform",
        "DER",
        "-out",
        "token.der",
    ]));
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &fs::read(dir.join("token.p8")).unwrap(),
        &rng,
    )
    .unwrap();
    let cert =
        base64::engine::general_purpose::STANDARD.encode(fs::read(dir.join("token.der")).unwrap());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let b64 = |data: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let mut authorized = false;
            use std::io::BufRead;
            reader.read_line(&mut request_line).unwrap_or(0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") && v.trim() == expected {
                        authorized = true;
                    }
                }
            }
            let query = request_line
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .split_once('?')
                .map_or("", |q| q.1);
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(|v| {
                        v.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ",")
                    })
            };
            let access: Vec<serde_json::Value> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|v| v.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
                .filter_map(|scope| {
                    let mut parts = scope.splitn(3, ':');
                    let (t, n, a) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let response = if authorized {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [cert]});
                let claims = serde_json::json!({
                    "iss": "rdext-test-issuer", "sub": "fleet",
                    "aud": param("service").unwrap_or_default(),
                    "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}"),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64(header.to_string().as_bytes()),
                    b64(claims.to_string().as_bytes())
                );
                let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
                let body =
                    serde_json::json!({"token": format!("{signing_input}.{}", b64(sig.as_ref()))})
                        .to_string();
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            use std::io::Write;
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn oci_pull_with_bearer_tokens_from_the_registry_realm() {
    let s = Scratch::new();
    not_first_boot(&s);
    fs::create_dir_all(s.path("registry")).unwrap();
    let token_port = token_server(&s.path("registry"), "fleet:s3cret");
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: rdext-test-registry\n    \
         issuer: rdext-test-issuer\n    rootcertbundle: {}\n",
        s.path("registry/token.crt").display()
    );
    let registry = Registry::start(&s.path("registry"), &auth);
    let host = registry.host();
    let data = image(&s, "tools", "1");
    fs::create_dir_all(s.path("push")).unwrap();
    fs::write(s.path("push/tools.raw"), &data).unwrap();
    let digest = oras_push(
        &s.path("push"),
        &format!("{host}/fleet/tools:1.0"),
        "tools.raw",
        &["-u", "fleet", "-p", "s3cret"],
    );
    let spec = format!("rdext.pull=raw,sysext,runtime=yes::oci+http://{host}/fleet/tools@{digest}");
    // Anonymous: the realm refuses a token.
    let (_, err) = pull(&s, &spec);
    let why = line_with(&err, "pull of tools failed");
    assert!(
        why.contains(&format!(
            "token request http://127.0.0.1:{token_port}/token: HTTP status 401"
        )),
        "{why}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode("fleet:s3cret");
    s.write(
        "root/etc/rdext/registry-auth.json",
        &format!("{{\"auths\": {{\"{host}\": {{\"auth\": \"{b64}\"}}}}}}"),
    );
    let (_, err) = pull(&s, &spec);
    assert!(err.contains("pulls: 1 installed"), "{err}");
    assert_eq!(fs::read(s.path("run/extensions/tools.raw")).unwrap(), data);
}
