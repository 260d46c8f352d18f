"""Throughput of mmkv against a plain dict and lmdb, every peer measured in the same run.

Keeps: one fixed-seed workload for every store, a warm-up round, stores interleaved within each
repetition (order rotated), each timed loop checked for correctness outside the timer.
Does not measure: several processes or threads, cold caches, open/close/sync time, compaction.
The written method and the latest results are in README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

SEED = 20261125
KEY_LEN = 15
VALUE_LEN = 100
LMDB_MAP_SIZE = 4 << 30          # address space only: lmdb grows the file as it is written
SAMPLE_COUNT = 1000              # keys checked after each timed loop
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}
OPS = ("insert", "get", "miss", "iterate", "overwrite", "delete")


# --------------------------------------------------------------------------- the workload

@dataclasses.dataclass(frozen=True)
class Workload:
    """Every key and value a round uses, made before any timer starts."""

    n: int
    pairs: list[tuple[bytes, bytes]]            # insert order
    read_order: list[bytes]                     # the same keys, another random order
    absent: list[bytes]                         # keys never inserted, for "miss"
    overwrite_pairs: list[tuple[bytes, bytes]]  # existing keys, new values, another order
    delete_order: list[bytes]                   # every key, another order
    sample: list[int]                           # indices checked after each loop


def unique_random_bytes(rng: random.Random, count: int, length: int) -> list[bytes]:
    """`count` distinct random byte strings in a seed-determined order (no set iteration)."""
    found: dict[bytes, None] = {}
    while len(found) < count:
        found[rng.randbytes(length)] = None
    return list(found)


def shuffled(rng: random.Random, items: list) -> list:
    copy = list(items)
    rng.shuffle(copy)
    return copy


def make_workload(n: int, seed: int) -> Workload:
    rng = random.Random(seed)
    keys = unique_random_bytes(rng, 2 * n, KEY_LEN)
    present, absent = keys[:n], keys[n:]
    values = [rng.randbytes(VALUE_LEN) for _ in range(n)]
    new_values = [rng.randbytes(VALUE_LEN) for _ in range(n)]
    overwrite = shuffled(rng, list(range(n)))
    return Workload(
        n=n,
        pairs=list(zip(present, values)),
        read_order=shuffled(rng, present),
        absent=absent,
        overwrite_pairs=[(present[i], new_values[i]) for i in overwrite],
        delete_order=shuffled(rng, present),
        sample=sorted(rng.sample(range(n), min(n, SAMPLE_COUNT))),
    )


# --------------------------------------------------------------------------- timed loops
# Each loop is the store's natural idiom and nothing else; mmkv and dict share the same code.

def map_insert(d, w: Workload) -> None:
    for k, v in w.pairs:
        d[k] = v


def map_get(d, w: Workload) -> None:
    for k in w.read_order:
        d[k]


def map_miss(d, w: Workload) -> None:
    for k in w.absent:
        d.get(k)


def map_iterate(d, w: Workload) -> int:
    count = 0
    for k, v in d.items():
        count += 1
    return count


def map_overwrite(d, w: Workload) -> None:
    for k, v in w.overwrite_pairs:
        d[k] = v


def map_delete(d, w: Workload) -> None:
    for k in w.delete_order:
        del d[k]


def lmdb_insert(env, w: Workload) -> None:
    for k, v in w.pairs:
        with env.begin(write=True) as txn:
            txn.put(k, v)


def lmdb_get(env, w: Workload) -> None:
    for k in w.read_order:
        with env.begin() as txn:
            txn.get(k)


def lmdb_miss(env, w: Workload) -> None:
    for k in w.absent:
        with env.begin() as txn:
            txn.get(k)


def lmdb_get_one_txn(env, w: Workload) -> None:
    with env.begin() as txn:
        for k in w.read_order:
            txn.get(k)


def lmdb_miss_one_txn(env, w: Workload) -> None:
    with env.begin() as txn:
        for k in w.absent:
            txn.get(k)


def lmdb_iterate(env, w: Workload) -> int:
    count = 0
    with env.begin() as txn:
        for k, v in txn.cursor():
            count += 1
    return count


def lmdb_overwrite(env, w: Workload) -> None:
    for k, v in w.overwrite_pairs:
        with env.begin(write=True) as txn:
            txn.put(k, v)


def lmdb_delete(env, w: Workload) -> None:
    for k in w.delete_order:
        with env.begin(write=True) as txn:
            txn.delete(k)


# --------------------------------------------------------------------------- checks (untimed)

class BenchError(Exception):
    """A timed loop did not do what it claims: the figures would be meaningless."""


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise BenchError(what)


def check_map(d, w: Workload, op: str, result: Any) -> None:
    """After `op`, the mapping must hold what the workload says it holds."""
    if op == "delete":
        expect(len(d) == 0, f"{len(d)} keys left after delete")
        return
    expect(len(d) == w.n, f"len {len(d)} != {w.n} after {op}")
    if op == "overwrite":
        newest = dict(w.overwrite_pairs)
        expect(all(d[w.pairs[i][0]] == newest[w.pairs[i][0]] for i in w.sample), "stale value")
    elif op == "miss":
        expect(all(d.get(w.absent[i]) is None for i in w.sample), "absent key found")
    elif op == "iterate":
        expect(result == w.n, f"iteration yielded {result} items, not {w.n}")
    else:
        expect(all(d[w.pairs[i][0]] == w.pairs[i][1] for i in w.sample), f"wrong value after {op}")


class LmdbView:
    """Just enough of a read-only mapping over an lmdb env for check_map."""

    def __init__(self, env) -> None:
        self.env = env

    def __len__(self) -> int:
        return self.env.stat()["entries"]

    def get(self, key: bytes):
        with self.env.begin() as txn:
            return txn.get(key)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


def check_lmdb(env, w: Workload, op: str, result: Any) -> None:
    check_map(LmdbView(env), w, op, result)


# --------------------------------------------------------------------------- the stores

@dataclasses.dataclass
class Step:
    label: str                      # the row this step reports under
    op: str
    run: Callable[[Any, Workload], Any]


@dataclasses.dataclass
class Store:
    """One peer: how to open a fresh one, what to time, how to check it, where its files are."""

    name: str                       # as given to --stores
    opener: Callable[[Path], Any]   # fresh empty store in the given empty directory
    closer: Callable[[Any], None]
    steps: list[Step]
    check: Callable[[Any, Workload, str, Any], None]
    files: Callable[[Path], list[Path]] = lambda where: []
    small: bool = False             # runs on the --n-sync workload


MAP_STEPS = [("insert", map_insert), ("get", map_get), ("miss", map_miss),
             ("iterate", map_iterate), ("overwrite", map_overwrite), ("delete", map_delete)]
LMDB_STEPS = [("insert", lmdb_insert), ("get", lmdb_get), ("miss", lmdb_miss),
              ("iterate", lmdb_iterate), ("overwrite", lmdb_overwrite), ("delete", lmdb_delete)]
WRITE_OPS = ("insert", "overwrite", "delete")


def map_steps(label: str, ops=OPS) -> list[Step]:
    return [Step(label, op, run) for op, run in MAP_STEPS if op in ops]


def lmdb_steps(label: str, ops=OPS, one_txn_label: str | None = None) -> list[Step]:
    steps = [Step(label, op, run) for op, run in LMDB_STEPS if op in ops]
    if one_txn_label:
        steps.insert(2, Step(one_txn_label, "get", lmdb_get_one_txn))
        steps.insert(4, Step(one_txn_label, "miss", lmdb_miss_one_txn))
    return steps


def lmdb_opener(sync: bool) -> Callable[[Path], Any]:
    import lmdb
    # lmdb's defaults (sync, metasync, readahead, lock...) except map_size, and sync when asked.
    return lambda where: lmdb.open(str(where / "lmdb"), map_size=LMDB_MAP_SIZE, sync=sync)


def lmdb_files(where: Path) -> list[Path]:
    return [where / "lmdb" / "data.mdb"]


def mmkv_opener(**options) -> Callable[[Path], Any]:
    import mmkv
    return lambda where: mmkv.open(where / "store.mmkv", "n", **options)


def mmkv_files(where: Path) -> list[Path]:
    return sorted(where.glob("store.mmkv*"))


def close_quietly(handle) -> None:
    if hasattr(handle, "close"):
        handle.close()


def build_stores(names: list[str]) -> list[Store]:
    catalogue = {
        "dict": lambda: Store("dict", lambda where: {}, lambda d: d.clear(),
                              map_steps("dict"), check_map),
        "mmkv": lambda: Store("mmkv", mmkv_opener(), close_quietly,
                              map_steps("mmkv"), check_map, mmkv_files),
        "lmdb": lambda: Store("lmdb", lmdb_opener(sync=False), close_quietly,
                              lmdb_steps("lmdb sync=False", one_txn_label="lmdb 1 read txn"),
                              check_lmdb, lmdb_files),
        "mmkv-durable": lambda: Store("mmkv-durable", mmkv_opener(durable=True), close_quietly,
                                      map_steps("mmkv durable=True", WRITE_OPS), check_map,
                                      mmkv_files, small=True),
        "lmdb-sync": lambda: Store("lmdb-sync", lmdb_opener(sync=True), close_quietly,
                                   lmdb_steps("lmdb sync=True", WRITE_OPS), check_lmdb,
                                   lmdb_files, small=True),
    }
    unknown = [name for name in names if name not in catalogue]
    if unknown:
        raise SystemExit(f"bench: unknown store(s) {unknown}; known: {', '.join(catalogue)}")
    return [catalogue[name]() for name in names]


# --------------------------------------------------------------------------- timing

def timed(step: Step, handle, w: Workload) -> tuple[int, Any]:
    """Nanoseconds for one loop, with the cyclic GC collected before and kept off during."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        result = step.run(handle, w)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed, result


