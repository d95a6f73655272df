# shellcheck shell=bash
# Per-run work of the QEMU tests: build rdext, prepare a copy of the cached
# guest with rdext, the dracut module, the test units and the extension images,
# build the initrds and the disk, boot, read results back. Sourced by run/demo.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BOOT_TIMEOUT=${RDEXT_QEMU_BOOT_TIMEOUT:-420}     # hard limit per boot, seconds
BASE_CMDLINE="console=ttyS0 root=/dev/vda rw panic=-1 systemd.show_status=auto"
# The guest's Debian suite: trixie, or sid (systemd 262, dracut 112, kernel 7.x).
SUITE=${RDEXT_QEMU_SUITE:-trixie}
# The label of the separate /var disk (make_split_var_disks).
VAR_LABEL=rdext-var
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
    stop_http_server
    stop_registry
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
    GUEST=$("$TESTS_QEMU_DIR/build-guest.sh" "$SUITE") || die "guest build failed"
    KVER=$(cat "$GUEST/kver")
    rm -rf "$root"
    cp -a "$GUEST/rootfs" "$root"
    make -s -C "$REPO_DIR" install DESTDIR="$root" BIN="$bin" >&2 || die "make install failed"
    [ -x "$root/usr/bin/rdext" ] || die "make install did not install usr/bin/rdext"
    [ -f "$root/usr/lib/dracut/modules.d/90rdext/module-setup.sh" ] || die "make install did not install the dracut module"

    install -D -m 0755 "$TESTS_QEMU_DIR/guest/rdext-check" "$root/usr/local/sbin/rdext-check"
    # The refresh and mutable-mode comparisons are judged on the trixie
    # guest's main boot only; the sid boot checks the hand-over instead.
    if [ "$SUITE" = trixie ]; then
        install -D -m 0755 "$TESTS_QEMU_DIR/guest/rdext-refresh-check" "$root/usr/local/sbin/rdext-refresh-check"
    fi
    install -D -m 0644 "$TESTS_QEMU_DIR/guest/rdext-check.service" "$root/etc/systemd/system/rdext-check.service"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/sysinit.target.wants"
    ln -sf ../rdext-check.service "$root/etc/systemd/system/multi-user.target.wants/rdext-check.service"
    # As image-based systems do: the real system's own sysext/confext services
    # are enabled, so the tests see whether they re-merge at boot.
    ln -sf /usr/lib/systemd/system/systemd-sysext.service "$root/etc/systemd/system/sysinit.target.wants/"
    ln -sf /usr/lib/systemd/system/systemd-confext.service "$root/etc/systemd/system/sysinit.target.wants/"
    [ -f "$root/usr/lib/systemd/system/rdext-bless.service" ] || die "make install did not install rdext-bless.service"
    ln -sf /usr/lib/systemd/system/rdext-bless.service "$root/etc/systemd/system/multi-user.target.wants/"
    log "guest rootfs prepared in $(( $(date +%s) - t0 )) s (kernel $KVER)"
}

# build_initrds [systemd] [shell] [net] [sysext]: $WORK/initrd-systemd.img
# (dracut with systemd), $WORK/initrd-shell.img (dracut without systemd),
# $WORK/initrd-net.img (with systemd and dracut's network module),
# $WORK/initrd-sysext.img (with systemd and dracut's systemd-sysext module,
# which brings systemd >= 261's own sysroot merge units), built in parallel
# with the guest's dracut in a chroot.
build_initrds() {
    local root="$WORK/rootfs" t0 kind pids=() kinds=("$@") rc=0 i
    [ ${#kinds[@]} -gt 0 ] || kinds=(systemd shell)
    t0=$(date +%s)
    chroot_mount "$root"
    for kind in "${kinds[@]}"; do
        local opts=(--add rdext)
        case $kind in
            shell) opts+=(--omit "systemd systemd-initrd dracut-systemd") ;;
            # dracut's "network" picks systemd-networkd in a systemd initrd.
            net) opts=(--add "rdext network") ;;
            sysext) opts=(--add "rdext systemd-sysext") ;;
        esac
        chroot "$root" dracut --quiet --force --no-hostonly --kver "$KVER" \
            "${opts[@]}" "/tmp/initrd-$kind.img" >"$WORK/dracut-$kind.log" 2>&1 &
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
            systemd|net|sysext)
                grep -q 'rdext-merge.service$' "$WORK/lsinitrd-$kind.txt" ||
                    die "systemd initrd lacks rdext-merge.service"
                grep -q 'initrd.target.wants/rdext-merge.service' "$WORK/lsinitrd-$kind.txt" ||
                    die "$kind initrd does not enable rdext-merge.service"
                if [ "$kind" = sysext ]; then
                    grep -q 'systemd-sysext-sysroot.service$' "$WORK/lsinitrd-$kind.txt" ||
                        die "sysext initrd lacks systemd-sysext-sysroot.service (systemd >= 261 guest?)"
                fi
                if [ "$kind" = net ]; then
                    grep -q 'usr/lib/systemd/systemd-networkd$' "$WORK/lsinitrd-$kind.txt" ||
                        die "net initrd lacks systemd-networkd (is dracut-network in the guest?)"
                fi
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

