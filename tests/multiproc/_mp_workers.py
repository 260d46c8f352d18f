"""Child-process entry points for tests/multiproc.

Each worker opens the store itself, runs until told to stop (or for a fixed amount of work),
and reports a dict through `_harness.reporting`: operation counts and the errors it saw, as
text, capped so a broken store cannot flood the queue. Values are `_selfcheck` values.
"""

import collections
import random
import time

import mmkv

from _harness import reporting
from _selfcheck import Invalid, make, parse

MAX_ERRORS = 30
STOP_EVERY = 64  # operations between two looks at the stop event (a semaphore)


def stable_key(i: int) -> bytes:
    return b"s%05d" % i


def volatile_key(i: int) -> bytes:
    return b"v%05d" % i


def value_size(rng: random.Random) -> int:
    """Mostly small values, some of a few KiB, a few big enough to grow the file."""
    r = rng.random()
    if r < 0.70:
        return rng.randrange(0, 100)
    if r < 0.97:
        return rng.randrange(100, 4096)
    return rng.randrange(4096, 65536)


class Errors:
    """A capped list of error descriptions with an exact total."""

    def __init__(self):
        self.count = 0
        self.first = []

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.first) < MAX_ERRORS:
            self.first.append(text)


def seed_stable(path: str, n_stable: int) -> None:
    """Create a new store holding stable keys 0..n_stable-1 (called in the test process)."""
    with mmkv.open(path, "n") as d:
        for i in range(n_stable):
            key = stable_key(i)
            d[key] = make(key, "seed", 16)


@reporting
def churn_writer(path, wid, n_stable, n_volatile, stop, seed):
    """Overwrite stable keys, insert, overwrite and delete volatile keys, until `stop`."""
    rng = random.Random(seed)
    ops = deletes = 0
    with mmkv.open(path, "w") as d:
        while not stop.is_set():
            for _ in range(STOP_EVERY):
                ops += 1
                r = rng.random()
                if r < 0.15:
                    key = stable_key(rng.randrange(n_stable))
                else:
                    key = volatile_key(rng.randrange(n_volatile))
                if r >= 0.70:
                    deletes += 1
                    try:
                        del d[key]
                    except KeyError:
                        pass
                else:
                    d[key] = make(key, f"{wid}.{ops}", value_size(rng))
    return {"ops": ops, "deletes": deletes}


@reporting
def checking_reader(path, flag, n_stable, n_volatile, stop, seed):
    """Read stable and volatile keys until `stop`: every value must validate, no stable key
    may ever be missing, and len() never drops below the number of stable keys."""
    rng = random.Random(seed)
    errors = Errors()
    reads = 0
    with mmkv.open(path, flag) as d:
        while not stop.is_set():
            for _ in range(STOP_EVERY):
                reads += 1
                _one_checked_read(d, rng, n_stable, n_volatile, errors)
    return {"reads": reads, "errors": errors.count, "first_errors": errors.first}


def _one_checked_read(d, rng, n_stable, n_volatile, errors):
    """One random check: get a stable key, get a volatile key, `in`, or len()."""
    r = rng.random()
    if r < 0.45:
        _read_expect(d, stable_key(rng.randrange(n_stable)), errors)
    elif r < 0.90:
        key = volatile_key(rng.randrange(n_volatile))
        value = _get(d, key, errors)
        if value is not None:
            _validate(key, value, errors)
    elif r < 0.97:
        key = stable_key(rng.randrange(n_stable))
        try:
            if key not in d:
                errors.add(f"stable key {key!r}: `in` says absent")
        except mmkv.error as exc:
            errors.add(f"{key!r} in d raised {exc!r}")
    else:
        size = len(d)
        if size < n_stable:
            errors.add(f"len(d) == {size} < {n_stable} stable keys")


