"""Child-process entry points for tests/multiproc/test_watch_mp.py and test_batch_mp.py."""
import time

import mmkv

from _harness import reporting

END = b"__end__"


@reporting
def watch_until_end(path, since, progress, timeout):
    """Collect every change after `since` until the key END is written; publish the last
    seq seen in `progress` (a shared Value) after each change."""
    out = []
    with mmkv.open(path) as d:
        for seq, key, value in d.watch(since=since, timeout=timeout):
            if key == END:
                return {"changes": out}
            out.append((seq, key, value))
            progress.value = seq
    return {"changes": out, "timed_out": True}


@reporting
def idle_watch_cpu(path, seconds):
    """Watch a store nobody writes for `seconds`: the CPU time and wall time it took."""
    with mmkv.open(path) as d:
        cpu0, t0 = time.process_time(), time.monotonic()
        got = list(d.watch(timeout=seconds))
        return {"cpu": time.process_time() - cpu0, "wall": time.monotonic() - t0,
                "changes": len(got)}


def watch_forever(path, ready):
    """Block in watch() forever (the test stops or kills this process)."""
    with mmkv.open(path) as d:
        w = d.watch()
        ready.set()
        for _ in w:
            pass


@reporting
def batch_writer(path, keys, rounds, compact_every):
    """Write all of `keys` with one value per round through set_many, deleting them all
    through delete_many every seventh round, compacting now and then."""
    with mmkv.open(path) as d:
        for i in range(rounds):
            if i % 7 == 6:
                assert d.delete_many(keys) == len(keys)
                d.set_many({k: b"%08d" % i for k in keys})
            else:
                d.set_many({k: b"%08d" % i for k in keys})
            if compact_every and i % compact_every == compact_every - 1:
                d.compact()
    return {"rounds": rounds}


@reporting
def watch_until_interrupted(path, ready):
    """Block in watch() until Ctrl-C (SIGINT) arrives as KeyboardInterrupt."""
    with mmkv.open(path) as d:
        w = d.watch()
        ready.set()
        try:
            for _ in w:
                pass
        except KeyboardInterrupt:
            return {"interrupted": True}
    return {"interrupted": False}
