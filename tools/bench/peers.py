"""mmkv against every peer of issue 11 in one run, plus the issue's other figures.

Keeps bench.py's method (fixed-seed workload, warm-up round, stores interleaved and rotated,
medians, every timed loop checked outside its timer) and imports its helpers.  Adds peers:
multiprocessing.Manager().dict(), Redis (a redis-server started here), dbm, diskcache,
sqlitedict, UltraDict, rocksdict, and mmkv in shared memory; then durable puts, reopen of a
large store, get cost against store size, file size against lmdb, 2 reader processes against 1,
batch gets when the build has them, value sizes of 10 B to 1 MiB, and busy.py's busy-thread
workloads.  A store whose package is missing is skipped with a note.  The written method is in
README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import importlib.metadata
import itertools
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import bench
import busy
from bench import (OPS, WRITE_OPS, Step, Store, Workload, check_lmdb, check_map, close_quietly,
                   expect, human, lmdb_files, lmdb_opener, lmdb_steps, make_workload,
                   map_steps, mmkv_files, mmkv_opener, run_round, summarise)

REDIS_HASH = b"bench"                       # one Redis hash holds the whole mapping
ULTRADICT_BUFFER = 64 << 20                 # the update stream never fills within a round
SCALE_SIZES = (100_000, 1_000_000, 10_000_000)
SCALE_GETS = 100_000                        # gets timed at every store size
SCALE_FREE_BYTES = 10 << 30                 # below this much free disk, 10M keys is skipped
REOPEN_KEYS = 1_000_000
VALUE_SIZES = (10, 1 << 10, 1 << 20)         # bytes per value in the "values" figure
VALUE_NS = (100_000, 100_000, 1_000)          # keys per round at each of those sizes
VALUE_POOL_BYTES = 64 << 20                   # distinct values made per size (then reused)
VALUE_OPS = ("insert", "get", "overwrite")
VALUE_STORES = ("dict", "mmkv", "mmkv-shm", "lmdb", "rocksdict")
KEY_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC8  # odd: i -> i * KEY_MULT mod 2**120 is a bijection
_names = itertools.count()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- more peers

def commit_after(run: Callable[[Any, Workload], Any]) -> Callable[[Any, Workload], Any]:
    """sqlitedict without autocommit: the loop's writes, then one commit, inside the timer."""
    def loop(d, w: Workload) -> None:
        run(d, w)
        d.commit()
    return loop


def key_iterate(d, w: Workload) -> int:
    """For stores without items(): every key, then its value (diskcache, dbm.gnu/ndbm)."""
    count = 0
    for k in d if hasattr(type(d), "__iter__") else d.keys():
        d[k]
        count += 1
    return count


def with_iterate(steps: list[Step], label: str, run) -> list[Step]:
    return [Step(label, s.op, run) if s.op == "iterate" else s for s in steps]


def mmkv_shm_store() -> Store:
    import mmkv
    names: dict[int, str] = {}

    def opener(where: Path):
        name = f"mmkv-bench-{os.getpid()}-{next(_names)}"
        handle = mmkv.open_shm(name, "n")
        names[id(handle)] = name
        return handle

    def closer(handle) -> None:
        handle.close()
        mmkv.unlink_shm(names.pop(id(handle)))

    return Store("mmkv-shm", opener, closer, map_steps("mmkv shm"), check_map)


def manager_store() -> Store:
    managers: dict[int, Any] = {}

    def opener(where: Path):
        manager = multiprocessing.Manager()
        proxy = manager.dict()
        managers[id(proxy)] = manager
        return proxy

    def closer(proxy) -> None:
        managers.pop(id(proxy)).shutdown()

    return Store("manager", opener, closer, map_steps("Manager().dict()"), check_map)


