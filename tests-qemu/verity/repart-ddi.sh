#!/bin/bash
# Build a signed sysext DDI with the guest's own systemd-repart (systemd 257,
# `--make-ddi=sysext`), as an image vendor would. The cached guest rootfs is
# used read-only: an overlay in a private mount namespace holds the
# systemd-repart package installed for this one run.
#
# usage: repart-ddi.sh GUEST_ROOTFS SOURCE_TREE KEY CERT OUTPUT
set -euo pipefail
rootfs=$1 tree=$2 key=$3 cert=$4 output=$5
work=$(mktemp -d /tmp/rdext-repart.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{upper,work,root,in}
cp -a "$tree" "$work/in/tree"
cp "$key" "$work/in/key.pem"
cp "$cert" "$work/in/cert.pem"
unshare -m --propagation private bash -euo pipefail -s "$rootfs" "$work" <<'EOS'
rootfs=$1 work=$2
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$work/upper,workdir=$work/work" "$work/root"
mount -t proc proc "$work/root/proc"
mount --rbind /sys "$work/root/sys"
mount --rbind /dev "$work/root/dev"
mount --bind "$work/in" "$work/root/mnt"
cp /etc/resolv.conf "$work/root/etc/resolv.conf" 2>/dev/null || true
chroot "$work/root" env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null
chroot "$work/root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends \
    systemd-repart libcryptsetup12 erofs-utils >/dev/null
chroot "$work/root" systemd-repart --version | head -n1
chroot "$work/root" systemd-repart --make-ddi=sysext --private-key=/mnt/key.pem \
    --certificate=/mnt/cert.pem --copy-source=/mnt/tree /mnt/out.raw >/dev/null
EOS
cp "$work/in/out.raw" "$output"