# ---- Download scenarios (first boot downloads in the initrd) ----
# The guest reaches the host's HTTP server only as 10.0.2.2:$DL_GUEST_PORT:
# QEMU's user network runs with restrict=on (nothing is routed out of it) and
# a guestfwd rule that hands each connection to 10.0.2.2:$DL_GUEST_PORT to
# net/guestfwd.py, which connects to the server on 127.0.0.1. (QEMU refuses a
# guestfwd on its host alias, so that alias and the DNS address are moved to
# 10.0.2.254 and 10.0.2.253, which the guest does not use.)
DL_NAME=rdext-dl
DL_GUEST_PORT=8080
HTTP_PID=""
HTTP_PORT=""

# build_download_fixtures: $WORK/srv/ext/ with two versions of the $DL_NAME
# sysext (a unit enabled inside it that records which version ran),
# SHA256SUMS and its detached signature by a throwaway key;
# $WORK/dl-pubring.gpg, the public key for the guest's import-pubring.gpg.
build_download_fixtures() {
    local src="$WORK/ext-src/$DL_NAME" srv="$WORK/srv/ext" v gh="$WORK/gnupg"
    rm -rf "$src" "$WORK/srv" "$gh"
    mkdir -p "$srv"
    for v in 1.0 1.1; do
        rm -rf "$src"
        mkdir -p "$src/usr/lib/systemd/system/multi-user.target.wants" "$src/usr/lib/$DL_NAME"
        echo "$v" >"$src/usr/lib/$DL_NAME/version"
        cat >"$src/usr/lib/systemd/system/$DL_NAME.service" <<EOU
[Unit]
Description=rdext test: unit shipped in a sysext downloaded in the initrd

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'v=\$\$(cat /usr/lib/$DL_NAME/version); echo "\$\$v" >/run/$DL_NAME.ran; echo "RDEXT-DL $DL_NAME.service \$\$v ran" >/dev/console'

[Install]
WantedBy=multi-user.target
EOU
        ln -s "../$DL_NAME.service" "$src/usr/lib/systemd/system/multi-user.target.wants/$DL_NAME.service"
        release "$src/usr/lib/extension-release.d/extension-release.$DL_NAME" ID=debian VERSION_ID=13
        mksquashfs "$src" "$srv/${DL_NAME}_$v.raw" -all-root -noappend -quiet >/dev/null
    done
    (cd "$srv" && sha256sum -- *.raw >SHA256SUMS)
    mkdir -m 0700 "$gh"
    GNUPGHOME="$gh" gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key "rdext QEMU test <rdext-test@invalid>" ed25519 sign never 2>/dev/null ||
        die "gpg key generation failed"
    GNUPGHOME="$gh" gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --detach-sign --output "$srv/SHA256SUMS.gpg" "$srv/SHA256SUMS" || die "gpg signing failed"
    # An image pulled with rdext.pull= over HTTP, next to its own signed SHA256SUMS.
    dl_sysext "$WORK/srv/pull/rdext-pull.raw" rdext-pull 1
    (cd "$WORK/srv/pull" && sha256sum -- *.raw >SHA256SUMS)
    GNUPGHOME="$gh" gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --detach-sign --output "$WORK/srv/pull/SHA256SUMS.gpg" "$WORK/srv/pull/SHA256SUMS" || die "gpg signing failed"
    GNUPGHOME="$gh" gpg --batch --quiet --export >"$WORK/dl-pubring.gpg"
    gpgconf --homedir "$gh" --kill all 2>/dev/null || true
    rm -rf "$gh"
    [ -s "$WORK/dl-pubring.gpg" ] || die "no exported public key"
}

