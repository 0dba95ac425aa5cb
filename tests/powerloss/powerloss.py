#!/usr/bin/env python3
"""Power loss at the block level: record a scenario's writes and flushes with QEMU's
blklogwrites, replay them into crash states, check every state offline.

Usage: powerloss.py SCENARIO --work DIR [--seed N] [--subsets N] [--exhaustive N]
       [--torn-all] [--show N]
Prints one summary line per scenario as JSON (states, fsck verdicts, config verdicts) and
the first --show failing states. Exit status 1 when a state loses or mixes config, 2 on a
harness error. Scenarios: see SCENARIOS below.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crashstates  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
MKIMG = os.path.join(TOP, "tests", "image", "mkimg")
RECORD = os.path.join(HERE, "record")
UBOOT = os.path.join(HERE, "uboot")
VFAT = os.path.join(HERE, "vfat")
RUST = os.path.join(TOP, "rust-services")
# POWERLOSS_LEGACY_READER=1: read config.json as fleetOS did before the fix (no .fleet-next).
LEGACY_READER = os.environ.get("POWERLOSS_LEGACY_READER") == "1"

NEW_CONFIG = (
    b'{"deviceApiKey":"n3w-key","deviceType":"raspberrypi4-64",'
    b'"unknownVendorKey":{"keep":[3]},"hostname":"after",'
    b'"fleet":{"network":{"wifi":[{"ssid":"f22-net","psk":"f22-passphrase"}]}}}\n'
)
KEYFILE = (
    b"[connection]\nid=f22-wired\ntype=ethernet\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n"
)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def part1(image):
    out = run("partx", "-g", "-o", "START,SECTORS", "-n", "1", image).stdout.split()
    return int(out[0]) * 512, int(out[1]) * 512


def mread(part, path):
    """A file of the FAT image `part` as mtools reads it: bytes, None when absent, or an
    exception text when the file system cannot be read there."""
    p = subprocess.run(["mtype", "-i", part, "::" + path], capture_output=True)
    if p.returncode == 0:
        return p.stdout
    err = p.stderr.decode(errors="replace")
    if "not found" in err:
        return None
    return RuntimeError(err.strip().splitlines()[-1] if err.strip() else f"mtype rc {p.returncode}")


def boot_file(part, path):
    """`path` on the boot partition as fleetOS reads it (fleet_config::fat_current): the
    whole replacement `path.fleet-next` an interrupted `fleet image configure` or
    `Config::save` left (an empty one is the entry of an unfinished kernel-vfat rename, not
    a replacement), else `path`. `legacy` readers (before the fix) read `path` only."""
    if not LEGACY_READER:
        data = mread(part, path + ".fleet-next")
        if data is not None and data != b"":
            return data
    return mread(part, path)


def crash_copy(base, overlay, path):
    """A copy of `base` at `path` with the crash state's sectors written over it."""
    run("cp", "--sparse=always", base, path)
    with open(path, "r+b") as f:
        for sector, data in overlay.items():
            f.seek(sector * crashstates.SECTOR)
            f.write(data)
    return path


def verdict(data, old, new):
    if isinstance(data, Exception):
        return "unreadable"
    if data == new:
        return "new"
    if data == old:
        return "old"
    if data is None:
        return "lost"
    return "mixed"


def fsck(part):
    p = subprocess.run(["fsck.vfat", "-n", part], capture_output=True)
    if p.returncode == 0:
        return "clean", ""
    text = p.stdout.decode(errors="replace")
    lines = [
        line
        for line in text.splitlines()[1:]
        if line.strip() and not line.startswith(("Checking", "Starting", "Leaving", "/"))
    ]
    return "errors", "; ".join(lines[:3])


GUEST_ROOT_INIT = (
    "mkdir -p /r/etc/NetworkManager/system-connections /r/var/lib/fleet /r/home/root/.ssh "
    "/r/mnt /r/proc\nln -s /mnt/boot /r/mnt/boot\necho fleet >/r/etc/hostname\n"
    "echo 0123456789abcdef0123456789abcdef >/r/etc/machine-id"
)
GUEST_ROOT_AFTER = (
    "echo LASTGOOD-BEGIN; cat /r/var/lib/fleet/config.last-good.json; echo; echo LASTGOOD-END\n"
    "echo KEYFILE-BEGIN; k=/r/etc/NetworkManager/system-connections/f22-wired.nmconnection; "
    "[ ! -f $k ] || cat $k; "
    "echo KEYFILE-END"
)


def between(text, begin, end):
    return text.split(begin + "\n", 1)[-1].split(end, 1)[0] if begin in text else ""