def _get(d, key, errors):
    """d.get(key), or None after recording the error it raised."""
    try:
        return d.get(key)
    except mmkv.error as exc:
        errors.add(f"get({key!r}) raised {exc!r}")
        return None


def _validate(key, value, errors):
    try:
        parse(key, value)
    except Invalid as exc:
        errors.add(str(exc))


@reporting
def pingpong(path, role, conn, rounds, seed):
    """Two of these take turns: one writes and tells the other (a pipe), which then reads.

    The reader must see exactly the value just written (or its absence after a delete): a write
    that returned in one process is visible to a read that starts later in another. Shared keys
    make each side overwrite the other's values; fresh keys make the table grow, and some big
    values make the file grow, so the reading side must follow a rebuilt table and a remap.
    """
    rng = random.Random(seed)
    errors = Errors()
    writes = checks = 0
    with mmkv.open(path, "w") as d:
        for r in range(rounds):
            if r % 2 == role:
                key, tag = _random_write(d, rng, role, r)
                writes += 1
                conn.send((r, key, tag))
                if not conn.poll(30):
                    raise TimeoutError(f"round {r}: no answer from the reading side in 30 s")
                conn.recv()
            else:
                if not conn.poll(30):
                    raise TimeoutError(f"round {r}: nothing from the writing side in 30 s")
                wr, key, tag = conn.recv()
                assert wr == r, (wr, r)
                _check_exact(d, key, tag, r, errors)
                checks += 1
                conn.send(r)
    return {"writes": writes, "checks": checks, "errors": errors.count,
            "first_errors": errors.first}


def _random_write(d, rng, role, r):
    """Do one put or delete; return (key, tag of the value now there, or None if absent)."""
    x = rng.random()
    if x < 0.25:
        key = b"f%d-%06d" % (role, r)  # a fresh key
    else:
        key = b"p%04d" % rng.randrange(400)  # shared with the other side
    if x >= 0.80:
        try:
            del d[key]
        except KeyError:
            pass
        return key, None
    tag = f"{role}.{r}"
    size = rng.randrange(65536, 524288) if rng.random() < 0.03 else value_size(rng)
    d[key] = make(key, tag, size)
    return key, tag


def _check_exact(d, key, tag, r, errors):
    value = d.get(key)
    if tag is None:
        if value is not None:
            errors.add(f"round {r}: {key!r} deleted by the other process, still readable")
        return
    if value is None:
        errors.add(f"round {r}: {key!r} written by the other process ({tag}), missing")
        return
    try:
        got = parse(key, value)
    except Invalid as exc:
        errors.add(f"round {r}: {exc}")
        return
    if got != tag:
        errors.add(f"round {r}: {key!r} reads {got}, the other process had written {tag}")


@reporting
def noise_writer(path, wid, n_stable, stop, seed):
    """Insert and delete keys of its own, and overwrite stable keys, until `stop`: the table
    is rebuilt (growth and tombstones) and the file grows meanwhile."""
    rng = random.Random(seed)
    live = []
    ops = 0
    with mmkv.open(path, "w") as d:
        while not stop.is_set():
            for _ in range(STOP_EVERY):
                ops += 1
                r = rng.random()
                if n_stable and r < 0.1:
                    key = stable_key(rng.randrange(n_stable))
                    d[key] = make(key, f"n{wid}.{ops}", rng.randrange(0, 64))
                elif live and r < 0.45:
                    i = rng.randrange(len(live))
                    live[i], live[-1] = live[-1], live[i]
                    del d[live.pop()]
                else:
                    key = b"n%d-%07d" % (wid, ops)
                    d[key] = make(key, f"n{wid}.{ops}", rng.randrange(0, 64))
                    live.append(key)
    return {"ops": ops, "live": len(live)}


