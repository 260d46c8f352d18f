"""What leaving the machine costs: the same workloads on a local mmkv store, one Redis
server and a three-primary Redis Cluster, all on loopback, in one run.

Method: N keys of 15 bytes, values of 100 bytes, fixed seed; each workload is one Python
call per operation through the mmkv API (no pipelining), timed over the whole pass after
one warm-up pass, REPS repetitions, median reported in microseconds per operation.  The
servers are started here (no persistence: --save "" --appendonly no), on the same machine
as the client, so the figures are round-trip and script costs, not network latency.
Usage: python tools/bench/bench_redis.py [N] [REPS]  (needs redis-server and redis-cli)
"""
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "redis"))

import mmkv  # noqa: E402
from _redis_servers import Cluster, Server  # noqa: E402


def _workloads(d, keys, value):
    def insert():
        for k in keys:
            d[k] = value

    def get():
        for k in keys:
            d[k]

    def incr():
        for k in keys:
            d.incr(b"n" + k)

    def cas():
        for k in keys:
            d.compare_and_set(k, value, value)

    def iterate():
        for _ in d.items():
            pass

    def get_many():
        for i in range(0, len(keys), 100):
            d.get_many(keys[i:i + 100])

    work = {"insert": insert, "get": get, "incr": incr, "compare_and_set": cas,
            "iterate (items)": iterate, "get_many (100)": get_many}
    if not hasattr(d, "get_many"):          # a local Store before the batches are merged
        del work["get_many (100)"]
    return work


def _measure(d, keys, value, reps):
    out = {}
    for name, fn in _workloads(d, keys, value).items():
        fn()
        runs = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - t0) / len(keys) * 1e6)
        out[name] = statistics.median(runs)
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = random.Random(14)
    keys = [b"%015d" % rng.randrange(10 ** 15) for _ in range(n)]
    value = rng.randbytes(100)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(os.path.join(tmp, "one")).start()
        cluster = Cluster(os.path.join(tmp, "cluster")).start()
        try:
            targets = {"local": os.path.join(tmp, "s.mmkv"), "redis": server.url("bench"),
                       "cluster": cluster.url("bench")}
            for name, spec in targets.items():
                with mmkv.open(spec, "n") as d:
                    results[name] = _measure(d, keys, value, reps)
        finally:
            server.stop()
            cluster.stop()
    python = sys.version.split()[0]
    print(f"# {n} keys, median of {reps}, microseconds per operation (Python {python})")
    print("| op | local | redis | cluster | redis / local | cluster / local |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for op in results["redis"]:
        loc = results["local"].get(op)
        one, clu = results["redis"][op], results["cluster"][op]
        if loc is None:
            print(f"| {op} | - | {one:.1f} | {clu:.1f} | | |")
            continue
        print(f"| {op} | {loc:.2f} | {one:.1f} | {clu:.1f} | {one / loc:.0f}x "
              f"| {clu / loc:.0f}x |")


if __name__ == "__main__":
    main()