class Configure:
    """`fleet image configure` of a card image (host side): replace config.json, optionally
    add a NetworkManager keyfile (creating system-connections/). The real reader: the
    boot-time `fleetd provision` in the kernel-vfat guest on a card holding the crash state
    (`vfat run`: Linux's vfat mounts the boot partition as mnt-boot.mount does, fleetd reads
    config.json with fleet_config's rule and applies it): the configuration it saved as the
    last good one must be the document the checker predicted, the keyfile it installed too."""

    boots = True
    helper = VFAT

    def __init__(self, layout, connection):
        self.layout, self.connection = layout, connection

    def prepare(self, work):
        image = os.path.join(work, "disk.img")
        run(MKIMG, self.layout, image)
        return image

    def record(self, work, image, log):
        cfg = os.path.join(work, "new-config.json")
        with open(cfg, "wb") as f:
            f.write(NEW_CONFIG)
        args = ["fleet", "image", "configure", "--config", cfg]
        if self.connection:
            kf = os.path.join(work, "f22-wired.nmconnection")
            with open(kf, "wb") as f:
                f.write(KEYFILE)
            args += ["--connection", kf]
        subprocess.run([RECORD, image, log, *args, "@DISK"], check=True, capture_output=True)

    def read(self, part, work):
        """What fleetOS would read from this boot partition: {file: bytes | None | error}."""
        names = ["config.json"]
        if self.connection:
            names.append("system-connections/f22-wired.nmconnection")
        return {n: boot_file(part, n) for n in names}

    def judge(self, got, old, new):
        """{file: verdict}, and whether the device would still boot a good slot (None: the
        scenario does not touch boot state)."""
        row = {}
        for name, data in got.items():
            if name == "config.json" or old[name] is not None:
                row[name] = verdict(data, old[name], new[name])
            else:
                # A file the scenario adds: absent is the old state.
                row[name] = verdict(data, None, new[name]) if data is not None else "old"
        return row, None


    def predict(self, got, row):
        return tuple(sorted(row.items()))

    def docs(self):
        old, new = self.old_new
        return {"old": old["config.json"], "new": new["config.json"]}

    def boot(self, base, overlay, work):
        """The crash state on a copy of the card, `fleetd provision` run on it in the guest:
        what it applied, in the checker's terms (same keys as `judge`'s row)."""
        card = crash_copy(base, overlay, os.path.join(work, "crash-card.img"))
        env = dict(os.environ, VFAT_INIT=GUEST_ROOT_INIT, VFAT_AFTER=GUEST_ROOT_AFTER)
        text = subprocess.run([VFAT, "run", card, shutil.which("fleetd"), "--root", "/r",
                               "provision"], capture_output=True, env=env).stdout.decode(
                                   errors="replace")
        os.unlink(card)
        saved = between(text, "LASTGOOD-BEGIN", "LASTGOOD-END").strip()
        applied = "none"
        try:
            doc = json.loads(saved)
            for name, data in self.docs().items():
                if json.loads(data) == doc:
                    applied = name
        except ValueError:
            applied = "none" if not saved else "other"
        seen = {"config.json": applied}
        if self.connection:
            key = "system-connections/f22-wired.nmconnection"
            # fleetd installs it with the uuid NetworkManager would give it (a line it adds).
            kf = "\n".join(x for x in between(text, "KEYFILE-BEGIN", "KEYFILE-END").splitlines()
                           if not x.startswith("uuid=")).strip()
            seen[key] = "old" if not kf else "new" if kf == KEYFILE.decode().strip() else "other"
        if applied == "none":
            status = [x for x in text.splitlines() if "VFAT-PROGRAM-STATUS" in x or "rror" in x]
            seen["fleetd"] = " ".join(status)[:200]
        return tuple(sorted(seen.items()))


class Control(Configure):
    """Negative control: config.json overwritten in place by mtools (`mcopy -o`, no ordering,
    what a naive tool does). The checker must find lost or mixed states here."""

    boots = False

    def __init__(self):
        super().__init__("mbr", False)

    def record(self, work, image, log):
        cfg = os.path.join(work, "config.json")
        with open(cfg, "wb") as f:
            f.write(NEW_CONFIG)
        start, _ = part1(image)
        script = f'mcopy -o -i "$RECORD_DISK@@{start}" "{cfg}" ::config.json'
        subprocess.run([RECORD, image, log, "sh", "-c", script], check=True, capture_output=True)


class Provision:
    """`fleetd provision` with a changed config.json (hostname, an SSH key) on a device's
    fleet-state ext4 (loop-mounted through the recorder, DESIGN.md §4 binds: /etc/hostname is
    rewritten in place through its file bind). A state is read as the device would after the
    cut: journal replayed and repaired by `e2fsck -fy` (systemd-fsck), then the files."""

    boots = False
    OLD = b'{"hostname":"before","os":{"sshKeys":[]}}\n'
    NEW = (
        b'{"hostname":"after","os":{"sshKeys":["ssh-ed25519 '
        b'AAAAC3NzaC1lZDI1NTE5AAAAIGb5m0U4q1f0hY0Jp6s2C3kz2vW4m6xw0S0yQn1m3y7Q f22@host"]}}\n'
    )
    FILES = ("/etc/hostname", "/etc/machine-id", "/var/lib/fleet/config.last-good.json",
             "/home/root/.ssh/authorized_keys")

    ARGS = ()
    # Files the scenario must leave exactly as they were.
    unchanged = ("/etc/machine-id",)
    # The real reader: the crash state repaired by `e2fsck -fy` (systemd-fsck), mounted by the
    # kernel with the device's binds and the scenario's command run again as at the next boot
    # (`provision apply`): the files as the kernel reads them before it must be what the
    # checker predicted (debugfs), and after it the new ones.
    boots = True

    def predict(self, got, row):
        return tuple(sorted([(p, row[p]) for p in self.FILES] + [("after the rerun", "new")]))

    def read_dir(self, d):
        got = {}
        for path in self.FILES:
            f = os.path.join(d, path.lstrip("/"))
            if path.endswith("/"):
                got[path] = b"<directory>" if os.path.exists(f.rstrip("/") + ".dir") else None
            else:
                got[path] = open(f, "rb").read() if os.path.exists(f) else None
        return got

    def boot(self, base, overlay, work):
        state = crash_copy(base, overlay, os.path.join(work, "crash-state.img"))
        subprocess.run(["e2fsck", "-fy", state], capture_output=True)
        snap = os.path.join(work, "snapshot")
        shutil.rmtree(snap, ignore_errors=True)
        os.makedirs(snap)
        new = os.path.join(work, "new.json")
        env = dict(self.env(work, "new") or os.environ, PROVISION_SNAPSHOT=snap,
                   PROVISION_FILES=" ".join(self.FILES))
        p = subprocess.run([os.path.join(HERE, "provision"), "apply", state, new, *self.ARGS],
                           capture_output=True, env=env)
        os.unlink(state)
        old_docs, new_docs = self.old_new
        row, _ = self.judge(self.read_dir(os.path.join(snap, "before")), old_docs, new_docs)
        seen = [(path, row[path]) for path in self.FILES]
        after, _ = self.judge(self.read_dir(os.path.join(snap, "after")), old_docs, new_docs)
        done = "new" if p.returncode == 0 and all(after[x] == "new" or old_docs[x] == new_docs[x]
                                                  for x in self.FILES) else \
            f"rc {p.returncode} {after} {p.stderr.decode(errors='replace')[-150:]}"
        return tuple(sorted(seen + [("after the rerun", done)]))

    def prepare(self, work):
        image = os.path.join(work, "state.img")
        old = os.path.join(work, "old.json")
        with open(old, "wb") as f:
            f.write(self.OLD)
        run(os.path.join(HERE, "provision"), "image", image, old, *self.ARGS, env=self.env(work, "old"))
        return image

    def env(self, work, which):
        return None

    def part(self, image):
        return 0, os.path.getsize(image)

    def record(self, work, image, log):
        new = os.path.join(work, "new.json")
        with open(new, "wb") as f:
            f.write(self.NEW)
        run(RECORD, image, log, os.path.join(HERE, "provision"), "apply", "@DISK", new, *self.ARGS,
            env=self.env(work, "new"))

    def fsck(self, part):
        """Replays the journal on a copy (e2fsck -fy, as systemd-fsck's -p would), then
        e2fsck -fn on the result: clean = nothing beyond the journal needed repair."""
        self.replayed = part + ".replayed"
        run("cp", part, self.replayed)
        first = subprocess.run(["e2fsck", "-fy", self.replayed], capture_output=True, text=True)
        second = subprocess.run(["e2fsck", "-fn", self.replayed], capture_output=True, text=True)
        self.broken = first.returncode >= 4
        if first.returncode >= 4 or second.returncode != 0:
            lines = (first.stdout + first.stderr + second.stdout).splitlines()
            return "errors", "; ".join(x for x in lines if x.strip())[:300]
        # e2fsck -fy exit 1: it fixed something (e.g. orphan inodes), as systemd-fsck would.
        return ("clean" if first.returncode == 0 else "repaired"), ""

    def read(self, part, work):
        if not getattr(self, "replayed", None) or not os.path.exists(self.replayed):
            self.fsck(part)
        got = {}
        for path in self.FILES:
            if self.broken:
                got[path] = RuntimeError("e2fsck could not repair the file system")
                continue
            if path.endswith("/"):
                # A directory: present (with its type) or absent.
                p = subprocess.run(["debugfs", "-R", f"stat {path}", self.replayed],
                                   capture_output=True)
                err = p.stderr.decode(errors="replace")
                if "File not found" in err:
                    got[path] = None
                elif b"Type: directory" in p.stdout:
                    got[path] = b"<directory>"
                else:
                    got[path] = RuntimeError((err + p.stdout.decode(errors="replace"))[-200:])
                continue
            p = subprocess.run(["debugfs", "-R", f"cat {path}", self.replayed], capture_output=True)
            err = p.stderr.decode(errors="replace")
            if "File not found" in err:
                got[path] = None
            elif p.returncode != 0 or "ext2fs_open" in err:
                got[path] = RuntimeError(err.strip()[-200:])
            else:
                got[path] = p.stdout
        os.unlink(self.replayed)
        self.replayed = None
        return got

    def judge(self, got, old, new):
        row = {}
        for path, data in got.items():
            if old[path] == new[path]:
                # Not changed by the scenario (machine-id): must be exactly as it was.
                row[path] = "old" if data == old[path] else ("lost" if not data else "mixed")
            elif old[path] is None and data is None:
                row[path] = "old"
            else:
                row[path] = verdict(data, old[path], new[path])
                if row[path] in ("old", "new") and data is not None and not data.strip():
                    row[path] = "lost"
        return row, None


