//! Fixtures for the privileged tests: a scratch root with an os-release,
//! extension trees, images made by the real mksquashfs and mkfs.erofs, and a
//! runner that executes a shell script as root in a private mount namespace;
//! plus the helpers several test files share (the HTTP server, tool runs,
//! SHA-256).

#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod http_server;

pub const RDEXT: &str = env!("CARGO_BIN_EXE_rdext");

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

/// What a namespace run printed.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Scratch {
    pub fn new() -> Scratch {
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests need root: they use unshare -m, loop devices and mounts"
        );
        let dir = tempfile::Builder::new()
            .prefix("rdext-test.")
            .tempdir()
            .unwrap();
        let s = Scratch { dir };
        s.write(
            "root/etc/os-release",
            "ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n",
        );
        s.write("root/usr/bin/base-tool", "base\n");
        s.write("root/etc/base.conf", "base\n");
        fs::create_dir_all(s.path("run")).unwrap();
        s
    }

    /// A fresh gpg home `gnupg/` with an ed25519 signing key whose public
    /// key the root trusts (`etc/systemd/import-pubring.gpg`); returns the home.
    pub fn trusted_gpg_key(&self) -> PathBuf {
        let gnupg = self.path("gnupg");
        fs::create_dir_all(&gnupg).unwrap();
        fs::set_permissions(&gnupg, fs::Permissions::from_mode(0o700)).unwrap();
        let user = "rdext test <rdext@example.invalid>";
        gpg(
            &gnupg,
            &["--quick-gen-key", user, "ed25519", "sign", "never"],
        );
        fs::create_dir_all(self.path("root/etc/systemd")).unwrap();
        let public = gpg(&gnupg, &["--export"]);
        fs::write(self.path("root/etc/systemd/import-pubring.gpg"), public).unwrap();
        gnupg
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> PathBuf {
        self.path("root")
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// The bytes of a real squashfs image of extension `name` (release
    /// `ID=_any`) whose `file` holds `version`, for a server to publish.
    pub fn published_image(&self, name: &str, version: &str, file: &str) -> Vec<u8> {
        let tree = self.tree(
            &format!("{name}-{version}"),
            "",
            &[(file, &format!("{version}\n"))],
        );
        self.write(
            &format!("src/{name}-{version}/usr/lib/extension-release.d/extension-release.{name}"),
            "ID=_any\n",
        );
        let out = format!("build/{name}-{version}.raw");
        self.squashfs(&tree, &out);
        fs::read(self.path(&out)).unwrap()
    }

    /// `rdext download` on the scratch root with `cmdline` as the kernel
    /// command line; (exit status, stderr).
    pub fn download(&self, cmdline: &str) -> (i32, String) {
        let path = self.path("cmdline");
        fs::write(&path, cmdline).unwrap();
        let out = Command::new(RDEXT)
            .args(["download", "--root"])
            .arg(self.root())
            .arg("--run-dir")
            .arg(self.path("run"))
            .arg("--cmdline")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("{stderr}");
        (out.status.code().unwrap_or(-1), stderr)
    }

    /// Version `v` of the extension `tool` (its `usr/bin/tool` says `v`) as
    /// the erofs entry `file` of `root/var/lib/extensions/tool.raw.v/`.
    pub fn tool_version(&self, v: &str, file: &str) {
        let t = self.tree(
            &format!("tool-{v}"),
            "",
            &[("usr/bin/tool", &format!("{v}\n"))],
        );
        self.write(
            &format!("src/tool-{v}/usr/lib/extension-release.d/extension-release.tool"),
            FITS,
        );
        self.erofs(&t, &format!("root/var/lib/extensions/tool.raw.v/{file}"));
    }

    /// An extension tree in `src/NAME` with a release file and files.
    pub fn tree(&self, name: &str, release: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(&format!("src/{name}"));
        for (rel, content) in files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        if !release.is_empty() {
            let confext = files.iter().all(|(rel, _)| rel.starts_with("etc/"));
            let rel = if confext {
                format!("etc/extension-release.d/extension-release.{name}")
            } else {
                format!("usr/lib/extension-release.d/extension-release.{name}")
            };
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, release).unwrap();
        }
        dir
    }

    pub fn squashfs(&self, tree: &Path, dest: &str) {
        let out = self.path(dest);
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        run_tool(Command::new("mksquashfs").arg(tree).arg(&out).args([
            "-noappend",
            "-quiet",
            "-no-progress",
        ]));
    }

    pub fn erofs(&self, tree: &Path, dest: &str) {
        let out = self.path(dest);
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        run_tool(
            Command::new("mkfs.erofs")
                .arg("--quiet")
                .arg(&out)
                .arg(tree),
        );
    }

    pub fn copy_dir(&self, tree: &Path, dest: &str) {
        let out = self.path(dest);
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        run_tool(Command::new("cp").arg("-a").arg(tree).arg(&out));
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Run `script` with bash as root in a private mount namespace, in the
    /// scratch directory, with $RDEXT, $ROOT and $RUN set.
    pub fn in_namespace(&self, script: &str) -> Run {
        let out = Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "bash",
                "-euo",
                "pipefail",
                "-c",
                script,
            ])
            .current_dir(self.dir.path())
            .env("RDEXT", RDEXT)
            .env("ROOT", self.root())
            .env("RUN", self.path("run"))
            .output()
            .expect("run unshare");
        let run = Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("--- stdout\n{}--- stderr\n{}---", run.stdout, run.stderr);
        run
    }
}

/// Runs a host tool that `.ci/setup` installs and returns its stdout; a
/// failure (or a missing tool) fails the test with the tool's stderr.
pub fn run_tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}

/// The release file content for an extension that fits the scratch root.
pub const FITS: &str = "ID=debian\nVERSION_ID=12\n";

/// Lines of `text` that start with `prefix`, without it.
pub fn marked<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    rdext::hex(&sha256(data))
}

/// gpg with a throwaway home directory, never asking for anything.
pub fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let unattended = [
        "--batch",
        "--quiet",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ];
    run_tool(
        Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(unattended)
            .args(args),
    )
}