def file_bytes(paths: list[Path]) -> dict[str, int]:
    stats = [p.stat() for p in paths if p.exists()]
    return {"size": sum(s.st_size for s in stats),
            "allocated": sum(s.st_blocks * 512 for s in stats)}


def run_round(store: Store, w: Workload, where: Path) -> tuple[list[dict], dict]:
    """One fresh store through every step; returns the timings and the file sizes seen."""
    where.mkdir()
    handle = store.opener(where)
    timings, sizes = [], {}
    try:
        for step in store.steps:
            elapsed, result = timed(step, handle, w)
            store.check(handle, w, step.op, result)
            timings.append({"store": step.label, "op": step.op, "n": w.n, "ns": elapsed})
            files = store.files(where)
            if files and step.op in ("insert", "overwrite") and step.label == store.steps[0].label:
                sizes[f"after_{step.op}"] = file_bytes(files)
    finally:
        store.closer(handle)
        shutil.rmtree(where)
    return timings, sizes


def run_all(stores: list[Store], big: Workload, small: Workload, workdir: Path,
            repeat: int, warmup: int, log) -> tuple[list[dict], dict]:
    """Warm-up rounds, then `repeat` rounds; within a round every store runs once, in an
    order rotated each round so no store always runs first or right after another's writes."""
    samples: list[dict] = []
    sizes: dict[str, dict] = {}
    began = time.monotonic()
    for rnd in range(-warmup, repeat):
        shift = rnd % len(stores)
        for store in stores[shift:] + stores[:shift]:
            os.sync()   # the previous store's dirty pages are not written back on our time
            w = small if store.small else big
            start = time.perf_counter()
            timings, seen = run_round(store, w, workdir / f"r{rnd + warmup}-{store.name}")
            log(f"  {'warm-up' if rnd < 0 else f'round {rnd + 1}/{repeat}'}"
                f" {store.name:<13} {time.perf_counter() - start:6.2f} s")
            if rnd >= 0:
                for t in timings:
                    t["round"], t["at_s"] = rnd, round(start - began, 3)
                samples.extend(timings)
                if seen:
                    sizes.setdefault(store.name, seen)
    return samples, sizes


