#!/bin/bash
# Build (once) and cache a Debian test guest for the rdext QEMU tests.
#
# usage: build-guest.sh [SUITE]    SUITE: trixie (default) or sid
#
# The cache directory is keyed on the suite and the sha256 of this file (the
# recipe), so any change here builds a new guest. Output, in
# $RDEXT_QEMU_CACHE/guest-<suite>-<key>/:
#   rootfs/          the guest's root file system (no initrd, no rdext)
#   vmlinuz, kver    the kernel and its version
#   kmod-ext/NAME/   extension payloads for the kernel-module scenario: a module
#                    removed from the base (whose depmod data no longer lists it)
#                    plus the depmod output an extension author would ship
#   versions         systemd, dracut, kmod and kernel versions
# Prints the cache directory on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

# Recipe inputs (changing any line of this file changes the cache key).
SUITE=${1:-trixie}
INCLUDE=systemd,systemd-sysv,udev,kmod
# dracut-network: network in the initrd (systemd-networkd module) for the
# download scenarios.
PACKAGES=(dracut dracut-network linux-image-amd64 erofs-utils squashfs-tools dbus iproute2)
case $SUITE in
    trixie) KVER_GLOB='6.12.*' ;;
    # systemd 262, dracut 112, kernel 7.x. sid's minbase lacks e2fsprogs
    # (fsck.ext4 for the /var disk) and util-linux's mount tools;
    # systemd-cryptsetup holds systemd-veritysetup, which dracut's
    # systemd-sysext module installs.
    sid) KVER_GLOB='*'
         PACKAGES+=(systemd-cryptsetup e2fsprogs util-linux) ;;
    *) die "unknown suite '$SUITE' (trixie or sid)" ;;
esac
EXT_MODULES="dummy ifb"     # kernel modules moved out of the base into extensions
RECIPE_VERSION=3

out=$(guest_cache_dir "$SUITE")
if [ -e "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

mkdir -p "$RDEXT_QEMU_CACHE"
exec 9>"$RDEXT_QEMU_CACHE/.build.lock"
flock 9
if [ -e "$out/.complete" ]; then echo "$out"; exit 0; fi

# Leftovers of interrupted builds (we hold the lock, so nobody builds them).
for d in "$RDEXT_QEMU_CACHE"/guest-*.tmp; do
    [ -d "$d" ] || continue
    grep -q " $d/" /proc/mounts && continue
    rm -rf "$d"
done
tmp="$out.tmp"
mkdir -p "$tmp"
root="$tmp/rootfs"
trap 'chroot_umount "$root"' EXIT
start=$(date +%s)
mirror=$(debian_mirror)
log "building $SUITE guest (recipe v$RECIPE_VERSION) from $mirror into $tmp"

debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done after $(( $(date +%s) - start )) s"

chroot_mount "$root"
cat >"$root/usr/sbin/policy-rc.d" <<'EOS'
#!/bin/sh
exit 101
EOS
chmod 755 "$root/usr/sbin/policy-rc.d"
# The mirror may serve a frozen snapshot whose Release files (sid's) have
# expired; apt refuses them without this.
echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/50rdext-snapshot"
# dracut's kernel hook would build a host-only initrd in the chroot: not needed.
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$tmp/apt.log" 2>&1
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
    "${PACKAGES[@]}" >>"$tmp/apt.log" 2>&1 || { tail -n 30 "$tmp/apt.log" >&2; die "apt-get install failed"; }
log "packages installed after $(( $(date +%s) - start )) s"

kver=$(find "$root/usr/lib/modules" -mindepth 1 -maxdepth 1 -name "$KVER_GLOB" -printf '%f\n' | sort -V | tail -n1)
[ -n "$kver" ] || die "no kernel matching $KVER_GLOB installed"
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
echo "$kver" >"$tmp/kver"

# Configuration of the base system.
echo rdext-guest >"$root/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 0\n' >"$root/etc/fstab"
chroot "$root" passwd -d root >/dev/null
# Nothing in the tests needs these timers; they only add noise to a boot.
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
done

# Kernel modules for the kernel-module scenario: remove them from the base and
# regenerate the base's depmod data, then build each extension's payload with
# its own depmod run over base + that one module, as an extension author would.
moddir="$root/usr/lib/modules/$kver"
for m in $EXT_MODULES; do
    f=$(find "$moddir/kernel" -name "$m.ko*" | head -n1)
    [ -n "$f" ] || die "module $m not found in $kver"
    dst="$tmp/kmod-ext/$m/usr/lib/modules/$kver/extra"
    mkdir -p "$dst"
    mv "$f" "$dst/"
done
chroot "$root" depmod -a "$kver"
for m in $EXT_MODULES; do
    st="$root/var/tmp/depmod-$m"
    mkdir -p "$st/usr/lib/modules" "$st/lib"
    rmdir "$st/lib"
    ln -s usr/lib "$st/lib"
    cp -al "$moddir" "$st/usr/lib/modules/$kver"
    cp -a "$tmp/kmod-ext/$m/usr/lib/modules/$kver/extra" "$st/usr/lib/modules/$kver/"
    chroot "$root" depmod -b "/var/tmp/depmod-$m" "$kver"
    for f in "$st/usr/lib/modules/$kver"/modules.*; do
        case ${f##*/} in
            modules.order|modules.builtin|modules.builtin.modinfo) ;;
            *) cp "$f" "$tmp/kmod-ext/$m/usr/lib/modules/$kver/" ;;
        esac
    done
    grep -q "extra/$m.ko" "$tmp/kmod-ext/$m/usr/lib/modules/$kver/modules.dep" ||
        die "depmod for $m did not list it"
    rm -rf "$st"
done

# shellcheck disable=SC2016 # ${Version} is dpkg-query's format
{
    echo "kernel=$kver"
    echo "systemd=$(chroot "$root" dpkg-query -W -f '${Version}' systemd)"
    echo "dracut=$(chroot "$root" dpkg-query -W -f '${Version}' dracut)"
    echo "kmod=$(chroot "$root" dpkg-query -W -f '${Version}' kmod)"
    echo "udev=$(chroot "$root" dpkg-query -W -f '${Version}' udev)"
} >"$tmp/versions"

# Shrink: the rootfs is copied for every test run.
rm -f "$root"/boot/initrd.img-* "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
chroot_umount "$root"
trap - EXIT

touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
log "guest built in $(( $(date +%s) - start )) s: $out ($(tr '\n' ' ' <"$out/versions"))"
echo "$out"
