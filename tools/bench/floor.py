#!/usr/bin/env python3
"""floor.py - what bounds the cost of `d[k]`: the get beside the floors it stands on.

Issue 11 asks, where a get target is missed, for the measured floor of a call and of a
`bytes` allocation.  Each line below is one loop over the same shuffled keys, timed in the
same rounds (interleaved, so machine load hits every line alike), in nanoseconds per key:

  loop only            `for k in keys: pass`: the interpreter's loop and the fetch of each
                       key object (a cache miss per key on a large list of random keys)
  C call floor         `len(k)`: a call into C through the interpreter, touching the key
  cffi call floor      `lib.mmkv_count(handle)`: the cheapest call of the core through cffi
  bytes allocation     `v[1:]` of a 100-byte value: a new 99-byte bytes object, copied
  dict[k]              the in-process upper bound
  mmkv d[k]            the store's get, on N keys in a file, in shuffled order
  mmkv d[k], in order  the same keys in insertion order: records are read sequentially
  mmkv d[k], 1,000     a store of 1,000 keys, whose slots and records stay in the cache:
                       what a get costs when memory does not
  dict[k], 1,000       the same for dict

Run: python tools/bench/floor.py [--n 100000] [--repeat 7] [--out FILE.json]
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # the workload seed and the machine description
import mmkv
from mmkv._core import lib


def _build(directory, n, seed, name):
    rng = random.Random(seed)
    keys = [rng.randbytes(15) for _ in range(n)]
    values = [rng.randbytes(100) for _ in range(n)]
    d = mmkv.open(os.path.join(directory, name), "n")
    for k, v in zip(keys, values, strict=True):
        d[k] = v
    shuffled = keys[:]
    rng.shuffle(shuffled)
    return d, dict(zip(keys, values, strict=True)), keys, shuffled, values[0]


def _loops(big, small):
    d, dd, in_order, keys, value = big
    sd, sdd, _, skeys, _ = small
    reps = max(1, len(keys) // len(skeys))
    skeys = skeys * reps                       # as many gets as the big store's loops
    count, h = lib.mmkv_count, d._h

    def loop_only():
        for _k in keys:
            pass

    def c_call():
        for k in keys:
            len(k)

    def cffi_call():
        for _k in keys:
            count(h)

    def alloc():
        for _k in keys:
            value[1:]

    def dict_get():
        for k in keys:
            dd[k]

    def mmkv_get():
        for k in keys:
            d[k]

    def mmkv_in_order():
        for k in in_order:
            d[k]

    def mmkv_small():
        for k in skeys:
            sd[k]

    def dict_small():
        for k in skeys:
            sdd[k]

    return {"loop only": (loop_only, len(keys)), "C call floor": (c_call, len(keys)),
            "cffi call floor": (cffi_call, len(keys)), "bytes allocation": (alloc, len(keys)),
            "dict[k]": (dict_get, len(keys)), "mmkv d[k]": (mmkv_get, len(keys)),
            "mmkv d[k], in order": (mmkv_in_order, len(keys)),
            "mmkv d[k], 1,000 keys": (mmkv_small, len(skeys)),
            "dict[k], 1,000 keys": (dict_small, len(skeys))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="keys of the big store")
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds")
    parser.add_argument("--out", help="write the samples and the summary here as JSON")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="mmkv-floor-", dir="/var/tmp")
    big = _build(directory, args.n, bench.SEED, "big.mmkv")
    small = _build(directory, 1_000, bench.SEED + 1, "small.mmkv")
    loops = _loops(big, small)
    samples = {name: [] for name in loops}
    for _ in range(args.repeat + 1):             # the first round warms up and is dropped
        for name, (fn, n) in loops.items():
            t0 = time.perf_counter_ns()
            fn()
            samples[name].append((time.perf_counter_ns() - t0) / n)
    summary = {name: statistics.median(s[1:]) for name, s in samples.items()}
    print(f"{'loop':26} {'ns/key':>8}")
    for name, ns in summary.items():
        print(f"{name:26} {ns:8.1f}")
    get, small_get = summary["mmkv d[k]"], summary["mmkv d[k], 1,000 keys"]
    print(f"\nmmkv over dict (rate):      {summary['dict[k]'] / get:.2f}")
    print(f"memory's share of a get:    {get - small_get:.1f} ns "
          f"(N keys against 1,000 keys)")
    beyond = (small_get - summary["C call floor"] - summary["bytes allocation"]
              + summary["loop only"])
    print(f"a get beyond the floors:    {beyond:.1f} ns "
          f"(1,000 keys, less a C call and an allocation)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "n": args.n, "repeat": args.repeat,
                       "machine": bench.machine_info(Path(directory)),
                       "load_average_end": os.getloadavg(), "ns_per_key": summary,
                       "samples": samples}, f, indent=1)
    for name in ("big.mmkv", "small.mmkv"):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


if __name__ == "__main__":
    main()
