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

/// Each `--mutable=` mode, with systemd's directories: what is visible in
/// /usr, where a write to /usr lands, and what is left after unmerge. (The
/// host's systemd 252 has no --mutable; the QEMU main boot compares the
/// same modes with the trixie guest's systemd 257.)
#[test]
fn mutable_modes_write_where_systemd_writes() {
    let s = Scratch::new();
    versions(&s, &["1"]);
    let r = run(
        &s,
        r#"
        M=$ROOT/var/lib/extensions.mutable
        try() { # MODE: merge, write, report, unmerge
            rc=0; $RDEXT merge --root $ROOT --run-dir $RUN --mutable=$1 2>err.$1 || rc=$?
            w=$( (echo "$1" > $ROOT/usr/share/written) 2>/dev/null && echo ok || echo refused)
            echo "$1: rc=$rc see=$(ls $ROOT/usr/share | tr '\n' ' ')write=$w var=$(show $M/usr/share/written) mode=$(stat -c %a $ROOT/usr)"
            echo "$1-meta: $(jq -c '.mutable' $ROOT/usr/.systemd-sysext/origin) workdir=$(show $ROOT/usr/.systemd-sysext/work_dir | sed 's/\.[0-9a-f]*$/.ID/')"
            wd=$(show $ROOT/usr/.systemd-sysext/work_dir)
            $RDEXT unmerge --root $ROOT --run-dir $RUN
            echo "$1-after: $(show $ROOT/usr/share/written) workdir-left=$([ "$wd" != - ] && [ -e "$ROOT/$wd" ] && echo yes || echo no)"
        }
        chmod 751 $ROOT/usr
        for m in no auto; do try $m; done
        mkdir -p $M/usr/share && chmod 751 $M/usr && echo pre > $M/usr/share/pre
        for m in auto import ephemeral ephemeral-import; do try $m; done
        rm -r $M; try yes
        echo "opt-made: $([ -d $M/opt ] && echo yes)"
        chmod 700 $M/usr; try yes; chmod 751 $M/usr
        grep -o 'has mode.*' err.yes | sort -u | sed 's/^/mode-err: /'
        # A mutable dir pointing back at the hierarchy: writes go to /usr itself.
        rm -r $M/usr; ln -s /usr $M/usr; rm -f $ROOT/usr/share/written
        try yes
        echo "self-base: $(show $ROOT/usr/share/written)"
        rm $ROOT/usr/share/written; rm $M/usr
        # A write survives a refresh that changes the images.
        $RDEXT merge --root $ROOT --run-dir $RUN --mutable=yes
        echo kept > $ROOT/usr/share/kept
        cp -a $ROOT/var/lib/extensions/tool.raw.v/tool_1.raw $ROOT/var/lib/extensions/tool.raw.v/tool_2.raw
        touch $ROOT/var/lib/extensions/tool.raw.v/tool_2.raw
        $RDEXT refresh --root $ROOT --run-dir $RUN --mutable=yes
        echo "survives: $(show $ROOT/usr/share/kept) $(jq -r '.extensions.tool.path' $ROOT/usr/.systemd-sysext/origin) workdirs=$(ls -a $M | grep -c workdir)"
        "#,
    );
    assert_eq!(r.status, 0);
    let line = |k: &str| marked(&r.stdout, k).join(" | ");
    // `see` is listed after the write attempt; `var` is the persistent
    // upper's copy of the written file, left from earlier modes.
    assert_eq!(line("no: "), "rc=0 see=tool write=refused var=- mode=751");
    assert_eq!(
        line("auto: "),
        "rc=0 see=tool write=refused var=- mode=751 | rc=0 see=pre tool written write=ok var=auto mode=751"
    );
    assert_eq!(
        line("import: "),
        "rc=0 see=pre tool written write=refused var=auto mode=751"
    );
    assert_eq!(
        line("ephemeral: "),
        "rc=0 see=tool written write=ok var=auto mode=751"
    );
    assert_eq!(
        line("ephemeral-import: "),
        "rc=0 see=pre tool written write=ok var=auto mode=751"
    );
    assert_eq!(
        line("yes: "),
        "rc=0 see=tool written write=ok var=yes mode=751 | rc=1 see=write=refused var=yes mode=751 | \
         rc=0 see=tool written write=ok var=- mode=751"
    );
    assert_eq!(line("opt-made: "), "yes");
    assert_eq!(line("self-base: "), "yes");
    assert_eq!(
        line("mode-err: "),
        "has mode 0700, ought to have 0751 like /usr"
    );
    let meta = line("yes-meta: ");
    assert!(
        meta.starts_with(
            r#"{"mode":"yes","mutableDirs":{"/opt":"/var/lib/extensions.mutable/opt","/usr":"/var/lib/extensions.mutable/usr"}} workdir=var/lib/extensions.mutable/.systemd-usr-workdir.ID | "#
        ),
        "{meta}"
    );
    assert!(
        meta.ends_with(
            r#"{"mode":"yes","mutableDirs":{"/opt":"/var/lib/extensions.mutable/opt","/usr":"/usr"}} workdir=.systemd-usr-workdir.ID"#
        ),
        "{meta}"
    );
    assert_eq!(
        line("import-meta: "),
        r#"{"mode":"import","mutableDirs":{"/usr":"/var/lib/extensions.mutable/usr"}} workdir=-"#
    );
    assert_eq!(line("ephemeral-after: "), "- workdir-left=no");
    assert_eq!(
        line("yes-after: "),
        "- workdir-left=no | - workdir-left=no | yes workdir-left=no"
    );
    assert_eq!(
        line("survives: "),
        "kept /var/lib/extensions/tool.raw.v/tool_2.raw workdirs=2"
    );
}

