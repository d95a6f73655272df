#!/bin/sh
# pre-pivot hook of the dracut module "rdext" for initrds without systemd:
# merge the real root's extensions into $NEWROOT before switch_root.
# rdext itself honours rdext=0, systemd.sysext=0 and systemd.confext=0.

# shellcheck source=/dev/null
type getargbool >/dev/null 2>&1 || . /lib/dracut-lib.sh

# Exit status 3: an extension named by rdext.required is not merged; the
# boot must not go on. Any other failure boots without (some) extensions.
/usr/bin/rdext merge --root "${NEWROOT:-/sysroot}"
case $? in
    0) ;;
    3) die "rdext: a required extension is not merged into ${NEWROOT:-/sysroot}" ;;
    *) warn "rdext: merging extensions into ${NEWROOT:-/sysroot} failed; booting without them" ;;
esac
