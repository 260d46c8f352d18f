"""Power-loss simulator for mmkv: builds crash images and checks that recovery is right.

Method (after SQLite's test6.c, adapted to a store that writes through mmap, where the
writes are stores into the page cache rather than system calls):

- A round runs random operations on a store.  After every operation the file is read back
  and each 4 KiB page that changed becomes a new *page version*, tagged with the operation
  that made it.  At a `sync()` the whole file becomes the *disk image* and the version list
  is emptied: what sync() returned for is on disk.
- A crash image starts from the disk image.  Each page version made since is applied or
  not, independently and in operation order (so a later version of a page overrides an
  earlier one that was applied); some applied versions are torn: only a random subset of
  their 512-byte sectors reaches the disk (a "mosaic" tear, worse than new-then-old).
  The file length is either the synced length or the current one (a grow by fallocate
  whose size never reached the disk).
- Recovery: the image is written to a file and opened read-write with a new boot id
  (MMKV_TEST_BOOT_ID), which is what the store sees after a reboot: the first opener
  scans the log and rebuilds the table.
- Checks: the open succeeds; the structural check passes; the contents equal the model
  state after some prefix of the operations that is at least as long as the prefix
  before the last sync (no synced write lost, nothing torn, nothing out of order).

The granularity is one operation: page states inside an operation are not versioned, but
since every page version is kept or dropped independently, the images include the states
a crash inside an operation leaves (a record page new with the header and table pages old,
and every other mix).

    python tools/crashsim.py --images 20000 [--seed S] [--no-crc-control]
"""
import argparse
import os
import random
import sys
import tempfile
import time

PAGE = 4096
SECTOR = 512


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Round:
    """One store, one operation history, the disk image at the last sync, the versions."""

    def __init__(self, workdir, rng, n_before, n_after):
        import mmkv
        self.rng = rng
        self.path = os.path.join(workdir, "round.mmkv")
        d = mmkv.open(self.path, "n", initial_capacity=16, auto_compact=False)
        model = {}
        self.states = [dict(model)]
        prev = _read(self.path)
        self.versions = []
        for i in range(n_before + n_after):
            for _ in self._ops(d, model):      # one step per store operation
                self.states.append(dict(model))
                cur = _read(self.path)
                self._diff(prev, cur)
                prev = cur
            if i == n_before - 1:
                d.sync()
                self.disk = prev = _read(self.path)
                self.synced_ops = len(self.states) - 1
                self.versions = []
        self.final_len = len(prev)
        d.close()

    def _ops(self, d, model):
        """One random operation (or a burst of them); yields after each store call."""
        rng = self.rng
        key = b"k%d" % rng.randrange(40)
        r = rng.random()
        if r < 0.55:
            value = bytes([rng.randrange(256)]) * rng.choice((0, 1, 30, 200, 3000, 9000))
            d[key] = value
            model[key] = value
            yield
        elif r < 0.8:
            if key in model:
                del d[key]
                del model[key]
                yield
        elif r < 0.9:
            d.incr(b"counter")
            model[b"counter"] = b"%d" % (int(model.get(b"counter", b"0")) + 1)
            yield
        elif r < 0.93:
            d.clear()
            model.clear()
            yield
        elif r < 0.96:                               # a batch is one operation: whole or not
            items = [(b"m%d" % rng.randrange(60),
                      bytes([rng.randrange(256)]) * rng.choice((0, 5, 300, 5000)))
                     for _ in range(rng.randrange(1, 25))]
            d.set_many(items)
            model.update(items)
            yield
        elif r < 0.975:
            keys = [b"m%d" % rng.randrange(60) for _ in range(rng.randrange(1, 25))] + [key]
            d.delete_many(keys)
            for k in keys:
                model.pop(k, None)
            yield
        else:
            for j in range(rng.randrange(1, 30)):   # bursts that force table rebuilds
                k = b"b%d" % rng.randrange(200)
                d[k] = b"%d" % j
                model[k] = b"%d" % j
                yield

    def _diff(self, prev, cur):
        for off in range(0, len(cur), PAGE):
            page = cur[off:off + PAGE]
            if page != prev[off:off + PAGE]:
                self.versions.append((off, page))

    def image(self, rng):
        """A crash image: bytes of the file as a power loss could leave it."""
        length = len(self.disk) if rng.random() < 0.3 else self.final_len
        img = bytearray(self.disk[:length].ljust(length, b"\0"))
        keep = rng.choice((0.2, 0.5, 0.8, 1.0))
        for off, page in self.versions:
            if off >= length or rng.random() >= keep:
                continue
            if rng.random() < 0.15:
                for s in range(0, PAGE, SECTOR):
                    if rng.random() < 0.5:
                        img[off + s:off + s + SECTOR] = page[s:s + SECTOR]
            else:
                img[off:off + PAGE] = page
        return bytes(img)


def check_image(img, rnd, path):
    """Recover img; return None if right, else a description of what is wrong."""
    import mmkv
    with open(path, "wb") as f:
        f.write(img)
    os.environ["MMKV_TEST_BOOT_ID"] = os.urandom(16).hex()
    try:
        d = mmkv.open(path, "w")
    except mmkv.error as e:
        return f"open failed: {e!r}"
    finally:
        del os.environ["MMKV_TEST_BOOT_ID"]
    try:
        try:
            d._check()
        except mmkv.CorruptError as e:
            return f"structural check failed: {e}"
        try:
            got = {k: d[k] for k in d}
        except (mmkv.error, KeyError) as e:
            return f"read failed: {e!r}"
        for n in range(len(rnd.states) - 1, rnd.synced_ops - 1, -1):
            if rnd.states[n] == got:
                return None
        return (f"contents match no prefix of the history of at least {rnd.synced_ops} "
                f"operations ({len(got)} keys)")
    finally:
        d.close()


def run(images, seed, per_round=50, log=None):
    """Run `images` crash images; return (checked, failures list)."""
    rng = random.Random(seed)
    failures = []
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, "crash.mmkv")
        while checked < images:
            rnd = Round(tmp, rng, rng.randrange(5, 60), rng.randrange(1, 60))
            for _ in range(min(per_round, images - checked)):
                problem = check_image(rnd.image(rng), rnd, target)
                checked += 1
                if problem:
                    failures.append(problem)
            if log and checked % 1000 < per_round:
                log(f"{checked} images, {len(failures)} failures")
    return checked, failures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-crc-control", action="store_true",
                   help="negative control: recover without checking record CRCs")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    if args.no_crc_control:
        os.environ["MMKV_TEST_SCAN_NO_CRC"] = "1"
    t0 = time.time()
    checked, failures = run(args.images, seed, log=lambda m: print(m, file=sys.stderr))
    kinds = {}
    for f in failures:
        kinds[f.split(":")[0]] = kinds.get(f.split(":")[0], 0) + 1
    print(f"seed {seed}: {checked} crash images in {time.time() - t0:.1f} s, "
          f"{len(failures)} failures {kinds}")
    return 1 if failures and not args.no_crc_control else 0


if __name__ == "__main__":
    sys.exit(main())
