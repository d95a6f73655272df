//! Hostile extensions among good ones, with the built binary as root in a
//! private mount namespace on real images: each bad one is refused alone,
//! with a one-line reason, and the good ones merge.

mod common;

use std::process::Command;

use common::{marked, run_tool, Scratch, FITS};

/// The merged names of the sysext class after `merge`.
const MERGE_AND_LIST: &str = r#"
    rc=0; $RDEXT merge --root $ROOT --run-dir $RUN 2>merge.err || rc=$?
    echo "rc: $rc"
    echo "merged: $($RDEXT status --json --root $ROOT | jq -c '.[0].extensions')"
    sed 's/^/log: /' merge.err
"#;

/// Lines of the merge log that mention `what`.
fn log_lines<'a>(stdout: &'a str, what: &str) -> Vec<&'a str> {
    marked(stdout, "log: ")
        .into_iter()
        .filter(|l| l.contains(what))
        .collect()
}

/// One extension whose kernel module metadata is not UTF-8 is refused with
/// the file named; the other extensions, one of them with good module
/// metadata, merge and that metadata is merged.
#[test]
fn bad_module_metadata_refuses_only_its_extension() {
    let s = Scratch::new();
    let good = s.tree(
        "mod-good",
        FITS,
        &[
            ("usr/lib/modules/6.12.0/extra/good.ko", ""),
            ("usr/lib/modules/6.12.0/modules.dep", "extra/good.ko:\n"),
        ],
    );
    s.squashfs(&good, "root/var/lib/extensions/mod-good.raw");
    let bad = s.tree(
        "mod-bad",
        FITS,
        &[
            ("usr/lib/modules/6.12.0/extra/bad.ko", ""),
            ("usr/lib/modules/6.12.0/modules.dep", "extra/bad.ko:\n"),
        ],
    );
    std::fs::write(
        bad.join("usr/lib/modules/6.12.0/modules.alias"),
        b"alias \xff\xfe bad\n",
    )
    .unwrap();
    s.squashfs(&bad, "root/var/lib/extensions/mod-bad.raw");
    let plain = s.tree("plain", FITS, &[("usr/bin/plain", "plain\n")]);
    s.erofs(&plain, "root/var/lib/extensions/plain.raw");
    let run = s.in_namespace(&format!(
        "{MERGE_AND_LIST}\necho \"dep: $(cat $ROOT/usr/lib/modules/6.12.0/modules.dep | tr '\\n' ' ')\""
    ));
    assert_eq!(marked(&run.stdout, "rc: "), ["0"]);
    assert_eq!(marked(&run.stdout, "merged: "), [r#"["mod-good","plain"]"#]);
    assert_eq!(
        log_lines(&run.stdout, "mod-bad"),
        [
            "rdext: warning: skipping sysext /var/lib/extensions/mod-bad.raw: \
          bad module metadata /usr/lib/modules/6.12.0/modules.alias: not UTF-8 text"
        ]
    );
    assert_eq!(marked(&run.stdout, "dep: "), ["extra/good.ko: "]);
}

/// Images cut short (a partial copy or download) are refused before they
/// are mounted, naming the size the file system claims; a corrupt size
/// field is refused as such; complete images of every type merge.
#[test]
fn truncated_and_corrupt_superblocks_are_refused_before_mounting() {
    let s = Scratch::new();
    // Incompressible content so that half an image is missing real blocks.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: String = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let make = |name: &str, kind: &str| {
        let tree = s.tree(name, FITS, &[(&format!("usr/share/{name}"), &noise)]);
        let dest = format!("root/var/lib/extensions/{name}.raw");
        match kind {
            "squashfs" => s.squashfs(&tree, &dest),
            "erofs" => s.erofs(&tree, &dest),
            _ => {
                run_tool(
                    Command::new("mkfs.ext4")
                        .args(["-q", "-F", "-d"])
                        .arg(&tree)
                        .arg(s.path(&dest))
                        .arg("2M"),
                );
            }
        }
        s.path(&dest)
    };
    let halve = |path: &std::path::Path| {
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len / 2 / 4096 * 4096).unwrap();
    };
    for kind in ["squashfs", "erofs", "ext4"] {
        make(&format!("good-{kind}"), kind);
        halve(&make(&format!("cut-{kind}"), kind));
    }
    // ext4 with a block size field of 2^40 KiB.
    let bad_ext4 = make("badsb-ext4", "ext4");
    let mut bytes = std::fs::read(&bad_ext4).unwrap();
    bytes[1024 + 24..1024 + 28].copy_from_slice(&30u32.to_le_bytes());
    std::fs::write(&bad_ext4, bytes).unwrap();

    let run = s.in_namespace(MERGE_AND_LIST);
    assert_eq!(marked(&run.stdout, "rc: "), ["0"]);
    assert_eq!(
        marked(&run.stdout, "merged: "),
        [r#"["good-erofs","good-ext4","good-squashfs"]"#]
    );
    for kind in ["squashfs", "erofs", "ext4"] {
        let lines = log_lines(&run.stdout, &format!("cut-{kind}.raw"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(&format!(
                "skipping sysext /var/lib/extensions/cut-{kind}.raw: truncated {kind} image: \
                 its superblock says "
            )),
            "{lines:?}"
        );
    }
    assert_eq!(
        log_lines(&run.stdout, "badsb-ext4"),
        [
            "rdext: warning: skipping sysext /var/lib/extensions/badsb-ext4.raw: \
          corrupt ext4 superblock: block size out of range"
        ]
    );
}

/// Entries that cannot be images are named in the log with why, in the
/// search directory and in a `.v/` directory; a name with control
/// characters is refused and cannot forge a log line.
#[test]
fn entries_passed_over_are_logged_with_why() {
    let s = Scratch::new();
    let good = s.tree("good", FITS, &[("usr/bin/good", "good\n")]);
    s.squashfs(&good, "root/var/lib/extensions/good.raw");
    let v = s.tree("versioned", FITS, &[("usr/bin/versioned", "v\n")]);
    s.squashfs(&v, "root/var/lib/extensions/versioned.v/versioned_1.raw");
    let evil = s.tree("evil", FITS, &[("usr/bin/evil", "x\n")]);
    s.squashfs(&evil, "root/var/lib/extensions/evil\nrdext: forged.raw");
    let run = s.in_namespace(&format!(
        r#"
        cd $ROOT/var/lib/extensions
        mkfifo fifo.raw
        mknod chardev.raw c 1 3
        ln -s loop-b.raw loop-a.raw; ln -s loop-a.raw loop-b.raw
        mkfifo versioned.v/versioned_2.raw
        ln -s self versioned.v/versioned_3.raw; ln -sf versioned_3.raw versioned.v/self
        cd - >/dev/null
        {MERGE_AND_LIST}
        "#
    ));
    assert_eq!(marked(&run.stdout, "rc: "), ["0"]);
    assert_eq!(marked(&run.stdout, "merged: "), [r#"["good","versioned"]"#]);
    let expect = [
        (
            "chardev.raw",
            "ignoring sysext /var/lib/extensions/chardev.raw: a character device, not a directory, .raw file or block device",
        ),
        (
            "fifo.raw",
            "ignoring sysext /var/lib/extensions/fifo.raw: a FIFO, not a directory, .raw file or block device",
        ),
        (
            "loop-a.raw",
            "ignoring sysext /var/lib/extensions/loop-a.raw: cannot resolve: ",
        ),
        (
            "versioned_2.raw",
            "ignoring versioned.v/versioned_2.raw: a FIFO, not a directory, .raw file or block device",
        ),
        (
            "versioned_3.raw",
            "ignoring versioned.v/versioned_3.raw: cannot resolve: ",
        ),
    ];
    for (what, line) in expect {
        let lines = log_lines(&run.stdout, what);
        assert!(lines.iter().any(|l| l.contains(line)), "{what}: {lines:?}");
    }
    assert!(log_lines(&run.stdout, "forged")
        .iter()
        .any(|l| l.contains(r#"invalid extension name "evil\nrdext: forged""#)));
    assert!(
        !run.stdout.contains("\nlog: rdext: forged"),
        "a file name forged a log line"
    );
}

/// Faults around the merge itself: run twice, killed half-way, an image
/// gone by the next run.
#[test]
fn merge_twice_killed_midway_and_image_removed() {
    let s = Scratch::new();
    for i in 0..24 {
        let name = format!("ext{i:02}");
        let tree = s.tree(&name, FITS, &[(&format!("usr/share/{name}"), "x\n")]);
        s.squashfs(&tree, &format!("root/var/lib/extensions/{name}.raw"));
    }
    let run = s.in_namespace(
        r#"
        workspaces() { grep -c ' - tmpfs rdext ' /proc/self/mountinfo || true; }
        merged() { $RDEXT status --json --root $ROOT | jq -c '.[0].extensions | length'; }
        $RDEXT merge --root $ROOT --run-dir $RUN 2>/dev/null
        mounts=$(wc -l < /proc/self/mountinfo)
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN 2>twice.err || rc=$?
        echo "twice-rc: $rc"; echo "twice-err: $(grep -m1 -o '/usr is already merged' twice.err)"
        echo "twice-same: $([ "$mounts" = "$(wc -l < /proc/self/mountinfo)" ] && echo yes) $(merged)"
        $RDEXT unmerge --root $ROOT --run-dir $RUN 2>/dev/null
        # "seen": killed as soon as its workspace is mounted (polled without
        # forking, so the kill lands inside the window on a fast or a slow
        # machine); the others at fixed delays.
        for when in seen seen seen 0.02 0.1 0.3; do
            $RDEXT merge --root $ROOT --run-dir $RUN 2>/dev/null & pid=$!
            if [ $when = seen ]; then
                while kill -0 $pid 2>/dev/null; do
                    mapfile -t mi < /proc/self/mountinfo
                    [[ "${mi[*]}" == *" - tmpfs rdext "* ]] && break
                done
            else
                sleep $when
            fi
            kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
            echo "left-after-kill: $(workspaces)"
            $RDEXT unmerge --root $ROOT --run-dir $RUN 2>/dev/null
            $RDEXT merge --root $ROOT --run-dir $RUN 2>>recover.err
            echo "recovered: $(merged) $(workspaces) $(ls $RUN | grep -c '^rdext\.' || true)"
            $RDEXT unmerge --root $ROOT --run-dir $RUN 2>/dev/null
        done
        echo "swept: $(grep -c 'removed the workspace .* of a run that died' recover.err || true)"
        rm $ROOT/var/lib/extensions/ext05.raw
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN 2>/dev/null || rc=$?
        echo "removed: $rc $(merged) $($RDEXT status --json --root $ROOT | jq -c '.[0].extensions | index("ext05")')"
        "#,
    );
    assert_eq!(run.status, 0);
    assert_eq!(marked(&run.stdout, "twice-rc: "), ["1"]);
    assert_eq!(
        marked(&run.stdout, "twice-err: "),
        ["/usr is already merged"]
    );
    assert_eq!(marked(&run.stdout, "twice-same: "), ["yes 24"]);
    // Every kill is followed by a complete merge with no workspace left
    // over, and at least one kill caught a workspace that the next run
    // swept.
    assert_eq!(marked(&run.stdout, "recovered: "), ["24 0 0"; 6]);
    let left: Vec<u32> = marked(&run.stdout, "left-after-kill: ")
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let swept: u32 = marked(&run.stdout, "swept: ")[0].parse().unwrap();
    assert!(
        left.iter().any(|&n| n > 0),
        "no kill caught a workspace: {left:?}"
    );
    // Every workspace left mounted was swept (and directories of runs
    // killed before they mounted one).
    assert!(swept >= left.iter().sum::<u32>(), "{swept} {left:?}");
    assert_eq!(marked(&run.stdout, "removed: "), ["0 23 null"]);
}
