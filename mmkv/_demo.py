"""`mmkv demo`: two processes (spawned) increment one shared counter while the parent
watches it, then the total and the structural check are shown.  Exit 0 when no increment
was lost."""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import time


def _worker(path: str, rounds: int) -> None:
    import mmkv

    with mmkv.open(path) as d:
        for _ in range(rounds):
            d.incr("counter")
            d[f"worker-{os.getpid()}"] = str(time.time())


def run(rounds: int) -> int:
    """Run the demo with rounds increments per worker (rounds >= 1); the exit status."""
    import mmkv

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.mmkv")
        with mmkv.open(path, "n") as d:
            print(f"store: {path}")
            procs = [ctx.Process(target=_worker, args=(path, rounds)) for _ in range(2)]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                print(f"  parent sees counter = {int(d.get('counter', b'0'))}", flush=True)
                time.sleep(0.2)
            for p in procs:
                p.join()
            total = int(d.get("counter", b"0"))
            print(f"two processes incremented the shared counter {total} times "
                  f"(expected {2 * rounds}); keys: {sorted(k.decode() for k in d)}")
            d._check()
            print("structural check: sound")
            return 0 if total == 2 * rounds else 1
