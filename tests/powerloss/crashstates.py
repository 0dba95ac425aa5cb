"""Crash states from a dm-log-writes recording (QEMU blklogwrites, 512-byte log sectors).

A power cut keeps every write completed before the last completed flush, any subset of the
writes issued since (the device may reorder them), and may tear a multi-sector write (one
512-byte sector of it left old). `states()` yields such states as overlays on the image the
recording started from: {sector: 512 bytes}. A seed makes every run reproducible.
"""

import random
import struct

MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
SECTOR = 512
# A sector a recording writes to say "the program returned here" (not a write of the scenario).
MARKER = b"F22-POWERLOSS-MARK"


class Write:
    __slots__ = ("sector", "data")

    def __init__(self, sector, data):
        self.sector, self.data = sector, data

    @property
    def sectors(self):
        return len(self.data) // SECTOR

    def chunks(self):
        for i in range(self.sectors):
            yield self.sector + i, self.data[i * SECTOR:(i + 1) * SECTOR]


def parse(path):
    """The recording as a list of epochs: the writes between two flushes, in issue order.
    A FUA write is durable on its own: it closes its epoch like a flush after it."""
    with open(path, "rb") as f:
        magic, version, entries, sectorsize = struct.unpack("<QQQI", f.read(28))
        if magic != MAGIC or version != 1:
            raise ValueError(f"{path}: not a dm-log-writes log (magic {magic:#x})")
        if sectorsize != SECTOR:
            raise ValueError(f"{path}: log sector size {sectorsize}, want {SECTOR}")
        epochs, current = [], []
        parse.durable_epochs = None
        pos = 1
        for _ in range(entries):
            f.seek(pos * SECTOR)
            sector, nr, flags, data_len = struct.unpack("<QQQQ", f.read(32))
            pos += 1
            if flags & DISCARD:
                # A discard may or may not land: model it as a write of zeros.
                current.append(Write(sector, bytes(nr * SECTOR)))
            elif nr:
                f.seek(pos * SECTOR)
                data = f.read(nr * SECTOR)
                pos += nr
                if any(data[i:i + len(MARKER)] == MARKER for i in range(0, len(data), SECTOR)):
                    parse.durable_epochs = len([e for e in epochs if e])
                else:
                    current.append(Write(sector, data))
            if flags & (FLUSH | FUA):
                epochs.append(current)
                current = []
        epochs.append(current)
        if parse.durable_epochs is None:
            parse.durable_epochs = len([e for e in epochs[:-1] if e])
        return [e for e in epochs if e] or [[]]


# Set by parse(): how many of the epochs it returned were flushed before MARKER was written
# (`vfat record` writes it outside the partition once the program returned), else before the
# end of the log.
parse.durable_epochs = None


def durable(epochs, count):
    """The disk as of a flush: the writes of the first `count` epochs."""
    overlay = {}
    for writes in epochs[:count]:
        apply(overlay, writes)
    return overlay


def apply(overlay, writes, torn=None):
    """Applies `writes` in order; `torn` = (write index, sector index) left old."""
    for j, w in enumerate(writes):
        for i, (s, d) in enumerate(w.chunks()):
            if torn == (j, i):
                continue
            overlay[s] = d


def states(epochs, seed, subsets_per_epoch, exhaustive_up_to=0, torn_all=False):
    """Yields (label, overlay). Per epoch k: the disk as of the flush before it (all earlier
    epochs), up to `subsets_per_epoch` seeded random subsets of its writes (all 2^m when
    m <= exhaustive_up_to), torn writes (every sector of every multi-sector write with
    torn_all, else one random sector of each), and random subsets with one torn write.
    Finally the disk after the last flush."""
    rng = random.Random(seed)
    prefix = {}
    for k, writes in enumerate(epochs):
        yield f"flush{k}", dict(prefix)
        m = len(writes)
        if m and m <= exhaustive_up_to:
            picks = [[(mask >> j) & 1 for j in range(m)] for mask in range(1, 2**m - 1)]
        else:
            picks = [[rng.random() < 0.5 for _ in range(m)] for _ in range(subsets_per_epoch)]
        for n, pick in enumerate(picks):
            overlay = dict(prefix)
            apply(overlay, [w for w, p in zip(writes, pick) if p])
            yield f"epoch{k}-subset{n}", overlay
        for j, w in enumerate(writes):
            if w.sectors < 2:
                continue
            torn = range(w.sectors) if torn_all else [rng.randrange(w.sectors)]
            for i in torn:
                overlay = dict(prefix)
                apply(overlay, writes[: j + 1], torn=(j, i))
                yield f"epoch{k}-torn{j}.{i}", overlay
        multi = [j for j, w in enumerate(writes) if w.sectors > 1]
        if multi:
            for n in range(max(1, subsets_per_epoch // 4)):
                j = rng.choice(multi)
                pick = [rng.random() < 0.5 for _ in range(m)]
                pick[j] = True
                chosen = [w for w, p in zip(writes, pick) if p]
                overlay = dict(prefix)
                apply(overlay, chosen, torn=(chosen.index(writes[j]), rng.randrange(writes[j].sectors)))
                yield f"epoch{k}-subset-torn{n}", overlay
        apply(prefix, writes)
    yield "final", dict(prefix)


class Disk:
    """A partition of the base image materialised once in a file; a state is applied as an
    overlay and undone afterwards, so a state costs only the sectors it changes."""

    def __init__(self, image, start, size, path):
        self.start, self.size, self.path = start // SECTOR, size // SECTOR, path
        with open(image, "rb") as src, open(path, "wb") as dst:
            src.seek(start)
            left = size
            while left:
                chunk = src.read(min(left, 1 << 20))
                dst.write(chunk)
                left -= len(chunk)
        self.f = open(path, "r+b", buffering=0)
        self.saved = {}

    def inside(self, overlay):
        """(overlay relative to the partition, number of sectors outside it)."""
        local, outside = {}, 0
        for s, d in overlay.items():
            if self.start <= s < self.start + self.size:
                local[s - self.start] = d
            else:
                outside += 1
        return local, outside

    def set(self, local):
        import os

        for s, d in local.items():
            self.saved[s] = os.pread(self.f.fileno(), SECTOR, s * SECTOR)
            os.pwrite(self.f.fileno(), d, s * SECTOR)

    def reset(self):
        import os

        for s, d in self.saved.items():
            os.pwrite(self.f.fileno(), d, s * SECTOR)
        self.saved = {}
