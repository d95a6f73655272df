# shellcheck shell=bash
# Faults in real boots (sourced by tests-qemu/run; docs/hostile-inputs.md,
# "Faults"). Two boots of one disk, the first cut by a power failure:
#   fault-cut     first boot, rdext.download=update: the initrd downloads
#                 rdext-big 2 ($FAULT_BIG_MIB MiB, the server throttled to
#                 $FAULT_RATE_MIB MiB/s) while version 1 is installed; QEMU is
#                 SIGKILLed once the server has sent $FAULT_CUT_MIB MiB of it
#   fault-resume  the same disk, a normal boot: rdext-big 2 resumes with a
#                 Range request and is merged; five more components meet the
#                 other faults, each with a good version 1 installed that must
#                 stay merged: "endless" (a body without end), "full" (an
#                 honest image larger than the space left on the root file
#                 system, which holds /var; refused before a byte is written),
#                 "hugehdr" (1 MiB of headers),
#                 "long" and "short" (Content-Length twice / half the body).
# Each component is a sysupdate.NAME.d/ of its own: a failed one keeps what
# is installed without holding the others back.

FAULT_BIG_MIB=64
FAULT_FULL_MIB=160     # more than is free even when rdext-big 2 is not installed
FAULT_FREE_MIB=128     # left free on the root file system when the disk is made
FAULT_RATE_MIB=2
FAULT_CUT_MIB=24
FAULT_NAMES="big endless full hugehdr long short"
# The guest writes dirty pages back after 1 s instead of 30 s, so that a cut
# after seconds, not half a minute, leaves part of the download on the disk.
FAULT_CMDLINE="sysctl.vm.dirty_expire_centisecs=100 sysctl.vm.dirty_writeback_centisecs=100 rdext.download=update"

# make_fault_disk: $WORK/fault-disk.img (the rootfs as it is now; call before
# build_extensions) with rdext-NAME_1 of every fault component installed and
# linked from /etc/extensions, its transfer, the signing key, an empty
# machine-id, and $FAULT_FREE_MIB MiB free; $WORK/srv/faults/NAME/ with
# versions 1 and 2 and a signed SHA256SUMS; the guest's checks in
# /etc/rdext-test/check.d/faults.sh.
make_fault_disk() {
    local root="$WORK/rootfs" srv="$WORK/srv/faults" gh="$WORK/fault-gnupg" n t0 saved_mid free bs
    t0=$(date +%s)
    [ ! -e "$root/etc/extensions" ] || die "make_fault_disk must run before build_extensions"
    rm -rf "$srv" "$gh"
    mkdir -p "$srv" "$root/var/lib/extensions.d" "$root/etc/extensions" "$root/etc/rdext-test/check.d"
    mkdir -m 0700 "$gh"
    GNUPGHOME="$gh" gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
        --quick-gen-key "rdext QEMU fault test <rdext-test@invalid>" ed25519 sign never 2>/dev/null ||
        die "gpg key generation failed"
    for n in $FAULT_NAMES; do
        dl_sysext "$srv/$n/rdext-${n}_1.raw" "rdext-$n" 1
        dl_sysext "$srv/$n/rdext-${n}_2.raw" "rdext-$n" 2
        case $n in
            big|full)
                # Incompressible bytes make the image as large as its payload.
                head -c "$(( $([ $n = big ] && echo $FAULT_BIG_MIB || echo $FAULT_FULL_MIB) << 20 ))" /dev/urandom \
                    >"$WORK/ext-src/rdext-$n-2/usr/lib/rdext-$n/payload"
                mksquashfs "$WORK/ext-src/rdext-$n-2" "$srv/$n/rdext-${n}_2.raw" \
                    -all-root -noappend -quiet -noD >/dev/null
                ;;
        esac
        (cd "$srv/$n" && sha256sum -- *.raw >SHA256SUMS)
        GNUPGHOME="$gh" gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
            --detach-sign --output "$srv/$n/SHA256SUMS.gpg" "$srv/$n/SHA256SUMS" || die "gpg signing failed"
        cp "$srv/$n/rdext-${n}_1.raw" "$root/var/lib/extensions.d/"
        ln -s "../../var/lib/extensions.d/rdext-${n}_1.raw" "$root/etc/extensions/rdext-$n.raw"
        mkdir -p "$root/etc/sysupdate.$n.d"
        cat >"$root/etc/sysupdate.$n.d/50-rdext-$n.transfer" <<EOT
