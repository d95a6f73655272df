# shellcheck shell=bash
# The hostile boot (issue 13): crafted images, built by the real tools, among
# good extensions on one disk, in a real boot with the systemd initrd.
# Sourced by tests-qemu/run after harness.sh.
#
# hostile_images ROOT    builds every image into the tree ROOT and writes the
#                        expectations ($WORK/hostile.bad: "NAME<TAB>REASON"
#                        for each bad image; the good ones are fixed here).
# make_hostile_disk      $WORK/hostile-disk.img: the prepared rootfs plus
#                        hostile_images and a results collector.
# hostile_checks BOOT    judges the boot from its results and console log.

HOSTILE_DEV_MAJOR=254   # virtio-blk's major in the trixie guest (checked in the boot)
# An extension name of 251 bytes: its image file name has 255.
HOSTILE_LONG="hostile-long$(printf 'x%.0s' $(seq 239))"

# hostile_tree DIR NAME [sysext|confext]: an extension tree with its
# extension-release file and a marker file naming NAME.
hostile_tree() {
    local d=$1 n=$2 class=${3:-sysext}
    mkdir -p "$d"
    if [ "$class" = confext ]; then
        release "$d/etc/extension-release.d/extension-release.$n" ID=debian VERSION_ID=13
        echo "$n" >"$d/etc/rdext-hostile-$n.conf"
    else
        release "$d/usr/lib/extension-release.d/extension-release.$n" ID=debian VERSION_ID=13
        mkdir -p "$d/usr/lib/rdext-hostile"
        echo "$n" >"$d/usr/lib/rdext-hostile/$n"
    fi
}

# le_u64 FILE OFFSET / le_u32 FILE OFFSET: a little-endian integer.
le_u64() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
le_u32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
# garbage FILE OFFSET LENGTH: random bytes over that range, in place.
garbage() { head -c "$3" /dev/urandom | dd of="$1" bs=1M seek="$2" oflag=seek_bytes conv=notrunc status=none; }