class ProvisionLogging(Provision):
    """The persistent-logging switch at provisioning: config.json gains
    `persistentLogging: true`; on the state partition fleetd creates `journal/` (the
    journal's home, bound onto /var/log/journal by a runtime unit in /run) and rewrites
    `config.last-good.json`. The hostname and machine-id must stay as they were."""

    OLD = b'{"hostname":"before"}\n'
    NEW = b'{"hostname":"before","persistentLogging":true}\n'
    FILES = ("/etc/hostname", "/etc/machine-id", "/var/lib/fleet/config.last-good.json",
             "/journal/")
    unchanged = ("/etc/hostname", "/etc/machine-id")


class NetImport(Provision):
    """`fleetd net import` of changed keyfiles on the boot partition (f22-old's address
    method changed, f22-new added) onto the state partition: the keyfiles in
    NetworkManager's system-connections (a bind of the state partition's) and the record of
    what fleetOS owns (`var/lib/fleet/net-import.json`, written *before* each keyfile so a
    cut cannot orphan one). fleetd's own writes only: no NetworkManager runs, the import
    stops at the D-Bus connection after them (NetworkManager's own state files are its
    writes). Each keyfile old or new; a new keyfile present must be in the record."""

    OLD = b'{"hostname":"before"}\n'
    NEW = OLD
    ARGS = ("net", "import")
    NM = "/etc/NetworkManager/system-connections/"
    FILES = (NM + "f22-new.nmconnection", NM + "f22-old.nmconnection",
             "/var/lib/fleet/net-import.json")
    KEYFILES = {
        "old": {"f22-old.nmconnection": KEYFILE.replace(
            b"type=ethernet\n", b"type=ethernet\nuuid=7f1e0d3c-2b4a-4c5d-8e6f-a0b1c2d3e4f5\n")},
    }
    KEYFILES["new"] = {
        "f22-old.nmconnection": KEYFILES["old"]["f22-old.nmconnection"].replace(
            b"[ipv4]\nmethod=auto", b"[ipv4]\nmethod=manual\naddress1=192.0.2.22/24,192.0.2.1"),
        "f22-new.nmconnection": b"[connection]\nid=f22-new\ntype=ethernet\n"
        b"uuid=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\ninterface-name=eth1\n\n"
        b"[ipv4]\nmethod=auto\n",
    }

    def env(self, work, which):
        d = os.path.join(work, f"connections-{which}")
        os.makedirs(d, exist_ok=True)
        for name, data in self.KEYFILES[which].items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        return dict(os.environ, PROVISION_CONNECTIONS=d)

    def judge(self, got, old, new):
        row, good = super().judge(got, old, new)
        record = got["/var/lib/fleet/net-import.json"]
        owned = {}
        if isinstance(record, bytes):
            try:
                owned = json.loads(record).get("keyfiles", {})
            except ValueError:
                owned = {}
        for path in self.FILES[:2]:
            name = os.path.basename(path)
            if isinstance(got[path], bytes) and got[path] and name not in owned:
                row["ownership of " + name] = "mixed"
        return row, good


