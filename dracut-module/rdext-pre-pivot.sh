#!/bin/sh
# pre-pivot hook of the dracut module "rdext" for initrds without systemd:
# merge the real root's extensions into $NEWROOT before switch_root.
# rdext itself honours rdext=0, systemd.sysext=0 and systemd.confext=0.

# shellcheck source=/dev/null
type getargbool >/dev/null 2>&1 || . /lib/dracut-lib.sh

# rdext.required: every extension must merge, else stop the boot.
strict=""
getargbool 0 rdext.required && strict=--strict

if ! /usr/bin/rdext merge --root "${NEWROOT:-/sysroot}" $strict; then
    if [ -n "$strict" ]; then
        die "rdext: merging extensions into ${NEWROOT:-/sysroot} failed and rdext.required is set"
    fi
    warn "rdext: merging extensions into ${NEWROOT:-/sysroot} failed; booting without them"
fi
