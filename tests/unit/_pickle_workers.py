"""Pool tasks for tests/unit/test_pickle.py: each receives a pickled Store (reopened in the
worker by path and flag) and writes through it.  Imported by name in spawned and forkserver
children, which inherit sys.path."""

import os


def add_keys(store, start, count):
    """Write count keys from start and bump the shared counter; returns the worker's pid,
    the store's repr and whether it decodes values (a codec store)."""
    for i in range(start, start + count):
        store[f"k{i:05d}"] = {"i": i} if hasattr(store, "codec") else b"%d" % i
        store.incr("counter")
    return os.getpid(), repr(store), type(store).__name__


def read_value(store, key):
    return store[key]