def dbm_module():
    """dbm.gnu, else dbm.ndbm, else dbm.dumb: whichever this Python has."""
    for name in ("dbm.gnu", "dbm.ndbm", "dbm.dumb"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise AssertionError("dbm.dumb is always there")


def dbm_store() -> Store:
    module = dbm_module()
    label = module.__name__
    steps = map_steps(label)
    if module.__name__ != "dbm.dumb":
        steps = with_iterate(steps, label, key_iterate)   # gnu/ndbm objects have no items()
    return Store("dbm", lambda where: module.open(str(where / "dbm"), "n"), close_quietly,
                 steps, check_map, lambda where: sorted(where.glob("dbm*")))


def diskcache_store() -> Store:
    import diskcache
    return Store("diskcache", lambda where: diskcache.Cache(str(where / "diskcache")),
                 close_quietly, with_iterate(map_steps("diskcache"), "diskcache", key_iterate),
                 check_map, lambda where: sorted((where / "diskcache").glob("*")))


def sqlitedict_store(autocommit: bool) -> Store:
    from sqlitedict import SqliteDict
    label = "sqlitedict autocommit" if autocommit else "sqlitedict 1 commit"
    steps = map_steps(label)
    if not autocommit:
        steps = [Step(s.label, s.op, commit_after(s.run)) if s.op in WRITE_OPS else s
                 for s in steps]
    return Store("sqlitedict-autocommit" if autocommit else "sqlitedict",
                 lambda where: SqliteDict(str(where / "sd.sqlite"), autocommit=autocommit),
                 close_quietly, steps, check_map, lambda where: sorted(where.glob("sd.sqlite*")))


class RdictView:
    """Just enough of a mapping over an Rdict for check_map (an Rdict has no len())."""

    def __init__(self, d) -> None:
        self.d = d

    def __len__(self) -> int:
        return sum(1 for _ in self.d.keys())

    def get(self, key: bytes):
        return self.d.get(key)

    def __getitem__(self, key: bytes) -> bytes:
        return self.d[key]


def rocksdict_store() -> Store:
    from rocksdict import Rdict
    return Store("rocksdict", lambda where: Rdict(str(where / "rocksdict")), close_quietly,
                 map_steps("rocksdict"),
                 lambda d, w, op, result: check_map(RdictView(d), w, op, result),
                 lambda where: sorted((where / "rocksdict").glob("*")))


def ultradict_store() -> Store:
    import atomics  # noqa: F401  (shared_lock=True needs it)
    from UltraDict import UltraDict

    def opener(where: Path):
        return UltraDict(name=f"ud{os.getpid()}x{next(_names)}", create=True,
                         buffer_size=ULTRADICT_BUFFER, shared_lock=True)

    return Store("ultradict", opener, lambda ud: ud.close(unlink=True),
                 map_steps("UltraDict"), check_map)


# Redis: one hash is Redis's dict; one client call per operation, no pipelining.

def redis_insert(r, w: Workload) -> None:
    for k, v in w.pairs:
        r.hset(REDIS_HASH, k, v)


def redis_get(r, w: Workload) -> None:
    for k in w.read_order:
        r.hget(REDIS_HASH, k)


def redis_miss(r, w: Workload) -> None:
    for k in w.absent:
        r.hget(REDIS_HASH, k)


def redis_iterate(r, w: Workload) -> int:
    count = 0
    for _pair in r.hscan_iter(REDIS_HASH, count=1000):
        count += 1
    return count


def redis_overwrite(r, w: Workload) -> None:
    for k, v in w.overwrite_pairs:
        r.hset(REDIS_HASH, k, v)


def redis_delete(r, w: Workload) -> None:
    for k in w.delete_order:
        r.hdel(REDIS_HASH, k)


class RedisView:
    """Just enough of a mapping over the Redis hash for check_map."""

    def __init__(self, r) -> None:
        self.r = r

    def __len__(self) -> int:
        return self.r.hlen(REDIS_HASH)

    def get(self, key: bytes):
        return self.r.hget(REDIS_HASH, key)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class Unavailable(Exception):
    """A peer that this machine cannot run (a program is missing): skipped with a note."""


class RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence, in its own dir."""

    def __init__(self, where: Path) -> None:
        import redis  # noqa: F401  (ImportError here, before a server is started)
        binary = shutil.which("redis-server")
        if binary is None:
            raise Unavailable("redis-server is not on PATH")
        self.where = where
        where.mkdir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        with open(where / "redis.log", "wb") as server_log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(where),
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=server_log, stderr=subprocess.STDOUT)
        self.client = self.wait_ready()

    def wait_ready(self):
        import redis
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis(host="127.0.0.1", port=self.port)
            try:
                client.ping()
                return client
            except redis.ConnectionError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"peers: redis-server did not start; see its log in"
                                     f" {self.where / 'redis.log'}") from error
                time.sleep(0.05)

    def version(self) -> str:
        return self.client.info("server")["redis_version"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_store(server: RedisServer) -> Store:
    def opener(where: Path):
        server.client.flushall()
        return server.client

    steps = [Step("Redis", op, run) for op, run in
             [("insert", redis_insert), ("get", redis_get), ("miss", redis_miss),
              ("iterate", redis_iterate), ("overwrite", redis_overwrite),
              ("delete", redis_delete)]]
    return Store("redis", opener, lambda r: r.flushall(), steps,
                 lambda r, w, op, result: check_map(RedisView(r), w, op, result))


# --------------------------------------------------------------------------- catalogue

# name -> (factory, workload group).  "full": --n keys; "sync": --n-sync; "slow": --n-slow.
def catalogue(redis_server: Callable[[], RedisServer]) -> dict[str, tuple[Callable, str]]:
    return {
        "dict": (lambda: Store("dict", lambda where: {}, lambda d: d.clear(),
                               map_steps("dict"), check_map), "full"),
        "mmkv": (lambda: Store("mmkv", mmkv_opener(), close_quietly, map_steps("mmkv"),
                               check_map, mmkv_files), "full"),
        "mmkv-shm": (mmkv_shm_store, "full"),
        "lmdb": (lambda: Store("lmdb", lmdb_opener(sync=False), close_quietly,
                               lmdb_steps("lmdb sync=False", one_txn_label="lmdb 1 read txn"),
                               check_lmdb, lmdb_files), "full"),
        "ultradict": (ultradict_store, "full"),
        "rocksdict": (rocksdict_store, "full"),
        "diskcache": (diskcache_store, "full"),
        "sqlitedict": (lambda: sqlitedict_store(autocommit=False), "full"),
        "dbm": (dbm_store, "slow" if dbm_module().__name__ == "dbm.dumb" else "full"),
        "manager": (manager_store, "slow"),
        "redis": (lambda: redis_store(redis_server()), "slow"),
        "sqlitedict-autocommit": (lambda: sqlitedict_store(autocommit=True), "slow"),
        "mmkv-durable": (lambda: Store("mmkv-durable", mmkv_opener(durable=True),
                                       close_quietly, map_steps("mmkv durable=True", WRITE_OPS),
                                       check_map, mmkv_files), "sync"),
        "lmdb-sync": (lambda: Store("lmdb-sync", lmdb_opener(sync=True), close_quietly,
                                    lmdb_steps("lmdb sync=True", WRITE_OPS), check_lmdb,
                                    lmdb_files), "sync"),
    }


def build_stores(names: list[str], redis_server) -> tuple[list[Store], dict[str, str], list]:
    """The stores asked for, their groups, and notes on the ones that could not be built."""
    known = catalogue(redis_server)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"peers: unknown store(s) {unknown}; known: {', '.join(known)}")
    stores, groups, notes = [], {}, []
    for name in names:
        factory, group = known[name]
        try:
            store = factory()
        except (ImportError, Unavailable) as error:
            hint = " (pip install -e '.[bench]')" if isinstance(error, ImportError) else ""
            notes.append(f"{name} skipped: {error}{hint}")
            log(f"peers: note: {notes[-1]}")
            continue
        stores.append(store)
        groups[name] = group
    return stores, groups, notes


def run_interleaved(stores: list[Store], workloads: dict[str, Workload], workdir: Path,
                    repeat: int, warmup: int) -> tuple[list[dict], dict]:
    """bench.run_all with one workload per store: warm-up, then rounds in rotated order."""
    samples: list[dict] = []
    sizes: dict[str, dict] = {}
    began = time.monotonic()
    for rnd in range(-warmup, repeat):
        shift = rnd % len(stores)
        for store in stores[shift:] + stores[:shift]:
            os.sync()
            start = time.perf_counter()
            timings, seen = run_round(store, workloads[store.name],
                                      workdir / f"r{rnd + warmup}-{store.name}")
            log(f"  {'warm-up' if rnd < 0 else f'round {rnd + 1}/{repeat}'}"
                f" {store.name:<22} n={workloads[store.name].n:<7}"
                f" {time.perf_counter() - start:6.2f} s")
            if rnd >= 0:
                for t in timings:
                    t["round"], t["at_s"] = rnd, round(start - began, 3)
                samples.extend(timings)
                if seen:
                    sizes.setdefault(store.name, seen)
    return samples, sizes


def peer_ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per op: median ops/s of mmkv over each other row's (>1: mmkv faster).  The durable
    rows are compared with each other only."""
    medians = {(r["store"], r["op"]): r["median"] for r in rows}
    table: dict[str, dict[str, float]] = {}
    for (store, op), median in medians.items():
        top = "mmkv durable=True" if store == "lmdb sync=True" else "mmkv"
        if store in (top, "mmkv durable=True") or (top, op) not in medians:
            continue
        table.setdefault(op, {})[store] = medians[top, op] / median
    return {op: table[op] for op in OPS if op in table}


def format_peers(rows: list[dict], table: dict) -> str:
    lines = [f"{'op':<10} {'store':<24} {'n':>7} {'median ops/s':>13} {'p10':>10} {'p90':>10}"
             f" {'mmkv/it':>9}"]
    previous = None
    for r in rows:
        op = r["op"] if r["op"] != previous else ""
        previous = r["op"]
        ratio = table.get(r["op"], {}).get(r["store"])
        lines.append(f"{op:<10} {r['store']:<24} {r['n']:>7} {human(r['median']):>13}"
                     f" {human(r['p10']):>10} {human(r['p90']):>10}"
                     + (f" {ratio:>9.2f}" if ratio is not None else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- large stores

def scaled_key(i: int) -> bytes:
    """Key i of a large store: distinct for every i < 2**120, scattered bits, no list kept."""
    return (i * KEY_MULT % (1 << 120)).to_bytes(bench.KEY_LEN, "big")


def fill_large(path: Path, n: int, seed: int) -> list[bytes]:
    """A new mmkv store of n keys (values from a pool of 256 random ones); returns the pool."""
    import mmkv
    rng = random.Random(seed)
    pool = [rng.randbytes(bench.VALUE_LEN) for _ in range(256)]
    with mmkv.open(path, "n") as d:
        for i in range(n):
            d[scaled_key(i)] = pool[i & 255]
        expect(len(d) == n, f"large store holds {len(d)} keys, not {n}")
    return pool


def time_gets(d, keys: list[bytes], passes: int) -> list[float]:
    """ns per get for each pass over `keys` (one untimed warm-up pass first)."""
    for k in keys:
        d[k]
    out = []
    for _ in range(passes):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for k in keys:
                d[k]
            out.append((time.perf_counter_ns() - start) / len(keys))
        finally:
            gc.enable()
    return out


def fill_large_lmdb(path: Path, n: int, pool: list[bytes]) -> None:
    """The same n keys and values in an lmdb env, written in one transaction (untimed)."""
    import lmdb
    env = lmdb.open(str(path), map_size=64 << 30, sync=False)
    with env.begin(write=True) as txn:
        for i in range(n):
            txn.put(scaled_key(i), pool[i & 255])
    env.close()


class LmdbGets:
    """d[k] as one read transaction per get: the like-for-like lmdb idiom of bench.py."""

    def __init__(self, path: Path) -> None:
        import lmdb
        self.env = lmdb.open(str(path), readonly=True, map_size=64 << 30)

    def __getitem__(self, key: bytes) -> bytes:
        with self.env.begin() as txn:
            return txn.get(key)


def figure_scale(workdir: Path, seed: int, passes: int, sizes=SCALE_SIZES) -> dict:
    """ns per get of the same number of random present keys, at each store size, for mmkv,
    dict and lmdb (the last two as references for what the machine's caches do)."""
    import mmkv
    result: dict[str, Any] = {"gets_per_pass": SCALE_GETS, "passes": passes, "sizes": {}}
    for n in sizes:
        free = shutil.disk_usage(workdir).free
        if n >= 10_000_000 and free < SCALE_FREE_BYTES:
            result["sizes"][str(n)] = {"skipped": f"{free / 2**30:.1f} GiB free, under 10 GiB"}
            log(f"peers: note: get at {n} keys skipped: {free / 2**30:.1f} GiB free")
            continue
        started = time.perf_counter()
        rng = random.Random(seed + n)
        picks = [rng.randrange(n) for _ in range(SCALE_GETS)]
        keys = [scaled_key(i) for i in picks]
        entry: dict[str, Any] = {}
        path = workdir / f"scale-{n}.mmkv"
        pool = fill_large(path, n, seed)
        with mmkv.open(path, "r") as d:
            expect(all(d[scaled_key(i)] == pool[i & 255] for i in picks[:1000]), "wrong value")
            ns = time_gets(d, keys, passes)
        entry["mmkv"] = {"ns_per_get": ns, "median_ns": statistics.median(ns),
                         "file_bytes": path.stat().st_size}
        path.unlink()
        plain = {scaled_key(i): pool[i & 255] for i in range(n)}
        expect(len(plain) == n and all(plain[scaled_key(i)] == pool[i & 255]
                                       for i in picks[:1000]), "wrong dict")
        ns = time_gets(plain, keys, passes)
        entry["dict"] = {"ns_per_get": ns, "median_ns": statistics.median(ns)}
        del plain
        gc.collect()
        path = workdir / f"scale-{n}-lmdb"
        fill_large_lmdb(path, n, pool)
        d = LmdbGets(path)
        expect(all(d[scaled_key(i)] == pool[i & 255] for i in picks[:1000]), "wrong value")
        ns = time_gets(d, keys, passes)
        d.env.close()
        entry["lmdb"] = {"ns_per_get": ns, "median_ns": statistics.median(ns),
                         "file_bytes": (path / "data.mdb").stat().st_size}
        shutil.rmtree(path)
        result["sizes"][str(n)] = entry
        log(f"  scale n={n:<9} mmkv {entry['mmkv']['median_ns']:6.0f} ns/get"
            f" ({entry['mmkv']['file_bytes'] / 2**20:.0f} MiB),"
            f" dict {entry['dict']['median_ns']:6.0f} ns/get, lmdb"
            f" {entry['lmdb']['median_ns']:6.0f} ns/get"
            f" ({entry['lmdb']['file_bytes'] / 2**20:.0f} MiB)"
            f"  ({time.perf_counter() - started:.1f} s)")
    base = result["sizes"].get(str(sizes[0]), {})
    for entry in result["sizes"].values():
        for kind in ("mmkv", "dict", "lmdb"):
            if kind in entry and kind in base:
                entry[kind]["cost_vs_base"] = entry[kind]["median_ns"] / base[kind]["median_ns"]
    return result


def evict_file(path: Path) -> None:
    """Write back and drop this one file's pages from the page cache (nothing else's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def figure_reopen(workdir: Path, seed: int, repeat: int, n: int = REOPEN_KEYS) -> dict:
    """open() of an existing n-key store, and the time from open() returning to the first
    get returning (a different key each time): with the file in the page cache ("warm") and
    with this file's pages dropped from it first ("cold")."""
    import mmkv
    path = workdir / "reopen.mmkv"
    pool = fill_large(path, n, seed)
    rng = random.Random(seed)
    result: dict[str, Any] = {"keys": n, "repeat": repeat, "file_bytes": path.stat().st_size}
    for cache in ("warm", "cold"):
        opens, first_gets = [], []
        for _ in range(repeat + 1):             # the first one is the warm-up
            i = rng.randrange(n)
            key = scaled_key(i)
            if cache == "cold":
                evict_file(path)
            t0 = time.perf_counter_ns()
            d = mmkv.open(path)
            t1 = time.perf_counter_ns()
            value = d[key]
            t2 = time.perf_counter_ns()
            d.close()
            expect(value == pool[i & 255], "wrong value after reopen")
            opens.append(t1 - t0)
            first_gets.append(t2 - t1)
        opens, first_gets = opens[1:], first_gets[1:]
        result[cache] = {
            "open_ns": opens, "first_get_after_open_ns": first_gets,
            "median_open_ms": statistics.median(opens) / 1e6,
            "median_first_get_ms": statistics.median(first_gets) / 1e6,
            "median_open_plus_first_get_ms":
                statistics.median(a + b for a, b in zip(opens, first_gets, strict=True)) / 1e6}
        log(f"  reopen {n} keys, {cache}: open {result[cache]['median_open_ms']:.3f} ms,"
            f" first get {result[cache]['median_first_get_ms']:.3f} ms after it")
    path.unlink()
    return result


# --------------------------------------------------------------------------- reader processes

def reader_main(kind: str, path: str, keys: list[bytes], passes: int, barrier, results) -> None:
    """One reader process: open, wait for the others, get every key `passes` times."""
    if kind == "mmkv":
        import mmkv
        d = mmkv.open(path, "r")
        get = d.__getitem__
    else:
        import lmdb
        env = lmdb.open(path, readonly=True, map_size=bench.LMDB_MAP_SIZE)

        def get(k):
            with env.begin() as txn:
                return txn.get(k)
    for k in keys:
        get(k)
    barrier.wait()
    start = time.monotonic_ns()
    for _ in range(passes):
        for k in keys:
            get(k)
    results.put((start, time.monotonic_ns(), passes * len(keys)))


def aggregate_rate(context, kind: str, path: str, w: Workload, readers: int,
                   passes: int) -> float:
    """Gets per second of `readers` processes together: all gets / (last end - first start)."""
    barrier = context.Barrier(readers)
    results = context.Queue()
    procs = []
    for i in range(readers):
        keys = list(w.read_order)
        random.Random(i).shuffle(keys)
        procs.append(context.Process(target=reader_main,
                                     args=(kind, path, keys, passes, barrier, results)))
    for p in procs:
        p.start()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        expect(p.exitcode == 0, f"reader exited with {p.exitcode}")
    return sum(n for _, _, n in got) * 1e9 / (max(e for _, e, _ in got) - min(s for s, _, _ in got))


def figure_readers(workdir: Path, w: Workload, repeat: int, passes: int) -> dict:
    """1 reader process against 2, for mmkv and (as the machine's reference) lmdb."""
    import lmdb
    import mmkv
    context = multiprocessing.get_context("spawn")
    paths = {"mmkv": workdir / "readers.mmkv", "lmdb": workdir / "readers-lmdb"}
    with mmkv.open(paths["mmkv"], "n") as d:
        for k, v in w.pairs:
            d[k] = v
    env = lmdb.open(str(paths["lmdb"]), map_size=bench.LMDB_MAP_SIZE)
    with env.begin(write=True) as txn:
        for k, v in w.pairs:
            txn.put(k, v)
    env.close()
    out: dict[str, Any] = {"keys": w.n, "passes_per_reader": passes, "repeat": repeat}
    for kind, path in paths.items():
        rates: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeat):
            for readers in (1, 2):
                rates[readers].append(aggregate_rate(context, kind, str(path), w, readers,
                                                     passes))
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        out[kind] = {"one_reader_gets_per_s": rates[1], "two_readers_gets_per_s": rates[2],
                     "median_one": one, "median_two": two, "two_over_one": two / one}
        log(f"  readers {kind}: 1 -> {human(one)}/s, 2 -> {human(two)}/s, {two / one:.2f}x")
    shutil.rmtree(paths["lmdb"])
    return out


# --------------------------------------------------------------------------- batches

def figure_get_many(workdir: Path, w: Workload, passes: int) -> dict:
    """get_many of 100 keys against 100 single gets (and of 1,000 against a dict's gets)."""
    import mmkv
    path = workdir / "readers.mmkv"             # figure_readers' store, when it ran
    if not path.exists():
        with mmkv.open(path, "n") as d:
            for k, v in w.pairs:
                d[k] = v
    with mmkv.open(path, "r") as d:
        if not hasattr(d, "get_many"):
            log("  get_many: not available on this build")
            return {"available": False}
        keys = w.read_order
        chunks = {size: [keys[i:i + size] for i in range(0, len(keys), size)]
                  for size in (100, 1000)}
        expect(d.get_many(chunks[100][0]) == [d[k] for k in chunks[100][0]], "get_many wrong")

        def batched(size):
            def run():
                for chunk in chunks[size]:
                    d.get_many(chunk)
            return run

        def singles():
            for k in keys:
                d[k]
        plain = dict(w.pairs)

        def dict_gets():
            for k in keys:
                plain[k]
        out: dict[str, Any] = {"available": True}
        for name, run in (("get_many_100", batched(100)), ("get_many_1000", batched(1000)),
                          ("single_gets", singles), ("dict_gets", dict_gets)):
            run()
            ns = []
            for _ in range(passes):
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter_ns()
                    run()
                    ns.append((time.perf_counter_ns() - start) / len(keys))
                finally:
                    gc.enable()
            out[name] = {"ns_per_key": ns, "median_ns_per_key": statistics.median(ns)}
    out["single_over_get_many_100"] = (out["single_gets"]["median_ns_per_key"]
                                       / out["get_many_100"]["median_ns_per_key"])
    out["dict_over_get_many_1000"] = (out["dict_gets"]["median_ns_per_key"]
                                      / out["get_many_1000"]["median_ns_per_key"])
    log(f"  get_many(100): {out['single_over_get_many_100']:.2f}x single gets per key")
    return out


# --------------------------------------------------------------------------- value sizes

def sized_workload(n: int, size: int, seed: int) -> Workload:
    """n distinct 15-byte keys with values of `size` bytes.  The values cycle through a pool
    of distinct random ones (as many as fit in VALUE_POOL_BYTES, at least 16), and the
    overwrites through a second pool, so 1,000 values of 1 MiB take 64 MiB, not 1 GiB."""
    rng = random.Random(seed)
    keys = bench.unique_random_bytes(rng, n, bench.KEY_LEN)
    count = min(n, max(16, VALUE_POOL_BYTES // size))
    pool = [rng.randbytes(size) for _ in range(count)]
    fresh = [rng.randbytes(size) for _ in range(count)]
    order = bench.shuffled(rng, list(range(n)))
    return Workload(n=n, pairs=[(k, pool[i % count]) for i, k in enumerate(keys)],
                    read_order=bench.shuffled(rng, keys), absent=[],
                    overwrite_pairs=[(keys[i], fresh[i % count]) for i in order],
                    delete_order=[],
                    sample=sorted(rng.sample(range(n), min(n, bench.SAMPLE_COUNT))))


def value_stores() -> tuple[list[Store], list[str]]:
    """VALUE_STORES with only their insert, get and overwrite steps (lmdb: txn per op)."""
    known = catalogue(lambda: None)             # none of these needs the Redis server
    stores, notes = [], []
    for name in VALUE_STORES:
        try:
            store = known[name][0]()
        except ImportError as error:
            notes.append(f"values: {name} skipped: {error} (pip install -e '.[bench]')")
            log(f"peers: note: {notes[-1]}")
            continue
        first = store.steps[0].label
        steps = [s for s in store.steps if s.op in VALUE_OPS and s.label == first]
        stores.append(Store(store.name, store.opener, store.closer, steps, store.check,
                            store.files))
    return stores, notes


def figure_values(workdir: Path, seed: int, sizes: list[int], counts: list[int], repeat: int,
                  warmup: int) -> dict:
    """insert, get and overwrite at each value size, bench.py's rounds (fresh store, checks,
    rotation), N scaled down for the large values; ops/s, MB/s of values, mmkv over each."""
    stores, notes = value_stores()
    out: dict[str, Any] = {"stores": [s.name for s in stores], "ops": list(VALUE_OPS),
                           "repeat": repeat, "warmup": warmup, "notes": notes, "sizes": {}}
    for size, n in zip(sizes, counts, strict=True):
        started = time.perf_counter()
        w = sized_workload(n, size, seed + size)
        where = workdir / f"values-{size}"
        where.mkdir()
        samples, files = run_interleaved(stores, {s.name: w for s in stores}, where, repeat,
                                         warmup)
        where.rmdir()
        rows = summarise(samples)
        for r in rows:
            r["value_bytes"] = size
            r["median_mb_per_s"] = r["median"] * size / 1e6
        medians = {(r["store"], r["op"]): r["median"] for r in rows}
        ratios = {op: {r["store"]: medians["mmkv", op] / r["median"] for r in rows
                       if r["op"] == op and r["store"] != "mmkv"}
                  for op in VALUE_OPS if ("mmkv", op) in medians}
        out["sizes"][str(size)] = {"n": n, "value_bytes": size, "summary": rows,
                                   "ratios_mmkv_over_peer": ratios, "file_bytes": files,
                                   "samples": samples}
        log(f"  values {size} B x {n}: {time.perf_counter() - started:.1f} s")
        del w
        gc.collect()
    return out


def format_values(figure: dict) -> str:
    lines = [f"{'value':>8} {'n':>7} {'op':<10} {'store':<16} {'median ops/s':>13}"
             f" {'MB/s':>9} {'mmkv/it':>8}"]
    for size, entry in figure["sizes"].items():
        for r in sorted(entry["summary"], key=lambda r: VALUE_OPS.index(r["op"])):
            ratio = entry["ratios_mmkv_over_peer"].get(r["op"], {}).get(r["store"])
            lines.append(f"{size:>8} {entry['n']:>7} {r['op']:<10} {r['store']:<16}"
                         f" {human(r['median']):>13} {r['median_mb_per_s']:>9.1f}"
                         + (f" {ratio:>8.2f}" if ratio is not None else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- busy threads

def figure_busy(workdir: Path, w: Workload, budget: float, repeat: int, warmup: int) -> dict:
    """busy.py's run, unchanged (get, miss, overwrite beside 0, 1, 3 spinning threads, for
    dict, mmkv and lmdb), on the peer table's workload."""
    where = workdir / "busy"
    where.mkdir()
    samples = busy.run_rounds(list(busy.STORES), w, where, int(budget * 1e9), repeat, warmup,
                              log)
    rows = busy.summarise(samples)
    return {"tool": "tools/bench/busy.py", "n": w.n, "budget_s": budget, "repeat": repeat,
            "warmup": warmup, "busy_threads": list(busy.BUSY), "chunk": busy.CHUNK,
            "switch_interval_s": sys.getswitchinterval(), "summary": rows,
            "ratios": busy.ratios(rows), "samples": samples}


# --------------------------------------------------------------------------- the figures

def headline(rows: list[dict], sizes: dict, figures: dict) -> dict[str, Any]:
    """Issue 11's figures, each as the ratio or quantity the issue names."""
    medians = {(r["store"], r["op"]): r["median"] for r in rows}
    out: dict[str, Any] = {}
    durable = {op: medians["mmkv durable=True", op] / medians["lmdb sync=True", op]
               for op in WRITE_OPS
               if ("mmkv durable=True", op) in medians and ("lmdb sync=True", op) in medians}
    if durable:
        out["durable_put_mmkv_over_lmdb_sync (target >= 1)"] = durable
    if ("mmkv", "overwrite") in medians and ("mmkv shm", "overwrite") in medians:
        out["overwrite_file_over_shm (target >= 0.75)"] = (medians["mmkv", "overwrite"]
                                                            / medians["mmkv shm", "overwrite"])
    if "mmkv" in sizes and "lmdb" in sizes:
        out["file_bytes_mmkv_over_lmdb (target <= 1.2)"] = {
            when: sizes["mmkv"][when]["size"] / sizes["lmdb"][when]["size"]
            for when in sizes["mmkv"] if when in sizes["lmdb"]}
    if "reopen" in figures:
        reopen = figures["reopen"]
        out["reopen_1M_first_get_after_open_ms (target <= 1)"] = {
            cache: reopen[cache]["median_first_get_ms"] for cache in ("warm", "cold")}
        out["reopen_1M_open_ms"] = {cache: reopen[cache]["median_open_ms"]
                                    for cache in ("warm", "cold")}
    if "scale" in figures:
        out["get_cost_vs_first_size (target <= 1.5)"] = {
            n: e.get("skipped") or {kind: e[kind]["cost_vs_base"]
                                    for kind in ("mmkv", "dict", "lmdb")}
            for n, e in figures["scale"]["sizes"].items()}
    if "readers" in figures:
        out["two_readers_over_one (target >= 1.9)"] = {
            kind: figures["readers"][kind]["two_over_one"] for kind in ("mmkv", "lmdb")}
    if "values" in figures:
        out["values_mmkv_over_peer"] = {
            f"{size} B (n={e['n']})": e["ratios_mmkv_over_peer"]
            for size, e in figures["values"]["sizes"].items()}
    if "busy" in figures:
        out["busy_threads_ratios"] = figures["busy"]["ratios"]
    if "get_many" in figures:
        g = figures["get_many"]
        out["get_many_100_vs_100_gets"] = (g["single_over_get_many_100"] if g["available"]
                                           else "not available")
    return out


def peer_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in ("lmdb", "diskcache", "sqlitedict", "UltraDict", "atomics", "redis", "rocksdict",
                 "cffi"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    found["dbm_module"] = dbm_module().__name__
    return found


# --------------------------------------------------------------------------- command line

DEFAULT_STORES = ("dict,mmkv,mmkv-shm,lmdb,rocksdict,ultradict,diskcache,sqlitedict,dbm,manager,"
                  "redis,sqlitedict-autocommit,mmkv-durable,lmdb-sync")
FIGURES = ("scale", "reopen", "readers", "get_many", "values", "busy")


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="keys per round (100000)")
    parser.add_argument("--n-slow", type=int, default=5_000,
                        help="keys per round for the slow peers (5000)")
    parser.add_argument("--n-sync", type=int, default=2_000,
                        help="keys per round for the fsync-per-write stores (2000)")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds (5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (1)")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds, n-slow 2000, fewer passes: for a loaded machine")
    parser.add_argument("--seed", type=int, default=bench.SEED, help="workload seed")
    parser.add_argument("--stores", default=DEFAULT_STORES, help="comma-separated subset")
    parser.add_argument("--figures", default=",".join(FIGURES),
                        help=f"comma-separated subset of {','.join(FIGURES)}, or none")
    parser.add_argument("--scale-sizes", default=",".join(map(str, SCALE_SIZES)),
                        help="store sizes for the get-cost figure; the first is the base")
    parser.add_argument("--reopen-keys", type=int, default=REOPEN_KEYS,
                        help=f"keys in the reopened store ({REOPEN_KEYS})")
    parser.add_argument("--value-sizes", type=int_list, default=list(VALUE_SIZES),
                        help="value bytes of the values figure (10,1024,1048576)")
    parser.add_argument("--value-n", type=int_list, default=list(VALUE_NS),
                        help="keys per round at each of those sizes (100000,100000,1000)")
    parser.add_argument("--busy-budget", type=float, default=1.0,
                        help="seconds per loop in the busy figure (1.0; --quick: 0.3)")
    parser.add_argument("--dir", help="where the store files go (default: a disk-backed temp dir)")
    parser.add_argument("--note", default="", help="a remark kept in the JSON (machine state)")
    parser.add_argument("--out", help="write the raw results and machine info here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.n_slow = min(args.repeat, 3), min(args.n_slow, 2_000)
        args.busy_budget = min(args.busy_budget, 0.3)
    args.passes = 3 if args.quick else 5
    if min(args.n, args.n_slow, args.n_sync, args.repeat, args.reopen_keys) < 1 \
            or args.warmup < 0:
        parser.error("--n, --n-slow, --n-sync, --repeat and --reopen-keys must be positive")
    if len(args.value_sizes) != len(args.value_n) or min(args.value_sizes + args.value_n) < 1:
        parser.error("--value-sizes and --value-n need as many positive numbers each")
    unknown = [f for f in args.figures.split(",") if f and f not in (*FIGURES, "none")]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = bench.choose_directory(args.dir)
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    figures_wanted = [f for f in args.figures.split(",") if f and f != "none"]
    with tempfile.TemporaryDirectory(prefix="mmkv-peers-", dir=base) as work:
        work_path = Path(work)
        servers: list[RedisServer] = []

        def redis_server() -> RedisServer:
            if not servers:
                servers.append(RedisServer(work_path / "redis"))
            return servers[0]
        try:
            stores, groups, notes = build_stores(names, redis_server)
            workloads_by_group = {"full": make_workload(args.n, args.seed),
                                  "sync": make_workload(min(args.n_sync, args.n), args.seed + 1),
                                  "slow": make_workload(min(args.n_slow, args.n), args.seed + 2)}
            workloads = {s.name: workloads_by_group[groups[s.name]] for s in stores}
            info = bench.machine_info(work_path)
            info["peers"] = peer_versions()
            if servers:
                info["peers"]["redis_server"] = servers[0].version()
            log(f"peers: n={args.n} n_slow={workloads_by_group['slow'].n}"
                f" n_sync={workloads_by_group['sync'].n} repeat={args.repeat} in {work}"
                f" ({info['workdir_filesystem']['type']})")
            bench.warn_if_busy(log)
            info["load_average_start"] = os.getloadavg()
            (work_path / "rounds").mkdir()
            samples, sizes = run_interleaved(stores, workloads, work_path / "rounds",
                                             args.repeat, args.warmup)
        finally:
            for server in servers:
                server.stop()
        figures: dict[str, Any] = {}
        full = workloads_by_group["full"]
        if "scale" in figures_wanted:
            sizes_wanted = tuple(int(s) for s in args.scale_sizes.split(","))
            figures["scale"] = figure_scale(work_path, args.seed, args.passes, sizes_wanted)
        if "reopen" in figures_wanted:
            figures["reopen"] = figure_reopen(work_path, args.seed, 2 * args.passes,
                                              args.reopen_keys)
        if "readers" in figures_wanted:
            figures["readers"] = figure_readers(work_path, full, args.repeat, args.passes)
        if "get_many" in figures_wanted:
            figures["get_many"] = figure_get_many(work_path, full, args.passes)
        if "values" in figures_wanted:
            figures["values"] = figure_values(work_path, args.seed, args.value_sizes,
                                              args.value_n, args.passes, args.warmup)
            notes.extend(figures["values"]["notes"])
        if "busy" in figures_wanted:
            figures["busy"] = figure_busy(work_path, full, args.busy_budget,
                                          min(args.repeat, 3), args.warmup)
        info["load_average_end"] = os.getloadavg()
    rows = summarise(samples)
    table = peer_ratios(rows)
    heads = headline(rows, sizes, figures)
    print(format_peers(rows, table))
    if "values" in figures:
        print("\nvalue sizes (MB/s: value bytes only)")
        print(format_values(figures["values"]))
    if "busy" in figures:
        print("\nbusy threads (busy.py)")
        print(busy.report(figures["busy"]["summary"], figures["busy"]["ratios"]))
    print("\nissue 11 figures")
    for name, value in heads.items():
        print(f"  {name}: {json.dumps(value, default=str)}")
    for note in notes:
        print(f"  note: {note}")
    if args.out:
        write_json(args, info, rows, table, sizes, heads, figures, samples, notes, workloads)
    return 0


def write_json(args, info, rows, table, sizes, heads, figures, samples, notes, workloads):
    document = {
        "schema": 1,
        "tool": "tools/bench/peers.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "note": args.note,
        "workload": {"n": args.n, "n_per_store": {k: w.n for k, w in workloads.items()},
                     "key_len": bench.KEY_LEN, "value_len": bench.VALUE_LEN, "seed": args.seed,
                     "repeat": args.repeat, "warmup": args.warmup, "passes": args.passes,
                     "lmdb_map_size": bench.LMDB_MAP_SIZE, "ultradict_buffer": ULTRADICT_BUFFER,
                     "reopen_keys": args.reopen_keys, "value_sizes": args.value_sizes,
                     "value_n": args.value_n, "value_pool_bytes": VALUE_POOL_BYTES,
                     "busy_budget_s": args.busy_budget},
        "machine": info,
        "summary": rows,
        "ratios_mmkv_over_peer": table,
        "issue_11_figures": heads,
        "figures": figures,
        "file_bytes": sizes,
        "notes": notes,
        "samples": samples,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