[Source]
Type=url-file
Path=http://10.0.2.2:$DL_GUEST_PORT/faults/$n
MatchPattern=rdext-${n}_@v.raw

[Target]
Type=regular-file
Path=/var/lib/extensions.d
MatchPattern=rdext-${n}_@v.raw
CurrentSymlink=/etc/extensions/rdext-$n.raw
EOT
    done
    GNUPGHOME="$gh" gpg --batch --quiet --export >"$root/etc/systemd/import-pubring.gpg"
    gpgconf --homedir "$gh" --kill all 2>/dev/null || true
    rm -rf "$gh"
    fault_guest_check >"$root/etc/rdext-test/check.d/faults.sh"
    : >"$root/etc/rdext-test/skip-remerge"
    saved_mid=$(cat "$root/etc/machine-id")
    : >"$root/etc/machine-id"
    rm -f "$WORK/fault-disk.img"
    # Sized from what the tree needs, then topped up to leave exactly
    # $FAULT_FREE_MIB MiB (in blocks root may use) free.
    mkfs.ext4 -q -F -L rdext-root -d "$root" "$WORK/fault-disk.img" \
        "$(( $(du -sm "$root" | cut -f1) + FAULT_FREE_MIB + 96 ))M" >/dev/null || die "mkfs.ext4 failed"
    rm -rf "$root/etc/sysupdate."*.d "$root/var/lib/extensions.d" "$root/etc/extensions" \
           "$root/etc/rdext-test" "$root/etc/systemd/import-pubring.gpg"
    echo "$saved_mid" >"$root/etc/machine-id"
    bs=$(dumpe2fs -h "$WORK/fault-disk.img" 2>/dev/null | awk -F: '/^Block size/ { print $2 + 0 }')
    free=$(( $(dumpe2fs -h "$WORK/fault-disk.img" 2>/dev/null | awk -F: '/^Free blocks/ { print $2 + 0 }') * bs ))
    [ "$free" -gt $(( (FAULT_FREE_MIB + 8) << 20 )) ] || die "fault disk: only $free bytes free"
    head -c $(( free - (FAULT_FREE_MIB << 20) )) /dev/urandom >"$WORK/fault-filler"
    debugfs -w -R "write $WORK/fault-filler /filler" "$WORK/fault-disk.img" >/dev/null 2>&1 ||
        die "debugfs could not write the filler"
    rm -f "$WORK/fault-filler"
    free=$(( $(dumpe2fs -h "$WORK/fault-disk.img" 2>/dev/null | awk -F: '/^Free blocks/ { print $2 + 0 }') * bs ))
    echo "$free" >"$WORK/fault-free-bytes"
    log "fault disk built in $(( $(date +%s) - t0 )) s, $(( free >> 20 )) MiB free"
}

# fault_guest_check: the facts the booted guest records (sourced by
# rdext-check, with its r() and $rl unset).
fault_guest_check() {
    cat <<'EOC'
rl=$(journalctl -b -t rdext -o cat --no-pager)
r fault_download_line "$(printf '%s\n' "$rl" | grep -E '^downloads: ' | head -n1)"
r fault_resume_line "$(printf '%s\n' "$rl" | grep -E 'resuming at byte' | head -n1)"
r fault_restart_line "$(printf '%s\n' "$rl" | grep -E 'downloading it again from the start' | head -n1)"
r fault_root_free_mib "$(df -m --output=avail / | tail -n1 | tr -d ' ')"
for n in big endless full hugehdr long short; do
    r "fault_${n}_version" "$(cat /run/rdext-$n.ran 2>/dev/null)"
    r "fault_${n}_link" "$(readlink /etc/extensions/rdext-$n.raw)"
    r "fault_${n}_files" "$(ls -A /var/lib/extensions.d | grep -F "rdext-${n}_" | tr '\n' ' ')"
    r "fault_${n}_failure" "$(printf '%s\n' "$rl" | grep -F "download of component $n failed" | head -n1)"
    r "fault_${n}_installed" "$(printf '%s\n' "$rl" | grep -E "^installed .*/rdext-${n}_" | head -n1)"
done
r fault_sysext_list "$(systemd-sysext list --no-legend 2>&1 | awk '{print $1}' | sort | tr '\n' ' ')"
EOC
}

