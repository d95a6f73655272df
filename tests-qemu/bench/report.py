#!/usr/bin/env python3
"""Medians and ratios from a benchmark results file (key=value lines written
by guest-bench), then the raw numbers. Prints; judges nothing."""
import statistics
import sys

values = {}
with open(sys.argv[1]) as f:
    for line in f:
        key, _, value = line.rstrip("\n").partition("=")
        values[key] = value


def series(key):
    return [int(v) for v in values.get("t." + key, "").split()]


def median(key):
    s = series(key)
    return statistics.median(s) if s else None


def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "n/a"


print(f"guest: {values.get('kernel')}, {values.get('systemd')}; rdext {values.get('rdext_size')} bytes")
print()
print("warm merge+unmerge, median ms (runs), rdext vs systemd-sysext:")
for s, label in [("plain", "20 plain squashfs"), ("signed", "20 signed DDIs"), ("many", "200 small")]:
    rm, ru = median(f"{s}.rdext.merge"), median(f"{s}.rdext.unmerge")
    sm, su = median(f"{s}.sysext.merge"), median(f"{s}.sysext.unmerge")
    counts = lambda tool: sorted({v for k, v in values.items() if k.startswith(f"count.{s}.{tool}.")})
    print(f"  {label:18} rdext merge {rm} + unmerge {ru} ms | systemd-sysext merge {sm} + unmerge {su} ms"
          f" | merge ratio {ratio(rm, sm)}, merge+unmerge ratio {ratio((rm or 0) + (ru or 0), (sm or 0) + (su or 0))}")
    print(f"  {'':18} images merged: rdext {counts('rdext')}, systemd-sysext {counts('sysext')};"
          f" failures: rdext {values.get(f't.{s}.rdext.merge.failed', '0')}, systemd-sysext {values.get(f't.{s}.sysext.merge.failed', '0')}")
p, m = median("plain.rdext.merge"), median("many.rdext.merge")
print(f"  200 vs 20 images (rdext merge): {ratio(m, p)}x")
cold = series("cold.rdext")
print(f"cold: first rdext merge after boot {cold} ms vs warm median {p} ms: {ratio(cold[0] if cold else None, p)}x")
print(f"idle after boot: rdext merge with nothing to do, median {median('idle.rdext')} ms")
unit = values.get("initrd_unit", "").split()
stamps = dict(zip(unit[0::2], unit[1::2]))
start, end = stamps.get("Starting"), stamps.get("Finished") or stamps.get("Deactivated")
if start and end:
    print(f"idle in the initrd: rdext-merge.service active {1000 * (float(end) - float(start)):.1f} ms"
          f" (journal, monotonic); rdext: {values.get('initrd_rdext_line')}")
else:
    print(f"idle in the initrd: {values.get('initrd_unit')!r}; rdext: {values.get('initrd_rdext_line')}")
size = int(values.get("dl_bytes", "0"))
print("download, same file and server:")
for tool in ["rdext", "sysupdate"]:
    ms = series(f"dl.{tool}.ms")
    rss = series(f"dl.{tool}.rss_kib")
    ok = values.get(f"t.dl.{tool}.ok")
    if ms:
        mib_s = size / (1 << 20) / (statistics.median(ms) / 1000)
        print(f"  {tool:9} median {statistics.median(ms)} ms = {mib_s:.1f} MiB/s, peak RSS median {statistics.median(rss)} KiB, complete {ok}")
rd, sd = median("dl.rdext.ms"), median("dl.sysupdate.ms")
rr, sr = median("dl.rdext.rss_kib"), median("dl.sysupdate.rss_kib")
print(f"  throughput ratio rdext/sysupdate {ratio(sd, rd)}, peak RSS ratio {ratio(rr, sr)}")
print()
print("raw:")
for k in sorted(values):
    print(f"  {k}={values[k]}")
