# shellcheck shell=bash
# Common helpers for the rdext QEMU tests. Sourced, not executed.

RDEXT_QEMU_CACHE=${RDEXT_QEMU_CACHE:-/var/cache/rdext-qemu}
TESTS_QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_DIR=$(cd "$TESTS_QEMU_DIR/.." && pwd)

log() { printf '%s [tests-qemu] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, loop-free image building)"
}

# The Debian mirror: $RDEXT_DEBIAN_MIRROR, else the first plain Debian archive
# URI the host's apt uses; no built-in default (a mirror's host name is never
# written here). Not part of the cache key (same archive content).
debian_mirror() {
    if [ -n "${RDEXT_DEBIAN_MIRROR:-}" ]; then
        echo "$RDEXT_DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
              /etc/apt/sources.list.d/*.sources 2>/dev/null |
          grep -Eo '(https?://[^ ]+/debian)/?( |$)' | grep -v security |
          head -n1 | tr -d ' ') || true
    [ -n "$uri" ] || die "no Debian mirror in the host's apt sources: set RDEXT_DEBIAN_MIRROR"
    echo "${uri%/}"
}

# guest_cache_dir [SUITE]: directory of the cached guest of SUITE (default
# trixie) for the current recipe (build-guest.sh). Printed on stdout.
guest_cache_dir() {
    local key
    key=$(sha256sum <"$TESTS_QEMU_DIR/build-guest.sh" | cut -c1-16)
    echo "$RDEXT_QEMU_CACHE/guest-${1:-trixie}-$key"
}

# Mount /proc, /sys, /dev into a chroot; undone by chroot_umount.
chroot_mount() {
    local root=$1
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --make-rslave "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
    mount -t tmpfs tmpfs "$root/tmp"
}

chroot_umount() {
    local root=$1 m
    for m in tmp dev sys proc; do
        if mountpoint -q "$root/$m"; then
            umount -R "$root/$m" 2>/dev/null || umount -lR "$root/$m" || true
        fi
    done
}

# Directory of the cached mkosi chroot for the current recipe
# (tests-qemu/mkosi/build-mkosi.sh). Printed on stdout.
mkosi_cache_dir() {
    local key
    key=$(sha256sum <"$TESTS_QEMU_DIR/mkosi/build-mkosi.sh" | cut -c1-16)
    echo "$RDEXT_QEMU_CACHE/mkosi-$key"
}

# Directory of the cached mkosi image build (tests-qemu/mkosi/build-image.sh):
# keyed on the mkosi chroot's recipe, the build script, mkosi/ (the example
# and rdext's initrd configuration, not its documentation), the unit and generator that
# `make install-mkosi` installs (and how it installs them), and the guest's
# result collector. Not on the rdext binary. Printed on stdout.
mkosi_image_cache_dir() {
    local key
    key=$( {
        cat "$TESTS_QEMU_DIR/mkosi/build-mkosi.sh" "$TESTS_QEMU_DIR/mkosi/build-image.sh"
        (cd "$REPO_DIR" && find mkosi -path mkosi/example/mkosi.output -prune -o \
             \( -type f -o -type l \) ! -name mkosi.key ! -name mkosi.crt ! -name '*.md' -print | LC_ALL=C sort |
         while read -r f; do echo "$f"; if [ -L "$f" ]; then readlink "$f"; else cat "$f"; fi; done)
        cat "$REPO_DIR/dracut-module/rdext-merge.service" "$REPO_DIR/dracut-module/rdext-generator" \
            "$TESTS_QEMU_DIR/guest/rdext-check" "$TESTS_QEMU_DIR/guest/rdext-check.service"
        make -s -n -C "$REPO_DIR" install-mkosi DESTDIR=/D BIN=README.md
    } | sha256sum | cut -c1-16)
    echo "$RDEXT_QEMU_CACHE/mkosi-image-$key"
}
