//! `rdext refresh` and the mutable modes, as root in a private mount
//! namespace, on a scratch root with real squashfs and erofs images.

mod common;

use common::{marked, Scratch, FITS};

/// Shell helpers every script here uses: the id and number of the mounts
/// on a path, and a file's content or "-".
const HELPERS: &str = r#"
mid() { awk -v p="$1" '$5 == p { id = $1 } END { print id }' /proc/self/mountinfo; }
count() { awk -v p="$1" '$5 == p { n++ } END { print n + 0 }' /proc/self/mountinfo; }
show() { cat "$1" 2>/dev/null || echo -; }
"#;

/// A tool in versions 1 and 2 (`tool.raw.v/`), and alpha.
fn versions(s: &Scratch, versions: &[&str]) {
    for v in versions {
        let t = s.tree(
            &format!("tool-{v}"),
            "",
            &[
                ("usr/bin/tool", &format!("{v}\n")),
                ("usr/share/tool/always", "here\n"),
            ],
        );
        s.write(
            &format!("src/tool-{v}/usr/lib/extension-release.d/extension-release.tool"),
            FITS,
        );
        s.squashfs(
            &t,
            &format!("root/var/lib/extensions/tool.raw.v/tool_{v}.raw"),
        );
    }
}

fn run(s: &Scratch, script: &str) -> common::Run {
    s.in_namespace(&format!("{HELPERS}\n{script}"))
}

