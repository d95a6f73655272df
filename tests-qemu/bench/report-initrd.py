#!/usr/bin/env python3
"""The initrd merge of tests-qemu/bench/initrd-sid: rdext-merge.service against
systemd 262's systemd-sysext-sysroot.service, from the boots' results
(key=value lines written by guest-initrd-bench, prefixed rdext. or systemd.).
Prints; judges nothing."""
import sys


def read(path):
    """The results of both boots: rdext.KEY and systemd.KEY lines."""
    boots = {"rdext": {}, "systemd": {}}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            boot, _, key = key.partition(".")
            boots.setdefault(boot, {})[key] = value
    return boots


def active_ms(values, unit):
    """Starting to Finished (or Failed), in ms; None when the unit did not run."""
    words = values.get(f"unit.{unit}", "").split()
    stamps = dict(zip(words[0::2], words[1::2]))
    start, end = stamps.get("Starting"), stamps.get("Finished") or stamps.get("Failed")
    return 1000 * (float(end) - float(start)) if start and end else None


boots = read(sys.argv[1])
rdext, systemd = boots["rdext"], boots["systemd"]
any_boot = rdext or systemd
print(f"guest: {any_boot.get('kernel')}, {any_boot.get('systemd')}")
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
