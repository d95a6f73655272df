#!/bin/bash
# dm-verity scenarios in the fast QEMU tier: build the images, boot the
# guest kernel with a busybox initramfs that runs scenario.sh, check that
# every expected result is there and passed.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
need_root
here=$(dirname "$0")
payload=$(mktemp -d /tmp/rdext-verity.XXXXXX)
trap 'rm -rf "$payload"' EXIT
guest=$("$here/../build-guest.sh")
"$here/fixtures.sh" "$payload" "$guest/rootfs"
rm -rf "$payload/src"
cp "$here/scenario.sh" "$payload/scenario.sh"
console=$("$here/../fastboot/run.sh" "$payload") || { echo "$console"; exit 1; }
kernel=$("$here/../fastboot/run.sh" "$payload" dm_verity.require_signatures=1) || { echo "$kernel"; exit 1; }
console="$console
$kernel"
echo "$console" | grep -E '^(RESULT|TIMING|  \[)' || true
expected="make_ddi_merged signed_ddi_merged signed_ddi_on_dm_verity devices_gone_after_unmerge signed_sidecar_merged
verity_device_reused reused_device_gone_after_both_unmerged unsigned_refused_under_signed
verity_accepts_unsigned_ddi verity_refuses_unprotected any_accepts_all wrong_root_hash_refused
bad_signature_refused bad_signature_refused_by_default untrusted_signer_refused expired_signer_refused
planted_root_cert_refused initrd_cert_merged os_image_cert_merged
flipped_block_never_served required_missing_exit_3 verify_command kernel_signature_check_used"
failed=0
for name in $expected; do
    line=$(echo "$console" | grep -m1 "^RESULT $name " || true)
    case $line in
        *" PASS"*) ;;
        "") echo "MISSING $name"; failed=1 ;;
        *) failed=1 ;;
    esac
done
# grep reads a here-string: with pipefail, `echo | grep -q` fails when grep
# quits before echo has written the whole console (SIGPIPE).
for t in one_small one_large_64MiB twenty_small; do
    grep -q "^TIMING $t merged" <<<"$console" || { echo "MISSING timing $t"; failed=1; }
done
if [ $failed = 1 ]; then
    echo "$console" | tail -n 60
    die "verity scenarios failed"
fi
log "verity scenarios: all passed"