class SupervisorTarget(Provision):
    """The supervisor's target-state save: `target_file::save_local` (validate, then
    fleet_fs::atomic_write of /mnt/data/fleet-supervisor/target.json, the file the daemon
    keeps its target in) on a fleet-data ext4 (32 MiB here: 4 groups, backup superblocks),
    run by fleet-supervisor's examples/save-target. Each state after the journal replay: the
    old target or the new one."""

    FILES = ("/fleet-supervisor/target.json",)
    unchanged = ()
    boots = False

    def documents(self, work):
        with open(os.path.join(RUST, "crates", "fleet-release", "doc", "target.example.json"),
                  "rb") as f:
            old = f.read()
        new = old.replace(b'"SITE": "north"', b'"SITE": "south-wing, bench 22"').replace(
            b'"name": "greenhouse-7"', b'"name": "greenhouse-22"')
        paths = []
        for which, data in (("old", old), ("new", new)):
            paths.append(os.path.join(work, f"target-{which}.json"))
            with open(paths[-1], "wb") as f:
                f.write(data)
        return paths

    def prepare(self, work):
        image = os.path.join(work, "data.img")
        self.program = example("save-target", "fleet-supervisor")
        old, _ = self.documents(work)
        run(os.path.join(HERE, "provision"), "data-image", image, old,
            env=dict(os.environ, SAVE_TARGET=self.program))
        return image

    def record(self, work, image, log):
        _, new = self.documents(work)
        run(RECORD, image, log, os.path.join(HERE, "provision"), "data-apply", "@DISK", new,
            env=dict(os.environ, SAVE_TARGET=self.program))


def example(name, package="fleet-config"):
    """A test program of the workspace (cargo example), built here: path to the binary."""
    run("cargo", "build", "--locked", "-q", "-p", package, "--example", name, cwd=RUST)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(RUST, "target")
    return os.path.join(target, "debug", "examples", name)


class KernelVfatRegistration(Configure):
    """The supervisor's registration record written by the Linux kernel's vfat driver:
    `Config::save` (fleet_config::replace_on_fat, fsync of file and directory as barriers)
    twice on /mnt/boot/config.json of the RPi layout, mounted as mnt-boot.mount mounts it,
    in a QEMU guest whose disk goes through blklogwrites (`vfat record`). The first save adds
    uuid and deviceApiKey, the second registered_at and deviceId and removes apiKey
    (examples/register-save.rs, the steps of the supervisor's `provision::attempt`). Each
    state: config.json as `Config::load` reads it (mtools, the `.fleet-next` rule) must be the
    old, the intermediate or the new document."""

    OLD = (
        b'{"apiKey":"pr0v1s10n1ngk3y","deviceType":"raspberrypi4-64",'
        b'"unknownVendorKey":{"keep":[1,2]},"hostname":"before",'
        b'"apiEndpoint":"https://api.f22.test"}\n'
    )

    durable = True

    def __init__(self):
        super().__init__("mbr", False)

    def prepare(self, work):
        image = super().prepare(work)
        cfg = os.path.join(work, "old-config.json")
        with open(cfg, "wb") as f:
            f.write(self.OLD)
        start, _ = part1(image)
        run("mcopy", "-o", "-i", f"{image}@@{start}", cfg, "::config.json")
        # The intermediate document (after the first save): the same program on a plain
        # directory here writes the same bytes.
        self.program = example("register-save")
        mid = os.path.join(work, "mid")
        os.makedirs(mid, exist_ok=True)
        with open(os.path.join(mid, "config.json"), "wb") as f:
            f.write(self.OLD)
        run(self.program, os.path.join(mid, "config.json"), "1")
        with open(os.path.join(mid, "config.json"), "rb") as f:
            self.mid = f.read()
        return image

    def record(self, work, image, log):
        run(VFAT, "record", image, log, self.program, "/mnt/boot/config.json")

    def docs(self):
        return dict(super().docs(), intermediate=self.mid)

    def judge(self, got, old, new):
        data = got["config.json"]
        v = verdict(data, old["config.json"], new["config.json"])
        if v == "mixed" and data == self.mid:
            v = "intermediate"
        return {"config.json": v}, None


def next_boot(state):
    """BootState::next_boot (fleet-bootenv) and boot.cmd.in: the slot the next power-on boots."""
    active, trial, tries = state
    if trial and 1 <= tries <= 9:
        return trial
    return active


class UbootTrial:
    """Real U-Boot (tests/rpi-uboot) on the RPi layout, one power-on with a trial armed in
    fleet-a.env: boot.scr counts the trial down (or rolls back) and saves the other copy,
    fleet-b.env, before booting. The state is read with fleetd (the fleet_env backend)."""

    boots = True

    helper, bootloader, files = UBOOT, "uboot", ("fleet-a.env", "fleet-b.env")

    def __init__(self, seq, active, trial, tries):
        self.state = [str(seq), active, trial, str(tries)]
        self.cache = {}  # env file bytes -> what fleetd reads

    def prepare(self, work):
        image = os.path.join(work, "disk.img")
        run(self.helper, "image", image, *self.state)
        return image

    def record(self, work, image, log):
        run(self.helper, "record", image, log)

    def predict(self, got, row):
        state = got["boot state"]
        return "-" if isinstance(state, Exception) else next_boot(state)

    def boot(self, base, overlay, work):
        return boot_for_real(self.helper, base, overlay, work)

    def read(self, part, work):
        root = os.path.join(work, "fleetd-root")
        boot = os.path.join(root, "mnt", "boot")
        if not os.path.isdir(root):
            os.makedirs(boot)
            os.makedirs(os.path.join(root, "etc", "fleet"))
            os.makedirs(os.path.join(root, "proc"))
            with open(os.path.join(root, "etc", "fleet", "update.conf"), "w") as f:
                f.write(f"bootloader={self.bootloader}\n")
            with open(os.path.join(root, "proc", "cmdline"), "w") as f:
                f.write("fleet.slot=A\n")
        for name in self.files:
            path = os.path.join(boot, name)
            if os.path.exists(path):
                os.unlink(path)
        # One mtools run for all env files; a file it cannot read is simply not there.
        os.makedirs(os.path.join(boot, os.path.dirname(self.files[0])), exist_ok=True)
        subprocess.run(
            ["mcopy", "-n", "-i", part, *("::" + f for f in self.files),
             os.path.join(boot, os.path.dirname(self.files[0])) + "/"],
            capture_output=True,
        )
        copies = []
        for name in self.files:
            path = os.path.join(boot, name)
            copies.append(open(path, "rb").read() if os.path.exists(path) else None)
        key = tuple(copies)
        if key not in self.cache:
            p = subprocess.run(["fleetd", "--root", root, "update", "status"], capture_output=True)
            if p.returncode != 0:
                self.cache[key] = RuntimeError(p.stderr.decode(errors="replace").strip())
            else:
                st = json.loads(p.stdout)
                self.cache[key] = (st["active"], st["trial"], st["tries_left"] or 0)
        return {"boot state": self.cache[key]}

    def judge(self, got, old, new):
        state = got["boot state"]
        if isinstance(state, Exception):
            return {"boot state": "unreadable"}, False
        o, n = old["boot state"], new["boot state"]
        v = "new" if state == n else "old" if state == o else "mixed"
        good = next_boot(state) in (next_boot(o), next_boot(n)) and state[0] in (o[0], n[0])
        return {"boot state": v}, good


