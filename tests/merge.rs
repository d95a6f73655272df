//! The built binary, as root, in a private mount namespace, on a scratch
//! root with real squashfs and erofs images.

mod common;

use common::{marked, Scratch, FITS};

/// A scratch root with a squashfs sysext (usr + opt), an erofs sysext and
/// an erofs confext, all fitting the root.
fn demo() -> Scratch {
    let s = Scratch::new();
    let a = s.tree(
        "alpha",
        FITS,
        &[
            ("usr/bin/alpha", "alpha\n"),
            ("usr/share/who", "alpha\n"),
            ("opt/alpha/readme", "alpha opt\n"),
        ],
    );
    s.squashfs(&a, "root/var/lib/extensions/alpha.raw");
    let b = s.tree(
        "beta",
        "ID=_any\n",
        &[("usr/bin/beta", "beta\n"), ("usr/share/who", "beta\n")],
    );
    s.erofs(&b, "root/var/lib/extensions/beta.sysext.raw");
    let c = s.tree("gamma", FITS, &[("etc/gamma.conf", "gamma\n")]);
    s.erofs(&c, "root/var/lib/confexts/gamma.raw");
    s
}

#[test]
fn merges_squashfs_erofs_and_confext_with_systemd_metadata() {
    let s = demo();
    s.chmod("root/usr", 0o751);
    let run = s.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN
        echo "usr-files: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        echo "opt: $(cat $ROOT/opt/alpha/readme)"
        echo "etc: $(cat $ROOT/etc/gamma.conf) $(cat $ROOT/etc/base.conf)"
        echo "who: $(cat $ROOT/usr/share/who)"
        echo "usr-list: $(cat $ROOT/usr/.systemd-sysext/extensions | tr '\n' ' ')"
        echo "etc-list: $(cat $ROOT/etc/.systemd-confext/confexts | tr '\n' ' ')"
        echo "usr-dev: $(cat $ROOT/usr/.systemd-sysext/dev) $(stat -c '%Hd:%Ld' $ROOT/usr)"
        echo "etc-dev: $(cat $ROOT/etc/.systemd-confext/dev) $(stat -c '%Hd:%Ld' $ROOT/etc)"
        echo "mode: $(stat -c %a $ROOT/usr)"
        echo "list-bytes: $(od -An -c $ROOT/usr/.systemd-sysext/extensions | tr -s ' ')"
        awk -v r="$ROOT" '$5 == r"/usr" || $5 == r"/opt" || $5 == r"/etc" { print "mount:", $5, $6, $(NF-2), $(NF-1) }' /proc/self/mountinfo
        "#,
    );
    assert_eq!(run.status, 0);
    let root = s.root();
    let r = root.display();
    assert_eq!(
        marked(&run.stdout, "usr-files: "),
        ["alpha base-tool beta "]
    );
    assert_eq!(marked(&run.stdout, "opt: "), ["alpha opt"]);
    assert_eq!(marked(&run.stdout, "etc: "), ["gamma base"]);
    // beta sorts after alpha, so its layer is higher and its file wins.
    assert_eq!(marked(&run.stdout, "who: "), ["beta"]);
    assert_eq!(marked(&run.stdout, "usr-list: "), ["alpha beta "]);
    assert_eq!(
        marked(&run.stdout, "list-bytes: "),
        [" a l p h a \\n b e t a \\n"]
    );
    assert_eq!(marked(&run.stdout, "etc-list: "), ["gamma "]);
    for key in ["usr-dev: ", "etc-dev: "] {
        let line = marked(&run.stdout, key)[0];
        let (meta, actual) = line.split_once(' ').unwrap();
        assert_eq!(meta, actual, "{key}");
    }
    assert_eq!(marked(&run.stdout, "mode: "), ["751"]);
    let mounts = marked(&run.stdout, "mount: ");
    assert!(
        mounts.contains(&format!("{r}/usr ro,nodev,relatime overlay sysext").as_str()),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&format!("{r}/opt ro,nodev,relatime overlay sysext").as_str()),
        "{mounts:?}"
    );
    assert!(
        mounts
            .contains(&format!("{r}/etc ro,nosuid,nodev,noexec,relatime overlay confext").as_str()),
        "{mounts:?}"
    );
    // The workspace is gone from the tree and from the mount table.
    assert!(std::fs::read_dir(s.path("run")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("rdext.")));
    assert!(!run.stdout.contains("rdext."));
}