hostile_images() {
    local root=$1 src="$WORK/hostile-src" ext="$1/var/lib/extensions" n d i bad="$WORK/hostile.bad"
    local long deep
    rm -rf "$src"
    mkdir -p "$src" "$ext" "$root/var/lib/confexts" "$root/var/lib/rdext-hostile"
    : >"$bad"

    # ---- good ones (their effects are checked in the guest) ----
    # A plain squashfs sysext.
    hostile_tree "$src/hostile-good" hostile-good
    mksquashfs "$src/hostile-good" "$ext/hostile-good.raw" -all-root -noappend -quiet >/dev/null
    # 10,000 files in one directory.
    n=hostile-many; d="$src/$n"
    hostile_tree "$d" "$n"
    mkdir -p "$d/usr/share/$n"
    for i in $(seq 10000); do echo "$i" >"$d/usr/share/$n/f$i"; done
    mksquashfs "$d" "$ext/$n.raw" -all-root -noappend -quiet >/dev/null
    # A 255-byte path component and a path 3,000 bytes deep.
    n=hostile-deep; d="$src/$n"
    hostile_tree "$d" "$n"
    long=$(printf 'L%.0s' $(seq 255))
    deep="$d/usr/share/$n/$long"
    for i in $(seq 250); do deep="$deep/d$(printf '%09d' "$i")"; done
    mkdir -p "$deep"
    echo "deep file of $n" >"$deep/end"
    mksquashfs "$d" "$ext/$n.raw" -all-root -noappend -quiet >/dev/null
    # NAME.v/ with 1,000 entries: 997 old versions (one image, copied), then
    # 998 (the newest usable), 999 for another architecture and 1000 with no
    # tries left; the guest must see 998.
    n=hostile-versions; d="$src/$n"
    hostile_tree "$d" "$n"
    mkdir -p "$ext/$n.raw.v"
    echo old >"$d/usr/lib/rdext-hostile/$n"
    mksquashfs "$d" "$src/$n-old.raw" -all-root -noappend -quiet >/dev/null
    for i in $(seq 997); do cp "$src/$n-old.raw" "$ext/$n.raw.v/${n}_$i.raw"; done
    echo 998 >"$d/usr/lib/rdext-hostile/$n"
    mksquashfs "$d" "$ext/$n.raw.v/${n}_998.raw" -all-root -noappend -quiet >/dev/null
    cp "$src/$n-old.raw" "$ext/$n.raw.v/${n}_999_arm64.raw"
    cp "$src/$n-old.raw" "$ext/$n.raw.v/${n}_1000+0-3.raw"
    # An image file name of 255 bytes: its own extension-release file would
    # need 269, so it carries a relaxed one (user.extension-release.strict=0),
    # and its sidecar names (.roothash, .verity) are too long to exist.
    n=$HOSTILE_LONG; d="$src/hostile-long"
    mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/lib/rdext-hostile"
    release "$d/usr/lib/extension-release.d/extension-release.hostile-long-relaxed" ID=debian VERSION_ID=13
    setfattr -n user.extension-release.strict -v 0 \
        "$d/usr/lib/extension-release.d/extension-release.hostile-long-relaxed" ||
        die "no user xattrs in $WORK (needed for the relaxed release file)"
    echo hostile-long >"$d/usr/lib/rdext-hostile/hostile-long"
    mksquashfs "$d" "$ext/$n.raw" -all-root -noappend -quiet >/dev/null
    # A directory extension named with 255 bytes: its layer path is longer
    # than the overlay mount takes; it alone must be refused.
    d="$ext/hostile-longdir$(printf 'y%.0s' $(seq 240))"
    mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/lib/rdext-hostile"
    release "$d/usr/lib/extension-release.d/extension-release.hostile-longdir-relaxed" ID=debian VERSION_ID=13
    setfattr -n user.extension-release.strict -v 0 \
        "$d/usr/lib/extension-release.d/extension-release.hostile-longdir-relaxed"
    echo hostile-longdir >"$d/usr/lib/rdext-hostile/hostile-longdir"
    printf '%s\t%s\n' hostile-longdir "the overlay mount takes 255 at most" >>"$bad"
    # A confext.
    hostile_tree "$src/hostile-conf" hostile-conf confext
    mksquashfs "$src/hostile-conf" "$root/var/lib/confexts/hostile-conf.raw" -all-root -noappend -quiet >/dev/null

    # ---- bad ones: one line each, naming the image and the reason ----
    # Truncated squashfs and erofs (a file system bigger than its file).
    n=hostile-trunc-sq
    cp "$ext/hostile-many.raw" "$ext/$n.raw"
    truncate -s $(( $(stat -c %s "$ext/$n.raw") / 2 )) "$ext/$n.raw"
    printf '%s\t%s\n' "$n" "truncated squashfs image" >>"$bad"
    n=hostile-trunc-erofs
    hostile_tree "$src/$n" "$n"
    cp -a "$src/hostile-many/usr/share" "$src/$n/usr/"
    mkfs.erofs --all-root "$ext/$n.raw" "$src/$n" >/dev/null
    truncate -s $(( $(stat -c %s "$ext/$n.raw") / 2 )) "$ext/$n.raw"
    printf '%s\t%s\n' "$n" "truncated erofs image" >>"$bad"
    # squashfs: superblock intact, inode and directory tables garbage.
    n=hostile-inodes-sq
    cp "$ext/hostile-many.raw" "$ext/$n.raw"
    i=$(le_u64 "$ext/$n.raw" 64)
    garbage "$ext/$n.raw" "$i" $(( $(le_u64 "$ext/$n.raw" 80) - i ))
    printf '%s\t%s\n' "$n" "mount squashfs" >>"$bad"
    # erofs: superblock block intact (its checksum still matches), every
    # block after it garbage (the inodes, directories and data past block 0).
    # Its extension-release file sits in block 0: rdext accepts it, reading
    # its other files must then fail with an error (no oops).
    n=hostile-inodes-erofs
    hostile_tree "$src/$n" "$n"
    mkdir -p "$src/$n/usr/share/$n"
    for i in $(seq 2000); do echo "$i" >"$src/$n/usr/share/$n/f$i"; done
    mkfs.erofs --all-root "$ext/$n.raw" "$src/$n" >/dev/null
    garbage "$ext/$n.raw" 4096 $(( $(stat -c %s "$ext/$n.raw") - 4096 ))
    printf '%s\t%s\n' "$n" "ACCEPTED" >>"$bad"
    # ext4 whose superblock is corrupt (inode count 0, checksum now wrong).
    n=hostile-ext4-sb
    hostile_tree "$src/$n" "$n"
    mkfs.ext4 -q -F -d "$src/$n" "$ext/$n.raw" 2M >/dev/null
    printf '\0\0\0\0' | dd of="$ext/$n.raw" bs=1 seek=1024 conv=notrunc status=none
    printf '%s\t%s\n' "$n" "mount ext4" >>"$bad"
    # A verity DDI (systemd-repart) cut after its GPT: every partition
    # entry points past the end of the file.
    n=hostile-gpt-end
    hostile_tree "$src/$n" "$n"
    mkdir -p "$src/$n.repart"
    printf '[Partition]\nType=root\nVerity=data\nVerityMatchKey=root\nFormat=squashfs\nCopyFiles=%s:/usr\n' \
        "$src/$n/usr" >"$src/$n.repart/10-root.conf"
    printf '[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n' >"$src/$n.repart/20-verity.conf"
    systemd-repart --empty=create --size=auto --dry-run=no --json=off --definitions="$src/$n.repart" \
        "$src/$n.ddi" >/dev/null 2>&1 || die "systemd-repart failed"
    cp "$src/$n.ddi" "$ext/$n.raw"
    truncate -s 65536 "$ext/$n.raw"
    printf '%s\t%s\n' "$n" "invalid GPT header" >>"$bad"
    # A squashfs with a truncated .verity sidecar.
    n=hostile-verity-cut
    hostile_tree "$src/$n" "$n"
    cp -a "$src/hostile-many/usr/share" "$src/$n/usr/"
    mksquashfs "$src/$n" "$ext/$n.raw" -all-root -noappend -quiet >/dev/null
    veritysetup format "$ext/$n.raw" "$ext/$n.verity" --root-hash-file "$ext/$n.roothash" >/dev/null
    truncate -s $(( $(stat -c %s "$ext/$n.verity") / 2 )) "$ext/$n.verity"
    printf '%s\t%s\n' "$n" "truncated verity hash tree" >>"$bad"
    # A squashfs with a good .verity sidecar and a .roothash of garbage.
    n=hostile-roothash
    hostile_tree "$src/$n" "$n"
    mksquashfs "$src/$n" "$ext/$n.raw" -all-root -noappend -quiet >/dev/null
    veritysetup format "$ext/$n.raw" "$ext/$n.verity" >/dev/null
    printf 'zz%s\x01\n' "$(printf 'g%.0s' $(seq 62))" >"$ext/$n.roothash"
    printf '%s\t%s\n' "$n" "invalid root hash" >>"$bad"
    # Not regular files: a FIFO, a character device (/dev/null's numbers),
    # a symlink to a block device node (the guest's own disk, vda), a
    # symlink to /dev/vda (resolved inside the root, where there is none).
    mkfifo "$ext/hostile-fifo.raw"
    printf '%s\t%s\n' hostile-fifo "a FIFO" >>"$bad"
    mknod "$ext/hostile-chardev.raw" c 1 3
    printf '%s\t%s\n' hostile-chardev "a character device" >>"$bad"
    mknod "$root/var/lib/rdext-hostile/vda" b "$HOSTILE_DEV_MAJOR" 0
    ln -s /var/lib/rdext-hostile/vda "$ext/hostile-blkdev.raw"
    printf '%s\t%s\n' hostile-blkdev "" >>"$bad"
    ln -s /dev/vda "$ext/hostile-devlink.raw"
    printf '%s\t%s\n' hostile-devlink "cannot resolve" >>"$bad"
    # A 0-byte image.
    : >"$ext/hostile-empty.raw"
    printf '%s\t%s\n' hostile-empty "not a squashfs, erofs or ext4 image" >>"$bad"
    # Hostile names (each a good image otherwise): control characters, an
    # ANSI escape, a newline followed by a forged log line.
    for n in $'hostile-ctl\x01' $'hostile-tab\t' $'hostile-esc\x1b[31m' $'hostile-nl\nmerged 99 sysext'; do
        cp "$ext/hostile-good.raw" "$ext/$n.raw"
    done
    printf '%s\t%s\n' hostile-ctl "invalid extension name" hostile-tab "invalid extension name" \
        hostile-esc "invalid extension name" hostile-nl "invalid extension name" >>"$bad"
    chown -R 0:0 "$ext" "$root/var/lib/confexts"
}

