# shellcheck shell=bash
# Per-run work of the QEMU tests: build rdext, prepare a copy of the cached
# guest with rdext, the dracut module, the test units and the extension images,
# build the initrds and the disk, boot, read results back. Sourced by run/demo.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BOOT_TIMEOUT=${RDEXT_QEMU_BOOT_TIMEOUT:-420}     # hard limit per boot, seconds
BASE_CMDLINE="console=ttyS0 root=/dev/vda rw panic=-1 systemd.show_status=auto"
WORK=""
GUEST=""
KVER=""

# The static rdext binary: $RDEXT_BIN, else built with cargo through make.
build_rdext() {
    if [ -n "${RDEXT_BIN:-}" ]; then
        [ -x "$RDEXT_BIN" ] || die "RDEXT_BIN=$RDEXT_BIN is not executable"
        echo "$RDEXT_BIN"
        return
    fi
    log "building rdext (make build)"
    make -s -C "$REPO_DIR" build >&2 || die "building rdext failed"
    echo "$REPO_DIR/target/x86_64-unknown-linux-musl/release/rdext"
}

setup_work() {
    WORK=${RDEXT_QEMU_WORK:-$(mktemp -d /var/tmp/rdext-qemu.XXXXXX)}
    mkdir -p "$WORK"
    trap cleanup_work EXIT
}