/// Every hierarchy lists all merged names, as systemd writes them.
#[test]
fn status_json_and_unmerge_restore_the_original_tree() {
    let s = demo();
    let run = s.in_namespace(
        r#"
        snapshot() { (cd $ROOT && find . \( -type f -printf '%p %m %s\n' \) -o -printf '%p %m %y\n' | sort); }
        before=$(snapshot); mounts_before=$(wc -l < /proc/self/mountinfo)
        $RDEXT merge --root $ROOT --run-dir $RUN
        echo "json: $($RDEXT status --json --root $ROOT | jq -c '[.[] | {hierarchy, extensions}]')"
        echo "since: $($RDEXT status --json --root $ROOT | jq '.[0].since > 0')"
        echo "record: $(jq -c .merged $RUN/rdext/sysext.json)"
        $RDEXT unmerge --root $ROOT --run-dir $RUN
        echo "json-after: $($RDEXT status --json --root $ROOT | jq -c '[.[] | .extensions]')"
        diff <(echo "$before") <(snapshot) | grep '^[<>]' | sed 's/^/tree-diff: /' || true
        [ "$mounts_before" = "$(wc -l < /proc/self/mountinfo)" ] && echo "mounts: same"
        [ -e $RUN/rdext/sysext.json ] || echo "record: gone"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(
        marked(&run.stdout, "json: "),
        [
            r#"[{"hierarchy":"/usr","extensions":["alpha","beta"]},{"hierarchy":"/opt","extensions":["alpha","beta"]},{"hierarchy":"/etc","extensions":["gamma"]}]"#
        ]
    );
    assert_eq!(marked(&run.stdout, "since: "), ["true"]);
    assert_eq!(
        marked(&run.stdout, "record: "),
        [r#"["alpha","beta"]"#, "gone"]
    );
    assert_eq!(
        marked(&run.stdout, "json-after: "),
        [r#"["none","none","none"]"#]
    );
    // The only trace: the /opt mount point made for the overlay, which
    // systemd-sysext leaves behind too.
    assert_eq!(marked(&run.stdout, "tree-diff: "), ["> ./opt 755 d"]);
    assert_eq!(marked(&run.stdout, "mounts: "), ["same"]);
}

#[test]
fn bad_images_are_skipped_with_their_reason_and_the_rest_merge() {
    let s = Scratch::new();
    let good = s.tree("good", FITS, &[("usr/bin/good", "good\n")]);
    s.squashfs(&good, "root/var/lib/extensions/good.raw");
    s.write("root/var/lib/extensions/garbage.raw", &"x".repeat(9000));
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "otheros",
            "ID=fedora\nVERSION_ID=40\n",
            &[("usr/bin/otheros", "x")],
        ),
        (
            "oldversion",
            "ID=debian\nVERSION_ID=11\n",
            &[("usr/bin/oldversion", "x")],
        ),
        (
            "initrdonly",
            "ID=debian\nVERSION_ID=12\nSYSEXT_SCOPE=initrd\n",
            &[("usr/bin/initrdonly", "x")],
        ),
        (
            "wronglevel",
            "ID=debian\nSYSEXT_LEVEL=2.0\n",
            &[("usr/bin/wronglevel", "x")],
        ),
        (
            "otherarch",
            "ID=_any\nARCHITECTURE=s390x\n",
            &[("usr/bin/otherarch", "x")],
        ),
        (
            "ownos",
            FITS,
            &[("usr/bin/ownos", "x"), ("usr/lib/os-release", "ID=evil\n")],
        ),
        ("norelease", "", &[("usr/bin/norelease", "x")]),
    ];
    for (name, release, files) in cases {
        let tree = s.tree(name, release, files);
        s.erofs(&tree, &format!("root/var/lib/extensions/{name}.raw"));
    }
    // A release file named for another extension.
    let renamed = s.tree("renamed", FITS, &[("usr/bin/renamed", "x")]);
    std::fs::rename(
        renamed.join("usr/lib/extension-release.d/extension-release.renamed"),
        renamed.join("usr/lib/extension-release.d/extension-release.other"),
    )
    .unwrap();
    s.squashfs(&renamed, "root/var/lib/extensions/renamed.raw");

    let run = s.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN
        echo "files: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        echo "list: $(cat $ROOT/usr/.systemd-sysext/extensions | tr '\n' ' ')"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "files: "), ["base-tool good "]);
    assert_eq!(marked(&run.stdout, "list: "), ["good "]);
    let skipped = marked(
        &run.stderr,
        "rdext: warning: skipping sysext /var/lib/extensions/",
    );
    let expect = [
        "garbage.raw: not a squashfs, erofs or ext4 image",
        "initrdonly.raw: SYSEXT_SCOPE=initrd does not include 'system'",
        "norelease.raw: no usr/lib/extension-release.d/extension-release.norelease",
        "oldversion.raw: VERSION_ID=11 does not match host VERSION_ID=12",
        "otherarch.raw: ARCHITECTURE=s390x does not match host x86-64",
        "otheros.raw: ID=fedora does not match host ID=debian",
        "ownos.raw: carries its own /usr/lib/os-release",
        "renamed.raw: no usr/lib/extension-release.d/extension-release.renamed",
        "wronglevel.raw: SYSEXT_LEVEL=2.0 does not match host SYSEXT_LEVEL=1.0",
    ];
    assert_eq!(skipped, expect, "{}", run.stderr);
}

#[test]
fn strict_merges_nothing_when_one_image_is_bad() {
    let s = demo();
    s.write("root/var/lib/extensions/garbage.raw", "not an image");
    let run = s.in_namespace(
        r#"
        snapshot() { (cd $ROOT && find . -printf '%p %m %s\n' | sort | md5sum); }
        before=$(snapshot); mounts_before=$(wc -l < /proc/self/mountinfo)
        if $RDEXT merge --strict --root $ROOT --run-dir $RUN; then echo "exit: 0"; else echo "exit: failed"; fi
        [ "$before" = "$(snapshot)" ] && echo "tree: same"
        [ "$mounts_before" = "$(wc -l < /proc/self/mountinfo)" ] && echo "mounts: same"
        "#,
    );
    assert_eq!(marked(&run.stdout, "exit: "), ["failed"]);
    assert!(
        run.stderr
            .contains("strict mode: not merging because of /var/lib/extensions/garbage.raw"),
        "{}",
        run.stderr
    );
    // Confext has no bad image; strict is per merge of a class.
    assert_eq!(marked(&run.stdout, "tree: ").len(), 0);
    let run = s.in_namespace(
        r#"
        snapshot() { (cd $ROOT && find . -printf '%p %m %s\n' | sort | md5sum); }
        before=$(snapshot); mounts_before=$(wc -l < /proc/self/mountinfo)
        $RDEXT merge --strict --root $ROOT --run-dir $RUN --cmdline <(echo systemd.confext=0) || true
        [ "$before" = "$(snapshot)" ] && echo "tree: same"
        [ "$mounts_before" = "$(wc -l < /proc/self/mountinfo)" ] && echo "mounts: same"
        "#,
    );
    assert_eq!(marked(&run.stdout, "tree: "), ["same"]);
    assert_eq!(marked(&run.stdout, "mounts: "), ["same"]);
}

#[test]
fn nothing_accepted_means_nothing_mounted_and_nothing_changed() {
    let s = Scratch::new();
    let other = s.tree("other", "ID=fedora\n", &[("usr/bin/other", "x")]);
    s.squashfs(&other, "root/var/lib/extensions/other.raw");
    let run = s.in_namespace(
        r#"
        snapshot() { (cd $ROOT && find . -printf '%p %m %s %T@\n' | sort | md5sum); }
        before=$(snapshot); mounts_before=$(wc -l < /proc/self/mountinfo)
        $RDEXT merge --root $ROOT --run-dir $RUN
        [ "$before" = "$(snapshot)" ] && echo "tree: same"
        [ "$mounts_before" = "$(wc -l < /proc/self/mountinfo)" ] && echo "mounts: same"
        [ -e $RUN/rdext ] || echo "record: none"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "tree: "), ["same"]);
    assert_eq!(marked(&run.stdout, "mounts: "), ["same"]);
    assert_eq!(marked(&run.stdout, "record: "), ["none"]);
}

