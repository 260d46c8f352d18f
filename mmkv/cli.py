"""The mmkv command line (also `python -m mmkv`).

    mmkv demo                 two processes share a store: one counts, the other watches
"""
import argparse
import multiprocessing
import os
import sys
import tempfile
import time


def _demo_worker(path, rounds):
    import mmkv
    with mmkv.open(path) as d:
        for _ in range(rounds):
            d.incr("counter")
            d[f"worker-{os.getpid()}"] = str(time.time())


def _demo(args):
    import mmkv
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.mmkv")
        with mmkv.open(path, "n") as d:
            print(f"store: {path}")
            procs = [ctx.Process(target=_demo_worker, args=(path, args.rounds)) for _ in range(2)]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                print(f"  parent sees counter = {int(d.get('counter', b'0'))}", flush=True)
                time.sleep(0.2)
            for p in procs:
                p.join()
            total = int(d["counter"])
            print(f"two processes incremented the shared counter {total} times "
                  f"(expected {2 * args.rounds}); keys: {sorted(k.decode() for k in d)}")
            d._check()
            print("structural check: sound")
            return 0 if total == 2 * args.rounds else 1


def _parser():
    p = argparse.ArgumentParser(prog="mmkv", description="mmkv store tools")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="show two processes sharing one store")
    demo.add_argument("--rounds", type=int, default=20000)
    demo.set_defaults(func=_demo)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"mmkv: {e}", file=sys.stderr)
        return 1
