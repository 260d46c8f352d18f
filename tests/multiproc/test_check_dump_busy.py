"""`mmkv check` and `mmkv dump` beside other processes writing and holding the lock (API.md,
"The command line"):

"check is never a false alarm: a sound store gives exit 0 while other processes write or
hold the lock ... It reports damage only where data is damaged."
"dump of a store that other processes are writing is a consistent snapshot: the state at
one moment, never inside another process's lock() block, and it holds writers up for no
longer than one write."

The writers are real processes (python -c); every check and dump is a real `mmkv` command
or a real read-only handle in another process.  One writer is also frozen with SIGSTOP at
random moments, so that checks meet it between two steps of a write (a batch's slots half
published, a tail published before its slot), as a preempted writer leaves them.  Each test
ends with the structural check.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import mmkv
import pytest

CHECKS_CLI = 40          # `mmkv check` commands beside each kind of writer
CHECKS_API = 150         # read-only _check() calls in one checker process, beside each kind
DUMPS_CLI = 40
DUMPS_API = 150


def _spawn(code, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_ready(proc, path, key=b"ready"):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        if os.path.exists(path):
            with mmkv.open(path, "r") as d:
                if key in d:
                    return
        time.sleep(0.01)
    pytest.fail("the writer did not start")


def _stop(proc):
    if proc.returncode is None:
        proc.kill()
        proc.communicate(timeout=30)     # reaps it and closes its pipes


BUSY_WRITER = """
    import random, sys, mmkv
    d = mmkv.open(sys.argv[1])
    d[b"ready"] = b"1"
    rng = random.Random(1)
    i = 0
    while True:
        i += 1
        k = b"k%d" % rng.randrange(3000)
        r = rng.random()
        if r < 0.6:
            d[k] = b"v" * rng.randrange(200)
        elif r < 0.8:
            d.pop(k, None)
        elif r < 0.95:
            d.incr(b"counter")
        else:
            d[b"fresh%d" % i] = b"x"      # new keys: the table grows and is rebuilt
"""

LOCK_HOLDER = """
    import random, sys, time, mmkv
    d = mmkv.open(sys.argv[1])
    d[b"ready"] = b"1"
    rng = random.Random(2)
    while True:
        with d.lock():
            for j in range(rng.randrange(1, 20)):
                d[b"h%d" % rng.randrange(500)] = b"w" * rng.randrange(100)
            time.sleep(rng.random() * 0.003)
"""

API_CHECKER = """
    import sys, mmkv
    bad = []
    for i in range(int(sys.argv[2])):
        with mmkv.open(sys.argv[1], "r") as d:
            try:
                d._check()
            except mmkv.CorruptError as e:
                bad.append(str(e))
    print(len(bad))
    for b in bad[:3]:
        print(b)
"""


@pytest.mark.parametrize("writer", [BUSY_WRITER, LOCK_HOLDER], ids=["busy-writer", "lock-holder"])
def test_check_beside_writer_always_sound(tmp_path, writer):
    """Every `mmkv check` (and every read-only structural check) run while another process
    writes, or holds lock() across writes, exits 0: no false alarm."""
    path = tmp_path / "busy.mmkv"
    proc = _spawn(writer, path)
    try:
        _wait_ready(proc, path)
        checker = _spawn(API_CHECKER, path, CHECKS_API)
        failures = []
        for _ in range(CHECKS_CLI):
            r = subprocess.run([sys.executable, "-m", "mmkv", "check", str(path)],
                               capture_output=True, timeout=120)
            if r.returncode != 0:
                failures.append(r.stdout.decode() + r.stderr.decode())
        out, err = checker.communicate(timeout=600)
        assert checker.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert proc.poll() is None, "the writer died"
    finally:
        _stop(proc)
    assert not failures, f"{len(failures)} of {CHECKS_CLI} checks: {failures[:3]}"
    assert lines[0] == "0", f"{lines[0]} of {CHECKS_API} read-only checks failed: {lines[1:]}"
    with mmkv.open(path) as d:
        d._check()


PAUSED_WRITER = """
    import random, sys, mmkv
    d = mmkv.open(sys.argv[1], initial_capacity=1_000_000)
    d[b"ready"] = b"1"
    rng = random.Random(4)
    while True:
        keys = [b"b%d" % rng.randrange(200_000) for _ in range(rng.randrange(500, 3000))]
        if rng.random() < 0.7:
            d.set_many([(k, b"w" * rng.randrange(60)) for k in keys])
        else:
            d.delete_many(keys)
        for _ in range(rng.randrange(20)):
            d[b"k%d" % rng.randrange(3000)] = b"v" * rng.randrange(200)