# dl_sysext OUT NAME VERSION [health]: a squashfs sysext NAME whose unit NAME.service records
# VERSION in /run/NAME.ran at boot; with "health", also a unit required by
# boot-complete.target that fails (a version whose boot is not good).
dl_sysext() {
    local out=$1 name=$2 v=$3 src="$WORK/ext-src/$2-$3" u
    rm -rf "$src"
    mkdir -p "$src/usr/lib/systemd/system/multi-user.target.wants" "$src/usr/lib/$name" "$(dirname "$out")"
    echo "$v" >"$src/usr/lib/$name/version"
    cat >"$src/usr/lib/systemd/system/$name.service" <<EOU
[Unit]
Description=rdext test: unit of the $name sysext

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo $v >/run/$name.ran; echo "RDEXT-DL $name.service $v ran" >/dev/console'
EOU
    ln -s "../$name.service" "$src/usr/lib/systemd/system/multi-user.target.wants/$name.service"
    if [ "${4:-}" = health ]; then
        u="$src/usr/lib/systemd/system"
        mkdir -p "$u/boot-complete.target.requires"
        cat >"$u/$name-health.service" <<EOU
[Unit]
Description=rdext test: health check of $name $v (fails)
Before=boot-complete.target

[Service]
Type=oneshot
ExecStart=/bin/false
EOU
        ln -s "../$name-health.service" "$u/boot-complete.target.requires/$name-health.service"
    fi
    release "$src/usr/lib/extension-release.d/extension-release.$name" ID=debian VERSION_ID=13
    mksquashfs "$src" "$out" -all-root -noappend -quiet >/dev/null
}

# ---- OCI pulls: the real CNCF registry on 127.0.0.1, images pushed by oras ----
REG_GUEST_PORT=5000
REG_PID=""
REG_PORT=""

# start_registry: docker-registry with its storage in $WORK/registry (kept across restarts).
start_registry() {
    local i
    REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$WORK/registry/storage"
    cat >"$WORK/registry/config.yml" <<EOC
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: 127.0.0.1:$REG_PORT
EOC
    docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry.log" 2>&1 &
    REG_PID=$!
    for i in $(seq 100); do
        curl -fs "http://127.0.0.1:$REG_PORT/v2/" >/dev/null && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$REG_PORT/v2/" >/dev/null || die "registry did not start: $(cat "$WORK/registry.log")"
    log "registry on 127.0.0.1:$REG_PORT (pid $REG_PID), guest URL oci+http://10.0.2.2:$REG_GUEST_PORT"
}

stop_registry() {
    [ -n "$REG_PID" ] || return 0
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
}

# push_oci NAME: push $WORK/oci/NAME.raw as fleet/NAME:1 with oras; prints the manifest digest.
push_oci() {
    (cd "$WORK/oci" && "$ORAS" push --plain-http --artifact-type application/vnd.kairos.sysext.raw \
        "127.0.0.1:$REG_PORT/fleet/$1:1" "$1.raw") | awk '/^Digest:/ { print $2 }'
}

