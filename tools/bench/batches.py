#!/usr/bin/env python3
"""batches.py - issue 11's batch targets, measured in interleaved rounds.

  get_many(1000) per key   against a dict get in a Python loop (`for k in keys: d[k]`)
                           and against mmkv's own d[k] loop
  set_many                 into an empty store, all pairs in one call and in calls of 1,000,
                           against lmdb's one-transaction insert (`txn.put` per pair, one
                           write transaction) and lmdb's `putmulti`
  delete_many              all keys in calls of 1,000, against lmdb's one-transaction delete;
                           deleting everything makes mmkv compact automatically several
                           times (each compaction fdatasyncs the new file before the rename,
                           so that a power loss cannot lose synced data), so the line is
                           also shown with auto_compact=False (lmdb never shrinks its file)

N keys of 15 bytes and values of 100 bytes (bench.py's seed), shuffled order for reads.
Every figure is nanoseconds per key, the median of the measured rounds; each round runs
every line once, so machine load hits them alike.  lmdb runs with sync=False (like mmkv
without durable=True).

Run: python tools/bench/batches.py [--n 100000] [--repeat 5] [--out FILE.json]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # the workload seed and the machine description
import lmdb
import mmkv

CALL = 1000


def _workload(n, seed):
    rng = random.Random(seed)
    keys = bench.unique_random_bytes(rng, n, 15)
    values = [rng.randbytes(100) for _ in range(n)]
    order = keys[:]
    rng.shuffle(order)
    return keys, values, order


def _lines(directory, keys, values, order):
    pairs = list(zip(keys, values, strict=True))
    chunks = [order[i:i + CALL] for i in range(0, len(order), CALL)]
    pchunks = [pairs[i:i + CALL] for i in range(0, len(pairs), CALL)]
    plain = dict(pairs)
    reader = mmkv.open(os.path.join(directory, "read.mmkv"), "n")
    reader.set_many(pairs)
    path, lpath = os.path.join(directory, "w.mmkv"), os.path.join(directory, "lmdb")

    def fresh_mmkv():
        return mmkv.open(path, "n")

    def fresh_mmkv_no_compaction():
        return mmkv.open(path, "n", auto_compact=False)

    def fresh_lmdb():
        shutil.rmtree(lpath, ignore_errors=True)
        return lmdb.open(lpath, map_size=4 << 30, sync=False)

    def get_many():
        for c in chunks:
            reader.get_many(c)

    def dict_loop():
        for k in order:
            plain[k]

    def mmkv_loop():
        for k in order:
            reader[k]

    def set_many_all(d):
        d.set_many(pairs)

    def set_many_calls(d):
        for c in pchunks:
            d.set_many(c)

    def lmdb_one_txn(env):
        with env.begin(write=True) as txn:
            for k, v in pairs:
                txn.put(k, v)

    def lmdb_putmulti(env):
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(pairs)

    def delete_many_calls(d):
        for c in chunks:
            d.delete_many(c)

    def lmdb_delete_one_txn(env):
        with env.begin(write=True) as txn:
            for k in order:
                txn.delete(k)

    # (name, body, opener of a fresh store or None, filled first?)
    return reader, [
        ("get_many(1000) per key", get_many, None, False),
        ("dict get, Python loop", dict_loop, None, False),
        ("mmkv d[k], Python loop", mmkv_loop, None, False),
        ("set_many, one call", set_many_all, fresh_mmkv, False),
        ("set_many, calls of 1000", set_many_calls, fresh_mmkv, False),
        ("lmdb insert, one txn", lmdb_one_txn, fresh_lmdb, False),
        ("lmdb putmulti, one txn", lmdb_putmulti, fresh_lmdb, False),
        ("delete_many, calls of 1000", delete_many_calls, fresh_mmkv, True),
        ("delete_many, no auto-compaction", delete_many_calls, fresh_mmkv_no_compaction, True),
        ("lmdb delete, one txn", lmdb_delete_one_txn, fresh_lmdb, True),
    ], (set_many_all, lmdb_putmulti)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="keys")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds")
    parser.add_argument("--out", help="write the samples and the summary here as JSON")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="mmkv-batches-", dir="/var/tmp")
    keys, values, order = _workload(args.n, bench.SEED)
    reader, lines, (fill_mmkv, fill_lmdb) = _lines(directory, keys, values, order)
    samples = {name: [] for name, *_ in lines}
    for _ in range(args.repeat + 1):            # the first round warms up and is dropped
        for name, body, opener, filled in lines:
            handle = opener() if opener else None
            if filled:
                (fill_mmkv if isinstance(handle, mmkv.Store) else fill_lmdb)(handle)
            t0 = time.perf_counter_ns()
            body(handle) if handle is not None else body()
            samples[name].append((time.perf_counter_ns() - t0) / args.n)
            if handle is not None:
                handle.close()
    summary = {name: statistics.median(s[1:]) for name, s in samples.items()}
    for name, ns in summary.items():
        print(f"{name:28} {ns:8.1f} ns/key")
    ratios = {
        "get_many(1000) over a dict loop (time)":
            summary["get_many(1000) per key"] / summary["dict get, Python loop"],
        "lmdb one-txn insert over set_many, one call (speed-up)":
            summary["lmdb insert, one txn"] / summary["set_many, one call"],
        "lmdb one-txn insert over set_many, calls of 1000 (speed-up)":
            summary["lmdb insert, one txn"] / summary["set_many, calls of 1000"],
        "lmdb putmulti over set_many, one call (speed-up)":
            summary["lmdb putmulti, one txn"] / summary["set_many, one call"],
        "lmdb one-txn delete over delete_many (speed-up)":
            summary["lmdb delete, one txn"] / summary["delete_many, calls of 1000"],
        "lmdb one-txn delete over delete_many, no auto-compaction (speed-up)":
            summary["lmdb delete, one txn"] / summary["delete_many, no auto-compaction"],
    }
    print()
    for name, r in ratios.items():
        print(f"{name:60} {r:6.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "n": args.n, "repeat": args.repeat,
                       "machine": bench.machine_info(Path(directory)),
                       "load_average_end": os.getloadavg(), "ns_per_key": summary,
                       "ratios": ratios, "samples": samples}, f, indent=1)
    reader.close()
    shutil.rmtree(directory)


if __name__ == "__main__":
    main()
