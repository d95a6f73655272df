#!/bin/bash
# The fast QEMU tier: the test guest's kernel with a tiny initramfs (static
# busybox, rdext, the modules rdext needs) booted under TCG in seconds. For
# what needs a real kernel (device-mapper, dm-verity, loop) but not a real
# system. The host has no device-mapper, so dm-verity is tested here.
#
# usage: run.sh PAYLOAD_DIR [KERNEL_ARGS...]
# PAYLOAD_DIR is copied to /payload in the initramfs; its scenario.sh is
# sourced by /init (busybox sh) with rdext on PATH. The serial console is
# printed on stdout; exits non-zero unless the scenario finished.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_root

payload=$1; shift
guest=$("$TESTS_QEMU_DIR/build-guest.sh")
kver=$(cat "$guest/kver")
rdext=${RDEXT_BIN:-$REPO_DIR/target/x86_64-unknown-linux-musl/release/rdext}
[ -x "$rdext" ] || die "no static rdext at $rdext (make build)"
busybox=$(command -v busybox) || die "busybox-static is not installed"
file -L "$busybox" | grep -q 'statically linked' || die "$busybox is not static"

work=$(mktemp -d /tmp/rdext-fastboot.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,usr/bin,sysroot}
cp "$busybox" "$root/bin/busybox"
cp "$rdext" "$root/usr/bin/rdext"
cp -a "$payload" "$root/payload"
echo 'NAME="rdext fastboot"' >"$root/etc/initrd-release"

# Modules rdext and the scenarios need, with their dependencies.
moddir=$guest/rootfs/usr/lib/modules/$kver
mkdir -p "$root/lib/modules/$kver"
cp "$moddir"/modules.{dep,builtin,softdep,alias} "$root/lib/modules/$kver/"
for m in loop squashfs erofs overlay dm-mod dm-verity crc32c_generic crc32c-intel; do
    line=$(grep -E "(^|/)$m\.ko[^:]*:" "$moddir/modules.dep" || true)
    if [ -z "$line" ]; then
        grep -qE "/$m\.ko" "$moddir/modules.builtin" || log "module $m not found (not needed?)"
        continue
    fi
    for f in $(echo "$line" | tr -d ':'); do
        mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
        cp "$moddir/$f" "$root/lib/modules/$kver/$f"
    done
done

cat >"$root/init" <<'EOS'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
echo "FASTBOOT-START"
cd /payload && . ./scenario.sh
echo "FASTBOOT-DONE"
poweroff -f
EOS
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/initramfs.gz"

log "fastboot: kernel $kver, initramfs $(du -h "$work/initramfs.gz" | cut -f1)"
start=$(date +%s.%N)
timeout --foreground "${FASTBOOT_TIMEOUT:-180}" qemu-system-x86_64 -accel tcg -smp 1 -m 1024 \
    -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$work/initramfs.gz" \
    -append "console=ttyS0 panic=-1 loglevel=4 $*" >"$work/console.log" 2>&1 || true
log "fastboot: $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
tr -d '\r' <"$work/console.log"
grep -q FASTBOOT-DONE "$work/console.log" || die "fastboot did not finish (timeout or panic); console above"