@reporting
def iterating_reader(path, n_stable, stop):
    """Iterate the whole store again and again until `stop` (at least twice): every stable key
    is yielded exactly once per pass, no key twice, and only stable keys or keys of a noise
    writer (keys deleted before the iterators started, b"d...", are "unknown")."""
    errors = Errors()
    passes = yielded = 0
    stable = {stable_key(i) for i in range(n_stable)}
    with mmkv.open(path, "r") as d:
        while passes < 2 or not stop.is_set():
            seen = collections.Counter(iter(d))
            passes += 1
            yielded += sum(seen.values())
            for key, n in seen.items():
                if n != 1:
                    errors.add(f"pass {passes}: {key!r} yielded {n} times")
                if key not in stable and not key.startswith(b"n"):
                    errors.add(f"pass {passes}: unknown key {key!r} yielded")
            missing = stable - seen.keys()
            if missing:
                errors.add(f"pass {passes}: {len(missing)} stable keys not yielded, "
                           f"e.g. {sorted(missing)[:5]}")
    return {"passes": passes, "yielded": yielded, "errors": errors.count,
            "first_errors": errors.first}


@reporting
def growing_writer(path, queues, n_keys, size):
    """Insert `n_keys` new keys of `size` bytes, announcing each on every queue once written."""
    start = time.monotonic()
    with mmkv.open(path, "w") as d:
        for i in range(n_keys):
            key = b"g%05d" % i
            d[key] = make(key, f"g{i}", size)
            for q in queues:
                q.put(key)
        file_size = d.stats()["file_size"]
    for q in queues:
        q.put(None)
    return {"written": n_keys, "seconds": time.monotonic() - start, "file_size": file_size}


@reporting
def growth_reader(path, old_keys, announced, ready, seed):
    """Open the store while it is small, then check each announced key as it arrives, while
    re-reading old keys and earlier announced ones; at the end check all of them again."""
    rng = random.Random(seed)
    errors = Errors()
    seen = []
    reads = 0
    with mmkv.open(path, "r") as d:
        first_size = d.stats()["file_size"]
        ready.set()
        while True:
            key = announced.get(timeout=60)
            if key is None:
                break
            reads += _read_expect(d, key, errors)
            seen.append(key)
            for _ in range(4):
                reads += _read_expect(d, rng.choice(old_keys), errors)
            reads += _read_expect(d, rng.choice(seen), errors)
        for key in old_keys + seen:
            reads += _read_expect(d, key, errors)
        last_size = d.stats()["file_size"]
    return {"announced": len(seen), "reads": reads, "first_file_size": first_size,
            "last_file_size": last_size, "errors": errors.count, "first_errors": errors.first}


def _read_expect(d, key, errors):
    """Read `key`, which must be present and valid; return 1 (one read)."""
    try:
        value = d.get(key)
    except mmkv.error as exc:
        errors.add(f"get({key!r}) raised {exc!r}")
        return 1
    if value is None:
        errors.add(f"{key!r} missing")
    else:
        _validate(key, value, errors)
    return 1


@reporting
def reopening_reader(path, old_keys, stop, seed):
    """Open the store ("r" and "w" in turn), read a few old keys, close; again until `stop`."""
    rng = random.Random(seed)
    errors = Errors()
    opens = 0
    while not stop.is_set():
        flag = "rw"[opens % 2]
        opens += 1
        try:
            d = mmkv.open(path, flag)
        except mmkv.error as exc:
            errors.add(f"open #{opens} ({flag!r}) raised {exc!r}")
            continue
        with d:
            for key in rng.sample(old_keys, 3):
                _read_expect(d, key, errors)
    return {"opens": opens, "errors": errors.count, "first_errors": errors.first}


@reporting
def appending_writer(path, stop, size):
    """Insert new keys of `size` bytes until `stop`: the file grows all the time."""
    written = 0
    with mmkv.open(path, "w") as d:
        while not stop.is_set():
            key = b"a%06d" % written
            d[key] = make(key, f"a{written}", size)
            written += 1
        file_size = d.stats()["file_size"]
    return {"written": written, "file_size": file_size}
