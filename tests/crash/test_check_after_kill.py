"""`mmkv check` after a writer was SIGKILLed in the middle of a write (API.md, "The command
line"): "check is never a false alarm: a sound store gives exit 0 ... after a crash that
interrupted a write (the next writer finishes or undoes it).  It reports damage only where
data is damaged."

Writers store 2-4 MiB values, so much of their time is spent inside a write, under the
lock, between the intent and its publication.  Every other writer is killed by the test at
a random instant; the others are armed with MMKV_TEST_WRITE_KILL=N and SIGKILL themselves
inside their Nth record write, between its RESERVE and its COMMIT, so the case is exercised
on every run whatever the machine's timing.  The header's intent word (offset 256) tells
how many kills landed inside a write: at least every armed one must have.  After each kill the store is
checked by the command line (read-only: nothing is repaired first), then a new writer opens
it, writes, and the structural check passes.
"""

import random
import struct
import subprocess
import sys
import textwrap
import time

import os

import mmkv

KILLS = 30
INTENT_OFF = 256

WRITER = textwrap.dedent("""
    import os, random, sys, mmkv
    d = mmkv.open(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    big = os.urandom(4 << 20)
    d[b"ready"] = b"1"
    while True:
        d[b"big%d" % rng.randrange(4)] = big[: rng.randrange(2 << 20, 4 << 20)]
        d.incr(b"n")
""")


def _intent(path):
    with open(path, "rb") as f:
        f.seek(INTENT_OFF)
        return struct.unpack("<Q", f.read(8))[0]


def test_check_after_writer_killed_mid_write_is_sound_and_next_writer_finishes(tmp_path):
    """After each SIGKILL of a writer, `mmkv check` exits 0, even when the kill left a
    write in progress; the next writer finishes it and the store passes _check()."""
    path = tmp_path / "killed.mmkv"
    rng = random.Random(10)
    pending = armed = 0
    failures = []
    for i in range(KILLS):
        env = dict(os.environ)
        if i % 2:
            # write 1 is "ready"; each round then writes a big value and an incr
            env["MMKV_TEST_WRITE_KILL"] = str(rng.randrange(2, 12))
            armed += 1
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(i)],
                                    stderr=subprocess.PIPE, env=env)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == -9, err.decode()
            assert _intent(path) != 0, "a writer killed inside its write left no intent"
        else:
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(i)],
                                    stderr=subprocess.PIPE, env=env)
            _kill_at_random(proc, path, rng)
        if _intent(path) != 0:
            pending += 1
        r = subprocess.run([sys.executable, "-m", "mmkv", "check", str(path)],
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            failures.append((i, _intent(path), r.stdout.decode() + r.stderr.decode()))
        with mmkv.open(path, "r") as d:      # a read-only handle repairs nothing either
            d._check()
        if i % 3 == 2:                       # now and then, the next writer takes over
            with mmkv.open(path) as d:
                n = d.incr(b"n")
                d[b"after"] = b"%d" % n
                d._check()
            assert _intent(path) == 0
    assert not failures, f"{len(failures)} of {KILLS} checks after a kill failed: {failures[:3]}"
    assert pending >= armed, f"only {pending} of {KILLS} kills left a write pending"
    with mmkv.open(path) as d:
        d[b"final"] = b"1"
        assert d[b"final"] == b"1"
        d._check()
    r = subprocess.run([sys.executable, "-m", "mmkv", "check", str(path)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode()


def _kill_at_random(proc, path, rng):
    """Wait until the writer has written "ready", let it run a random while, SIGKILL it."""
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer did not start"
            try:
                with mmkv.open(path, "r") as d:
                    if b"ready" in d:
                        break
            except mmkv.error:
                pass
            time.sleep(0.005)
        time.sleep(rng.uniform(0.01, 0.15))
    finally:
        proc.kill()
        proc.communicate(timeout=30)
