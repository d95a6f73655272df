//! First-boot downloads end to end: the built binary, a target root with a
//! sysupdate transfer file, a real HTTP server on 127.0.0.1 serving real
//! squashfs images, SHA256SUMS signed by a real gpg key.

mod common;

use std::fs;
use std::path::PathBuf;

use common::http_server::Server;
use common::{gpg, marked, sha256_hex, Scratch};

const TRANSFER: &str = "\
[Transfer]
Verify=VERIFY

[Source]
Type=url-file
Path=URL
MatchPattern=hello-@v-%a.raw

[Target]
Type=regular-file
Path=/opt/extensions/hello
MatchPattern=hello-@v-%a.raw
CurrentSymlink=/etc/extensions/hello.raw
";

struct Site {
    scratch: Scratch,
    server: Server,
    gnupg: PathBuf,
}

impl Site {
    /// A root whose sysupdate.d points at a local server; `verify` signs the
    /// manifest and installs the public key as the import keyring.
    fn new(verify: bool) -> Site {
        let scratch = Scratch::new();
        let server = Server::start();
        let transfer = TRANSFER
            .replace("VERIFY", if verify { "yes" } else { "no" })
            .replace("URL", &server.url("/ext"));
        scratch.write("root/etc/sysupdate.d/hello.transfer", &transfer);
        let gnupg = scratch.trusted_gpg_key();
        Site {
            scratch,
            server,
            gnupg,
        }
    }

    /// A real squashfs extension image for version `v`.
    fn image(&self, v: &str) -> Vec<u8> {
        self.scratch.published_image("hello", v, "usr/bin/hello")
    }

    /// Publish `files` with a SHA256SUMS (signed when `sign`).
    fn publish(&self, files: &[(&str, &[u8])], sign: bool) {
        let mut sums = String::new();
        for (name, data) in files {
            self.server.add_file(&format!("/ext/{name}"), data);
            sums.push_str(&format!("{}  {name}\n", sha256_hex(data)));
        }
        self.publish_raw(sums.as_bytes(), sign);
    }

    fn publish_raw(&self, sums: &[u8], sign: bool) {
        self.server.add_file("/ext/SHA256SUMS", sums);
        if sign {
            let path = self.scratch.path("SHA256SUMS");
            fs::write(&path, sums).unwrap();
            let sig = gpg(
                &self.gnupg,
                &["--detach-sign", "--output", "-", path.to_str().unwrap()],
            );
            self.server.add_file("/ext/SHA256SUMS.gpg", &sig);
        }
    }

    fn sign_retractions(&self, list: &str) {
        self.server
            .add_file("/ext/SHA256SUMS.retracted", list.as_bytes());
        let path = self.scratch.path("retracted");
        fs::write(&path, list).unwrap();
        let sig = gpg(
            &self.gnupg,
            &["--detach-sign", "--output", "-", path.to_str().unwrap()],
        );
        self.server.add_file("/ext/SHA256SUMS.retracted.gpg", &sig);
    }

    /// `rdext download` with `settings` as the kernel command line.
    fn download(&self, settings: &str) -> (i32, String) {
        self.scratch.download(settings)
    }

    /// Names in the target directory and where the link points.
    fn installed(&self) -> (Vec<String>, Option<String>) {
        let dir = self.scratch.path("root/opt/extensions/hello");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let link = fs::read_link(self.scratch.path("root/etc/extensions/hello.raw"))
            .ok()
            .map(|p| p.display().to_string());
        (names, link)
    }

    fn image_requests(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(".raw"))
            .count()
    }
}

#[test]
fn first_boot_downloads_the_newest_and_a_second_boot_nothing() {
    let site = Site::new(true);
    let (v1, v2) = (site.image("1.0"), site.image("1.1"));
    site.publish(
        &[("hello-1.0-x86-64.raw", &v1), ("hello-1.1-x86-64.raw", &v2)],
        true,
    );
    // No machine-id: first boot, downloads default to "missing".
    let (rc, log) = site.download("");
    assert_eq!(rc, 0, "{log}");
    let (names, link) = site.installed();
    assert_eq!(names, ["hello-1.1-x86-64.raw"]);
    assert_eq!(
        link.as_deref(),
        Some("../../opt/extensions/hello/hello-1.1-x86-64.raw")
    );
    assert_eq!(
        fs::read(
            site.scratch
                .path("root/opt/extensions/hello/hello-1.1-x86-64.raw")
        )
        .unwrap(),
        v2
    );
    assert_eq!(site.image_requests(), 1);
    // Installed: nothing more is fetched, in "missing" mode.
    let (rc, _) = site.download("rdext.download=missing");
    assert_eq!(rc, 0);
    assert_eq!(site.image_requests(), 1);
}

