"""Child-process entry points for the atomic-operation and lock tests (test_atomic_mp.py).

A store is named by a target, ("file", path) or ("shm", name), so every worker runs against a
file store and a shared-memory store alike. Workers open the store themselves, wait on a `go`
barrier so they all start together (their work takes less time than a spawn), and report
through `_harness.reporting`. The SIGKILL victim never touches a multiprocessing queue or
event: it shows that it holds the lock by writing a key.
"""

import itertools
import os
import random
import time

import mmkv

from _harness import reporting

MAX_ERRORS = 30
START_TIMEOUT = 60.0  # seconds a worker waits for `go` or for a state another process sets


def open_target(target, flag="w"):
    """Open the store a target names: ("file", path) or ("shm", name)."""
    kind, where = target
    if kind == "file":
        return mmkv.open(where, flag)
    if kind == "shm":
        return mmkv.open_shm(where, flag)
    raise ValueError(f"unknown target kind {kind!r}")


def wait_go(go):
    """Wait on `go`, a Barrier shared by every worker of the test (or an Event)."""
    if go.wait(START_TIMEOUT) is False:
        raise TimeoutError(f"no go signal within {START_TIMEOUT} s")


def wait_value(d, key, want, timeout=START_TIMEOUT):
    """Poll (lock-free reads) until d[key] == want; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while d.get(key) != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key!r} never became {want!r} (is {d.get(key)!r})")
        time.sleep(0.001)


def interleave(i):
    """Yield the CPU every 8th operation: a process's whole run is shorter than a time
    slice, so without this the racers would mostly take turns instead of interleaving."""
    if i % 8 == 0:
        time.sleep(0)


# ---- incr and compare_and_set ----

@reporting
def incr_worker(target, counters, n, go):
    """incr(counter, 1) n times, cycling through `counters`; report every value returned."""
    returned = {c: [] for c in counters}
    with open_target(target) as d:
        wait_go(go)
        for i in range(n):
            c = counters[i % len(counters)]
            returned[c].append(d.incr(c))
            interleave(i)
    return {"returned": returned}


@reporting
def cas_counter_worker(target, key, n, go):
    """Add 1 to `key` n times using only get + compare_and_set retry loops (an absent key is
    created with expected=None); report the values this process installed and its retries."""
    installed = []
    retries = 0
    with open_target(target) as d:
        wait_go(go)
        for i in range(n):
            while True:
                current = d.get(key)
                new = b"%d" % (int(current) + 1 if current is not None else 1)
                if i % 4 == 0:
                    time.sleep(0)  # widen the window between read and swap now and then
                if d.compare_and_set(key, current, new):
                    installed.append(int(new))
                    break
                retries += 1
    return {"installed": installed, "retries": retries}


# ---- races that hand each value to one winner ----

@reporting
def setdefault_worker(target, wid, keys, seed, go):
    """setdefault(key, own tag) on every key, in an order drawn from `seed` (workers given the
    same seed race key by key); report what each call returned."""
    order = list(keys)
    random.Random(seed).shuffle(order)
    tag = b"w%d" % wid
    got = {}
    with open_target(target) as d:
        wait_go(go)
        for i, key in enumerate(order):
            got[key] = d.setdefault(key, tag)
            interleave(i)
    return {"got": got, "tag": tag}


@reporting
def claim_worker(target, how, keys, seed, go):
    """Take values out of the store until none is left: `pop` or `cas` (compare_and_set to
    delete) each key in an order drawn from `seed` (workers given the same seed race key by
    key), or `popitem` until KeyError. Report what was taken."""
    order = list(keys)
    random.Random(seed).shuffle(order)
    got = []
    with open_target(target) as d:
        wait_go(go)
        if how == "pop":
            for i, key in enumerate(order):
                value = d.pop(key, None)
                if value is not None:
                    got.append((key, value))
                interleave(i)
        elif how == "cas":
            for i, key in enumerate(order):
                value = d.get(key)
                interleave(i)
                if value is not None and d.compare_and_set(key, value, None):
                    got.append((key, value))
        elif how == "popitem":
            for i in itertools.count():
                try:
                    got.append(d.popitem())
                except KeyError:
                    break
                interleave(i)
        else:
            raise ValueError(how)
    return {"got": got}


# ---- lock(): mutual exclusion, a killed holder, readers that never wait ----

@reporting
def mover(target, wid, n, total, seed, go):
    """n times, inside lock(): read a, b and moves with plain gets, check a + b == total, move
    a random amount from one to the other, and store moves + 1 (a plain read-modify-write that
    loses updates unless the lock excludes every other mover)."""
    rng = random.Random(seed)
    violations = []
    with open_target(target) as d:
        wait_go(go)
        for i in range(n):
            with d.lock():
                a, b = int(d["a"]), int(d["b"])
                if a + b != total and len(violations) < MAX_ERRORS:
                    violations.append(f"mover {wid} move {i}: a={a} b={b}")
                x = rng.randrange(-50, 51)
                d["a"] = b"%d" % (a - x)
                if rng.random() < 0.3:
                    time.sleep(0)  # give other processes a chance to run mid-block
                d["b"] = b"%d" % (b + x)
                d["moves"] = b"%d" % (int(d["moves"]) + 1)
    return {"violations": violations}


@reporting
def invariant_checker(target, total, stop, go):
    """Until `stop`, check a + b == total from inside lock()."""
    violations = []
    checks = 0
    with open_target(target) as d:
        wait_go(go)
        while not stop.is_set() or checks < 10:
            with d.lock():
                a, b = int(d["a"]), int(d["b"])
            checks += 1
            if a + b != total and len(violations) < MAX_ERRORS:
                violations.append(f"check {checks}: a={a} b={b}")
    return {"checks": checks, "violations": violations}


def lock_victim(target):
    """Take lock(), say so through the store, write a bit, then sleep inside it until killed."""
    d = open_target(target)
    with d.lock():
        d["holder"] = b"%d" % os.getpid()
        d["a"] = b"inside"
        time.sleep(600)
    os._exit(3)  # never reached unless the test forgot to kill us


@reporting
def lock_waiter(target, n, started):
    """Say `started`, then incr("after") n times (they wait while the victim holds the lock);
    report the CLOCK_MONOTONIC instant the first one returned (comparable across processes)."""
    with open_target(target) as d:
        started.set()
        d.incr("after")
        first_done = time.monotonic()
        for _ in range(n - 1):
            d.incr("after")
    return {"first_done": first_done}


@reporting
def lock_holder(target, seconds):
    """Hold lock() for `seconds`, announcing "held" on entry and "released" just before exit."""
    with open_target(target) as d:
        with d.lock():
            d["state"] = b"held"
            held_at = time.monotonic()
            time.sleep(seconds)
            d["state"] = b"released"
            released_at = time.monotonic()
    return {"held_at": held_at, "released_at": released_at}


@reporting
def lockfree_reader(target, flag, ready):
    """Say `ready` once open, wait for the holder's "held", then read (get, in, len) until "released"; report how many
    reads finished while the lock was held and the longest single read."""
    reads = 0
    longest = 0.0
    with open_target(target, flag) as d:
        ready.set()
        wait_value(d, "state", b"held")
        start = time.monotonic()
        deadline = start + START_TIMEOUT
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            state = d.get("state")
            d.get(b"k%d" % (reads % 100))
            _ = b"k1" in d
            _ = len(d)
            t1 = time.monotonic()
            longest = max(longest, t1 - t0)
            if state != b"held":
                break
            reads += 1
        seconds = time.monotonic() - start
    return {"reads": reads, "longest": longest, "seconds": seconds, "last_state": state}