# fault_write FILE...: the lines of $WORK/srv/.faults ("PATH MODE [ARG]").
fault_write() { printf '%s\n' "$@" >"$WORK/srv/.faults"; }

# fault_cut_boot: boots the fault disk and kills QEMU (SIGKILL) once the
# server has sent $FAULT_CUT_MIB MiB of rdext-big 2. Leaves the console log,
# $WORK/fault-cut.sent (bytes the server had sent at the kill) and
# $WORK/fault-cut.killed (1 when the kill came mid-transfer).
fault_cut_boot() {
    local job t0 sent try path="/faults/big/rdext-big_2.raw"
    fault_write "$path throttle $((FAULT_RATE_MIB << 20))"
    echo 0 >"$WORK/fault-cut.killed"
    for try in 1 2; do
        rm -f "$WORK/http.log.progress" "$WORK/fault-cut.pid"
        BOOT_QEMU_PIDFILE="$WORK/fault-cut.pid" \
            boot_vm fault-cut "$WORK/initrd-net.img" "$DL_CMDLINE $FAULT_CMDLINE" "$WORK/fault-disk.img" "$(dl_netdev)" &
        job=$!
        t0=$(date +%s)
        while kill -0 "$job" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "$BOOT_TIMEOUT" ]; do
            sent=$(awk -v p="$path" '$1 == p { print $2 }' "$WORK/http.log.progress" 2>/dev/null || true)
            if [ "${sent:-0}" -ge $((FAULT_CUT_MIB << 20)) ] && [ -s "$WORK/fault-cut.pid" ]; then
                kill -KILL "$(cat "$WORK/fault-cut.pid")"
                echo 1 >"$WORK/fault-cut.killed"
                log "boot 'fault-cut': power cut (QEMU SIGKILLed) after the server sent $sent bytes"
                break
            fi
            sleep 0.2
        done
        wait "$job" 2>/dev/null || true
        # As boot() does: a guest kernel that died before the initramfs ran
        # (a TCG race on a starved host) is booted once more.
        if [ "$try" = 1 ] && ! grep -q 'Run /init as init process' "$WORK/fault-cut.serial.log" &&
            grep -qE 'Kernel panic|Oops:' "$WORK/fault-cut.serial.log"; then
            log "boot 'fault-cut': guest kernel died before the initramfs ran; booting once more"
            continue
        fi
        break
    done
    fault_write
    sleep 1 # the server notices the connection is gone and logs what it sent
}

# fault_cut_leftover: what the cut left of rdext-big 2 on the disk, as the
# next boot's kernel will see it (a copy, its journal replayed), in
# $WORK/fault-cut.leftover: "SIZE MATCHING" (bytes in the partial file, and
# how many of them from the start equal the server's).
fault_cut_leftover() {
    local copy="$WORK/fault-cut-copy.img" part="$WORK/fault-cut.partial" size=0 same=0
    cp --sparse=always "$WORK/fault-disk.img" "$copy"
    e2fsck -E journal_only -y "$copy" >/dev/null 2>&1 || true
    rm -f "$part"
    debugfs -R "dump /var/lib/extensions.d/.#rdextrdext-big_2.raw.partial $part" "$copy" >/dev/null 2>&1 || true
    if [ -f "$part" ]; then
        size=$(stat -c %s "$part")
        same=$( { cmp "$part" "$WORK/srv/faults/big/rdext-big_2.raw" 2>/dev/null || true; } | awk '/differ/ { sub(",", "", $5); print $5 - 1; f = 1 } END { if (!f) print -1 }')
        [ "$same" != -1 ] || same=$size
    fi
    echo "$size $same" >"$WORK/fault-cut.leftover"
    rm -f "$copy" "$part"
}

