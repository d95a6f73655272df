#!/bin/bash
# Build (once) and cache a Debian sid chroot with mkosi and the tools it calls,
# for the mkosi boot scenario (tests-qemu/mkosi/run).
#
# The cache directory is keyed on the sha256 of this file (the recipe). Output,
# in $RDEXT_QEMU_CACHE/mkosi-<key>/: rootfs/ (the chroot) and versions.
# Prints the cache directory on stdout.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_root

# Recipe inputs (changing any line of this file changes the cache key).
# sid: mkosi 27 and systemd-repart/systemd-dissect new enough for it; the
# images it builds are trixie.
SUITE=sid
PACKAGES=(mkosi systemd systemd-repart systemd-container systemd-boot-efi systemd-ukify
          bubblewrap dosfstools mtools erofs-utils squashfs-tools cpio zstd kmod
          debian-archive-keyring apt dpkg-dev fdisk util-linux openssl xz-utils e2fsprogs
          python3-pefile)
RECIPE_VERSION=1

out=$(mkosi_cache_dir)
if [ -e "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

mkdir -p "$RDEXT_QEMU_CACHE"
exec 9>"$RDEXT_QEMU_CACHE/.mkosi-build.lock"
flock 9
if [ -e "$out/.complete" ]; then echo "$out"; exit 0; fi

for d in "$RDEXT_QEMU_CACHE"/mkosi-*.tmp; do
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
log "building the mkosi chroot (recipe v$RECIPE_VERSION) from $mirror into $tmp"

debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$mirror" \
    >"$tmp/debootstrap.log" 2>&1 || { tail -n 30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done after $(( $(date +%s) - start )) s"

chroot_mount "$root"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# The mirror may serve a frozen snapshot whose sid Release file has expired.
printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
    >"$root/etc/apt/apt.conf.d/50rdext-snapshot"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$tmp/apt.log" 2>&1 ||
    { tail -n 30 "$tmp/apt.log" >&2; die "apt-get update failed"; }
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
    "${PACKAGES[@]}" >>"$tmp/apt.log" 2>&1 || { tail -n 30 "$tmp/apt.log" >&2; die "apt-get install failed"; }
log "packages installed after $(( $(date +%s) - start )) s"

# shellcheck disable=SC2016 # ${Version} is dpkg-query's format
{
    echo "mkosi=$(chroot "$root" dpkg-query -W -f '${Version}' mkosi)"
    echo "systemd=$(chroot "$root" dpkg-query -W -f '${Version}' systemd)"
} >"$tmp/versions"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
chroot_umount "$root"
trap - EXIT

touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
log "mkosi chroot built in $(( $(date +%s) - start )) s: $out ($(tr '\n' ' ' <"$out/versions"))"
echo "$out"