# The guest side: a unit of the hostile disk that runs before rdext-check
# (which powers off) and leaves its findings in /var/lib/rdext-test/hostile/.
hostile_collector() {
    local root=$1
    mkdir -p "$root/usr/local/sbin" "$root/etc/systemd/system/multi-user.target.wants"
    cat >"$root/usr/local/sbin/rdext-hostile-check" <<'EOS'
#!/bin/sh
# Findings of the hostile boot, read back by the host (tests-qemu/hostile.sh).
o=/var/lib/rdext-test/hostile
mkdir -p "$o"
r() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n' '|')" >>"$o/facts.tmp"; }
: >"$o/facts.tmp"
journalctl -b -t rdext -o cat --no-pager >"$o/rdext.log" 2>&1
dmesg >"$o/dmesg.txt" 2>&1
systemd-sysext status --json=short >"$o/sysext-status.json" 2>&1
systemd-confext status --json=short >"$o/confext-status.json" 2>&1
r system_state "$(systemctl is-system-running)"
r failed_units "$(systemctl list-units --failed --plain --no-legend | awk '{print $1}')"
r good "$(cat /usr/lib/rdext-hostile/hostile-good 2>&1)"
r many_count "$(ls /usr/share/hostile-many 2>&1 | wc -l)"
r many_last "$(cat /usr/share/hostile-many/f10000 2>&1)"
deep=$(find /usr/share/hostile-deep -name end | head -n1)
r deep "$(cat "$deep" 2>&1)"
r deep_path_bytes "$(printf '%s' "$deep" | wc -c)"
r versions "$(cat /usr/lib/rdext-hostile/hostile-versions 2>&1)"
r long "$(cat /usr/lib/rdext-hostile/hostile-long 2>&1)"
r conf "$(cat /etc/rdext-hostile-hostile-conf.conf 2>&1)"
r inodes_erofs_read "$(ls /usr/share/hostile-inodes-erofs >/dev/null 2>"$o/err"; echo "rc=$? $(head -c 200 "$o/err")")"
r vda_devno "$(stat -L -c '%t:%T' /dev/vda)"
r demo_unit "$(cat /opt/rdext-demo/hello 2>&1)"
mv "$o/facts.tmp" "$o/facts.txt"
sync
EOS
    chmod 0755 "$root/usr/local/sbin/rdext-hostile-check"
    cat >"$root/etc/systemd/system/rdext-hostile-check.service" <<'EOU'
[Unit]
Description=rdext test: findings of the hostile boot
After=multi-user.target
Before=rdext-check.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/rdext-hostile-check
TimeoutStartSec=5min

[Install]
WantedBy=multi-user.target
EOU
    ln -sf ../rdext-hostile-check.service "$root/etc/systemd/system/multi-user.target.wants/"
}

