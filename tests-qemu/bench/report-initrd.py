#!/usr/bin/env python3
"""The initrd merge of tests-qemu/bench/initrd-sid: rdext-merge.service against
systemd 262's systemd-sysext-sysroot.service, from the two boots' results
files (key=value lines written by guest-initrd-bench). Prints; judges nothing."""
import sys


def read(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            values[key] = value
    return values


def active_ms(values, unit):
    """Starting to Finished (or Failed), in ms; None when the unit did not run."""
    words = values.get(f"unit.{unit}", "").split()
    stamps = dict(zip(words[0::2], words[1::2]))
    start, end = stamps.get("Starting"), stamps.get("Finished") or stamps.get("Failed")
    return 1000 * (float(end) - float(start)) if start and end else None


rdext, systemd = read(sys.argv[1]), read(sys.argv[2])
print(f"guest: {rdext.get('kernel')}, {rdext.get('systemd')}")
r = active_ms(rdext, "rdext-merge")
s = active_ms(systemd, "systemd-sysext-sysroot")
fmt = lambda ms: "did not run" if ms is None else f"{ms:.0f} ms"
print(f"in the initrd, 20 signed DDIs: rdext-merge.service {fmt(r)} ({rdext.get('merged')} merged;"
      f" rdext: {rdext.get('rdext_line')}) | systemd-sysext-sysroot.service {fmt(s)}"
      f" ({systemd.get('merged')} merged)")
print(f"  ratio rdext/systemd: {r / s:.3f}" if r is not None and s else "  ratio: n/a")
print(f"  in the rdext boot, systemd-sysext-sysroot.service: {fmt(active_ms(rdext, 'systemd-sysext-sysroot'))}")
print(f"booted system's systemd-sysext.service: after rdext {fmt(active_ms(rdext, 'systemd-sysext'))},"
      f" after systemd's sysroot merge {fmt(active_ms(systemd, 'systemd-sysext'))}")
print()
print("raw:")
for name, values in [("rdext", rdext), ("systemd", systemd)]:
    for k in sorted(values):
        print(f"  {name}.{k}={values[k]}")
