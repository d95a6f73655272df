#!/bin/bash
# Build (once) and cache, with real mkosi in the cached sid chroot
# (build-mkosi.sh), the example image of mkosi/example/ and two extensions
# for it: the signed sysext of mkosi/example/sysext/ and the same built
# unsigned under another name. The image's default initrd gets rdext through
# mkosi/example/mkosi.initrd.conf, which includes what `make install-mkosi`
# installed into the chroot.
#
# Usage: build-image.sh RDEXT_BIN. The cache directory is keyed on everything
# that goes into the build except the rdext binary (which changes with every
# commit; tests-qemu/mkosi/run replaces it in the initrd). Output, in
# $RDEXT_QEMU_CACHE/mkosi-image-<key>/:
#   rdext-example.raw, .vmlinuz, .initrd   mkosi's image, kernel and initrd
#   default-initrd.list, kmods-initrd.list what the default initrd and the
#                                          kernel-modules initrd hold
#   default-initrd.size                    bytes of the default initrd (cpio.zst)
#   extensions/                            the two extension images
#   versions, build.seconds
# Prints the cache directory on stdout.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_root

bin=${1:?usage: build-image.sh RDEXT_BIN}
out=$(mkosi_image_cache_dir)
if [ -e "$out/.complete" ]; then
    echo "$out"
    exit 0
fi

tools=$("$TESTS_QEMU_DIR/mkosi/build-mkosi.sh") || die "mkosi chroot build failed"
mkdir -p "$RDEXT_QEMU_CACHE"
# One build at a time: the build uses the shared chroot.
exec 9>"$RDEXT_QEMU_CACHE/.mkosi-build.lock"
flock 9
if [ -e "$out/.complete" ]; then echo "$out"; exit 0; fi

# Leftovers of interrupted builds (we hold the lock, so nobody builds them).
for d in "$RDEXT_QEMU_CACHE"/mkosi-image-*.tmp; do
    [ -d "$d" ] && rm -rf "$d"
done
root="$tools/rootfs"
tmp="$out.tmp"
mkdir -p "$tmp/extensions" "$RDEXT_QEMU_CACHE/mkosi-packages"
start=$(date +%s)
mirror=$(debian_mirror)

chroot_down() {
    local m
    for m in build var/cache/mkosi-packages run; do
        mountpoint -q "$root/$m" && umount -l "$root/$m"
    done
    chroot_umount "$root"
    mountpoint -q "$root" && umount -l "$root"
    rm -rf "${root:?}/usr/share/rdext" "${root:?}/build"
}
trap chroot_down EXIT
# mkosi wants the root it runs in to be a mount point.
mount --bind "$root" "$root"
chroot_mount "$root"
mkdir -p "$root/run" "$root/build" "$root/var/cache/mkosi-packages"
mount -t tmpfs tmpfs "$root/run"
mount --bind "$tmp" "$root/build"
mount --bind "$RDEXT_QEMU_CACHE/mkosi-packages" "$root/var/cache/mkosi-packages"

# rdext's mkosi configuration, installed on the build host as a user would.
make -s -C "$REPO_DIR" install-mkosi DESTDIR="$root" BIN="$bin" >&2 || die "make install-mkosi failed"
cp -a "$REPO_DIR/mkosi/example" "$tmp/example"
rm -rf "$tmp/example/mkosi.output" "$tmp/example/mkosi.key" "$tmp/example/mkosi.crt"
# Test additions to the image (not part of the example): the result
# collector (no unmerge/re-merge after boot: rdext is not in the image).
ext="$tmp/test-tree"
install -D -m 0755 "$TESTS_QEMU_DIR/guest/rdext-check" "$ext/usr/local/sbin/rdext-check"
install -D -m 0644 "$TESTS_QEMU_DIR/guest/rdext-check.service" "$ext/etc/systemd/system/rdext-check.service"
mkdir -p "$ext/etc/systemd/system/multi-user.target.wants" "$ext/etc/rdext-test"
ln -s ../rdext-check.service "$ext/etc/systemd/system/multi-user.target.wants/rdext-check.service"
: >"$ext/etc/rdext-test/skip-remerge"

in_chroot() {
    chroot "$root" env -u TMPDIR HOME=/root TERM=dumb "$@"
}
mk() { # DIR ARGS...: mkosi in /build/DIR
    local dir=$1
    shift
    in_chroot mkosi -C "/build/$dir" --local-mirror="$mirror" --tools-tree= \
        --package-cache-dir=/var/cache/mkosi-packages --workspace-directory=/build "$@"
}

log "mkosi: signing key"
mk example genkey >"$tmp/genkey.log" 2>&1 || { tail -n 30 "$tmp/genkey.log" >&2; die "mkosi genkey failed"; }

t0=$(date +%s)
log "mkosi: signed sysext (mkosi/example/sysext)"
mk example/sysext -f --output-directory=/build/signed build >"$tmp/sysext.log" 2>&1 || { tail -n 40 "$tmp/sysext.log" >&2; die "mkosi sysext build failed"; }
log "mkosi: the same with verity but unsigned, as rdext-example-unsigned"
mk example/sysext -f --image-id=rdext-example-unsigned --verity=hash --output-directory=/build/unsigned build \
    >"$tmp/unsigned.log" 2>&1 || { tail -n 40 "$tmp/unsigned.log" >&2; die "mkosi unsigned sysext build failed"; }
cp "$tmp/signed/rdext-example-demo_1.raw" "$tmp/extensions/"
cp "$tmp/unsigned/rdext-example-unsigned_1.raw" "$tmp/extensions/"
echo "$(( $(date +%s) - t0 ))" >"$tmp/sysext.seconds"

t0=$(date +%s)
log "mkosi: the example image (mkosi/example)"
mk example -f --output-directory=/build/image --split-artifacts=kernel-modules-initrd --extra-tree=/build/test-tree --extra-tree=/build/extensions:/var/lib/extensions build \
    >"$tmp/image.log" 2>&1 || { tail -n 60 "$tmp/image.log" >&2; die "mkosi image build failed"; }
echo "$(( $(date +%s) - t0 ))" >"$tmp/image.seconds"
o="$tmp/image"
for f in rdext-example.raw rdext-example.vmlinuz rdext-example.initrd; do
    [ -s "$o/$f" ] || die "mkosi did not write $f (has: $(ls "$o" | tr '\n' ' '))"
    mv "$o/$f" "$tmp/"
done
# What the default initrd holds, and the modules joined to it.
di=$(find "$o" -maxdepth 1 -name 'initrd*' -type f | head -n1)
[ -n "$di" ] || die "no default initrd in $o (has: $(ls "$o" | tr '\n' ' '))"
stat -c %s "$di" >"$tmp/default-initrd.size"
in_chroot sh -c "zstdcat -f '/build/image/${di##*/}' | cpio -t --quiet" >"$tmp/default-initrd.list"
in_chroot sh -c "zstdcat -f /build/image/rdext-example.kernel-modules-initrd | cpio -t --quiet" \
    >"$tmp/kmods-initrd.list"
{
    echo "mkosi=$(cat "$tools/versions" | sed -n 's/^mkosi=//p')"
    echo "built=$(date -u +%FT%TZ)"
} >"$tmp/versions"
rm -rf "$tmp/image" "$tmp/signed" "$tmp/unsigned" "$tmp/test-tree"
chroot_down
trap - EXIT

echo "$(( $(date +%s) - start ))" >"$tmp/build.seconds"
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
log "mkosi image built in $(cat "$out/build.seconds") s: $out"
echo "$out"
