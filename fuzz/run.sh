#!/bin/bash
# Build every fuzz target once (cargo-fuzz, libFuzzer with ASan, on the
# stable toolchain through RUSTC_BOOTSTRAP=1) and run each for SECONDS
# seconds from the committed seeds in corpus/TARGET. New inputs go to a
# scratch corpus (CORPUS_DIR, default a temp dir, removed at the end),
# crashes to artifacts/TARGET/. Prints and appends to STATS_LOG (default
# stats.log, not in git) one line per target: executions, exec/s, corpus
# size, the commit. Exits non-zero if any target crashed.
# Usage: fuzz/run.sh SECONDS [TARGET...]   (JOBS=N runs N workers each)
# Campaigns record into the committed executions.log:
#   STATS_LOG=executions.log nice -n 19 fuzz/run.sh 600 TARGET
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing (.ci/setup installs it)" >&2; exit 1; }
cargo fuzz build -O >&2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=target/$triple/release
stats=${STATS_LOG:-stats.log}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "${CORPUS_DIR:-}" ]; then
    work=$CORPUS_DIR
else
    work=$(mktemp -d /tmp/rdext-fuzz.XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
jobs=${JOBS:-1}
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    log=$work/$t.log
    rc=0
    if [ "$jobs" -gt 1 ]; then
        "$bin/$t" -max_total_time="$seconds" -print_final_stats=1 -jobs="$jobs" -workers="$jobs" \
            -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
        cat fuzz-*.log >>"$log" 2>/dev/null || true
        rm -f fuzz-*.log
    else
        "$bin/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=1024 \
            -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | awk '{s += $1} END {print s + 0}')
    corpus=$(find "$work/$t" -type f | wc -l)
    line="$(date -u +%FT%TZ) $t seconds=$seconds execs=$execs exec_per_s=$speed corpus=$corpus rc=$rc commit=$commit"
    echo "$line"
    echo "$line" >>"$stats"
    if [ "$rc" != 0 ]; then
        failed=1
        grep -E 'ERROR|panicked|Test unit written' "$log" | head -n 5 >&2 || true
    fi
done
exit $failed