# fault_boots BOOT: runs one of the fault boots (called from run's boot loop).
fault_boots() {
    [ -n "$HTTP_PID" ] || start_http_server
    http_mark
    case $1 in
        fault-cut)
            fault_cut_boot
            http_slice fault-cut
            fault_cut_leftover
            awk -v p="/faults/big/rdext-big_2.raw" '$1 == "GET" && $2 == p { for (i = 5; i <= NF; i++) if ($i ~ /^sent=/) s = substr($i, 6) } END { print s + 0 }' \
                "$WORK/fault-cut.http" >"$WORK/fault-cut.sent"
            log "boot 'fault-cut' ended after $(cat "$WORK/fault-cut.seconds") s"
            ;;
        fault-resume)
            fault_write "/faults/endless/rdext-endless_2.raw endless" \
                "/faults/hugehdr/rdext-hugehdr_2.raw huge-headers 1024" \
                "/faults/long/rdext-long_2.raw long" "/faults/short/rdext-short_2.raw short"
            BOOT_DISK="$WORK/fault-disk.img" BOOT_NET=$(dl_netdev) \
                boot fault-resume "$WORK/initrd-net.img" "$DL_CMDLINE $FAULT_CMDLINE" ||
                fail_plain boot-fault-resume "boot did not complete"
            fault_write
            http_slice fault-resume
            ;;
    esac
}

# fault_console_clean BOOT: why BOOT's console shows a kernel oops, BUG or
# hung task (empty when it does not).
fault_console_clean() {
    local hit
    hit=$(grep -m1 -E 'Oops:|BUG:|Kernel panic|INFO: task .* blocked|Call Trace' "$WORK/$1.serial.log" || true)
    [ -z "$hit" ] || echo "kernel trouble on the console: $hit"
}

