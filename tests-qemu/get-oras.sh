#!/bin/bash
# Print the path of a host-runnable `oras` (the OCI registry client), fetched
# once into the cache: Debian packages oras in trixie but not in bookworm, and
# its binary is static Go, so the trixie package's binary runs on the host.
# The package comes from the host's Debian mirror through a private apt state
# directory (the host's apt configuration and the cached guest stay untouched),
# verified with the host's debian-archive-keyring.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CACHE=${RDEXT_QEMU_CACHE:-/var/cache/rdext-qemu}
dest="$CACHE/tools/oras"
if [ -x "$dest" ]; then
    echo "$dest"
    exit 0
fi
need_root
tmp=$(mktemp -d "$CACHE/oras.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$CACHE/tools"
mirror=$(debian_mirror)
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$tmp/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
for t in DEP-11 DEP-11-icons DEP-11-icons-small Contents-deb Translations; do
    apt_opts+=(-o "Acquire::IndexTargets::deb::$t::DefaultEnabled=false")
done
apt-get "${apt_opts[@]}" update >"$tmp/update.log" 2>&1 || { cat "$tmp/update.log" >&2; die "apt-get update (trixie) failed"; }
(cd "$tmp" && apt-get "${apt_opts[@]}" download oras >"$tmp/download.log" 2>&1) ||
    { cat "$tmp/download.log" >&2; die "apt-get download oras failed"; }
dpkg-deb -x "$tmp"/oras_*.deb "$tmp/x"
"$tmp/x/usr/bin/oras" version >/dev/null || die "the downloaded oras does not run"
install -m 0755 "$tmp/x/usr/bin/oras" "$dest.tmp"
mv "$dest.tmp" "$dest"
log "oras $("$dest" version | awk '/^Version/ {print $2}') cached in $dest"
echo "$dest"