#[test]
fn signed_manifest_is_required_and_checked() {
    let site = Site::new(true);
    let v1 = site.image("1.0");
    // Unsigned manifest under Verify=yes.
    site.publish(&[("hello-1.0-x86-64.raw", &v1)], false);
    let (_, log) = site.download("rdext.download=missing");
    assert!(log.contains("no signature"), "{log}");
    assert_eq!(site.installed(), (vec![], None));
    // A signature by another key.
    let other = site.scratch.path("other-gnupg");
    fs::create_dir_all(&other).unwrap();
    fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(
        &other,
        &[
            "--quick-gen-key",
            "intruder <x@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let path = site.scratch.path("SHA256SUMS");
    let sums = format!("{}  hello-1.0-x86-64.raw\n", sha256_hex(&v1));
    fs::write(&path, &sums).unwrap();
    let sig = gpg(
        &other,
        &["--detach-sign", "--output", "-", path.to_str().unwrap()],
    );
    site.server.add_file("/ext/SHA256SUMS", sums.as_bytes());
    site.server.add_file("/ext/SHA256SUMS.gpg", &sig);
    let (_, log) = site.download("rdext.download=missing");
    assert!(log.contains("bad signature"), "{log}");
    assert_eq!(site.installed(), (vec![], None));
    assert_eq!(site.image_requests(), 0);
}

#[test]
fn wrong_hash_hostile_manifest_and_missing_server_leave_only_good_files() {
    let site = Site::new(false);
    let v1 = site.image("1.0");
    // The manifest promises other bytes.
    site.server.add_file("/ext/hello-1.0-x86-64.raw", &v1);
    site.publish_raw(
        format!("{}  hello-1.0-x86-64.raw\n", sha256_hex(b"other")).as_bytes(),
        false,
    );
    let (_, log) = site.download("rdext.download=missing");
    assert!(
        log.contains("download of the default component (sysupdate.d) failed"),
        "{log}"
    );
    assert_eq!(site.installed(), (vec![], None));
    // A path-traversal name rejects the whole manifest.
    let sums = format!(
        "{}  hello-1.0-x86-64.raw\n{}  ../../etc/evil.raw\n",
        sha256_hex(&v1),
        sha256_hex(b"x")
    );
    site.publish_raw(sums.as_bytes(), false);
    let (_, log) = site.download("rdext.download=missing");
    assert!(log.contains("SHA256SUMS"), "{log}");
    assert_eq!(site.installed(), (vec![], None));
    // A good manifest installs; then the server is unreachable and the
    // installed image stays.
    site.publish(&[("hello-1.0-x86-64.raw", &v1)], false);
    site.download("rdext.download=missing");
    let installed = site.installed();
    assert_eq!(installed.0, ["hello-1.0-x86-64.raw"]);
    // The mirror setting replaces the base URL: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (rc, log) = site.download(&format!(
        "rdext.download=update rdext.mirror=http://{closed}/ext"
    ));
    assert_eq!(rc, 0);
    assert!(log.contains("keeping what is installed"), "{log}");
    let dir = site.scratch.path("root/opt/extensions/hello");
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["hello-1.0-x86-64.raw"]);
}

#[test]
fn update_mode_and_signed_retraction() {
    let site = Site::new(true);
    let (v1, v2) = (site.image("1.0"), site.image("1.1"));
    site.publish(&[("hello-1.0-x86-64.raw", &v1)], true);
    site.download("rdext.download=missing");
    site.publish(
        &[("hello-1.0-x86-64.raw", &v1), ("hello-1.1-x86-64.raw", &v2)],
        true,
    );
    site.download("rdext.download=missing");
    assert_eq!(
        site.installed().0,
        ["hello-1.0-x86-64.raw"],
        "missing mode does not update"
    );
    site.download("rdext.download=update");
    assert_eq!(
        site.installed().0,
        ["hello-1.0-x86-64.raw", "hello-1.1-x86-64.raw"]
    );
    assert!(site
        .installed()
        .1
        .unwrap()
        .ends_with("hello-1.1-x86-64.raw"));
    // 1.1 is found broken and retracted: the link goes back to 1.0 and 1.1 is removed.
    site.sign_retractions("retract hello-1.1-x86-64.raw broken on some hardware\n");
    let (rc, log) = site.download("rdext.download=update");
    assert_eq!(rc, 0, "{log}");
    assert_eq!(site.installed().0, ["hello-1.0-x86-64.raw"]);
    assert!(site
        .installed()
        .1
        .unwrap()
        .ends_with("hello-1.0-x86-64.raw"));
    assert!(
        log.contains("hello-1.1-x86-64.raw is retracted upstream"),
        "{log}"
    );
}

/// The whole first boot on the host: download in `merge`, then the merge
/// shows the downloaded extension.
#[test]
fn merge_downloads_then_merges() {
    let site = Site::new(true);
    let v1 = site.image("1.0");
    site.publish(&[("hello-1.0-x86-64.raw", &v1)], true);
    site.scratch
        .write("root/etc/os-release", "ID=debian\nVERSION_ID=12\n");
    let run = site.scratch.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline /dev/null
        echo "hello: $(cat $ROOT/usr/bin/hello)"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "hello: "), ["1.0"]);
}
