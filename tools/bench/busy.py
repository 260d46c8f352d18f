"""get, miss and overwrite beside 0, 1 and 3 busy Python threads: mmkv, dict and lmdb in one run.

Keeps: bench.py's fixed-seed workload and loops' idiom, a warm-up round, stores interleaved and
rotated, every loop checked outside its timer, medians and p10/p90 over the rounds, ratios.
Each loop runs for a fixed time budget (not a fixed count), going round the keys as often as
it takes, because one of the measured behaviours (a read that waits a whole switch interval
for the GIL) makes a fixed count take minutes.  Does not measure: processes, contention for the store's lock, cold caches.
The written method and the results are in README.md beside this file.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the workload, the stores' openers, percentiles, machine info)

OPS = ("get", "miss", "overwrite")
BUSY = (0, 1, 3)
CHUNK = 256                      # keys per inner loop between two looks at the clock


# --------------------------------------------------------------------------- timed loops
# The inner loops are bench.py's idioms over a slice of keys; mmkv and dict share them.

def map_get(d, keys, pairs) -> None:
    for k in keys:
        d[k]


def map_miss(d, keys, pairs) -> None:
    for k in keys:
        d.get(k)


def map_overwrite(d, keys, pairs) -> None:
    for k, v in pairs:
        d[k] = v


def lmdb_get(env, keys, pairs) -> None:
    for k in keys:
        with env.begin() as txn:
            txn.get(k)


def lmdb_miss(env, keys, pairs) -> None:
    for k in keys:
        with env.begin() as txn:
            txn.get(k)


def lmdb_overwrite(env, keys, pairs) -> None:
    for k, v in pairs:
        with env.begin(write=True) as txn:
            txn.put(k, v)


LOOPS = {"map": {"get": map_get, "miss": map_miss, "overwrite": map_overwrite},
         "lmdb": {"get": lmdb_get, "miss": lmdb_miss, "overwrite": lmdb_overwrite}}


def inputs(w: bench.Workload, op: str) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    if op == "get":
        return w.read_order, []
    if op == "miss":
        return w.absent, []
    return [], w.overwrite_pairs


def bounded(loop: Callable, handle, w: bench.Workload, op: str, budget_ns: int) -> tuple[int, int]:
    """(operations done, nanoseconds): chunks of CHUNK keys, going round the keys again when
    they run out, until the budget is spent (so every loop spans many switch intervals).
    The GC is collected before and off during, as in bench.py."""
    keys, pairs = inputs(w, op)
    total = len(keys) or len(pairs)
    gc.collect()
    gc.disable()
    try:
        done = 0
        start = time.perf_counter_ns()
        while True:
            at = done % total
            loop(handle, keys[at:at + CHUNK], pairs[at:at + CHUNK])
            done += min(CHUNK, total - at)
            if time.perf_counter_ns() - start >= budget_ns:
                break
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return done, elapsed


def check(view, w: bench.Workload, op: str, done: int) -> None:
    """The loop did its work: values read are the inserted ones, misses are None, the
    overwritten prefix holds the new values."""
    if op == "get":
        bench.expect(all(view[k] == v for k, v in w.pairs[:: max(1, w.n // 500)]), "wrong value")
    elif op == "miss":
        bench.expect(all(view.get(k) is None for k in w.absent[:500]), "absent key found")
    else:
        done = min(done, len(w.overwrite_pairs))
        step = max(1, done // 500)
        bench.expect(all(view[k] == v for k, v in w.overwrite_pairs[:done:step]), "stale value")


# --------------------------------------------------------------------------- busy threads

class Busy:
    """`count` threads spinning pure Python (they hold the GIL until the interpreter makes
    them let go, every switch interval), as the threads of a busy server do."""

    def __init__(self, count: int) -> None:
        self.stop = False
        self.spins = [0] * count
        self.threads = [threading.Thread(target=self.spin, args=(i,), daemon=True)
                        for i in range(count)]

    def spin(self, i: int) -> None:
        n = 0
        while not self.stop:
            n += 1
        self.spins[i] = n

    def __enter__(self) -> "Busy":
        for t in self.threads:
            t.start()
        time.sleep(0.05)         # every busy thread is running before the timer starts
        return self

    def __exit__(self, *exc) -> None:
        self.stop = True
        for t in self.threads:
            t.join()


# --------------------------------------------------------------------------- the run

STORES: dict[str, tuple[str, Callable[[], Callable[[Path], Any]]]] = {
    "dict": ("map", lambda: (lambda where: {})),
    "mmkv": ("map", lambda: bench.mmkv_opener()),
    "lmdb": ("lmdb", lambda: bench.lmdb_opener(sync=False)),
}


def fill(kind: str, handle, w: bench.Workload) -> None:
    if kind == "map":
        bench.map_insert(handle, w)
    else:
        bench.lmdb_insert(handle, w)


def run_store(name: str, w: bench.Workload, where: Path, budget_ns: int, rnd: int) -> list[dict]:
    kind, opener = STORES[name]
    where.mkdir()
    handle = opener()(where)
    view = bench.LmdbView(handle) if kind == "lmdb" else handle
    out = []
    try:
        fill(kind, handle, w)                                 # untimed
        for busy in BUSY:
            with Busy(busy):
                for op in OPS:
                    done, ns = bounded(LOOPS[kind][op], handle, w, op, budget_ns)
                    out.append({"store": name, "op": op, "busy": busy, "ops": done, "ns": ns,
                                "round": rnd})
            check(view, w, op, done)
            if kind == "map":                                 # undo the overwrites
                bench.map_insert(handle, w)
            else:
                bench.lmdb_insert(handle, w)
    finally:
        if hasattr(handle, "close"):
            handle.close()
        for path in sorted(where.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        where.rmdir()
    return out


def run_rounds(names: list[str], w: bench.Workload, work: Path, budget_ns: int, repeat: int,
               warmup: int, log: Callable[[str], None]) -> list[dict]:
    """Warm-up rounds, then `repeat` rounds, every store once per round in rotated order
    (peers.py runs this too, as its "busy" figure)."""
    samples: list[dict] = []
    for rnd in range(-warmup, repeat):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            got = run_store(name, w, work / f"r{rnd + warmup}-{name}", budget_ns, rnd)
            log(f"  {'warm-up' if rnd < 0 else f'round {rnd + 1}/{repeat}'}"
                f" {name:<6} {time.perf_counter() - start:6.2f} s")
            if rnd >= 0:
                samples.extend(got)
    return samples


def summarise(samples: list[dict]) -> list[dict]:
    rows: dict[tuple, dict] = {}
    for s in samples:
        row = rows.setdefault((s["store"], s["op"], s["busy"]),
                              {"store": s["store"], "op": s["op"], "busy": s["busy"], "rates": []})
        row["rates"].append(s["ops"] * 1e9 / s["ns"])
    for row in rows.values():
        row["p10"], row["median"], row["p90"] = bench.percentiles(row["rates"])
    return sorted(rows.values(), key=lambda r: (OPS.index(r["op"]), r["busy"], r["store"]))


def ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    med = {(r["store"], r["op"], r["busy"]): r["median"] for r in rows}
    table: dict[str, dict[str, float]] = {}
    for op in OPS:
        for busy in BUSY:
            key = f"{op} busy={busy}"
            for peer in ("dict", "lmdb"):
                if ("mmkv", op, busy) in med and (peer, op, busy) in med:
                    table.setdefault(key, {})[f"mmkv/{peer}"] = (med["mmkv", op, busy]
                                                                 / med[peer, op, busy])
            for store in STORES:
                if (store, op, busy) in med and (store, op, 0) in med and busy:
                    table.setdefault(key, {})[f"{store} vs alone"] = (med[store, op, busy]
                                                                      / med[store, op, 0])
    return table


def report(rows: list[dict], table: dict) -> str:
    lines = [f"{'op':<10} {'busy':>4} {'store':<6} {'median ops/s':>13} {'p10':>10} {'p90':>10}"]
    for r in rows:
        lines.append(f"{r['op']:<10} {r['busy']:>4} {r['store']:<6} {bench.human(r['median']):>13}"
                     f" {bench.human(r['p10']):>10} {bench.human(r['p90']):>10}")
    names = ["mmkv/dict", "mmkv/lmdb", "mmkv vs alone", "dict vs alone", "lmdb vs alone"]
    lines += ["", "ratios of medians", f"{'':<18}" + "".join(f" {n:>14}" for n in names)]
    for key, values in table.items():
        lines.append(f"{key:<18}" + "".join(
            f" {values[n]:>14.4g}" if n in values else f" {'-':>14}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="keys in each store (100000)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per loop (1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="measured rounds (3)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (1)")
    parser.add_argument("--seed", type=int, default=bench.SEED)
    parser.add_argument("--stores", default="dict,mmkv,lmdb")
    parser.add_argument("--dir", help="where the store files go (default: a disk-backed temp dir)")
    parser.add_argument("--out", help="write the raw results and machine info here as JSON")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in names if s not in STORES]
    if unknown:
        parser.error(f"unknown store(s) {unknown}; known: {', '.join(STORES)}")
    log = lambda message: print(message, file=sys.stderr, flush=True)
    w = bench.make_workload(args.n, args.seed)
    budget_ns = int(args.budget * 1e9)
    base = bench.choose_directory(args.dir)
    with tempfile.TemporaryDirectory(prefix="mmkv-busy-", dir=base) as work:
        info = bench.machine_info(Path(work))
        info["switch_interval_s"] = sys.getswitchinterval()
        bench.warn_if_busy(log)
        info["load_average_start"] = os.getloadavg()
        samples = run_rounds(names, w, Path(work), budget_ns, args.repeat, args.warmup, log)
        info["load_average_end"] = os.getloadavg()
    rows = summarise(samples)
    table = ratios(rows)
    print(report(rows, table))
    if args.out:
        doc = {"schema": 1,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": [Path(sys.argv[0]).name] + sys.argv[1:],
               "workload": {"n": args.n, "key_len": bench.KEY_LEN, "value_len": bench.VALUE_LEN,
                            "seed": args.seed, "budget_s": args.budget, "repeat": args.repeat,
                            "warmup": args.warmup, "busy_threads": list(BUSY), "chunk": CHUNK},
               "machine": info, "summary": rows, "ratios": table, "samples": samples}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
