#!/bin/bash
# Host packages for the QEMU boot tests (tests-qemu/run, tests-qemu/demo) on a
# Debian 12 machine, as root. Idempotent: installs only what is missing.
set -euo pipefail

packages=(
    qemu-system-x86      # qemu-system-x86_64 (TCG)
    debootstrap          # the cached trixie guest
    debian-archive-keyring
    e2fsprogs            # mkfs.ext4 -d, debugfs
    squashfs-tools       # mksquashfs (extension images)
    erofs-utils          # mkfs.erofs (extension images)
    coreutils util-linux # timeout, flock, mount, mountpoint
    busybox-static       # tests-qemu/fastboot
    gnupg                # signing SHA256SUMS (download boots)
    python3              # net/httpd.py, net/guestfwd.py (download boots)
    cpio gzip file
    make
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