# --------------------------------------------------------------------------- summaries

def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p10, median, p90 (linear interpolation between the repetitions)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[0], statistics.median(values), cuts[8]


def summarise(samples: list[dict]) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    for s in samples:
        row = rows.setdefault((s["store"], s["op"]), {"store": s["store"], "op": s["op"],
                                                      "n": s["n"], "ns": []})
        row["ns"].append(s["ns"])
    for row in rows.values():
        row["ops_per_s"] = [row["n"] * 1e9 / ns for ns in row["ns"]]
        row["p10"], row["median"], row["p90"] = percentiles(row["ops_per_s"])
    order = {op: i for i, op in enumerate(OPS)}
    return sorted(rows.values(), key=lambda r: order[r["op"]])


RATIOS = [("mmkv/dict", "mmkv", "dict"),
          ("mmkv/lmdb", "mmkv", "lmdb sync=False"),
          ("mmkv/lmdb 1 txn", "mmkv", "lmdb 1 read txn"),
          ("durable: mmkv/lmdb", "mmkv durable=True", "lmdb sync=True")]


def ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Median ops/s of the first store over the second's, per operation (>1: mmkv faster)."""
    medians = {(r["store"], r["op"]): r["median"] for r in rows}
    table: dict[str, dict[str, float]] = {}
    for op in OPS:
        for name, top, bottom in RATIOS:
            if (top, op) in medians and (bottom, op) in medians:
                table.setdefault(op, {})[name] = medians[top, op] / medians[bottom, op]
    return table