# blob_file DIGEST: the registry's storage file of a blob.
blob_file() {
    local h=${1#sha256:}
    echo "$WORK/registry/storage/docker/registry/v2/blobs/sha256/${h:0:2}/$h/data"
}

# build_oci_fixtures: three artifacts in the registry: rdext-oci (good), rdext-bad (its layer
# blob corrupted in the storage: the registry serves bytes that are not the digest) and
# rdext-gone (its layer blob deleted). Digests in $WORK/oci/NAME.digest.
build_oci_fixtures() {
    local n layer
    ORAS=$("$TESTS_QEMU_DIR/get-oras.sh") || die "no oras"
    mkdir -p "$WORK/oci"
    start_registry
    for n in rdext-oci rdext-bad rdext-gone; do
        dl_sysext "$WORK/oci/$n.raw" "$n" 1
        push_oci "$n" >"$WORK/oci/$n.digest"
        [ -s "$WORK/oci/$n.digest" ] || die "oras push of $n gave no digest"
    done
    layer=$(jq -r '.layers[0].digest' "$(blob_file "$(cat "$WORK/oci/rdext-bad.digest")")")
    printf 'corrupted' | dd of="$(blob_file "$layer")" bs=1 seek=100 conv=notrunc status=none
    layer=$(jq -r '.layers[0].digest' "$(blob_file "$(cat "$WORK/oci/rdext-gone.digest")")")
    rm -f "$(blob_file "$layer")"
}

# make_download_disk: $WORK/dl-disk.img, the rootfs as it is now (call
# before build_extensions: no extension installed) plus a sysupdate transfer
# for $DL_NAME pointing at the host server, the signing key, an empty
# /etc/machine-id (first boot) and an empty /var/lib/extensions.d. There is
# no /etc/extensions: the download creates what CurrentSymlink= needs.
make_download_disk() {
    local root="$WORK/rootfs" t0 saved_mid
    t0=$(date +%s)
    [ ! -e "$root/etc/extensions" ] || die "make_download_disk must run before build_extensions"
    saved_mid=$(cat "$root/etc/machine-id")
    mkdir -p "$root/etc/sysupdate.d" "$root/var/lib/extensions.d" "$root/etc/rdext-test"
    cat >"$root/etc/sysupdate.d/50-$DL_NAME.transfer" <<EOT
[Transfer]
Verify=yes

[Source]
Type=url-file
Path=http://10.0.2.2:$DL_GUEST_PORT/ext
MatchPattern=${DL_NAME}_@v.raw

[Target]
Type=regular-file
Path=/var/lib/extensions.d
MatchPattern=${DL_NAME}_@v.raw
CurrentSymlink=/etc/extensions/$DL_NAME.raw
EOT
    install -m 0644 "$WORK/dl-pubring.gpg" "$root/etc/systemd/import-pubring.gpg"
    : >"$root/etc/machine-id"
    # Boot counting: rdext-bc's new version 2 (1 try) fails boot-complete.target,
    # rdext-bg's new version 2 (3 tries) is good.
    dl_sysext "$root/var/lib/extensions/rdext-bc.raw.v/rdext-bc_1.raw" rdext-bc 1
    dl_sysext "$root/var/lib/extensions/rdext-bc.raw.v/rdext-bc_2+1.raw" rdext-bc 2 health
    dl_sysext "$root/var/lib/extensions/rdext-bg.raw.v/rdext-bg_1.raw" rdext-bg 1
    dl_sysext "$root/var/lib/extensions/rdext-bg.raw.v/rdext-bg_2+3.raw" rdext-bg 2
    # rdext-check: no unmerge/re-merge after boot (it would download again).
    : >"$root/etc/rdext-test/skip-remerge"
    rm -f "$WORK/dl-disk.img"
    mkfs.ext4 -q -F -L rdext-root -d "$root" "$WORK/dl-disk.img" 3G >/dev/null ||
        die "mkfs.ext4 failed"
    rm -rf "$root/etc/sysupdate.d" "$root/var/lib/extensions.d" "$root/etc/rdext-test" \
           "$root/etc/systemd/import-pubring.gpg" "$root/var/lib/extensions/rdext-bc.raw.v" \
           "$root/var/lib/extensions/rdext-bg.raw.v"
    echo "$saved_mid" >"$root/etc/machine-id"
    log "download disk built in $(( $(date +%s) - t0 )) s"
}

# start_http_server: serves $WORK/srv on 127.0.0.1 (ephemeral port), one
# line per request in $WORK/http.log.
start_http_server() {
    local i
    rm -f "$WORK/http.port"
    : >>"$WORK/http.log"
    python3 "$TESTS_QEMU_DIR/net/httpd.py" "$WORK/srv" "$WORK/http.port" "$WORK/http.log" \
        >"$WORK/httpd.stderr" 2>&1 &
    HTTP_PID=$!
    for i in $(seq 50); do
        [ -s "$WORK/http.port" ] && break
        sleep 0.1
    done
    [ -s "$WORK/http.port" ] || die "HTTP server did not start: $(cat "$WORK/httpd.stderr")"
    HTTP_PORT=$(cat "$WORK/http.port")
    log "HTTP server on 127.0.0.1:$HTTP_PORT (pid $HTTP_PID), guest URL http://10.0.2.2:$DL_GUEST_PORT/ext"
}

stop_http_server() {
    [ -n "$HTTP_PID" ] || return 0
    kill "$HTTP_PID" 2>/dev/null || true
    wait "$HTTP_PID" 2>/dev/null || true
    HTTP_PID=""
}

# dl_netdev: the -netdev value for the download boots. The port behind
# 10.0.2.2 is the last server's (closed when it is stopped: the guest then
# sees every connection refused by the forwarder).
dl_netdev() {
    local py
    py=$(command -v python3)
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    echo "user,id=n0,restrict=on,host=10.0.2.254,dns=10.0.2.253,guestfwd=tcp:10.0.2.2:$DL_GUEST_PORT-cmd:$py $TESTS_QEMU_DIR/net/guestfwd.py ${HTTP_PORT:-9},guestfwd=tcp:10.0.2.2:$REG_GUEST_PORT-cmd:$py $TESTS_QEMU_DIR/net/guestfwd.py ${REG_PORT:-9}"
}

make_disk() {
    local t0
    t0=$(date +%s)
    rm -f "$WORK/disk.img"
    mkfs.ext4 -q -F -L rdext-root -d "$WORK/rootfs" "$WORK/disk.img" 3G >/dev/null ||
        die "mkfs.ext4 failed"
    log "disk image built in $(( $(date +%s) - t0 )) s"
}

# make_split_var_disks: $WORK/root-novar.img and $WORK/var.img, the rootfs
# with /var on a disk of its own (ext4, label $VAR_LABEL), mounted by an
# ordinary line of the root's fstab (not x-initrd.mount), fsck pass 2.
make_split_var_disks() {
    local root="$WORK/rootfs" t0 rc=0
    t0=$(date +%s)
    rm -f "$WORK/root-novar.img" "$WORK/var.img"
    mv "$root/var" "$WORK/var-tree"
    mkdir -m 0755 "$root/var"
    cp "$root/etc/fstab" "$WORK/fstab.saved"
    printf 'LABEL=%s /var ext4 defaults 0 2\n' "$VAR_LABEL" >>"$root/etc/fstab"
    mkfs.ext4 -q -F -L rdext-root -d "$root" "$WORK/root-novar.img" 3G >/dev/null || rc=1
    mkfs.ext4 -q -F -L "$VAR_LABEL" -d "$WORK/var-tree" "$WORK/var.img" 1G >/dev/null || rc=1
    rmdir "$root/var"
    mv "$WORK/var-tree" "$root/var"
    mv "$WORK/fstab.saved" "$root/etc/fstab"
    [ "$rc" = 0 ] || die "mkfs.ext4 failed"
    log "root and /var disks built in $(( $(date +%s) - t0 )) s"
}

# boot_vm NAME INITRD EXTRA_CMDLINE DISK [NETDEV] [tee]: one QEMU run on DISK
# (booted in place) under the hard time limit $BOOT_LIMIT (default
# $BOOT_TIMEOUT). NETDEV: the -netdev value of a virtio NIC, none if empty.
# With BOOT_VAR_DISK set, that disk is the second virtio disk (/var) and
# holds the results file. With BOOT_QEMU_PIDFILE set, QEMU's pid is written there.
# Leaves $WORK/NAME.serial.log, NAME.seconds and NAME.results (the guest's
# results file, empty if there is none); sets BOOT_RC to QEMU's exit status
# (124/137: timed out).
boot_vm() {
    local name=$1 initrd=$2 extra=$3 disk=$4 net=${5:-} show=${6:-} t0 t1 limit=${BOOT_LIMIT:-$BOOT_TIMEOUT}
    local qemu=(qemu-system-x86_64 -accel tcg -smp 2 -m 1536 -nodefaults -display none -serial stdio
                -no-reboot -kernel "$GUEST/vmlinuz" -initrd "$initrd"
                -drive "file=$disk,format=raw,if=virtio" -append "$BASE_CMDLINE $extra")
    [ -n "${BOOT_VAR_DISK:-}" ] && qemu+=(-drive "file=$BOOT_VAR_DISK,format=raw,if=virtio")
    # BOOT_QEMU_PIDFILE: QEMU writes its pid there (faults.sh cuts its power).
    [ -n "${BOOT_QEMU_PIDFILE:-}" ] && qemu+=(-pidfile "$BOOT_QEMU_PIDFILE")
    [ -n "$net" ] && qemu+=(-netdev "$net" -device "virtio-net-pci,netdev=n0")
    rm -f "$WORK/$name.results"
    log "boot '$name': $(basename "$initrd") ${extra:+($extra) }time limit ${limit}s"
    t0=$(date +%s)
    set +e
    if [ -n "$show" ]; then
        timeout --foreground -k 10 "$limit" "${qemu[@]}" </dev/null 2>&1 | tee "$WORK/$name.serial.log"
        BOOT_RC=${PIPESTATUS[0]}
    else
        timeout -k 10 "$limit" "${qemu[@]}" </dev/null >"$WORK/$name.serial.log" 2>&1
        BOOT_RC=$?
    fi
    set -e
    t1=$(date +%s)
    echo "$(( t1 - t0 ))" >"$WORK/$name.seconds"
    if [ -n "${BOOT_VAR_DISK:-}" ]; then
        debugfs -R "cat /lib/rdext-test/results.txt" "$BOOT_VAR_DISK" >"$WORK/$name.results" 2>/dev/null || true
    else
        debugfs -R "cat /var/lib/rdext-test/results.txt" "$disk" >"$WORK/$name.results" 2>/dev/null || true
    fi
}

# boot NAME INITRD EXTRA_CMDLINE [tee]: boots a copy of disk.img (or, with
# BOOT_DISK set, that disk in place, and BOOT_NET as its NIC); leaves
# $WORK/NAME.serial.log and $WORK/NAME.results. Returns non-zero when the boot
# did not power off by itself in time or produced no results file.
boot() {
    local name=$1 initrd=$2 extra=$3 show=${4:-} disk=${BOOT_DISK:-} try
    for try in 1 2; do
        if [ -z "${BOOT_DISK:-}" ]; then
            disk="$WORK/$name.img"
            cp --sparse=always "$WORK/disk.img" "$disk"
        fi
        boot_vm "$name" "$initrd" "$extra" "$disk" "${BOOT_NET:-}" "$show"
        [ -n "${BOOT_DISK:-}" ] || rm -f "$disk"
        # TCG on a starved host now and then oopses the guest kernel while it
        # patches its own code, before any initramfs code runs (nothing of
        # rdext's, nothing on the disk touched): boot once more. An oops after
        # /init started is never retried.
        if [ "$try" = 1 ] && ! grep -q 'Run /init as init process' "$WORK/$name.serial.log" &&
            grep -qE 'Kernel panic|Oops:' "$WORK/$name.serial.log"; then
            log "boot '$name': guest kernel died before the initramfs ran ($(grep -m1 -E 'Oops:|Kernel panic' "$WORK/$name.serial.log")); booting once more"
            continue
        fi
        break
    done
    local secs
    secs=$(cat "$WORK/$name.seconds")
    if [ "$BOOT_RC" = 124 ] || [ "$BOOT_RC" = 137 ]; then
        log "boot '$name' TIMED OUT after $secs s; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    if [ "$BOOT_RC" != 0 ]; then
        log "boot '$name': qemu exited with $BOOT_RC after $secs s; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    if ! grep -q '^check_done=1' "$WORK/$name.results"; then
        log "boot '$name' powered off after $secs s without a complete results file; console log tail:"
        tail -n 60 "$WORK/$name.serial.log" >&2
        return 1
    fi
    log "boot '$name' done in $secs s"
}

# res NAME KEY: value of KEY in boot NAME's results.
res() {
    sed -n "s/^$2=//p" "$WORK/$1.results" 2>/dev/null | head -n1
}