cleanup_work() {
    [ -n "$WORK" ] || return 0
    [ -d "$WORK/rootfs" ] && chroot_umount "$WORK/rootfs"
    if [ -n "${RDEXT_QEMU_KEEP:-}" ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}

# prepare_guest RDEXT_BIN: rootfs copy + rdext + test units.
prepare_guest() {
    local bin=$1 root="$WORK/rootfs" t0
    t0=$(date +%s)
    GUEST=$("$TESTS_QEMU_DIR/build-guest.sh") || die "guest build failed"
    KVER=$(cat "$GUEST/kver")
    rm -rf "$root"
    cp -a "$GUEST/rootfs" "$root"
    make -s -C "$REPO_DIR" install DESTDIR="$root" BIN="$bin" >&2 || die "make install failed"
    [ -x "$root/usr/bin/rdext" ] || die "make install did not install usr/bin/rdext"
    [ -f "$root/usr/lib/dracut/modules.d/90rdext/module-setup.sh" ] || die "make install did not install the dracut module"

    install -D -m 0755 "$TESTS_QEMU_DIR/guest/rdext-check" "$root/usr/local/sbin/rdext-check"
    install -D -m 0644 "$TESTS_QEMU_DIR/guest/rdext-check.service" "$root/etc/systemd/system/rdext-check.service"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/sysinit.target.wants"
    ln -sf ../rdext-check.service "$root/etc/systemd/system/multi-user.target.wants/rdext-check.service"
    # As image-based systems do: the real system's own sysext/confext services
    # are enabled, so the tests see whether they re-merge at boot.
    ln -sf /usr/lib/systemd/system/systemd-sysext.service "$root/etc/systemd/system/sysinit.target.wants/"
    ln -sf /usr/lib/systemd/system/systemd-confext.service "$root/etc/systemd/system/sysinit.target.wants/"
    log "guest rootfs prepared in $(( $(date +%s) - t0 )) s (kernel $KVER)"
}

# build_initrds [systemd] [shell]: $WORK/initrd-systemd.img (dracut with
# systemd) and/or $WORK/initrd-shell.img (dracut without systemd), built in
# parallel with the guest's dracut in a chroot.
build_initrds() {
    local root="$WORK/rootfs" t0 kind pids=() kinds=("$@") rc=0 i
    [ ${#kinds[@]} -gt 0 ] || kinds=(systemd shell)
    t0=$(date +%s)
    chroot_mount "$root"
    for kind in "${kinds[@]}"; do
        local omit=()
        [ "$kind" = shell ] && omit=(--omit "systemd systemd-initrd dracut-systemd")
        chroot "$root" dracut --quiet --force --no-hostonly --kver "$KVER" --add rdext \
            "${omit[@]}" "/tmp/initrd-$kind.img" >"$WORK/dracut-$kind.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            tail -n 30 "$WORK/dracut-${kinds[$i]}.log" >&2
            log "dracut (${kinds[$i]} initrd) failed"
            rc=1
        fi
    done
    for kind in "${kinds[@]}"; do
        [ "$rc" = 0 ] || break
        cp "$root/tmp/initrd-$kind.img" "$WORK/"
        chroot "$root" lsinitrd "/tmp/initrd-$kind.img" >"$WORK/lsinitrd-$kind.txt" 2>&1 || true
    done
    chroot_umount "$root"
    [ "$rc" = 0 ] || die "dracut failed"
    for kind in "${kinds[@]}"; do
        grep -q ' usr/bin/rdext$' "$WORK/lsinitrd-$kind.txt" || die "$kind initrd lacks usr/bin/rdext"
        case $kind in
            systemd)
                grep -q 'rdext-merge.service$' "$WORK/lsinitrd-$kind.txt" ||
                    die "systemd initrd lacks rdext-merge.service"
                grep -q 'initrd.target.wants/rdext-merge.service' "$WORK/lsinitrd-$kind.txt" ||
                    die "systemd initrd does not enable rdext-merge.service"
                ;;
            shell)
                grep -q 'pre-pivot/90-rdext-pre-pivot.sh$' "$WORK/lsinitrd-$kind.txt" ||
                    die "shell initrd lacks the pre-pivot hook"
                if grep -qE ' usr/lib/systemd/systemd$' "$WORK/lsinitrd-$kind.txt"; then
                    die "shell initrd still contains systemd"
                fi
                ;;
        esac
    done
    log "initrd(s) ${kinds[*]} built in $(( $(date +%s) - t0 )) s"
}

release() { # file ID-line [more lines]
    local f=$1
    shift
    mkdir -p "$(dirname "$f")"
    printf '%s\n' "$@" >"$f"
}

# build_extensions: the demo set, a broken image and an incompatible one,
# made with the real tools (mksquashfs, mkfs.erofs), placed in the rootfs.
build_extensions() {
    local root="$WORK/rootfs" src="$WORK/ext-src" n d
    rm -rf "$src"
    mkdir -p "$src" "$root/var/lib/extensions" "$root/etc/extensions" \
             "$root/var/lib/confexts" "$root/var/lib/rdext-images"

    # 1. A unit enabled with a .wants symlink inside the extension, plus /opt
    #    content. squashfs, in /var/lib/extensions.
    n=rdext-demo-unit; d="$src/$n"
    mkdir -p "$d/usr/lib/systemd/system/multi-user.target.wants" "$d/opt/rdext-demo"
    cat >"$d/usr/lib/systemd/system/rdext-demo.service" <<'EOU'
[Unit]
Description=rdext demo: unit shipped and enabled inside a system extension

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "RDEXT-DEMO rdext-demo.service from a sysext ran at first boot" | tee /run/rdext-demo-unit.ran >/dev/console'

[Install]
WantedBy=multi-user.target
EOU
    ln -s ../rdext-demo.service "$d/usr/lib/systemd/system/multi-user.target.wants/rdext-demo.service"
    echo "hello from $n" >"$d/opt/rdext-demo/hello"
    release "$d/usr/lib/extension-release.d/extension-release.$n" ID=debian VERSION_ID=13 SYSEXT_SCOPE=system
    mksquashfs "$d" "$root/var/lib/extensions/$n.raw" -all-root -noappend -quiet >/dev/null

    # 2. A udev rule for the virtio disk. erofs, stored elsewhere and linked
    #    from /etc/extensions by an absolute symlink (as sysupdate does).
    n=rdext-demo-udev; d="$src/$n"
    mkdir -p "$d/usr/lib/udev/rules.d"
    cat >"$d/usr/lib/udev/rules.d/70-rdext-demo.rules" <<'EOU'
SUBSYSTEM=="block", KERNEL=="vda", ENV{RDEXT_DEMO}="1", SYMLINK+="rdext-demo-disk"
EOU
    release "$d/usr/lib/extension-release.d/extension-release.$n" ID=_any
    mkfs.erofs --all-root "$root/var/lib/rdext-images/${n}_1.0.raw" "$d" >/dev/null
    ln -s "/var/lib/rdext-images/${n}_1.0.raw" "$root/etc/extensions/$n.raw"

    # 3./4. Two kernel modules the base does not have, each in its own
    #    extension with its own depmod data (they shadow each other), plus a
    #    modules-load.d entry. One squashfs image, one directory extension.
    for m in dummy ifb; do
        n=rdext-demo-kmod-$m; d="$src/$n"
        mkdir -p "$d/usr/lib/modules-load.d"
        cp -a "$GUEST/kmod-ext/$m/usr" "$d/"
        echo "$m" >"$d/usr/lib/modules-load.d/$n.conf"
        release "$d/usr/lib/extension-release.d/extension-release.$n" ID=debian VERSION_ID=13
    done
    mksquashfs "$src/rdext-demo-kmod-dummy" "$root/var/lib/extensions/rdext-demo-kmod-dummy.raw" \
        -all-root -noappend -quiet >/dev/null
    cp -a "$src/rdext-demo-kmod-ifb" "$root/var/lib/extensions/"
    chown -R 0:0 "$root/var/lib/extensions/rdext-demo-kmod-ifb"

    # 5. A confext.
    n=rdext-demo-conf; d="$src/$n"
    mkdir -p "$d/etc"
    echo "rdext-demo-conf=1" >"$d/etc/rdext-demo.conf"
    release "$d/etc/extension-release.d/extension-release.$n" ID=debian VERSION_ID=13 CONFEXT_SCOPE=system
    mksquashfs "$d" "$root/var/lib/confexts/$n.raw" -all-root -noappend -quiet >/dev/null

    # 6. Bad ones: random bytes, and a valid image built for another OS.
    head -c 1048576 /dev/urandom >"$root/var/lib/extensions/rdext-broken.raw"
    n=rdext-incompatible; d="$src/$n"
    mkdir -p "$d/usr/lib"
    echo incompatible >"$d/usr/lib/rdext-incompatible-marker"
    release "$d/usr/lib/extension-release.d/extension-release.$n" ID=fedora VERSION_ID=42
    mkfs.erofs --all-root "$root/var/lib/extensions/$n.raw" "$d" >/dev/null
}

make_disk() {
    local t0
    t0=$(date +%s)
    rm -f "$WORK/disk.img"
    mkfs.ext4 -q -F -L rdext-root -d "$WORK/rootfs" "$WORK/disk.img" 3G >/dev/null ||
        die "mkfs.ext4 failed"
    log "disk image built in $(( $(date +%s) - t0 )) s"
}

# boot NAME INITRD EXTRA_CMDLINE [tee]: boots a copy of disk.img; leaves
# $WORK/NAME.serial.log and $WORK/NAME.results. Returns non-zero when the boot
# did not power off by itself in time or produced no results file.
boot() {
    local name=$1 initrd=$2 extra=$3 show=${4:-} disk="$WORK/$1.img" rc t0 t1
    cp --sparse=always "$WORK/disk.img" "$disk"
    rm -f "$WORK/$name.results"
    log "boot '$name': $(basename "$initrd") ${extra:+($extra) }time limit ${BOOT_TIMEOUT}s"
    t0=$(date +%s)
    set +e
    if [ -n "$show" ]; then
        timeout --foreground -k 10 "$BOOT_TIMEOUT" \
            qemu-system-x86_64 -accel tcg -smp 2 -m 1536 -nodefaults -display none -serial stdio -no-reboot \
            -kernel "$GUEST/vmlinuz" -initrd "$initrd" \
            -drive "file=$disk,format=raw,if=virtio" \
            -append "$BASE_CMDLINE $extra" </dev/null 2>&1 | tee "$WORK/$name.serial.log"
        rc=${PIPESTATUS[0]}
    else
        timeout -k 10 "$BOOT_TIMEOUT" \
            qemu-system-x86_64 -accel tcg -smp 2 -m 1536 -nodefaults -display none -serial stdio -no-reboot \
            -kernel "$GUEST/vmlinuz" -initrd "$initrd" \
            -drive "file=$disk,format=raw,if=virtio" \
            -append "$BASE_CMDLINE $extra" </dev/null >"$WORK/$name.serial.log" 2>&1
        rc=$?
    fi
    set -e
    t1=$(date +%s)
    echo "$(( t1 - t0 ))" >"$WORK/$name.seconds"
    debugfs -R "cat /var/lib/rdext-test/results.txt" "$disk" >"$WORK/$name.results" 2>/dev/null || true
    rm -f "$disk"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        log "boot '$name' TIMED OUT after $(( t1 - t0 )) s; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    if [ "$rc" != 0 ]; then
        log "boot '$name': qemu exited with $rc after $(( t1 - t0 )) s; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    if ! grep -q '^check_done=1' "$WORK/$name.results"; then
        log "boot '$name' powered off after $(( t1 - t0 )) s without a complete results file; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    log "boot '$name' done in $(( t1 - t0 )) s"
}

# res NAME KEY: value of KEY in boot NAME's results.
res() {
    sed -n "s/^$2=//p" "$WORK/$1.results" 2>/dev/null | head -n1
}
