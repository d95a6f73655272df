//! Trust boundaries in the initrd, on the host: the built binary judges as
//! the initrd does (`--initrd-root`), with real signed verity images
//! (mksquashfs, veritysetup, openssl). The target root's writable `etc`
//! and `run` must not choose trust anchors or weaken the policy.
//!
//! `rdext verify` judges a signature in userspace without activating
//! anything, so no device-mapper is needed; an image whose signer is in
//! no trusted `verity.d` is "only the kernel keyring could accept it".

mod common;

use std::process::Command;

use common::{marked, run_tool, Scratch, FITS};

/// A self-signed signing certificate `certs/NAME.crt` (key `.key`) with
/// the subject CN=NAME.
fn cert(s: &Scratch, name: &str) {
    std::fs::create_dir_all(s.path("certs")).unwrap();
    run_tool(Command::new("openssl").current_dir(s.dir.path()).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &format!("certs/{name}.key"),
        "-out",
        &format!("certs/{name}.crt"),
    ]));
}

/// `images/NAME.raw` with its `.verity` and `.roothash` sidecars, and a
/// `.roothash.p7s` signature by `signer` when given.
fn image(s: &Scratch, name: &str, signer: Option<&str>) {
    let tree = s.tree(name, FITS, &[(&format!("usr/share/{name}/hello"), "hi\n")]);
    s.squashfs(&tree, &format!("images/{name}.raw"));
    let img = |ext: &str| format!("images/{name}.{ext}");
    run_tool(Command::new("veritysetup").current_dir(s.dir.path()).args([
        "format",
        &img("raw"),
        &img("verity"),
        "--root-hash-file",
        &img("roothash"),
    ]));
    if let Some(signer) = signer {
        run_tool(Command::new("openssl").current_dir(s.dir.path()).args([
            "smime",
            "-sign",
            "-nocerts",
            "-noattr",
            "-binary",
            "-in",
            &img("roothash"),
            "-inkey",
            &format!("certs/{signer}.key"),
            "-signer",
            &format!("certs/{signer}.crt"),
            "-outform",
            "der",
            "-out",
            &img("roothash.p7s"),
        ]));
    }
}

/// The certificate `attacker` planted in the target's etc/ or run/
/// verity.d does not make its image pass `rdext.policy=signed` in the
/// initrd; in the initrd's own verity.d (under --initrd-root), or in the
/// target's usr/lib/verity.d (its /usr), it does; its etc/verity.d counts
/// only when the initrd or the command line opts in. After boot (no initrd
/// root), the system's own /etc/verity.d counts, as for systemd.
#[test]
fn only_the_initrd_and_the_os_image_choose_trust_anchors() {
    let s = Scratch::new();
    cert(&s, "attacker");
    image(&s, "evil", Some("attacker"));
    std::fs::create_dir_all(s.path("initrd/etc")).unwrap();
    let run = s.in_namespace(
        r#"
        echo rdext.policy=signed >signed.cmdline
        judge() { # label [rdext args...]
            label=$1; shift
            if $RDEXT verify --root $ROOT --cmdline signed.cmdline "$@" images/evil.raw >$label.out 2>&1; then
                echo "$label: accepted"
            else
                echo "$label: refused"
            fi
            echo "$label-verdict: $(grep verdict: $label.out)"
        }
        plant() { rm -rf $ROOT/etc/verity.d $ROOT/run/verity.d $ROOT/usr/lib/verity.d $PWD/initrd/etc/verity.d
                  rm -f $ROOT/etc/rdext.conf $PWD/initrd/etc/rdext.conf
                  for d in "$@"; do mkdir -p $d/verity.d; cp certs/attacker.crt $d/verity.d/; done; }
        I="--initrd-root $PWD/initrd"
        plant $ROOT/etc; judge target-etc $I
        plant $ROOT/run; judge target-run $I
        plant $PWD/initrd/etc; judge initrd-etc $I
        plant $ROOT/usr/lib; judge target-usr $I
        plant $ROOT/etc; echo trust_root_etc=1 >$PWD/initrd/etc/rdext.conf; judge opt-in-initrd $I
        plant $ROOT/etc; echo trust_root_etc=1 >$ROOT/etc/rdext.conf; judge opt-in-target $I
        plant $ROOT/etc; echo 'rdext.policy=signed rdext.trust_root_etc' >optin.cmdline
        $RDEXT verify --root $ROOT --cmdline optin.cmdline $I images/evil.raw >/dev/null 2>&1 && echo "opt-in-cmdline: accepted"
        plant $ROOT/etc; judge after-boot
        "#,
    );
    assert_eq!(run.status, 0);
    for (label, verdict) in [
        ("target-etc", "refused"),
        ("target-run", "refused"),
        ("initrd-etc", "accepted"),
        ("target-usr", "accepted"),
        ("opt-in-initrd", "accepted"),
        ("opt-in-target", "refused"),
        ("opt-in-cmdline", "accepted"),
        ("after-boot", "accepted"),
    ] {
        assert_eq!(
            marked(&run.stdout, &format!("{label}: ")),
            [verdict],
            "{label}"
        );
    }
    let verdict = marked(&run.stdout, "target-etc-verdict: ")[0];
    assert!(
        verdict.contains("issued by CN=attacker with serial")
            && verdict.contains("which is not in verity.d")
            && verdict.contains("only the kernel keyring could accept it"),
        "{verdict}"
    );
    assert_eq!(
        marked(&run.stdout, "initrd-etc-verdict: "),
        ["verdict:    accepted: signed by CN=attacker"]
    );
}