/// The mode from the kernel command line or rdext.conf; in the initrd a
/// persistent mode whose /var is a separate, not yet mounted file system
/// merges read-only with one warning instead of failing.
#[test]
fn mutable_from_settings_and_read_only_fallback_in_the_initrd() {
    let s = Scratch::new();
    versions(&s, &["1"]);
    s.write("root/etc/rdext.conf", "mutable=ephemeral\n");
    let r = run(
        &s,
        r#"
        probe() { (echo x > $ROOT/usr/share/probe) 2>/dev/null && echo writable || echo read-only; }
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline <(echo rdext.mutable=yes)
        echo "cmdline: $(probe) $(jq -r .mutable.mode $ROOT/usr/.systemd-sysext/origin)"
        $RDEXT unmerge --root $ROOT --run-dir $RUN
        $RDEXT merge --root $ROOT --run-dir $RUN --cmdline /dev/null
        echo "conf: $(probe) $(jq -r .mutable.mode $ROOT/usr/.systemd-sysext/origin)"
        $RDEXT unmerge --root $ROOT --run-dir $RUN
        echo "/dev/vdb /var ext4 defaults 0 2" > $ROOT/etc/fstab
        mkdir -p initrd
        rc=0; $RDEXT merge --root $ROOT --initrd-root $PWD/initrd --run-dir $RUN --cmdline <(echo rdext.mutable=yes) 2>initrd.err || rc=$?
        echo "initrd: rc=$rc $(probe) $(jq -r .mutable.mode $ROOT/usr/.systemd-sysext/origin) $(cat $ROOT/usr/bin/tool)"
        grep -c 'merging read-only' initrd.err | sed 's/^/warnings: /'
        "#,
    );
    assert_eq!(r.status, 0);
    assert_eq!(marked(&r.stdout, "cmdline: "), ["writable yes"]);
    assert_eq!(marked(&r.stdout, "conf: "), ["writable ephemeral"]);
    assert_eq!(marked(&r.stdout, "initrd: "), ["rc=0 read-only no 1"]);
    assert_eq!(marked(&r.stdout, "warnings: "), ["1"]);
}