def human(rate: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:7.2f} {unit}"
    return f"{rate:7.0f}  "


def format_report(rows: list[dict], table: dict, sizes: dict) -> str:
    lines = [f"{'op':<10} {'store':<18} {'n':>7} {'median ops/s':>13} {'p10':>10} {'p90':>10}"]
    previous = None
    for r in rows:
        op = r["op"] if r["op"] != previous else ""
        previous = r["op"]
        lines.append(f"{op:<10} {r['store']:<18} {r['n']:>7} {human(r['median']):>13}"
                     f" {human(r['p10']):>10} {human(r['p90']):>10}")
    names = [name for name, _, _ in RATIOS if any(name in v for v in table.values())]
    if names:
        lines += ["", "ratios of medians (>1: mmkv faster)", f"{'op':<10}"
                  + "".join(f" {n:>19}" for n in names)]
    for op, values in table.items():
        lines.append(f"{op:<10}" + "".join(
            f" {values[n]:>19.3f}" if n in values else f" {'-':>19}" for n in names))
    if sizes:
        lines += ["", "file bytes (size / allocated), MiB"]
    for name, seen in sizes.items():
        lines.append(f"{name:<13} " + "  ".join(
            f"{when}: {v['size'] / 2**20:.1f} / {v['allocated'] / 2**20:.1f}"
            for when, v in seen.items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine and place

def mounts() -> list[tuple[str, str, str, str]]:
    """(mount point, fstype, source, options) from /proc/self/mounts, escapes decoded."""
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
    found = []
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            source, point, fstype, options = line.split()[:4]
            found.append((unescape(point), fstype, unescape(source), options))
    return found


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount that holds `path` (the last-mounted among the longest matching points)."""
    real = os.path.realpath(path)
    best = None
    for point, fstype, source, options in mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best["mount_point"])):
            best = {"mount_point": point, "type": fstype, "source": source, "options": options}
    return best or {"mount_point": "?", "type": "?", "source": "?", "options": ""}


def choose_directory(requested: str | None) -> Path:
    """A directory on a disk-backed filesystem: never tmpfs, /dev/shm or any memory fs."""
    candidates = [requested] if requested else [tempfile.gettempdir(), "/var/tmp",
                                                str(Path(__file__).resolve().parent)]
    for candidate in candidates:
        fs = filesystem_of(Path(candidate))
        if os.path.isdir(candidate) and fs["type"] not in MEMORY_FILESYSTEMS:
            return Path(candidate)
    raise SystemExit(f"bench: no disk-backed directory among {candidates}; pass --dir")


def first_line_with(path: str, prefix: str) -> str | None:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return None


def mmkv_info() -> dict[str, Any]:
    """Which mmkv was measured: version, location, a digest of its sources, its C flags."""
    try:
        import mmkv
    except ImportError:
        return {"imported": False}
    package = Path(mmkv.__file__).resolve().parent
    sources = sorted(package.glob("*.py")) + sorted((package.parent / "native").glob("*.[ch]"))
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    build = package / "_build.py"
    build_text = build.read_text(encoding="utf-8") if build.exists() else ""
    flags = re.findall(r"""["'](-[A-Za-z][^"'\s]*)["']""", build_text)
    core = sorted(package.glob("_core*.so"))
    return {"imported": True, "version": getattr(mmkv, "__version__", None),
            "path": str(package), "source_sha256": digest.hexdigest(),
            "source_files": len(sources),
            "core_library": core[0].name if core else None,
            "core_library_sha256": hashlib.sha256(core[0].read_bytes()).hexdigest()
            if core else None,
            "build_flags_in__build_py": list(dict.fromkeys(flags))}


def lmdb_versions() -> tuple[str | None, str | None]:
    try:
        import lmdb
    except ImportError:
        return None, None
    return lmdb.__version__, ".".join(map(str, lmdb.version()))


def machine_info(workdir: Path) -> dict[str, Any]:
    binding, library = lmdb_versions()
    return {
        "cpu_model": first_line_with("/proc/cpuinfo", "model name"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_total": first_line_with("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version,
        "python_implementation": platform.python_implementation(),
        "python_cflags": sysconfig.get_config_var("CFLAGS"),
        "lmdb_binding": binding,
        "lmdb_library": library,
        "workdir": str(workdir),
        "workdir_filesystem": filesystem_of(workdir),
        "mmkv": mmkv_info(),
    }


# --------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="keys per round (100000)")
    parser.add_argument("--n-sync", type=int, default=2_000,
                        help="keys per round for the fsync-per-write stores (2000)")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds (5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (1)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"workload seed ({SEED})")
    parser.add_argument("--stores", default="dict,mmkv,lmdb,mmkv-durable,lmdb-sync",
                        help="comma-separated subset of the default")
    parser.add_argument("--dir", help="where the store files go (default: a disk-backed temp dir)")
    parser.add_argument("--out", help="write the raw results and machine info here as JSON")
    args = parser.parse_args(argv)
    if args.n < 1 or args.n_sync < 1 or args.repeat < 1 or args.warmup < 0:
        parser.error("--n, --n-sync and --repeat must be positive, --warmup not negative")
    return args


def warn_if_busy(log) -> None:
    """Other work on the machine skews every figure (fsync ones most): say so up front."""
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"bench: warning: 1-minute load average is {load:.2f}; the machine is not idle,"
            " expect wide p10-p90 ranges")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)
    stores = build_stores([s.strip() for s in args.stores.split(",") if s.strip()])
    base = choose_directory(args.dir)
    big = make_workload(args.n, args.seed)
    small = make_workload(min(args.n_sync, args.n), args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="mmkv-bench-", dir=base) as work:
        info = machine_info(Path(work))
        log(f"bench: n={args.n} n_sync={small.n} repeat={args.repeat} in {work}"
            f" ({info['workdir_filesystem']['type']})")
        warn_if_busy(log)
        info["load_average_start"] = os.getloadavg()
        samples, sizes = run_all(stores, big, small, Path(work), args.repeat, args.warmup, log)
        info["load_average_end"] = os.getloadavg()
    rows = summarise(samples)
    table = ratios(rows)
    print(format_report(rows, table, sizes))
    if args.out:
        write_json(args, info, rows, table, sizes, samples)
    return 0


def write_json(args, info, rows, table, sizes, samples) -> None:
    document = {
        "schema": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name] + sys.argv[1:],
        "workload": {"n": args.n, "n_sync": min(args.n_sync, args.n), "key_len": KEY_LEN,
                     "value_len": VALUE_LEN, "seed": args.seed, "repeat": args.repeat,
                     "warmup": args.warmup, "lmdb_map_size": LMDB_MAP_SIZE},
        "machine": info,
        "summary": rows,
        "ratios": table,
        "file_bytes": sizes,
        "samples": samples,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