/// The target root's rdext.conf may make the policy stricter, never
/// weaker: not than the strict default for images from the ESP
/// (`/.extra`), nor than a policy from the command line or the initrd's
/// configuration. It may add required extensions, not remove them.
#[test]
fn target_settings_only_tighten() {
    let s = Scratch::new();
    let stub = s.tree("stub", FITS, &[("usr/bin/stub", "x")]);
    s.squashfs(&stub, "initrd/.extra/sysext/stub.raw");
    let plain = s.tree("plain", FITS, &[("usr/bin/plain", "x")]);
    s.squashfs(&plain, "root/var/lib/extensions/plain.raw");
    std::fs::create_dir_all(s.path("initrd/etc")).unwrap();
    let run = s.in_namespace(
        r#"
        I="--initrd-root $PWD/initrd"
        verdicts() { # label [rdext args...]
            label=$1; shift
            $RDEXT list --root $ROOT $I --run-dir $RUN "$@" 2>/dev/null |
                awk -v l="$label" '$1 == "sysext" { print l ": " $2 " " $3 }'
        }
        for weak in 'policy=any' 'image_policy=*' 'image_policy=root=unprotected+absent:usr=unprotected+absent'; do
            echo "$weak" >$ROOT/etc/rdext.conf
            verdicts "default $weak" --cmdline /dev/null
            verdicts "cmdline $weak" --cmdline <(echo rdext.policy=signed)
            echo policy=signed >$PWD/initrd/etc/rdext.conf
            verdicts "initrd $weak" --cmdline /dev/null
            rm $PWD/initrd/etc/rdext.conf
        done
        echo policy=verity >$ROOT/etc/rdext.conf
        verdicts "stricter" --cmdline /dev/null
        echo required=nowhere >$ROOT/etc/rdext.conf
        rc=0; $RDEXT merge --root $ROOT $I --run-dir $RUN --cmdline <(echo rdext.required=plain) 2>add.err || rc=$?
        echo "add-rc: $rc"; $RDEXT unmerge --root $ROOT --run-dir $RUN
        echo required=no >$ROOT/etc/rdext.conf
        rc=0; $RDEXT merge --root $ROOT $I --run-dir $RUN --cmdline <(echo rdext.required=nowhere) 2>remove.err || rc=$?
        echo "remove-rc: $rc"
        grep -o 'required extension not merged: .*' add.err | sed 's/^/add-err: /'
        "#,
    );
    for weak in [
        "policy=any",
        "image_policy=*",
        "image_policy=root=unprotected+absent:usr=unprotected+absent",
    ] {
        // The ESP's image stays under the strict default; the target's own
        // image follows the target's wish only where nothing stricter rules.
        assert_eq!(
            marked(&run.stdout, &format!("default {weak}: ")),
            ["plain accepted", "stub rejected"],
            "{weak}"
        );
        for source in ["cmdline", "initrd"] {
            assert_eq!(
                marked(&run.stdout, &format!("{source} {weak}: ")),
                ["plain rejected", "stub rejected"],
                "{source} {weak}"
            );
        }
    }
    assert_eq!(
        marked(&run.stdout, "stricter: "),
        ["plain rejected", "stub rejected"]
    );
    assert_eq!(marked(&run.stdout, "add-rc: "), ["3"]);
    assert_eq!(
        marked(&run.stdout, "add-err: "),
        ["required extension not merged: nowhere: not found; the boot cannot continue"]
    );
    assert_eq!(marked(&run.stdout, "remove-rc: "), ["3"]);
    assert_eq!(run.status, 0);
}
