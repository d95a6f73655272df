#!/bin/bash
# Regenerate the seed corpus (committed) from real files made by the real
# tools: mksquashfs, mkfs.erofs, mkfs.ext4, sfdisk, veritysetup, openssl,
# gpg (via ../certs), and the host's os-release and depmod output.
set -euo pipefail
cd "$(dirname "$0")"
certs=../certs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sep() { printf '\0\0\0\0'; }
seed() { mkdir -p "$1"; cat >"$1/$2"; }

mkdir -p "$tmp/tree/usr/lib/extension-release.d"
echo 'ID=_any' >"$tmp/tree/usr/lib/extension-release.d/extension-release.x"
mksquashfs "$tmp/tree" "$tmp/x.squashfs" -quiet -no-progress >/dev/null
mkfs.erofs --quiet "$tmp/x.erofs" "$tmp/tree"
mkfs.ext4 -q -F -d "$tmp/tree" "$tmp/x.ext4" 2M >/dev/null
for fs in squashfs erofs ext4; do head -c 8192 "$tmp/x.$fs" | seed probe "$fs"; done

# A GPT image with a root, a verity and a verity-sig partition (x86-64 types).
truncate -s 192K "$tmp/gpt"
sfdisk -q "$tmp/gpt" <<EOT
label: gpt
start=40, size=128, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=root-x86-64
size=64, type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5, name=root-x86-64-verity
size=32, type=41092b05-9fc8-4523-994f-2def0408b176, name=root-x86-64-verity-sig
EOT
seed gpt_ddi gpt <"$tmp/gpt"
head -c 17408 "$tmp/gpt" | seed gpt_ddi gpt-head

head -c $((300 * 4096)) /dev/zero >"$tmp/data"
veritysetup format "$tmp/data" "$tmp/hash" >"$tmp/verity.out"
head -c 512 "$tmp/hash" | seed verity_superblock veritysetup
root=$(cat $certs/signed.roothash)
sig=$(base64 -w0 $certs/signed.roothash.p7s)
printf '{"rootHash":"%s","signature":"%s"}\n' "$root" "$sig" | seed verity_sig repart
{ cat $certs/signed.roothash; sep; cat $certs/signed.roothash.p7s; } | seed sidecar signed
seed pkcs7 signed <$certs/signed.roothash.p7s

{ cat $certs/SHA256SUMS; sep; cat $certs/SHA256SUMS.gpg; sep; cat $certs/pubring.gpg; } | seed openpgp binary
seed openpgp signature <$certs/SHA256SUMS.gpg
seed openpgp keyring <$certs/pubring.gpg
seed manifest sha256sums <$certs/SHA256SUMS
printf '# taken back\nretract ext_1.raw broke networking\nretract ext_0.raw\n' | seed manifest retractions

printf 'bytes 100-199/1000' | seed content_range total
printf 'bytes 0-0/*' | seed content_range unknown

{ printf '[Transfer]\nVerify=true\nFeatures=a\n[Source]\nType=url-file\nPath=https://example.invalid/ext/\nMatchPattern=ext_@v_%%a.raw ext_@v.raw\n[Target]\nType=regular-file\nPath=/var/lib/extensions.d\nMatchPattern=ext_@v.raw\nCurrentSymlink=/var/lib/extensions/ext.raw\nInstancesMax=2\n'
  sep; printf '[Target]\nMode=0444\n'; sep; printf 'ext_@v+@l-@d.raw'; sep; printf 'ext_1.2+3-0.raw'; } | seed sysupdate transfer
{ printf 'BOOT_IMAGE=/vmlinuz root=/dev/vda ro rdext.required=a,b rdext.policy=signed "rdext.image_policy=root=verity" dm_verity.require_signatures=1'
  sep; printf 'required="x, y"\npolicy=any\n# comment\nmirror=http://10.0.2.2:8000\n'; } | seed cmdline real

for p in 'root=verity+signed:usr=signed+absent' '*' '~' '-' 'root=signed+read-only-on+growfs-off:=unused'; do
    printf '%s' "$p" | seed image_policy "$(printf '%s' "$p" | md5sum | cut -c1-8)"
done

# Any kernel's depmod output: the host's, else the QEMU test guest's.
d=${MODULES_DIR:-$( (ls -d /lib/modules/*/ /var/cache/rdext-qemu/guest-*/rootfs/usr/lib/modules/*/ 2>/dev/null || true) | head -n1)}
{ head -n 20 "$d/modules.dep"; sep; head -n 20 "$d/modules.alias"; sep; head -n 10 "$d/modules.softdep"; sep; head -n 10 "$d/modules.symbols"; } | seed modules host

{ printf '1.2.3~rc1'; sep; printf '1.2.3'; sep; printf '1.2.3^git5'; } | seed version tilde
{ printf '253-1'; sep; printf '253.1'; sep; printf '0253a'; } | seed version dash

seed envfile os-release </etc/os-release
printf 'ID=debian\nVERSION_ID="12"\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\nSYSEXT_SCOPE="system initrd"\nEXTENSION_RELOAD_MANAGER=1\n' | seed envfile extension-release
