#!/bin/bash
# Regenerate the fixed trust material the pkcs7 and openpgp fuzz targets
# check against (the files are committed; run from this directory):
# a signing certificate (valid ten years from 2026-11) and a PKCS#7 signature over a root
# hash, as systemd-repart/mkosi make them, and a GnuPG keyring with a
# detached signature over a SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out signer.crt \
    -subj /CN=rdext-fuzz-signer -days 3650 2>/dev/null
printf '%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >signed.roothash
openssl smime -sign -nocerts -noattr -binary -in signed.roothash -inkey "$tmp/key.pem" \
    -signer signer.crt -outform der -out signed.roothash.p7s
export GNUPGHOME=$tmp/gnupg
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'rdext fuzz <fuzz@example.invalid>' ed25519 sign never
gpg --batch --quiet --export >pubring.gpg
printf '%064d  ext_1.raw\n%064d *ext_2.raw\n' 1 2 >SHA256SUMS
gpg --batch --quiet --detach-sign --output SHA256SUMS.gpg SHA256SUMS