# make_hostile_disk: $WORK/hostile-disk.img, the prepared rootfs (demo
# extensions included) plus the hostile images and the collector; the
# rootfs is left as it was.
make_hostile_disk() {
    local root="$WORK/rootfs" t0 f
    t0=$(date +%s)
    hostile_images "$root"
    hostile_collector "$root"
    mkdir -p "$root/etc/rdext-test"
    : >"$root/etc/rdext-test/skip-remerge"
    log "hostile images built in $(( $(date +%s) - t0 )) s"
    rm -f "$WORK/hostile-disk.img"
    mkfs.ext4 -q -F -L rdext-root -d "$root" "$WORK/hostile-disk.img" 3G >/dev/null ||
        die "mkfs.ext4 failed"
    for f in "$root"/var/lib/extensions/hostile-* "$root/var/lib/confexts/hostile-conf.raw" \
             "$root/var/lib/rdext-hostile" "$root/etc/rdext-test" "$root/usr/local/sbin/rdext-hostile-check" \
             "$root/etc/systemd/system/rdext-hostile-check.service" \
             "$root/etc/systemd/system/multi-user.target.wants/rdext-hostile-check.service"; do
        rm -rf "$f"
    done
    log "hostile disk built in $(( $(date +%s) - t0 )) s"
}

# hostile_fetch BOOT: the guest's findings into $WORK/BOOT.hostile/.
hostile_fetch() {
    local b=$1 f
    mkdir -p "$WORK/$b.hostile"
    for f in rdext.log dmesg.txt sysext-status.json confext-status.json facts.txt; do
        debugfs -R "cat /var/lib/rdext-test/hostile/$f" "$WORK/hostile-disk.img" \
            >"$WORK/$b.hostile/$f" 2>/dev/null || true
    done
}

# hfact BOOT KEY: one of the guest's facts.
hfact() { sed -n "s/^$2=//p" "$WORK/$1.hostile/facts.txt" 2>/dev/null | head -n1; }

HOSTILE_GOOD="hostile-good hostile-many hostile-deep hostile-versions $HOSTILE_LONG"
HOSTILE_KERNEL_TROUBLE='Oops|BUG:|Call Trace|blocked for more than|hung_task|general protection'

