#!/bin/bash
# Benchmark: rdext's first-boot download against curl, same 256 MiB file,
# same local HTTP server on 127.0.0.1, one run. Prints throughput and peak
# RSS of each and the ratios. Not a test: it asserts nothing.
#
# usage: benches/download.sh [SIZE_MIB]   (RDEXT_BIN=path to use a prebuilt binary)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-256}
rdext=${RDEXT_BIN:-$repo/target/x86_64-unknown-linux-musl/release/rdext}
[ -x "$rdext" ] || (cd "$repo" && cargo build --release --target x86_64-unknown-linux-musl)
for tool in curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "needs $tool (.ci/setup installs it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/rdext-bench.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/www/ext" "$work/root/etc/sysupdate.d"
head -c $((size_mib << 20)) /dev/urandom >"$work/www/ext/bench-1.0.raw"
(cd "$work/www/ext" && sha256sum bench-1.0.raw >SHA256SUMS)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/ext/SHA256SUMS" && break; sleep 0.1; done
cat >"$work/root/etc/sysupdate.d/bench.transfer" <<EOT
[Transfer]
Verify=no
[Source]
Type=url-file
Path=http://127.0.0.1:$port/ext
MatchPattern=bench-@v.raw
[Target]
Type=regular-file
Path=/var/lib/extensions.d
MatchPattern=bench-@v.raw
EOT
echo 'ID=debian' >"$work/root/etc/os-release"

measure() { # label command...: prints "seconds max_rss_kib"
    local label=$1; shift
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    /usr/bin/time -f '%e %M' -o "$work/$label.time" "$@" >/dev/null 2>"$work/$label.err" ||
        { cat "$work/$label.err" >&2; exit 1; }
    cat "$work/$label.time"
}
read -r r_s r_kib < <(measure rdext "$rdext" download --root "$work/root" --cmdline <(echo rdext.download=missing))
cmp -s "$work/www/ext/bench-1.0.raw" "$work/root/var/lib/extensions.d/bench-1.0.raw" || { echo "rdext's copy differs" >&2; exit 1; }
read -r c_s c_kib < <(measure curl curl -fsS -o "$work/curl.raw" "http://127.0.0.1:$port/ext/bench-1.0.raw")
awk -v n="$size_mib" -v rs="$r_s" -v rk="$r_kib" -v cs="$c_s" -v ck="$c_kib" 'BEGIN {
    rt = n / (rs > 0 ? rs : 0.01); ct = n / (cs > 0 ? cs : 0.01)
    printf "download of %d MiB over loopback (one run)\n", n
    printf "  rdext: %7.1f MiB/s  %6.1f MiB peak RSS  (%.2f s, hashing and fsync included)\n", rt, rk / 1024, rs
    printf "  curl:  %7.1f MiB/s  %6.1f MiB peak RSS  (%.2f s)\n", ct, ck / 1024, cs
    printf "  ratio rdext/curl: throughput %.2f, peak RSS %.2f\n", rt / ct, rk / ck
}'
