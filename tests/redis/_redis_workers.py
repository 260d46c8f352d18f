"""Worker functions for the Redis tests' child processes (spawned interpreters).

Each opens the store from its spec (a Redis URL or a path), does its part, and reports on
a queue; none waits without a deadline.
"""
import os
import time

import mmkv


def incr_many(spec, key, n, go, results):
    with mmkv.open(spec) as d:
        go.wait(30)
        last = 0
        for _ in range(n):
            last = d.incr(key)
        results.put(("incr", os.getpid(), last))


def locked_increments(spec, key, n, go, results):
    """Read-modify-write without an atomic op, protected only by lock(): lost updates
    unless lock() excludes the other processes."""
    with mmkv.open(spec) as d:
        go.wait(30)
        for _ in range(n):
            with d.lock(timeout=30):
                value = int(d.get(key, b"0"))
                time.sleep(0.0005)
                d[key] = str(value + 1)
        results.put(("locked", os.getpid(), n))


def hold_lock(spec, seconds, results):
    """Take lock() and hold it for seconds (or until killed), reporting the fence."""
    with mmkv.open(spec) as d:
        lk = d.lock(timeout=30)
        with lk:
            results.put(("held", os.getpid(), lk.fence))
            time.sleep(seconds)
        results.put(("released", os.getpid(), lk.fence))


def churn(spec, prefix, rounds, results):
    """Insert and delete keys under prefix while someone else iterates."""
    with mmkv.open(spec) as d:
        for r in range(rounds):
            d[prefix + b"%d" % r] = b"x"
            if r >= 5:
                del d[prefix + b"%d" % (r - 5)]
        results.put(("churned", os.getpid(), rounds))


def write_sequence(spec, keys, results):
    with mmkv.open(spec) as d:
        for i, key in enumerate(keys):
            d[key] = b"%d" % i
        results.put(("wrote", os.getpid(), len(keys)))