"""

PAUSES = 300             # SIGSTOPs of the batch writer, each followed by a read-only check


def test_check_of_writer_stopped_at_random_always_sound(tmp_path):
    """A writer of batches and single writes, frozen by SIGSTOP at random moments (often in
    the middle of publishing a batch's slots): every read-only structural check run while it
    is frozen, through a fresh handle or one mapped before the file last grew, passes."""
    path = tmp_path / "paused.mmkv"
    proc = _spawn(PAUSED_WRITER, path)
    rng = random.Random(5)
    failures, pending = [], 0
    try:
        _wait_ready(proc, path)
        with mmkv.open(path, "r") as kept:
            for i in range(PAUSES):
                time.sleep(rng.random() * 0.004)
                os.kill(proc.pid, signal.SIGSTOP)
                os.waitpid(proc.pid, os.WUNTRACED)      # frozen now, wherever it was
                try:
                    pending += _intent(path) != 0
                    if i % 2:
                        kept._check()
                    else:
                        with mmkv.open(path, "r") as d:
                            d._check()
                except mmkv.CorruptError as e:
                    failures.append(str(e))
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
        assert proc.poll() is None, "the writer died"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        _stop(proc)
    assert not failures, f"{len(failures)} of {PAUSES} checks failed: {failures[:3]}"
    assert pending, f"none of {PAUSES} pauses caught a write in progress"
    with mmkv.open(path) as d:
        d._check()


def _intent(path):
    with open(path, "rb") as f:
        f.seek(256)
        return int.from_bytes(f.read(8), "little")


INVARIANT_WRITER = """
    import os, random, sys, time, mmkv
    d = mmkv.open(sys.argv[1])
    d[b"a"], d[b"b"] = b"500", b"500"
    d[b"ready"] = b"1"
    rng = random.Random(3)
    while not os.path.exists(sys.argv[2]):       # stop outside the lock, between blocks
        with d.lock():
            a = int(d[b"a"])
            move = rng.randrange(-a, 1000 - a + 1)
            d[b"a"] = str(a + move).encode()
            time.sleep(rng.random() * 0.002)      # a dump must never see this half
            d[b"b"] = str(1000 - a - move).encode()
            d[b"noise%d" % rng.randrange(50)] = b"n"
"""

API_DUMPER = """
    import sys, mmkv
    from mmkv._snapshot import _Snapshot, _items, snapshot_items
    how = sys.argv[3]
    broken = 0
    for i in range(int(sys.argv[2])):
        with mmkv.open(sys.argv[1], "w" if how == "w" else "r") as d:
            if how == "watch":       # the read-only moment, watching the lock (no twin)
                items = dict(_items(_Snapshot(d), i % 2 == 0, None))
            else:
                items = dict(snapshot_items(d, sort=(i % 2 == 0)))
        if int(items[b"a"]) + int(items[b"b"]) != 1000:
            broken += 1
    print(broken)
"""


def _dump_invariant(out):
    values = {}
    for line in out.splitlines()[1:-1]:
        rec = json.loads(line)
        values[rec["k"]] = int(rec["v"]) if rec["k"] in ("a", "b") else rec["v"]
    return values["a"] + values["b"]


def test_dump_beside_lock_holder_is_a_snapshot(tmp_path):
    """Every `mmkv dump` taken while another process keeps a + b == 1000 under lock()
    satisfies the invariant, and so does every snapshot read through a read-only handle, a
    writable one, and a read-only one that watches the lock, in other processes."""
    path = tmp_path / "inv.mmkv"
    stop = tmp_path / "stop"
    proc = _spawn(INVARIANT_WRITER, path, stop)
    try:
        _wait_ready(proc, path)
        dumpers = [_spawn(API_DUMPER, path, DUMPS_API, how) for how in ("r", "w", "watch")]
        sums = []
        for _ in range(DUMPS_CLI):
            r = subprocess.run([sys.executable, "-m", "mmkv", "dump", str(path)],
                               capture_output=True, timeout=120)
            assert r.returncode == 0, r.stderr.decode()
            sums.append(_dump_invariant(r.stdout.decode()))
        results = []
        for dumper in dumpers:
            out, err = dumper.communicate(timeout=600)
            assert dumper.returncode == 0, err.decode()
            results.append(int(out.decode().split()[0]))
        assert proc.poll() is None, "the writer died"
        stop.write_bytes(b"")
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        _stop(proc)
    broken = [s for s in sums if s != 1000]
    assert not broken, f"{len(broken)} of {DUMPS_CLI} dumps broke a + b == 1000: {broken[:5]}"
    assert results == [0, 0, 0], f"snapshots that broke the invariant (r, w, watch): {results}"
    with mmkv.open(path) as d:
        assert int(d[b"a"]) + int(d[b"b"]) == 1000
        d._check()
