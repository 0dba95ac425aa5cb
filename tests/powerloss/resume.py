#!/usr/bin/env python3
"""A card a power cut interrupted mid-`fleet image configure` is configured again.

For every flush boundary of a recorded `configure --config` (RPi layout), the whole card in
that state gets `fleet image configure --hostname f22-resumed`: it must succeed, leave
config.json = (what fleetOS read there: old or new) + the hostname, no `.fleet-*` file, a
clean `fsck.vfat -n` (but for the dirty flag the cut left), and `fleet image inspect --json` must show it.
Usage: resume.py --work DIR
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashstates  # noqa: E402
import powerloss  # noqa: E402


def dirty_flag_only(part):
    """fsck.vfat's only complaint is the boot sector's dirty flag (offset 65) differing from
    the backup, and the free-cluster count left unknown: fatfs, like Linux, keeps the flag of a volume that was not cleanly unmounted
    (the power cut), so that a later fsck still knows."""
    p = subprocess.run(["fsck.vfat", "-n", part], capture_output=True, text=True)
    lines = [x.strip() for x in p.stdout.splitlines()[1:] if x.strip()]
    allowed = (
        "There are differences between boot sector and its backup.",
        "This is mostly harmless. Differences: (offset:original/backup)",
        "65:01/00",
        "Not automatically fixing this.",
        "Dirty bit is set. Fs was not properly unmounted and some data may be corrupt.",
        "Automatically removing dirty bit.",
        "Leaving filesystem unchanged.",
    )
    # FSInfo's free count "unknown" (0xFFFFFFFF, allowed by the FAT spec): fatfs does not
    # trust the count of a dirty volume.
    unknown = "Free cluster summary uninitialized"
    return all(x in allowed or x.startswith((part, unknown)) for x in lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sc = powerloss.Configure("mbr", False)
    image = sc.prepare(a.work)
    start, size = powerloss.part1(image)
    base = os.path.join(a.work, "base.img")
    powerloss.run("cp", "--sparse=always", image, base)
    log = os.path.join(a.work, "writes.log")
    sc.record(a.work, image, log)
    epochs = crashstates.parse(log)
    card = os.path.join(a.work, "card.img")
    part = os.path.join(a.work, "card.part")
    prefix, problems = {}, []
    for k in range(len(epochs) + 1):
        powerloss.run("cp", "--sparse=always", base, card)
        with open(card, "r+b") as f:
            for sector, data in prefix.items():
                f.seek(sector * crashstates.SECTOR)
                f.write(data)
        # What fleetOS reads on the interrupted card (old or new, proven by the replayer).
        disk = crashstates.Disk(card, start, size, part)
        before = json.loads(powerloss.boot_file(part, "config.json"))
        p = subprocess.run(
            ["fleet", "image", "configure", "--hostname", "f22-resumed", card], capture_output=True
        )
        if p.returncode != 0:
            problems.append(f"flush{k}: configure failed: {p.stderr.decode().strip()[-200:]}")
        else:
            disk = crashstates.Disk(card, start, size, part)
            after = powerloss.mread(disk.path, "config.json")
            want = dict(before, hostname="f22-resumed")
            listing = subprocess.run(["mdir", "-b", "-i", part, "::"], capture_output=True, text=True)
            fs, why = powerloss.fsck(part)
            inspect = subprocess.run(["fleet", "image", "inspect", "--json", card], capture_output=True, text=True)
            if not isinstance(after, bytes) or json.loads(after) != want:
                problems.append(f"flush{k}: config.json {after!r}, want {want}")
            elif ".fleet-" in listing.stdout:
                problems.append(f"flush{k}: left {listing.stdout.split()}")
            elif fs != "clean" and not dirty_flag_only(part):
                problems.append(f"flush{k}: fsck.vfat -n: {why}")
            elif "f22-resumed" not in inspect.stdout:
                problems.append(f"flush{k}: inspect does not show the hostname")
        if k < len(epochs):
            crashstates.apply(prefix, epochs[k])
    print(f"{len(epochs) + 1} interrupted cards configured again, {len(problems)} problems")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
