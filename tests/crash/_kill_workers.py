"""Child-process entry points for tests/crash: writers that are SIGKILLed, and their checkers.

A victim never reports through a multiprocessing queue or event (a kill inside one would leave
its lock held); it writes an ack log of its own with one os.write per line, or sends on a pipe
that only it writes. Survivors report through `_harness.reporting`.
"""

import os
import random
import time
import traceback

import mmkv

from _harness import reporting
from _selfcheck import Invalid, make, parse

MAX_ERRORS = 30
KIB = 1 << 10

# What each kind of storm writer does: keys it owns, value sizes, share of deletes.
#   big        6 keys, 256 KiB - 1 MiB values: most of its time is spent inside the write lock
#   overwrite  2,000 keys, small values: overwrites and deletes of keys that exist
#   insert     always new keys, deleting some: the table keeps growing and being rebuilt
KINDS = {
    "big": dict(n_keys=6, min_size=256 * KIB, max_size=1024 * KIB, p_delete=0.10),
    "overwrite": dict(n_keys=2000, min_size=0, max_size=2000, p_delete=0.30),
    "insert": dict(n_keys=None, min_size=0, max_size=300, p_delete=0.35),
}


def stable_key(i: int) -> bytes:
    return b"stable%04d" % i


def owned_key(wid: int, i: int) -> bytes:
    return b"w%d-%06d" % (wid, i)


def storm_writer(path, wid, inc, kind, log_path, seed):
    """Write forever (the test SIGKILLs it), logging to `log_path`, one os.write per line:

        R                     the store is open
        B seq key tag         just before an operation; tag "-" is a delete
        A seq                 just after that operation returned

    Keys belong to this writer id alone; tags are "wid.inc.seq", unique across incarnations.
    An exception (a writer must never raise) is written to `log_path` + ".err" for the test.
    """
    try:
        _storm_writer_loop(path, wid, inc, kind, log_path, seed)
    except BaseException:
        with open(log_path + ".err", "w") as f:
            f.write(traceback.format_exc())
        raise


def _storm_writer_loop(path, wid, inc, kind, log_path, seed):
    rng = random.Random(seed)
    spec = KINDS[kind]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    d = mmkv.open(path, "w")
    os.write(fd, b"R\n")
    mine = []  # the insert kind: keys this incarnation inserted and has not deleted
    seq = 0
    while True:
        seq += 1
        key, delete = _choose(spec, wid, inc, seq, mine, rng)
        tag = b"-" if delete else b"%d.%d.%d" % (wid, inc, seq)
        os.write(fd, b"B %d %s %s\n" % (seq, key, tag))
        if delete:
            try:
                del d[key]
            except KeyError:
                pass
        else:
            d[key] = make(key, tag.decode(), rng.randint(spec["min_size"], spec["max_size"]))
        os.write(fd, b"A %d\n" % seq)


def _choose(spec, wid, inc, seq, mine, rng):
    """Return (key, delete?) for the next operation of a storm writer."""
    delete = rng.random() < spec["p_delete"]
    if spec["n_keys"] is not None:
        return owned_key(wid, rng.randrange(spec["n_keys"])), delete
    if delete and mine:
        i = rng.randrange(len(mine))
        mine[i], mine[-1] = mine[-1], mine[i]
        return mine.pop(), True
    key = b"w%d-i%05d-%07d" % (wid, inc, seq)
    mine.append(key)
    return key, False


@reporting
def storm_reader(path, n_stable, watched, stop, seed):
    """Until `stop`: stable keys (written before the storm, never touched) are always there
    with their seed value, and every value of a `watched` key that is present validates."""
    rng = random.Random(seed)
    errors = []
    n_errors = reads = 0
    with mmkv.open(path, "r") as d:
        while not stop.is_set():
            for _ in range(64):
                reads += 1
                stable = rng.random() < 0.5
                key = stable_key(rng.randrange(n_stable)) if stable else rng.choice(watched)
                try:
                    value = d.get(key)
                except mmkv.error as exc:
                    problem = f"get({key!r}) raised {exc!r}"
                else:
                    problem = (_stable_problem if stable else _value_problem)(key, value)
                if problem:
                    n_errors += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(problem)
    return {"reads": reads, "errors": n_errors, "first_errors": errors}


def _stable_problem(key, value):
    if value is None:
        return f"stable key {key!r} missing"
    problem = _value_problem(key, value)
    if problem is None and parse(key, value) != "seed":
        return f"stable key {key!r} changed to {parse(key, value)}"
    return problem


def _value_problem(key, value):
    if value is None:
        return None
    try:
        parse(key, value)
    except Invalid as exc:
        return str(exc)
    return None


@reporting
def verify_store(path):
    """Open the store after the kills (as its only user: recovery runs), run the structural
    check, read everything back, then prove the write lock is usable. Reports the tag of
    every key (or why its value is invalid)."""
    with mmkv.open(path, "w") as d:
        try:
            counts, corrupt = d._check(), None
        except mmkv.CorruptError as exc:
            counts, corrupt = None, str(exc)
        keys = list(d)
        length = len(d)
        tags = {key: _tag_or_problem(key, d.get(key)) for key in keys}
        start = time.monotonic()
        d[b"probe"] = make(b"probe", "probe", 10)
        del d[b"probe"]
        probe_seconds = time.monotonic() - start
        counts_after = d._check()
        stats = d.stats()
    return {"counts": counts, "corrupt": corrupt, "keys": keys, "len": length, "tags": tags,
            "probe_seconds": probe_seconds, "counts_after": counts_after, "stats": stats}


def _tag_or_problem(key, value):
    if value is None:
        return "INVALID: iterated, then not found by get()"
    try:
        return parse(key, value)
    except Invalid as exc:
        return f"INVALID: {exc}"


def lock_holder(path, conn, size):
    """Overwrite one key with huge values forever, so the write lock is held most of the time;
    says "ready" on `conn` once its first write has returned. The test SIGKILLs it."""
    d = mmkv.open(path, "w")
    i = 0
    while True:
        d[b"holder"] = make(b"holder", f"h.{i}", size)
        if i == 0:
            conn.send("ready")
        i += 1


@reporting
def lock_waiter(path, conn):
    """For each round number received on `conn`: say ("start", round, t0), write one small
    value, say ("done", round, t0, t1). Times are time.monotonic(), shared by all processes.
    Stops on None."""
    rounds = 0
    with mmkv.open(path, "w") as d:
        conn.send("ready")
        while True:
            if not conn.poll(120):
                raise TimeoutError("no word from the test for 120 s")
            r = conn.recv()
            if r is None:
                break
            t0 = time.monotonic()
            conn.send(("start", r, t0))
            d[b"waiter"] = make(b"waiter", f"r{r}", 16)
            conn.send(("done", r, time.monotonic()))
            rounds += 1
    return {"rounds": rounds}


def open_victim(path, conn, rnd, n_keys):
    """Say "opening", open the store (creating it if needed), say "open", overwrite `n_keys`
    keys, close, say "done". The test SIGKILLs it at a random instant after "opening"."""
    conn.send("opening")
    d = mmkv.open(path, "c")
    conn.send("open")
    for i in range(n_keys):
        key = b"o%02d" % i
        d[key] = make(key, f"r{rnd}.{i}", 100 + 50 * i)
    d.close()
    conn.send("done")


@reporting
def bystander(path, stop):
    """Keep a read handle open until `stop`, so an opener is not the store's only user."""
    with mmkv.open(path, "r") as d:
        n = len(d)
        stop.wait(300)
    return {"len_at_open": n}
