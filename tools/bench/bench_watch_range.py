"""Benchmark of range() and watch() (issue 12): what the ordered index and the futex cost.

Measures, on one machine in one run (ratios matter, absolute numbers move with the load):
  - range(): 1,000 keys from the middle of a KEYS-key store, per key, after the index is
    built; against sorted() of a dict's keys + bisect, and an lmdb cursor (set_range and
    1,000 next) when lmdb is installed;
  - catch-up: what the index pays per change made by another process since its last call;
  - wake-up: from a write in one process to the watcher in another, median and p99.
Keys are 15 bytes, values 100 bytes, fixed seed; medians of REPEAT runs.

    python tools/bench/bench_watch_range.py [--keys 1000000] [--repeat 5] [--wakeups 500]
"""
import argparse
import bisect
import json
import multiprocessing
import os
import statistics
import tempfile
import time

import mmkv


def _keys(n):
    return [b"key:%011d" % (i * 7919 % n) for i in range(n)]


def bench_range(path, keys, repeat):
    out = {}
    with mmkv.open(path, "c", auto_compact=False) as d:
        for i in range(0, len(keys), 100_000):
            d.set_many({k: b"v" * 100 for k in keys[i:i + 100_000]})
        t = time.perf_counter()
        next(iter(d.range()))
        out["index_build_s"] = time.perf_counter() - t
        mid = b"key:%011d" % (len(keys) // 2)
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            got = 0
            for _ in d.range(mid):
                got += 1
                if got == 1000:
                    break
            runs.append((time.perf_counter() - t) / 1000)
        out["range_per_key_ns"] = statistics.median(runs) * 1e9
    ordered = sorted(keys)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        i = bisect.bisect_left(ordered, mid)
        list(ordered[i:i + 1000])
        runs.append((time.perf_counter() - t) / 1000)
    out["sorted_list_per_key_ns"] = statistics.median(runs) * 1e9
    try:
        import lmdb
    except ImportError:
        out["lmdb_cursor_per_key_ns"] = None
        return out
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(tmp, map_size=1 << 34)
        with env.begin(write=True) as txn:
            for k in keys:
                txn.put(k, b"v" * 100)
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            with env.begin() as txn:
                cur = txn.cursor()
                cur.set_range(mid)
                for _ in range(1000):
                    cur.key()
                    cur.next()
            runs.append((time.perf_counter() - t) / 1000)
        out["lmdb_cursor_per_key_ns"] = statistics.median(runs) * 1e9
    return out


def _writer(path, n, start):
    with mmkv.open(path) as d:
        for i in range(n):
            d[b"new:%011d" % (start + i)] = b"x"


def bench_catch_up(path, repeat, changes=10_000):
    ctx = multiprocessing.get_context("spawn")
    runs = []
    with mmkv.open(path) as d:
        next(iter(d.range()))
        for r in range(repeat):
            p = ctx.Process(target=_writer, args=(path, changes, r * changes))
            p.start()
            p.join()
            t = time.perf_counter()
            next(iter(d.range(b"zzz")), None)   # the refresh applies every change
            runs.append((time.perf_counter() - t) / changes)
    return {"catch_up_per_change_ns": statistics.median(runs) * 1e9}


def _watcher(path, n, ready, out):
    with mmkv.open(path) as d:
        w = d.watch()
        ready.set()
        lat = []
        for _, _, value in w:
            lat.append(time.perf_counter_ns() - int(value))
            if len(lat) == n:
                break
        out.put(lat)


def bench_wakeup(path, n):
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_watcher, args=(path, n, ready, out))
    p.start()
    ready.wait(60)
    with mmkv.open(path) as d:
        for i in range(n):
            time.sleep(0.002)                    # the watcher is asleep again
            d[b"tick"] = b"%d" % time.perf_counter_ns()
    lat = sorted(out.get(timeout=120))
    p.join(30)
    return {"wakeup_median_us": lat[len(lat) // 2] / 1e3,
            "wakeup_p99_us": lat[int(len(lat) * 0.99)] / 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--wakeups", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mmkv")
        result = {"keys": args.keys}
        result.update(bench_range(path, _keys(args.keys), args.repeat))
        result.update(bench_catch_up(path, args.repeat))
        result.update(bench_wakeup(path, args.wakeups))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