# fault_checks BOOT: the checks of one fault boot (called from run's check loop).
fault_checks() {
    local b=$1 why size sent n lsize
    size=$(stat -c %s "$WORK/srv/faults/big/rdext-big_2.raw")
    case $b in
    fault-cut)
        sent=$(cat "$WORK/fault-cut.sent" 2>/dev/null || echo 0)
        why=""
        [ "$(cat "$WORK/fault-cut.killed" 2>/dev/null)" = 1 ] || why="QEMU was not killed mid-transfer (the boot ended or timed out first)"
        if [ -z "$why" ] && { [ "$sent" -le 0 ] || [ "$sent" -ge "$size" ]; }; then
            why="the server sent $sent of $size bytes"
        fi
        [ -n "$why" ] || grep -qF "downloading http://10.0.2.2:$DL_GUEST_PORT/faults/big/rdext-big_2.raw" "$WORK/$b.serial.log" ||
            why="console lacks the download of rdext-big 2"
        if [ -z "$why" ] && grep -qE 'rdext: (installed |merged [0-9])|RDEXT-RESULT' "$WORK/$b.serial.log"; then
            why="something was installed or merged before the cut: $(grep -m1 -E 'rdext: (installed |merged [0-9])|RDEXT-RESULT' "$WORK/$b.serial.log")"
        fi
        [ -n "$why" ] || why=$(fault_console_clean "$b")
        judge power-cut "$b" "QEMU SIGKILLed mid-download of rdext-big 2 in the initrd ($sent of $size bytes sent), nothing installed or merged" "$why"
        ;;
    fault-resume)
        check power-cut "$b" "the next boot resumed rdext-big 2 with a Range request, verified it and merged it; version 1 kept" \
            check_done eq 1 fault_resume_line contains "faults/big/rdext-big_2.raw: resuming at byte" \
            fault_big_installed contains "rdext-big_2.raw ($size bytes)" fault_big_version eq 2 \
            fault_big_link eq ../../var/lib/extensions.d/rdext-big_2.raw \
            fault_big_files eq "rdext-big_1.raw rdext-big_2.raw " fault_sysext_list contains rdext-big
        grep '^GET /faults/big/rdext-big_2.raw ' "$WORK/$b.http" | head -n1 >"$WORK/$b.big.http" || true
        why=""
        grep -qE '^GET /faults/big/rdext-big_2.raw 206 [0-9]+ range=bytes=[1-9][0-9]*- sent=' "$WORK/$b.big.http" ||
            why="the first request for rdext-big 2 was not a Range answered 206: '$(cat "$WORK/$b.big.http")'"
        judge power-cut "$b" "the server's first request for rdext-big 2 was a Range from where the cut left the file, answered 206" "$why"
        for n in endless full hugehdr long short; do
            set -- fault_${n}_failure contains "download of component $n failed, keeping what is installed: " \
                fault_${n}_version eq 1 fault_${n}_link eq "../../var/lib/extensions.d/rdext-${n}_1.raw" \
                fault_${n}_installed empty fault_sysext_list contains "rdext-$n "
            case $n in
                endless) set -- "$@" fault_${n}_failure contains "No space left on device (os error 28)" ;;
                full) set -- "$@" fault_${n}_failure contains "no space left on device: the server announced" ;;
                hugehdr) set -- "$@" fault_${n}_failure contains "response header is too big" ;;
                short) set -- "$@" fault_${n}_failure contains "does not match the expected" ;;
                long) lsize=$(stat -c %s "$WORK/srv/faults/long/rdext-long_2.raw")
                    set -- "$@" fault_${n}_failure contains "the body ended after $lsize of the $((lsize * 2)) bytes announced" ;;
            esac
            # A broken connection (long) keeps its hidden partial file to
            # resume; every other failure removes it.
            if [ "$n" = long ]; then
                set -- "$@" fault_${n}_files eq ".#rdextrdext-${n}_2.raw.partial rdext-${n}_1.raw "
            else
                set -- "$@" fault_${n}_files eq "rdext-${n}_1.raw "
            fi
            check "fault-$n" "$b" "$(fault_describe "$n"): refused with a one-line reason, version 1 still merged, nothing partial left to merge" "$@"
        done
        why=$(fault_console_clean "$b")
        judge faults "$b" "the boot reached multi-user, no unit failed, no kernel oops or hung task" \
            "${why:-$( [ "$(res "$b" failed_units)" = "" ] && [ "$(res "$b" check_done)" = 1 ] || echo "failed units '$(res "$b" failed_units)', check_done '$(res "$b" check_done)'")}"
        ;;
    esac
}

fault_describe() {
    case $1 in
        endless) echo "a body without end, no Content-Length" ;;
        full) echo "an image larger than the space left on /var" ;;
        hugehdr) echo "1 MiB of response headers" ;;
        long) echo "Content-Length twice the body, then the connection closed" ;;
        short) echo "Content-Length half the body" ;;
    esac
}

fault_timing() {
    local restart
    [ -e "$WORK/fault-cut.seconds" ] || return 0
    restart=$(res fault-resume fault_restart_line)
    echo "fault-cut: power cut after $(cat "$WORK/fault-cut.sent" 2>/dev/null) bytes sent of rdext-big 2, $(cat "$WORK/fault-cut.seconds") s into the boot; on the disk (journal replayed) a partial file of $(cut -d' ' -f1 "$WORK/fault-cut.leftover" 2>/dev/null) bytes, the first $(cut -d' ' -f2 "$WORK/fault-cut.leftover" 2>/dev/null) of them the server's"
    [ -s "$WORK/fault-resume.results" ] || return 0
    echo "fault-resume: $(res fault-resume fault_resume_line); ${restart:+$restart; }$(res fault-resume fault_download_line); root fs $(res fault-resume fault_root_free_mib) MiB free at the check"
}