hostile_checks() {
    local b=$1 d="$WORK/$1.hostile" why n reason lines count st
    hostile_fetch "$b"
    check hostile-boot "$b" "crafted images among good ones: the boot reached multi-user and the check ran" \
        check_done eq 1 boot_ok eq 1

    why=""
    st=$(cat "$d/sysext-status.json" 2>/dev/null)
    for n in $HOSTILE_GOOD; do
        [[ "$st" == *"\"$n\""* ]] || why="$why $n not in systemd-sysext status;"
    done
    [[ "$(cat "$d/confext-status.json" 2>/dev/null)" == *'"hostile-conf"'* ]] || why="$why hostile-conf not in systemd-confext status;"
    [ "$(hfact "$b" good)" = hostile-good ] || why="$why hostile-good's file: '$(hfact "$b" good)';"
    [ "$(hfact "$b" many_count)" = 10000 ] || why="$why hostile-many shows '$(hfact "$b" many_count)' files;"
    [ "$(hfact "$b" many_last)" = 10000 ] || why="$why hostile-many's f10000: '$(hfact "$b" many_last)';"
    [ "$(hfact "$b" deep)" = "deep file of hostile-deep" ] || why="$why hostile-deep's deep file: '$(hfact "$b" deep)';"
    [ "$(hfact "$b" versions)" = 998 ] || why="$why hostile-versions.raw.v picked '$(hfact "$b" versions)', not 998;"
    [ "$(hfact "$b" long)" = hostile-long ] || why="$why the 255-byte-named image's file: '$(hfact "$b" long)';"
    [ "$(hfact "$b" conf)" = hostile-conf ] || why="$why hostile-conf's file: '$(hfact "$b" conf)';"
    [ "$(hfact "$b" demo_unit)" = "hello from rdext-demo-unit" ] || why="$why demo sysext's /opt file: '$(hfact "$b" demo_unit)';"
    judge hostile-good-merged "$b" "the good ones merged and visible: 10,000 files, a 255-byte component 3 KB deep, the newest usable of 1,000 versions (998), a 255-byte image file name, a confext, the demo set" "$why"

    why=""
    while IFS=$'\t' read -r n reason; do
        # (the summary line names what merged)
        lines=$(grep -aF -- "$n" "$d/rdext.log" | grep -av '^merged sysext ' || true)
        count=$(printf '%s' "$lines" | grep -c '' || true)
        if [ "$reason" = ACCEPTED ]; then
            # Accepted (its superblock and release file are fine): the
            # kernel must refuse its garbage with an error, not an oops.
            [ "$count" = 1 ] && [[ "$lines" == *"using sysext"* ]] ||
                why="$why $n: $count lines ($lines);"
            [[ "$(hfact "$b" inodes_erofs_read)" == "rc=0 "* ]] && why="$why $n: its garbage read without an error;"
            continue
        fi
        if [ "$count" != 1 ]; then
            why="$why $n: $count rdext lines, not 1 ($lines);"
        elif [[ "$lines" != *"$reason"* ]] || [[ "$lines" != *"sysext"* ]]; then
            why="$why $n: line lacks '$reason': $lines;"
        elif [[ "$st" == *"\"$n"* ]]; then
            why="$why $n: merged;"
        fi
    done <"$WORK/hostile.bad"
    if grep -aq '^merged 99' "$d/rdext.log"; then why="$why a forged log line from an image name;"; fi
    judge hostile-bad-refused "$b" "each crafted image ($(wc -l <"$WORK/hostile.bad") of them) has exactly one rdext line naming it with its reason and is not merged" "$why"

    why=""
    if grep -aqE "$HOSTILE_KERNEL_TROUBLE" "$WORK/$b.serial.log" "$d/dmesg.txt"; then
        why="kernel trouble: $(grep -ahE -m3 "$HOSTILE_KERNEL_TROUBLE" "$WORK/$b.serial.log" "$d/dmesg.txt" | tr '\n' ';')"
    fi
    [ -s "$d/dmesg.txt" ] || why="$why no dmesg from the guest"
    judge hostile-no-oops "$b" "no Oops, BUG, Call Trace, hung task or general protection fault on the console or in dmesg" "$why"
}

# ---- required= in the target root's /etc/rdext.conf (issue 13, item 5) ----
# make_required_conf_disk NAME...: $WORK/required-conf-disk.img, disk.img with
# /etc/rdext.conf saying required=NAME... (nothing on the command line).
make_required_conf_disk() {
    printf 'required=%s\n' "$*" >"$WORK/required-conf.rdext.conf"
    cp --sparse=always "$WORK/disk.img" "$WORK/required-conf-disk.img"
    debugfs -w -R "write $WORK/required-conf.rdext.conf /etc/rdext.conf" "$WORK/required-conf-disk.img" >/dev/null 2>&1
    [ "$(debugfs -R "cat /etc/rdext.conf" "$WORK/required-conf-disk.img" 2>/dev/null)" = "required=$*" ] ||
        die "could not write /etc/rdext.conf into the required-conf disk"
}