class GrubTrial(UbootTrial):
    """Real GRUB (standalone EFI, the layer's script) under OVMF on the GPT layout, one
    power-on with a trial armed in /EFI/fleet/grubenv: `save_env` rewrites the block in
    place through the firmware's block I/O before booting. Read with fleetd (grub backend)."""

    helper, bootloader, files = os.path.join(HERE, "grub"), "grub", ("EFI/fleet/grubenv",)

    def __init__(self, active, trial, tries, extra=None):
        super().__init__(0, active, trial, tries)
        self.state = [active, trial, str(tries)] + ([extra] if extra else [])


def fleetd_in_guest(image, log, args, cmdline, init="", files=(), mark_sector=None):
    """`fleetd --root / ARGS` in the kernel-vfat guest (`vfat record`) with the disk's
    partition 1 at /mnt/boot; `init`: shell lines run first (after /etc/fleet and
    /var/lib/fleet exist), `files`: (host, guest) pairs put into the guest."""
    env = dict(
        os.environ,
        VFAT_INIT="mkdir -p /etc/fleet/keys /var/lib/fleet\n" + init,
        VFAT_CMDLINE=cmdline,
        VFAT_FILES=" ".join(f"{h}={g}" for h, g in files),
    )
    if mark_sector is not None:
        env["VFAT_MARK_SECTOR"] = str(mark_sector)
    subprocess.run(
        [VFAT, "record", image, log, shutil.which("fleetd"), "--root", "/", *args],
        check=True, capture_output=True, env=env,
    )


def older_fleet_b_env(work, image):
    """An older fleet-b.env (seq 4, A good, no trial) next to fleet-a.env (seq 5): fleetd's
    store then replaces an existing file (rename over it), as every store after the first
    does."""
    vars_ = os.path.join(work, "b.vars")
    with open(vars_, "w") as f:
        f.write("fleet_active=A\nfleet_seq=4\n")
    env = os.path.join(work, "fleet-b.env")
    run("mkenvimage", "-p", "0", "-s", "4096", "-o", env, vars_)
    start, _ = part1(image)
    run("mcopy", "-o", "-i", f"{image}@@{start}", env, "::fleet-b.env")


class KernelVfatMarkGood(UbootTrial):
    """`fleetd update mark-good` on a device booted into slot B on trial (A good, B armed with
    3 tries in fleet-a.env seq 5, an older fleet-b.env seq 4; the RPi layout of the U-Boot
    scenarios): fleetd replaces the other copy, fleet-b.env, through the Linux kernel's vfat
    (fleet_fs::atomic_write: temporary, fsync, rename over, fsync of the directory) in the
    QEMU guest of `vfat record`. Each state is read by fleetd (the fleet_env backend) and a
    sample is powered on under real U-Boot: B must boot (the trial's next try or B made
    good)."""

    durable = True

    def __init__(self):
        super().__init__(5, "A", "B", 3)

    def prepare(self, work):
        image = super().prepare(work)
        older_fleet_b_env(work, image)
        return image

    def record(self, work, image, log):
        fleetd_in_guest(image, log, ["update", "mark-good"], "fleet.slot=B",
                        "echo bootloader=uboot >/etc/fleet/update.conf")


