# dm-verity scenarios, sourced by the fastboot /init (busybox sh) in
# /payload. Each prints "RESULT name PASS|FAIL: detail"; run.sh checks them.
# Images carry ID=_any; good.crt is trusted by the initrd (its
# /etc/verity.d), and each scenario gets a fresh root.
mkdir -p /etc/verity.d
cp certs/good.crt /etc/verity.d/

result() { echo "RESULT $1 $2${3:+: $3}"; }
check() { # name condition-command detail
    if eval "$2"; then result "$1" PASS "$3"; else result "$1" FAIL "$3"; fi
}

# fresh NAME POLICY IMAGE...: a root with the images, merged with the
# policy; leaves $R, $R.err and $R.rc. The certificates named in
# $OS_CERTS go to the root's usr/lib/verity.d (shipped with its /usr),
# those in $ETC_CERTS to its writable etc/verity.d and run/verity.d.
fresh() {
    name=$1 policy=$2; shift 2
    R=/sysroot-$name
    mkdir -p "$R/etc/verity.d" "$R/run/verity.d" "$R/usr/lib/verity.d" "$R/usr/bin" \
        "$R/var/lib/extensions" "/run/$name"
    echo 'ID=debian' >"$R/etc/os-release"
    echo base >"$R/usr/bin/base"
    for c in ${OS_CERTS:-}; do cp "certs/$c.crt" "$R/usr/lib/verity.d/"; done
    for c in ${ETC_CERTS:-}; do cp "certs/$c.crt" "$R/etc/verity.d/" && cp "certs/$c.crt" "$R/run/verity.d/"; done
    for img in "$@"; do cp images/"$img".* "$R/var/lib/extensions/"; done
    echo "$(cat /proc/cmdline) $policy" >"/run/$name.cmdline"
    rdext merge --root "$R" --run-dir "/run/$name" --cmdline "/run/$name.cmdline" >"$R.out" 2>"$R.err"
    echo $? >"$R.rc"
    sed "s/^/  [$name] /" "$R.err"
}
merged() { grep -qx "$2" "$1/usr/.systemd-sysext/extensions" 2>/dev/null; }
skipped() { grep -q "skipping sysext /var/lib/extensions/$1.*$2" "$R.err"; }
dm_count() { ls /sys/block | grep -c '^dm-' || true; }
# Unmounting is lazy and dm removal deferred: both finish asynchronously.
dm_settle() { i=0; while [ "$(dm_count)" != 0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; }
unmerge() { rdext unmerge --root "$1" --run-dir "/run/$2" 2>/dev/null; }

# Second boot, with dm_verity.require_signatures=1: the kernel must see
# every signature; it does not trust the test key, so even an image that
# verity.d accepts is refused, by the kernel.
if grep -q dm_verity.require_signatures=1 /proc/cmdline; then
    fresh kernel_required rdext.policy=signed signedsc
    check kernel_signature_check_used "skipped signedsc 'kernel keyring refused' && ! merged $R signedsc" \
        "$(grep -o 'signedsc.raw: .*' "$R.err")"
    return 0
fi

fresh make_ddi rdext.policy=signed makeddi
check make_ddi_merged "merged $R makeddi && grep -q 'hello from makeddi' $R/usr/share/makeddi/hello" \
    "$(grep 'using' "$R.err" | sed 's/.*(//; s/)//')"
unmerge "$R" make_ddi

fresh signed_ddi rdext.policy=signed signedddi
check signed_ddi_merged "merged $R signedddi && grep -q 'hello from signedddi' $R/usr/share/signedddi/hello" \
    "$(grep 'using' "$R.err" | sed 's/.*(//; s/)//')"
dm_names=$(cat /sys/block/dm-*/dm/name 2>/dev/null | tr '\n' ' ')
check signed_ddi_on_dm_verity "[ \$(dm_count) = 1 ] && echo '$dm_names' | grep -q '^rdext-[0-9a-f]\{64\} \$'" "$dm_names"
unmerge "$R" signed_ddi
dm_settle
check devices_gone_after_unmerge "[ \$(dm_count) = 0 ]" "dm devices left: $(dm_count)"

fresh signed_sidecar rdext.policy=signed signedsc
check signed_sidecar_merged "merged $R signedsc && grep -q 'hello from signedsc' $R/usr/share/signedsc/hello"
# The same root hash merged into a second root reuses the verity device.
first_dm=$(dm_count)
fresh signed_sidecar_again rdext.policy=signed signedsc
check verity_device_reused "merged $R signedsc && [ \$(dm_count) = $first_dm ] && [ $first_dm = 1 ]" "dm devices: $(dm_count)"
unmerge /sysroot-signed_sidecar signed_sidecar
unmerge /sysroot-signed_sidecar_again signed_sidecar_again
dm_settle
check reused_device_gone_after_both_unmerged "[ \$(dm_count) = 0 ]" "dm devices left: $(dm_count)"

fresh unsigned_under_signed rdext.policy=signed unsignedddi plain
check unsigned_refused_under_signed "skipped unsignedddi 'policy' && skipped plain 'policy' && ! merged $R unsignedddi" \
    "$(grep -o 'unsignedddi.raw: .*' "$R.err")"
fresh unsigned_under_verity rdext.policy=verity unsignedddi plain
check verity_accepts_unsigned_ddi "merged $R unsignedddi && grep -q 'hello from unsignedddi' $R/usr/share/unsignedddi/hello"
check verity_refuses_unprotected "skipped plain 'unprotected' && ! merged $R plain"
unmerge "$R" unsigned_under_verity
fresh any_policy rdext.policy=any unsignedddi plain signedddi
check any_accepts_all "merged $R unsignedddi && merged $R plain && merged $R signedddi"
unmerge "$R" any_policy

fresh wrong_hash "" wronghash
check wrong_root_hash_refused "skipped wronghash 'root hash mismatch: the hash tree' && ! merged $R wronghash" \
    "$(grep -o 'wronghash.raw: .*' "$R.err")"
fresh bad_signature rdext.policy=signed badsig
check bad_signature_refused "skipped badsig 'signature check failed' && ! merged $R badsig" "$(grep -o 'badsig.raw: .*' "$R.err")"
# Better than systemd's default (kairos#4425): a signature that fails is
# never downgraded to plain verity.
fresh bad_signature_default "" badsig
check bad_signature_refused_by_default "skipped badsig 'signature check failed'" "$(grep -o 'badsig.raw: .*' "$R.err")"
fresh untrusted rdext.policy=signed untrusted
check untrusted_signer_refused "skipped untrusted 'not in verity.d; the kernel keyring refused it' && ! merged $R untrusted" \
    "$(grep -o 'untrusted.raw: .*' "$R.err")"
OS_CERTS=expired fresh expired rdext.policy=signed expired
check expired_signer_refused "skipped expired 'expired' && ! merged $R expired" "$(grep -o 'expired.raw: .*' "$R.err")"

# Trust anchors: the root's writable etc/ and run/ verity.d do not count
# in the initrd, its usr/lib/verity.d does (the opt-in for etc/ is tested
# on the host, tests/trust.rs).
ETC_CERTS=other fresh planted_cert rdext.policy=signed untrusted signedsc
check planted_root_cert_refused "skipped untrusted 'not in verity.d; the kernel keyring refused it' && ! merged $R untrusted" \
    "$(grep -o 'untrusted.raw: .*' "$R.err")"
check initrd_cert_merged "merged $R signedsc && grep -q 'hello from signedsc' $R/usr/share/signedsc/hello"
unmerge "$R" planted_cert
OS_CERTS=other fresh os_cert rdext.policy=signed untrusted
check os_image_cert_merged "merged $R untrusted" "$(grep 'using' "$R.err" | sed 's/.*(//; s/)//')"
unmerge "$R" os_cert
dm_settle

fresh flipped rdext.policy=signed flipped
# The flipped block is file data: the image merges, and reading that block
# must fail with EIO from dm-verity, which logs the corruption.
if merged "$R" flipped; then
    if cat "$R/usr/share/flipped/payload" >/dev/null 2>/run/flipped.read; then
        result flipped_block_never_served FAIL "corrupted data was read without error"
    else
        corrupted=$(dmesg | grep -m1 -o 'device-mapper: verity: .*data block [0-9]* is corrupted' || true)
        check flipped_block_never_served "grep -q 'Input/output error' /run/flipped.read && [ -n '$corrupted' ]" \
            "read failed: $(cat /run/flipped.read); $corrupted"
    fi
    unmerge "$R" flipped
else
    result flipped_block_never_served FAIL "not merged: $(grep -o 'flipped.raw: .*' "$R.err")"
fi

fresh required rdext.policy=signed\ rdext.required=unsignedddi unsignedddi
check required_missing_exit_3 "[ \$(cat $R.rc) = 3 ] && grep -q 'required extension not merged: unsignedddi' $R.err" "rc=$(cat "$R.rc")"

rdext verify --cmdline /run/signed_ddi.cmdline --verity-dir certs images/signedddi.raw >/run/verify.out 2>&1
check verify_command "grep -q 'verdict:    accepted: signed by CN=rdext-test-signer' /run/verify.out && grep -q 'partition:  root-verity-sig' /run/verify.out" \
    "$(grep verdict /run/verify.out)"

# Setup cost: rdext's own timing line for 1 small, 1 large (64 MiB) and 20 signed images.
timing() {
    label=$1; shift
    fresh "timing_$label" rdext.policy=signed "$@"
    echo "TIMING $label $(grep -o 'merged [0-9]* sysext, [0-9]* confext in [0-9]* ms' "$R.err")"
    unmerge "$R" "timing_$label"
}
timing one_small signedsc
timing one_large_64MiB large
timing twenty_small $(cd images && ls many*.raw | sed 's/\.raw$//')