#[test]
fn masking_versions_symlinks_and_precedence() {
    let s = Scratch::new();
    // An empty directory in /etc/extensions masks the image of that name.
    let masked = s.tree("masked", FITS, &[("usr/bin/masked", "x")]);
    s.squashfs(&masked, "root/var/lib/extensions/masked.raw");
    std::fs::create_dir_all(s.path("root/etc/extensions/masked")).unwrap();
    // A version directory: the newest usable version wins.
    for v in ["1.9", "1.10", "1.10~rc1"] {
        s.tool_version(v, &format!("tool_{v}.raw"));
    }
    // The same name in two directories: /etc/extensions wins over /var/lib.
    let low = s.tree("dup-low", "", &[("usr/bin/dup", "var\n")]);
    s.write(
        "src/dup-low/usr/lib/extension-release.d/extension-release.dup",
        FITS,
    );
    s.squashfs(&low, "root/var/lib/extensions/dup.raw");
    let high = s.tree("dup-high", "", &[("usr/bin/dup", "etc\n")]);
    s.write(
        "src/dup-high/usr/lib/extension-release.d/extension-release.dup",
        FITS,
    );
    s.squashfs(&high, "root/var/lib/store/dup-high.raw");
    // Absolute symlink, resolved inside the root.
    std::os::unix::fs::symlink(
        "/var/lib/store/dup-high.raw",
        s.path("root/etc/extensions/dup.raw"),
    )
    .unwrap();
    // A directory extension.
    let dir = s.tree("plain", FITS, &[("usr/bin/plain", "x")]);
    s.copy_dir(&dir, "root/var/lib/extensions/plain");

    let run = s.in_namespace(
        r#"
        $RDEXT list --root $ROOT --run-dir $RUN
        $RDEXT merge --root $ROOT --run-dir $RUN
        echo "files: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        echo "tool: $(cat $ROOT/usr/bin/tool)"
        echo "dup: $(cat $ROOT/usr/bin/dup)"
        echo "list: $(cat $ROOT/usr/.systemd-sysext/extensions | tr '\n' ' ')"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(
        marked(&run.stdout, "files: "),
        ["base-tool dup plain tool "]
    );
    assert_eq!(marked(&run.stdout, "tool: "), ["1.10"]);
    assert_eq!(marked(&run.stdout, "dup: "), ["etc"]);
    assert_eq!(marked(&run.stdout, "list: "), ["dup plain tool "]);
    let listing: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("sysext "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |name: &str| {
        listing
            .iter()
            .find(|r| r[1] == name && r[2] != "shadowed")
            .unwrap()
            .clone()
    };
    assert!(
        run.stdout
            .contains("masked    /etc/extensions/masked: empty directory"),
        "{}",
        run.stdout
    );
    assert_eq!(row("dup")[2..4], ["accepted", "/etc/extensions/dup.raw"]);
    assert_eq!(
        row("tool")[2..4],
        ["accepted", "/var/lib/extensions/tool.raw.v"]
    );
    assert!(run
        .stdout
        .contains("shadowed  /var/lib/extensions/masked.raw: by /etc/extensions/masked"));
    assert!(run
        .stdout
        .contains("shadowed  /var/lib/extensions/dup.raw: by /etc/extensions/dup.raw"));
}

#[test]
fn kernel_command_line_switches() {
    let s = demo();
    let run = s.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo 'quiet rdext=1 rdext=0')
        echo "off: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo 'rdext=0 rdext systemd.sysext=0')
        echo "confext-only: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "off: "), [r#"["none","none","none"]"#]);
    assert_eq!(
        marked(&run.stdout, "confext-only: "),
        [r#"["none","none",["gamma"]]"#]
    );
    assert!(run
        .stderr
        .contains("rdext: disabled by rdext=0 on the kernel command line"));
    assert!(run
        .stderr
        .contains("rdext: sysext disabled by systemd.sysext=0"));
}

#[test]
fn initrd_images_count_and_systemd_is_told_to_keep_off() {
    let s = Scratch::new();
    let t = s.tree("frominitrd", FITS, &[("usr/bin/frominitrd", "x")]);
    s.squashfs(&t, "initrd/run/extensions/frominitrd.raw");
    // Images systemd-stub put in /.extra came from the ESP: like systemd,
    // rdext requires them signed, so an unsigned one is refused.
    let t = s.tree("fromstub", FITS, &[("usr/bin/fromstub", "x")]);
    s.squashfs(&t, "initrd/.extra/sysext/fromstub.raw");
    let run = s.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --initrd-root $PWD/initrd --run-dir $RUN
        echo "files: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        cat $RUN/systemd/system/systemd-sysext.service.d/50-rdext.conf
        [ -e $RUN/systemd/system/systemd-confext.service.d ] || echo "confext-dropin: none"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "files: "), ["base-tool frominitrd "]);
    assert!(
        run.stderr.contains(
            "skipping sysext /.extra/sysext/fromstub.raw (initrd): root partition is unprotected"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("[Unit]\nConditionPathExists=!/run/rdext/sysext.json\n"),
        "{}",
        run.stdout
    );
    assert_eq!(marked(&run.stdout, "confext-dropin: "), ["none"]);
}

/// systemd 252 (this host) recognises the merge as its own. Its `status
/// --root` reads the list file without the root prefix (a v252 bug), so the
/// merge goes onto this namespace's own /usr, with the image taken from a
/// scratch initrd directory and a release file fitting any host.
#[test]
fn host_systemd_sysext_sees_the_merge_as_its_own() {
    let s = Scratch::new();
    let t = s.tree(
        "rdexttest",
        "ID=_any\n",
        &[("usr/share/rdext-test/hello", "hi\n")],
    );
    s.squashfs(&t, "initrd/run/extensions/rdexttest.raw");
    let run = s.in_namespace(
        r#"
        $RDEXT merge --root / --initrd-root $PWD/initrd --run-dir $RUN --cmdline /dev/null --debug
        echo "hello: $(cat /usr/share/rdext-test/hello)"
        systemd-sysext status --json=short | jq -c '.[] | select(.hierarchy == "/usr") | .extensions' | sed 's/^/systemd: /'
        systemd-sysext unmerge
        echo "after: $(systemd-sysext status --json=short | jq -c '.[] | select(.hierarchy == "/usr") | .extensions')"
        [ -e /usr/share/rdext-test ] || echo "gone: yes"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "hello: "), ["hi"]);
    assert_eq!(marked(&run.stdout, "systemd: "), [r#"["rdexttest"]"#]);
    assert_eq!(marked(&run.stdout, "after: "), [r#""none""#]);
    assert_eq!(marked(&run.stdout, "gone: "), ["yes"]);
}

/// Two extensions each ship a module with their own depmod output; after
/// the merge the real modprobe (kmod) resolves both and the base's module,
/// which a plain overlay would hide behind the top extension's files.
#[test]
fn module_metadata_of_several_extensions_works_together() {
    let s = Scratch::new();
    s.write(
        "root/usr/lib/modules/6.12.0/modules.dep",
        "kernel/core.ko:\n",
    );
    s.write("root/usr/lib/modules/6.12.0/kernel/core.ko", "");
    for (name, deps) in [("dummy", ""), ("ifb", " kernel/core.ko")] {
        let tree = s.tree(
            &format!("mod-{name}"),
            FITS,
            &[
                (&format!("usr/lib/modules/6.12.0/extra/{name}.ko"), ""),
                (
                    "usr/lib/modules/6.12.0/modules.dep",
                    &format!("extra/{name}.ko:{deps}\nkernel/core.ko:\n"),
                ),
                (
                    "usr/lib/modules/6.12.0/modules.alias",
                    &format!("alias rtnl-link-{name} {name}\n"),
                ),
            ],
        );
        s.squashfs(&tree, &format!("root/var/lib/extensions/mod-{name}.raw"));
    }
    let run = s.in_namespace(
        r#"
        show() { /sbin/modprobe -C /dev/null -d $ROOT/usr -S 6.12.0 --show-depends "$1" | sed "s|$ROOT/usr/lib/modules/6.12.0/||g" | tr '\n' ' '; }
        $RDEXT merge --root $ROOT --run-dir $RUN
        for m in dummy ifb core rtnl-link-dummy rtnl-link-ifb; do echo "$m: $(show $m)"; done
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "dummy: "), ["insmod extra/dummy.ko  "]);
    assert_eq!(
        marked(&run.stdout, "ifb: "),
        ["insmod kernel/core.ko  insmod extra/ifb.ko  "]
    );
    assert_eq!(marked(&run.stdout, "core: "), ["insmod kernel/core.ko  "]);
    assert_eq!(
        marked(&run.stdout, "rtnl-link-dummy: "),
        ["insmod extra/dummy.ko  "]
    );
    assert_eq!(
        marked(&run.stdout, "rtnl-link-ifb: "),
        ["insmod kernel/core.ko  insmod extra/ifb.ko  "]
    );
    assert!(run
        .stderr
        .contains("merged kernel module metadata of 3 layers"));
}

/// A required extension that cannot be merged makes `merge` exit 3 (the
/// initrd integration stops the boot on it) with the reason; one that
/// merges is fine. Settings come from the command line, else the files.
#[test]
fn required_extensions() {
    let s = demo();
    s.write("root/var/lib/extensions/broken.raw", "garbage");
    s.write("root/etc/rdext.conf", "required=alpha,fromfile\n");
    let run = s.in_namespace(
        r#"
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --cmdline /dev/null || rc=$?
        echo "file-rc: $rc"; $RDEXT unmerge --root $ROOT --run-dir $RUN
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.required=gamma) || rc=$?
        echo "ok-rc: $rc"; $RDEXT unmerge --root $ROOT --run-dir $RUN
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.required=alpha,broken,nowhere) || rc=$?
        echo "missing-rc: $rc"
        echo "merged-anyway: $($RDEXT status --json --root $ROOT | jq -c '.[0].extensions')"
        $RDEXT unmerge --root $ROOT --run-dir $RUN
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.required) || rc=$?
        echo "all-rc: $rc"
        echo "all-merged: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
        $RDEXT unmerge --root $ROOT --run-dir $RUN
        rm $ROOT/var/lib/extensions/broken.raw
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.required=yes) || rc=$?
        echo "all-good-rc: $rc"
        echo "all-good-merged: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
        "#,
    );
    // A bare rdext.required makes every extension required: the broken one
    // keeps its whole class out and stops the boot; without it all merge.
    assert_eq!(marked(&run.stdout, "all-rc: "), ["3"]);
    assert_eq!(
        marked(&run.stdout, "all-merged: "),
        [r#"["none","none",["gamma"]]"#]
    );
    assert!(run.stderr.contains(
        "rdext: error: required extension not merged: every extension (rdext.required): \
         sysext: strict mode: not merging because of /var/lib/extensions/broken.raw; \
         the boot cannot continue"
    ));
    assert_eq!(marked(&run.stdout, "all-good-rc: "), ["0"]);
    assert_eq!(
        marked(&run.stdout, "all-good-merged: "),
        [r#"[["alpha","beta"],["alpha","beta"],["gamma"]]"#]
    );
    assert_eq!(marked(&run.stdout, "file-rc: "), ["3"]);
    assert!(run
        .stderr
        .contains("required extension not merged: fromfile: not found;"));
    assert_eq!(marked(&run.stdout, "ok-rc: "), ["0"]);
    assert_eq!(marked(&run.stdout, "missing-rc: "), ["3"]);
    assert!(
        run.stderr.contains(
            "rdext: error: required extension not merged: broken: not a squashfs, erofs or ext4 image; \
             nowhere: not found; the boot cannot continue"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        marked(&run.stdout, "merged-anyway: "),
        [r#"["alpha","beta"]"#]
    );
}

/// The one-word policy switch, on images that need no device-mapper to be
/// judged: unprotected images pass only under `any`; a word that is not a
/// policy refuses everything rather than falling back to the default.
#[test]
fn policy_levels_judge_unprotected_images() {
    let s = demo();
    let dir = s.tree("plaindir", FITS, &[("usr/bin/plaindir", "x")]);
    s.copy_dir(&dir, "root/var/lib/extensions/plaindir");
    let run = s.in_namespace(
        r#"
        for p in any verity signed sigend; do
            $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.policy=$p) 2>$p.err || true
            echo "$p: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
            $RDEXT unmerge --root $ROOT --run-dir $RUN
        done
        grep -h skipping verity.err | sed 's/^/verity-err: /'
        grep -h 'refusing' sigend.err | sed 's/^/sigend-err: /'
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(
        marked(&run.stdout, "any: "),
        [r#"[["alpha","beta","plaindir"],["alpha","beta","plaindir"],["gamma"]]"#]
    );
    for p in ["verity: ", "signed: ", "sigend: "] {
        assert_eq!(marked(&run.stdout, p), [r#"["none","none","none"]"#], "{p}");
    }
    let errors = marked(&run.stdout, "verity-err: ");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("root partition is unprotected")),
        "{errors:?}"
    );
    assert!(errors
        .iter()
        .any(|e| e.contains("/var/lib/extensions/plaindir:")));
    assert_eq!(marked(&run.stdout, "sigend-err: ").len(), 1);
}

/// A /var of its own, named by the root's fstab and not mounted: in an
/// initrd rdext mounts it as the line says and its images merge; it stays
/// mounted, as an `x-initrd.mount` line would.
#[test]
fn separate_var_from_fstab_is_mounted_and_its_images_merge() {
    let s = Scratch::new();
    let t = s.tree("onvar", FITS, &[("usr/bin/onvar", "x\n")]);
    s.squashfs(&t, "vartree/lib/extensions/onvar.raw");
    let c = s.tree("confvar", FITS, &[("etc/confvar.conf", "confvar\n")]);
    s.erofs(&c, "vartree/lib/confexts/confvar.raw");
    let run = s.in_namespace(
        r#"
        mkfs.ext4 -q -F -L rdext-test-var -d vartree var.img 32M
        dev=$(losetup --show -f var.img)
        trap 'losetup -d $dev' EXIT
        mkdir -p $ROOT/var initrd
        echo "LABEL=other /srv ext4 defaults 0 0" >$ROOT/etc/fstab
        echo "$dev /var ext4 rw,nosuid,x-systemd.device-timeout=5 0 0" >>$ROOT/etc/fstab
        $RDEXT merge --root $ROOT --initrd-root $PWD/initrd --run-dir $RUN
        echo "files: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        echo "conf: $(cat $ROOT/etc/confvar.conf)"
        echo "var: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS $ROOT/var | tr -s " ")"
        "#,
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(marked(&run.stdout, "files: "), ["base-tool onvar "]);
    assert_eq!(marked(&run.stdout, "conf: "), ["confvar"]);
    let var = marked(&run.stdout, "var: ");
    assert!(
        var.len() == 1 && var[0].starts_with("/dev/loop") && var[0].contains(" ext4 rw,nosuid"),
        "{var:?}"
    );
    assert!(
        run.stderr.contains("rdext: mounted /var (/dev/loop"),
        "{}",
        run.stderr
    );
}

/// The merge-only build (`--no-default-features`, run by `make check`): a
/// download asked for is one line saying it is not built in, and the merge
/// goes on without it.
#[cfg(not(feature = "download"))]
#[test]
fn merge_only_build_merges_and_says_downloads_are_not_built_in() {
    let s = demo();
    let run = s.in_namespace(
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo 'rdext.download=update')
        echo "merged: $($RDEXT status --json --root $ROOT | jq -c '[.[].extensions]')"
        if $RDEXT download --root $ROOT --run-dir $RUN; then echo "download: 0"; else echo "download: $?"; fi
        "#,
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        marked(&run.stdout, "merged: "),
        [r#"[["alpha","beta"],["alpha","beta"],["gamma"]]"#]
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("not built into this rdext"))
        .collect();
    assert_eq!(
        lines,
        [
            "rdext: warning: download=update from kernel command line: downloads are not built into this rdext (merge-only build)",
            "rdext: error: downloads are not built into this rdext (merge-only build)"
        ],
        "{}",
        run.stderr
    );
    assert_eq!(marked(&run.stdout, "download: "), ["1"]);
}