class Bundle:
    """A signed update bundle of a small ext4 root (VERSION_ID 2.0) for `device_type`, built
    for `slot` (the filesystem already carries the slot's label, so fleetd's relabel after
    the write is a no-op and the slot ends up byte for byte the manifest's image), and the
    directory of its public key: what `fleetd update install` accepts. `boot`: {path in the
    root: bytes}, the kernel the bootloader loads from the slot (a stand-in)."""

    def __init__(self, work, device_type, slot, boot):
        d = os.path.join(work, "bundle")
        os.makedirs(os.path.join(d, "content", "etc"), exist_ok=True)
        with open(os.path.join(d, "content", "etc", "os-release"), "w") as f:
            f.write("ID=fleetos\nVERSION_ID=2.0\n")
        for path, data in boot.items():
            os.makedirs(os.path.join(d, "content", os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(d, "content", path), "wb") as f:
                f.write(data)
        rootfs = os.path.join(d, "rootfs.ext4")
        run("truncate", "-s", "1M", rootfs)
        run("mkfs.ext4", "-q", "-F", "-L", f"fleet-root{slot}", "-d", os.path.join(d, "content"),
            rootfs)
        run("fleet", "bundle", "keygen", "-o", os.path.join(d, "release"))
        self.path = os.path.join(d, "v2.fleet")
        run("fleet", "bundle", "create", "--rootfs", rootfs, "--os-version", "2.0",
            "--compatible", device_type, "--key", os.path.join(d, "release.pem"), "-o", self.path)
        self.key = os.path.join(d, "release.pub")
        self.device_type = device_type
        self.slot = slot
        # The manifest as signed in the bundle (a tar, manifest.json first): what the slot
        # must hold whenever a boot env would start it.
        with tarfile.open(self.path) as t:
            m = json.load(t.extractfile("manifest.json"))
        self.size, self.sha256 = m["rootfs"]["size"], m["rootfs"]["sha256"]
        with open(rootfs, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != self.sha256:
                raise RuntimeError("the bundle's manifest does not list the image built")

    def install(self, image, log, bootloader, booted="A", mark_sector=None):
        """`fleetd update install` of the other slot from `booted` in the kernel-vfat guest,
        as on a device: fleetd finds the slot's partition on the recorded disk itself (GPT
        name or ext4 label), writes and verifies it, then arms the trial with one atomic store
        of the boot env; the disk's writes and flushes of both are in the log."""
        init = (f"echo bootloader={bootloader} >/etc/fleet/update.conf\n"
                f"echo {self.device_type} >/etc/fleet/device-type")
        files = [(self.path, "/v2.fleet"), (self.key, "/etc/fleet/keys/release.pub")]
        fleetd_in_guest(image, log, ["update", "install", "/v2.fleet", "--slot", self.slot,
                                     "--tries", "3"],
                        f"fleet.slot={booted}", init, files, mark_sector)


class SlotWrite:
    """The checker's rule for an install recorded with its slot write (vfat-arm,
    vfat-grub-arm): in every crash state, if the boot env (as fleetd reads it, the rule of
    the bootloaders' scripts) would start the new slot, that slot's partition must hold
    exactly the bundle's image (sha256 of its first `size` bytes = the manifest's);
    otherwise the old slot boots. `slot_partno`: the new slot's partition on the disk; the
    main loop materialises it next to partition 1 (`self.slot_path`)."""

    def slot_ok(self):
        with open(self.slot_path, "rb") as f:
            return hashlib.sha256(f.read(self.bundle.size)).hexdigest() == self.bundle.sha256

    def read(self, part, work):
        got = super().read(part, work)
        got["slot " + self.bundle.slot] = self.slot_ok()
        return got

    def judge(self, got, old, new):
        slot = "slot " + self.bundle.slot
        row, good = super().judge({"boot state": got["boot state"]}, old, new)
        state = got["boot state"]
        if not isinstance(state, Exception) and next_boot(state) == self.bundle.slot:
            # The env starts the new slot: it must be the image, all of it.
            row[slot] = "new" if got[slot] else "armed before its data"
            good = good and got[slot]
        return row, good


def ext4_file(image, partno, path):
    """A file of the ext4 filesystem on partition `partno` of `image` (debugfs)."""
    out = run("partx", "-g", "-o", "START,SECTORS", "-n", str(partno), image).stdout.decode().split()
    with tempfile.TemporaryDirectory(prefix="f22-ext4-") as d:
        run("dd", f"if={image}", f"of={d}/p", "bs=512", f"skip={out[0]}", f"count={out[1]}",
            "status=none")
        run("debugfs", "-R", f"dump {path} {d}/f", f"{d}/p")
        with open(f"{d}/f", "rb") as f:
            return f.read()


class KernelVfatArm(SlotWrite, UbootTrial):
    """`fleetd update install` of slot B from slot A good (fleet-a.env seq 5, no trial; an
    older fleet-b.env seq 4) through the kernel, as on a device: the image streamed into
    fleet-rootB (partition 3 of the recorded card, found by its label), fsynced and read
    back, then the arming: one fleet_env store, fleet-b.env replaced with
    fleet_fs::atomic_write (B armed with 3 tries). Each state: no trial (old) or B armed
    (new), read by fleetd, and whenever B would boot, B is the bundle's image; a sample
    booted under real U-Boot (old: A's kernel, new: the kernel of the bundle's image in
    B)."""

    durable = True
    slot_partno = 3

    def __init__(self):
        super().__init__(5, "A", "", 0)
        self.state = ["5", "A"]

    def prepare(self, work):
        image = super().prepare(work)
        older_fleet_b_env(work, image)
        # The bundle's root carries slot B's stand-in kernel (the one U-Boot loads).
        kernel = ext4_file(image, 3, "/boot/Image")
        self.bundle = Bundle(work, "raspberrypi4-64", "B", {"boot/Image": kernel})
        return image

    def record(self, work, image, log):
        self.bundle.install(image, log, "uboot")


class ControlArmNoFlush(KernelVfatArm):
    """Negative control for the slot-before-arm order: vfat-arm's recording replayed as if
    the flushes between the slot write and the arming were not there (the epochs from the
    one holding the last write to the slot's partition to the end merged into one: the
    device may then persist the new env before the slot's data). The checker must find
    states that arm B while B is not the image."""

    durable = False

    def epochs(self, epochs, lo, hi):
        last = max(k for k, e in enumerate(epochs) if any(lo <= w.sector < hi for w in e))
        return epochs[:last] + [[w for e in epochs[last:] for w in e]]


class KernelVfatRollback(KernelVfatMarkGood):
    """`fleetd update rollback` on a device booted into slot B on trial (A good, B armed with
    3 tries; what the health check runs when a trial fails): fleetd drops the trial in one
    fleet_env store, fleet-b.env replaced with fleet_fs::atomic_write through the kernel's
    vfat. Each state: B still on trial (old: U-Boot boots B) or no trial (new: A), read by
    fleetd; a sample booted under real U-Boot."""

    def record(self, work, image, log):
        fleetd_in_guest(image, log, ["update", "rollback"], "fleet.slot=B",
                        "echo bootloader=uboot >/etc/fleet/update.conf")


# A sector of the GRUB disk past its partitions (they end at 165888): the kernel-vfat
# guest's marker must not land on the GPT header (sector 1).
GRUB_MARK_SECTOR = 190000


class KernelVfatGrubMarkGood(GrubTrial):
    """The x86 layout: `fleetd update mark-good` in slot B on trial (A good, B 3 tries) with
    the grub backend, through the kernel's vfat on the ESP (FAT32): /EFI/fleet/grubenv
    replaced with fleet_fs::atomic_write. Read by fleetd; a sample booted under real
    GRUB/OVMF (B either way)."""

    durable = True

    def __init__(self):
        super().__init__("A", "B", 3)

    def record(self, work, image, log):
        fleetd_in_guest(image, log, ["update", "mark-good"], "fleet.slot=B",
                        "echo bootloader=grub >/etc/fleet/update.conf",
                        mark_sector=GRUB_MARK_SECTOR)


class KernelVfatGrubRollback(KernelVfatGrubMarkGood):
    """The x86 layout: `fleetd update rollback` in slot B on trial (A good, 3 tries), the
    grubenv store through the kernel's vfat. Old: GRUB boots B (the trial), new: A."""

    def record(self, work, image, log):
        fleetd_in_guest(image, log, ["update", "rollback"], "fleet.slot=B",
                        "echo bootloader=grub >/etc/fleet/update.conf",
                        mark_sector=GRUB_MARK_SECTOR)


class KernelVfatGrubArm(SlotWrite, GrubTrial):
    """The x86 layout: `fleetd update install` of slot A from B good: the image streamed into
    fleet-rootA (partition 2 of the GRUB disk, found by its GPT name), fsynced and read back,
    then A armed (3 tries) with the grubenv store through the kernel's vfat. Old: no trial
    (GRUB boots B), new: A armed (GRUB boots A), and whenever A would boot it is the bundle's
    image. The direction where an unreadable grubenv is worst: GRUB's script then boots A,
    the slot just written, with no trial to roll back from."""

    durable = True
    slot_partno = 2

    def __init__(self):
        super().__init__("B", "", 0)

    def prepare(self, work):
        image = super().prepare(work)
        self.bundle = Bundle(work, "qemux86-64", "A",
                             {"boot/bzImage": b"not a kernel: slot A, version 2.0\n"})
        return image

    def record(self, work, image, log):
        self.bundle.install(image, log, "grub", "B", GRUB_MARK_SECTOR)


SCENARIOS = {
    "provision-state": Provision(),
    # ext4 too: the persistent-logging switch, net import's keyfiles, the supervisor's target.
    "logging-state": ProvisionLogging(),
    "net-import-state": NetImport(),
    "supervisor-target": SupervisorTarget(),
    "control-mtools-overwrite": Control(),
    "configure-rpi": Configure("mbr", False),
    "configure-rpi-connection": Configure("mbr", True),
    "configure-x86": Configure("gpt", False),
    # Device side through the Linux kernel's vfat (QEMU guest): the supervisor's two saves.
    "vfat-registration": KernelVfatRegistration(),
    # fleetd's boot-state write through the kernel's vfat: mark-good of slot B.
    "vfat-mark-good": KernelVfatMarkGood(),
    # ... an update install's arming (fleet-b.env) from slot A.
    "vfat-arm": KernelVfatArm(),
    # Negative control: the same recording without the flushes between slot data and arming.
    "control-arm-no-flush": ControlArmNoFlush(),
    # The x86 layout's grubenv on the ESP through the kernel's vfat: arming and mark-good.
    "vfat-grub-arm": KernelVfatGrubArm(),
    "vfat-grub-mark-good": KernelVfatGrubMarkGood(),
    # A failed trial given up from Linux (`fleetd update rollback`), on both layouts.
    "vfat-rollback": KernelVfatRollback(),
    "vfat-grub-rollback": KernelVfatGrubRollback(),
    # A good, B on trial (3 tries): U-Boot counts down to 2 and boots B.
    "uboot-countdown": UbootTrial(5, "A", "B", 3),
    # A good, B's last try: U-Boot saves tries 0 and boots B; the next power-on rolls back,
    # so the old and the new state predict different slots (B again / A).
    "uboot-last-try": UbootTrial(5, "A", "B", 1),
    # B good, A on trial: the case a lost env used to turn into booting A.
    "uboot-countdown-b-good": UbootTrial(5, "B", "A", 3),
    # B good, A's trial out of tries: U-Boot rolls back to B and clears the trial.
    "uboot-rollback-to-b": UbootTrial(5, "B", "A", 0),
    # The same three on x86 under GRUB/OVMF (grubenv rewritten in place by save_env).
    "grub-countdown-b-good": GrubTrial("B", "A", 3),
    "grub-last-try": GrubTrial("A", "B", 1),
    "grub-rollback-to-b": GrubTrial("B", "A", 0),
    # DESIGN.md section 7's exception: a long hand-set fleet_extra_cmdline placed before the
    # trial variables pushes them across the block's sector boundary.
    # 433 characters: fleet_try ends in sector 1, fleet_tries straddles sectors 1 and 2.
    "grub-long-extra-cmdline": GrubTrial("B", "A", 0, "fleet.debug=" + "x" * 421),
}


def boot_for_real(helper, base, overlay, work):
    """Writes the crash state onto a copy of the whole card and powers it on under QEMU."""
    card = crash_copy(base, overlay, os.path.join(work, "crash-card.img"))
    return run(helper, "boot", card).stdout.decode().strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--work", required=True)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--subsets", type=int, default=200)
    ap.add_argument("--exhaustive", type=int, default=0)
    ap.add_argument("--torn-all", action="store_true")
    ap.add_argument("--boots", type=int, default=0, help="crash states booted for real")
    ap.add_argument("--show", type=int, default=5)
    a = ap.parse_args()
    sc = SCENARIOS[a.scenario]
    os.makedirs(a.work, exist_ok=True)
    t0 = time.monotonic()
    image = sc.prepare(a.work)
    start, size = sc.part(image) if hasattr(sc, "part") else part1(image)
    check_fs = sc.fsck if hasattr(sc, "fsck") else fsck
    base = os.path.join(a.work, "base.img")
    run("cp", "--sparse=always", image, base)
    log = os.path.join(a.work, "writes.log")
    sc.record(a.work, image, log)
    epochs = crashstates.parse(log)
    durable_epochs = crashstates.parse.durable_epochs
    disk = crashstates.Disk(base, start, size, os.path.join(a.work, "state.part"))
    final = crashstates.Disk(image, start, size, os.path.join(a.work, "final.part"))
    # Scenarios that also write a slot partition (SlotWrite): it is materialised too.
    slot = slot_final = None
    if hasattr(sc, "slot_partno"):
        out = run("partx", "-g", "-o", "START,SECTORS", "-n", str(sc.slot_partno), image)
        s_start, s_size = (int(x) * 512 for x in out.stdout.split())
        slot = crashstates.Disk(base, s_start, s_size, os.path.join(a.work, "slot.part"))
        slot_final = crashstates.Disk(image, s_start, s_size, os.path.join(a.work, "slot-final.part"))
        if hasattr(sc, "epochs"):
            epochs = sc.epochs(epochs, slot.start, slot.start + slot.size)
        sc.slot_path = slot.path
    old = sc.read(disk.path, a.work)
    if slot:
        sc.slot_path = slot_final.path
    new = sc.read(final.path, a.work)
    if slot:
        sc.slot_path = slot.path
    sc.old_new = (old, new)
    not_durable = []
    if getattr(sc, "durable", False):
        # The program returned: what it wrote must be on the card as of its last flush (a
        # cut right after it returns), not only in the page cache.
        overlay = crashstates.durable(epochs, durable_epochs)
        local, _ = disk.inside(overlay)
        disk.set(local)
        if slot:
            slot.set(slot.inside(overlay)[0])
        try:
            at_flush = sc.read(disk.path, a.work)
        finally:
            disk.reset()
            if slot:
                slot.reset()
        not_durable = [n for n in new if at_flush[n] != new[n]]
    for name in new:
        if name in getattr(sc, "unchanged", ()):
            continue
        if new[name] == old[name] or isinstance(new[name], Exception):
            print(f"{a.scenario}: the scenario did not change {name}: {new[name]!r}", file=sys.stderr)
            return 2
    summary = {
        "scenario": a.scenario,
        "seed": a.seed,
        "epochs": len(epochs),
        "writes": sum(len(e) for e in epochs),
        "states": 0,
        "checked": 0,
        "booted": 0,
        "boot_mismatch": 0,
        "no_good_slot": 0,
        "lost_or_mixed": 0,
        "unreadable": 0,
        "fsck_errors": 0,
        "outside_partition": 0,
        "durable_epochs": durable_epochs,
        "not_durable": len(not_durable),
        "armed_bad_slot": 0,
    }
    verdicts, bad, seen, to_boot = {}, [], set(), {}
    rng = random.Random(a.seed)
    for label, overlay in crashstates.states(
        epochs, a.seed, a.subsets, a.exhaustive, a.torn_all
    ):
        summary["states"] += 1
        local, outside = disk.inside(overlay)
        if slot:
            slot_local, _ = slot.inside(overlay)
            outside -= len(slot_local)
        summary["outside_partition"] += outside
        key = hash(tuple(sorted(overlay.items())))
        if key in seen:
            continue
        seen.add(key)
        summary["checked"] += 1
        disk.set(local)
        if slot:
            slot.set(slot_local)
        try:
            fs, why = check_fs(disk.path)
            got = sc.read(disk.path, a.work)
        finally:
            disk.reset()
            if slot:
                slot.reset()
        row, good = sc.judge(got, old, new)
        if any(v == "armed before its data" for v in row.values()):
            summary["armed_bad_slot"] += 1
        if fs == "errors" or (fs != "clean" and check_fs is fsck):
            summary["fsck_errors"] += 1
        for v in row.values():
            verdicts[v] = verdicts.get(v, 0) + 1
        if good is False:
            summary["no_good_slot"] += 1
        if any(v in ("lost", "mixed") for v in row.values()):
            summary["lost_or_mixed"] += 1
        if any(v == "unreadable" for v in row.values()):
            summary["unreadable"] += 1
        if good is False or any(v in ("lost", "mixed", "unreadable", "armed before its data")
                                for v in row.values()):
            bad.append((label, row, good, why))
        if sc.boots and a.boots:
            # A reservoir sample per verdict (old/new/...), so the states booted for real
            # cover each outcome the checker predicts; the prediction is the checker's.
            predicted = sc.predict(got, row)
            kind = tuple(sorted(row.values()))
            pool = to_boot.setdefault(kind, [[], 0])
            pool[1] += 1
            item = (label, dict(overlay), predicted)
            if len(pool[0]) < a.boots:
                pool[0].append(item)
            else:
                j = rng.randrange(pool[1])
                if j < a.boots:
                    pool[0][j] = item
    pools = [p[0] for _, p in sorted(to_boot.items())] if isinstance(to_boot, dict) else []
    picked = []
    while len(picked) < a.boots and any(pools):
        for pool in pools:
            if pool and len(picked) < a.boots:
                picked.append(pool.pop(0))
    mismatches = []
    booted_slots = {}
    for label, overlay, predicted in picked:
        seen = sc.boot(base, overlay, a.work)
        summary["booted"] += 1
        # Bootloader scenarios: the slot; config ones: the document applied.
        what = seen if isinstance(seen, str) else (
            "/".join(v for k, v in seen if k == "config.json")
            or "/".join(sorted({v for k, v in seen if k != "after the rerun"})))
        booted_slots[what] = booted_slots.get(what, 0) + 1
        if seen != predicted:
            summary["boot_mismatch"] += 1
            mismatches.append(f"{label}: predicted {predicted}, the real boot gave {seen}")
    if booted_slots:
        summary["booted_slots"] = booted_slots
    summary["verdicts"] = verdicts
    summary["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary))
    for label, row, good, why in bad[: a.show]:
        print(f"  state {label} (seed {a.seed}): {row} good slot: {good} fsck: {why}")
    for m in mismatches[: a.show]:
        print(f"  booted {m}")
    for name in not_durable:
        print(f"  not durable: {name} as of the last flush before the program returned "
              f"(epoch {durable_epochs} of {len(epochs)}) is not what it wrote")
    failed = summary["lost_or_mixed"] or summary["unreadable"] or summary["no_good_slot"]
    failed = failed or summary["not_durable"] or summary["armed_bad_slot"]
    return 1 if failed or summary["boot_mismatch"] else 0


if __name__ == "__main__":
    sys.exit(main())
