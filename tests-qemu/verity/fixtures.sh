#!/bin/bash
# Build the signed and unsigned test images for the dm-verity scenarios into
# $1, with the real tools: mksquashfs, veritysetup, openssl and
# systemd-repart (signed DDIs: root + root-verity + root-verity-sig): the
# host's (systemd 252, partition definitions) and, given the guest rootfs as
# $2, the guest's own (systemd 257, --make-ddi=sysext).
set -euo pipefail
out=$1
guest_rootfs=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/images" "$out/certs" "$out/src"
cd "$out"

cert() { # name subject [extra openssl args...]
    local name=$1 subj=$2; shift 2
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "certs/$name.key" -out "certs/$name.crt" \
        -subj "/CN=$subj" -days 3650 "$@" 2>/dev/null
}
cert good rdext-test-signer
cert other rdext-untrusted-signer
# Valid from 2020 to 2021: long expired. OpenSSL 3.0's req cannot backdate;
# ca -selfsign can.
expired_cert() {
    local ca=certs/ca
    mkdir -p "$ca"
    : >"$ca/index.txt"
    echo 01 >"$ca/serial"
    printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s/index.txt\nnew_certs_dir = %s\nserial = %s/serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n' \
        "$ca" "$ca" "$ca" >"$ca/ca.cnf"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out certs/expired.key 2>/dev/null
    openssl req -new -key certs/expired.key -subj /CN=rdext-expired-signer -out "$ca/req.csr"
    openssl ca -batch -config "$ca/ca.cnf" -selfsign -keyfile certs/expired.key -in "$ca/req.csr" \
        -startdate 20200101000000Z -enddate 20210101000000Z -notext -out certs/expired.crt 2>/dev/null
}
expired_cert

tree() { # name [extra file args...]
    local name=$1 d=src/$1
    mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/share/$name"
    printf 'ID=_any\n' >"$d/usr/lib/extension-release.d/extension-release.$name"
    echo "hello from $name" >"$d/usr/share/$name/hello"
}

sign() { # roothash-file key-name out
    openssl smime -sign -nocerts -noattr -binary -in "$1" -inkey "certs/$2.key" \
        -signer "certs/$2.crt" -outform der -out "$3"
}

# A squashfs with verity sidecars: NAME.raw, NAME.verity, NAME.roothash, signed by $2 (or unsigned).
sidecar() { # name signer|- [mksquashfs args...]
    local name=$1 signer=$2; shift 2
    [ -d "src/$name" ] || tree "$name"
    mksquashfs "src/$name" "images/$name.raw" -noappend -quiet -no-progress "$@" >/dev/null
    veritysetup format "images/$name.raw" "images/$name.verity" \
        --root-hash-file "images/$name.roothash" >/dev/null
    [ "$signer" = - ] || sign "images/$name.roothash" "$signer" "images/$name.roothash.p7s"
}

# A DDI made by systemd-repart; signed with the good key unless $2 is "unsigned".
ddi() { # name signed|unsigned
    local name=$1 mode=$2 defs=src/$1.repart
    tree "$name"
    mkdir -p "$defs"
    printf '[Partition]\nType=root\nVerity=data\nVerityMatchKey=root\nFormat=squashfs\nCopyFiles=%s:/usr\n' \
        "$PWD/src/$name/usr" >"$defs/10-root.conf"
    printf '[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n' >"$defs/20-verity.conf"
    local sign_args=()
    if [ "$mode" = signed ]; then
        printf '[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n' >"$defs/30-sig.conf"
        sign_args=(--private-key=certs/good.key --certificate=certs/good.crt)
    fi
    systemd-repart --empty=create --size=auto --dry-run=no --json=off --definitions="$defs" \
        "${sign_args[@]}" "images/$name.raw" >/dev/null 2>&1
}

ddi signedddi signed
ddi unsignedddi unsigned
if [ -n "$guest_rootfs" ]; then
    tree makeddi
    "$here/repart-ddi.sh" "$guest_rootfs" "src/makeddi" certs/good.key certs/good.crt images/makeddi.raw
fi
sidecar signedsc good
sidecar untrusted other
sidecar expired expired
sidecar plain -
rm images/plain.verity images/plain.roothash
# A wrong root hash: the tree no longer matches it.
sidecar wronghash -
printf '%064d\n' 0 | tr 0 a >images/wronghash.roothash
# A signature over another image's root hash.
sidecar badsig -
sign images/signedsc.roothash good images/badsig.roothash.p7s
# A data block flipped after signing: uncompressed so the payload is findable.
tree flipped
head -c 262144 /dev/zero | tr '\0' 'Z' >src/flipped/usr/share/flipped/payload
sidecar flipped good -noI -noD -noF -noX
offset=$( (grep -obUa -m1 ZZZZZZZZZZZZZZZZ images/flipped.raw || true) | head -n1 | cut -d: -f1)
printf 'Y' | dd of=images/flipped.raw bs=1 seek=$((offset + 100000)) conv=notrunc status=none
# For timing: one large signed image and 20 small ones.
tree large
(yes rdext-large-image-payload || true) | head -c $((64 << 20)) >src/large/usr/share/large/payload
sidecar large good -noD
for i in $(seq -w 1 20); do sidecar "many$i" good; done
