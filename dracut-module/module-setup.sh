#!/bin/bash
# dracut module "rdext": merge systemd-sysext/confext extensions of the real
# root into /sysroot before switch-root. See docs/initrd.md.
# shellcheck disable=SC2154 # moddir, initdir, systemd*dir, SYSTEMCTL come from dracut

# Only when asked for (dracut --add rdext, or add_dracutmodules+=" rdext ").
check() {
    require_binaries rdext || return 1
    return 255
}

depends() {
    return 0
}

installkernel() {
    # What the merge needs: loop devices, the image file systems, overlayfs,
    # and (for verity-protected images) device-mapper. Installed even for
    # host-only images, since the extensions are not known at build time.
    hostonly='' instmods loop overlay squashfs erofs dm-mod dm-verity
}

# The rdext binary for this initrd: the merge-only build (no downloads, no
# TLS; about half the size) unless the initrd can download, that is
# when it has a network module. rdext_download="yes"|"no" in dracut's
# configuration decides instead.
rdext_binary() {
    local merge_only m
    merge_only=$(command -v rdext-merge-only) || { command -v rdext; return; }
    case ${rdext_download:-} in
        yes) command -v rdext; return ;;
        no) echo "$merge_only"; return ;;
    esac
    for m in network network-legacy network-manager systemd-networkd connman; do
        if dracut_module_included "$m"; then
            command -v rdext
            return
        fi
    done
    echo "$merge_only"
}

install() {
    local bin
    bin=$(rdext_binary)
    inst_binary "$bin" /usr/bin/rdext
    # HTTPS trust for downloads when the target root has no CA bundle (rdext
    # has no built-in root store).
    if [ "$bin" = "$(command -v rdext)" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        inst_simple /etc/ssl/certs/ca-certificates.crt
    fi
    # rdext (like systemd) knows it runs in an initrd by /etc/initrd-release.
    # dracut adds that link only with systemd; a shell initrd has only
    # /usr/lib/initrd-release (written later by the base module).
    [ -e "$initdir/etc/initrd-release" ] || [ -L "$initdir/etc/initrd-release" ] ||
        ln -s ../usr/lib/initrd-release "$initdir/etc/initrd-release"
    # For rdext's module handling (depmod data of merged kernel modules).
    inst_multiple -o modprobe depmod
    # The initrd's own settings and signing certificates: in the initrd
    # only these (and the OS image's /usr) decide what is trusted.
    inst_multiple -o /etc/rdext.conf
    for crt in /etc/verity.d/*.crt; do
        [ -f "$crt" ] && inst_simple "$crt"
    done

    if dracut_module_included "systemd"; then
        inst_simple "$moddir/rdext-merge.service" "$systemdsystemunitdir/rdext-merge.service"
        inst_script "$moddir/rdext-generator" "$systemdutildir/system-generators/rdext-generator"
        $SYSTEMCTL -q --root "$initdir" enable rdext-merge.service
    else
        # Priority 90: after dracut's usrmount hook (50) has mounted /sysroot/usr
        # and the x-initrd.mount file systems of /sysroot/etc/fstab.
        inst_hook pre-pivot 90 "$moddir/rdext-pre-pivot.sh"
    fi
}