#[test]
fn refresh_adds_removes_and_upgrades_in_place() {
    let s = Scratch::new();
    versions(&s, &["1"]);
    let a = s.tree(
        "alpha",
        FITS,
        &[("usr/bin/alpha", "alpha\n"), ("opt/alpha/x", "x\n")],
    );
    s.squashfs(&a, "root/var/lib/extensions/alpha.raw");
    let g = s.tree("gamma", FITS, &[("usr/bin/gamma", "gamma\n")]);
    s.erofs(&g, "stash/gamma.raw");
    let t2 = s.tree(
        "tool-2",
        "",
        &[("usr/bin/tool", "2\n"), ("usr/share/tool/always", "here\n")],
    );
    s.write(
        "src/tool-2/usr/lib/extension-release.d/extension-release.tool",
        FITS,
    );
    s.squashfs(&t2, "stash/tool_2.raw");
    let r = run(
        &s,
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN
        echo "before: $(ls $ROOT/usr/bin | tr '\n' ' ') tool=$(show $ROOT/usr/bin/tool) opt=$(count $ROOT/opt)"
        mv stash/gamma.raw $ROOT/var/lib/extensions/
        mv stash/tool_2.raw $ROOT/var/lib/extensions/tool.raw.v/
        rm $ROOT/var/lib/extensions/alpha.raw
        $RDEXT refresh --root $ROOT --run-dir $RUN
        echo "after: $(ls $ROOT/usr/bin | tr '\n' ' ') tool=$(show $ROOT/usr/bin/tool)"
        echo "mounts: usr=$(count $ROOT/usr) opt=$(count $ROOT/opt)"
        echo "list: $(cat $ROOT/usr/.systemd-sysext/extensions | tr '\n' ' ')"
        echo "dev: $(cat $ROOT/usr/.systemd-sysext/dev) $(stat -c '%Hd:%Ld' $ROOT/usr)"
        echo "origin: $(jq -c '[.mutable.mode, (.extensions | keys), .extensions.tool.path]' $ROOT/usr/.systemd-sysext/origin)"
        echo "record: $(jq -c .merged $RUN/rdext/sysext.json)"
        rc=0; $RDEXT merge --root $ROOT --run-dir $RUN 2>merge.err || rc=$?
        echo "merge-again: $rc $(grep -q 'already merged' merge.err && echo refused)"
        "#,
    );
    assert_eq!(r.status, 0);
    assert_eq!(
        marked(&r.stdout, "before: "),
        ["alpha base-tool tool  tool=1 opt=1"]
    );
    assert_eq!(
        marked(&r.stdout, "after: "),
        ["base-tool gamma tool  tool=2"]
    );
    // One overlay on /usr, and /opt's went with alpha, the only one with /opt.
    assert_eq!(marked(&r.stdout, "mounts: "), ["usr=1 opt=0"]);
    assert_eq!(marked(&r.stdout, "list: "), ["gamma tool "]);
    let dev = marked(&r.stdout, "dev: ")[0];
    let (meta, actual) = dev.split_once(' ').unwrap();
    assert_eq!(meta, actual);
    assert_eq!(
        marked(&r.stdout, "origin: "),
        [r#"["no",["gamma","tool"],"/var/lib/extensions/tool.raw.v/tool_2.raw"]"#]
    );
    assert_eq!(marked(&r.stdout, "record: "), [r#"["gamma","tool"]"#]);
    assert_eq!(marked(&r.stdout, "merge-again: "), ["1 refused"]);
    assert!(
        r.stderr
            .contains("rdext: refreshed (atomically) sysext gamma, tool into /usr"),
        "{}",
        r.stderr
    );
}

#[test]
fn nothing_changed_keeps_the_same_mount_unless_always() {
    let s = Scratch::new();
    versions(&s, &["1"]);
    let r = run(
        &s,
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN
        first=$(mid $ROOT/usr)
        $RDEXT refresh --root $ROOT --run-dir $RUN
        [ "$(mid $ROOT/usr)" = "$first" ] && echo "same: yes"
        $RDEXT refresh --always --root $ROOT --run-dir $RUN
        [ "$(mid $ROOT/usr)" != "$first" ] && echo "always: new mount"
        echo "count: $(count $ROOT/usr)"
        # Nothing left to merge: refresh removes the merge.
        rm -r $ROOT/var/lib/extensions/tool.raw.v
        $RDEXT refresh --root $ROOT --run-dir $RUN
        echo "gone: $(count $ROOT/usr) $(show $ROOT/usr/bin/tool)"
        "#,
    );
    assert_eq!(r.status, 0);
    assert_eq!(marked(&r.stdout, "same: "), ["yes"]);
    assert_eq!(marked(&r.stdout, "always: "), ["new mount"]);
    assert_eq!(marked(&r.stdout, "count: "), ["1"]);
    assert_eq!(marked(&r.stdout, "gone: "), ["0 -"]);
    assert!(r
        .stderr
        .contains("sysext: nothing changed, keeping the merge of tool"));
}

#[test]
fn a_bad_new_image_keeps_the_old_merge_but_a_bad_newcomer_is_skipped() {
    let s = Scratch::new();
    versions(&s, &["1"]);
    let r = run(
        &s,
        r#"
        $RDEXT merge --root $ROOT --run-dir $RUN
        first=$(mid $ROOT/usr)
        head -c 9000 /dev/urandom > $ROOT/var/lib/extensions/tool.raw.v/tool_2.raw
        rc=0; $RDEXT refresh --root $ROOT --run-dir $RUN 2>bad.err || rc=$?
        echo "bad: rc=$rc tool=$(show $ROOT/usr/bin/tool) same=$([ "$(mid $ROOT/usr)" = "$first" ] && echo yes)"
        grep 'not refreshing' bad.err | sort -u | sed 's/^/msg: /'
        rm $ROOT/var/lib/extensions/tool.raw.v/tool_2.raw
        head -c 9000 /dev/urandom > $ROOT/var/lib/extensions/newcomer.raw
        cp -a src/alpha $ROOT/var/lib/extensions/alpha
        $RDEXT refresh --root $ROOT --run-dir $RUN
        echo "newcomer: $(ls $ROOT/usr/bin | tr '\n' ' ')"
        "#
        .replace("src/alpha", &{
            let a = s.tree("alpha", FITS, &[("usr/bin/alpha", "alpha\n")]);
            a.display().to_string()
        })
        .as_str(),
    );
    assert_eq!(r.status, 0);
    assert_eq!(marked(&r.stdout, "bad: "), ["rc=1 tool=1 same=yes"]);
    assert_eq!(
        marked(&r.stdout, "msg: "),
        [
            "rdext: error: sysext: not refreshing, the merged images stay: \
          /var/lib/extensions/tool.raw.v: not a squashfs, erofs or ext4 image"
        ]
    );
    assert_eq!(marked(&r.stdout, "newcomer: "), ["alpha base-tool tool "]);
}

/// A merge made by the host's systemd-sysext (252) is replaced in place.
/// systemd 252 merges only onto the real /usr, so the image goes into this
/// namespace's own /run/extensions (on a tmpfs /run here, which systemd
/// needs as a mount point) with a release file that
/// fits any host.
#[test]
fn refresh_replaces_a_merge_made_by_systemd_sysext() {
    let s = Scratch::new();
    let t = s.tree(
        "rdextrefresh",
        "ID=_any\n",
        &[("usr/share/rdext-refresh/which", "v1\n")],
    );
    s.squashfs(&t, "v1.raw");
    s.write("src/rdextrefresh/usr/share/rdext-refresh/which", "v2\n");
    s.squashfs(&t, "v2.raw");
    let r = run(
        &s,
        r#"
        # systemd merges in a child namespace and relies on propagation,
        # as under systemd: shared, among this namespace's copies only.
        mount --make-rshared /
        mount -t tmpfs tmpfs /run && mkdir /run/extensions
        cp v1.raw /run/extensions/rdextrefresh.raw
        systemd-sysext merge >/dev/null
        echo "systemd: $(cat /usr/share/rdext-refresh/which) $(count /usr)"
        cp v2.raw /run/extensions/rdextrefresh.raw
        $RDEXT refresh --root / --run-dir $RUN --cmdline /dev/null
        echo "rdext: $(cat /usr/share/rdext-refresh/which) $(count /usr)"
        systemd-sysext status --json=short | jq -c '.[] | select(.hierarchy == "/usr") | .extensions' | sed 's/^/status: /'
        systemd-sysext unmerge >/dev/null
        echo "unmerged: $(count /usr) $(show /usr/share/rdext-refresh/which)"
        "#,
    );
    assert_eq!(r.status, 0);
    assert_eq!(marked(&r.stdout, "systemd: "), ["v1 1"]);
    assert_eq!(marked(&r.stdout, "rdext: "), ["v2 1"]);
    assert_eq!(marked(&r.stdout, "status: "), [r#"["rdextrefresh"]"#]);
    assert_eq!(marked(&r.stdout, "unmerged: "), ["0 -"]);
}

/// systemd ≥ 258's initrd-only `/.extra/global_sysext` (images the stub
/// took from the ESP's `loader/extensions/`) is searched, under the same
/// strict policy as `/.extra/sysext`: an unsigned image there is refused.
#[test]
fn global_extra_directories_are_searched_with_the_strict_policy() {
    let s = Scratch::new();
    let t = s.tree("fromesp", FITS, &[("usr/bin/fromesp", "x")]);
    s.squashfs(&t, "initrd/.extra/global_sysext/fromesp.raw");
    let c = s.tree("confesp", FITS, &[("etc/confesp.conf", "x")]);
    s.squashfs(&c, "initrd/.extra/global_confext/confesp.raw");
    let r = run(
        &s,
        r#"$RDEXT list --root $ROOT --initrd-root $PWD/initrd --run-dir $RUN | awk '{print "row:", $1, $2, $3, $4; print}'"#,
    );
    assert_eq!(r.status, 0);
    assert_eq!(
        marked(&r.stdout, "row: "),
        [
            "sysext fromesp rejected /.extra/global_sysext/fromesp.raw",
            "confext confesp rejected /.extra/global_confext/confesp.raw"
        ]
    );
    assert!(
        r.stdout.contains("root partition is unprotected"),
        "{}",
        r.stdout
    );
}
