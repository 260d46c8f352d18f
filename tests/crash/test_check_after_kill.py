"""`mmkv check` after a writer was SIGKILLed in the middle of a write (API.md, "The command
line"): "check is never a false alarm: a sound store gives exit 0 ... after a crash that
interrupted a write (the next writer finishes or undoes it).  It reports damage only where
data is damaged."

Writers store 2-4 MiB values, so most of their time is spent inside a write, under the
lock, between the intent and its publication; each is killed at a random instant.  The
header's intent word (offset 256) tells how many kills landed inside a write: the test
requires some, so it cannot pass without exercising the case.  After each kill the store is
checked by the command line (read-only: nothing is repaired first), then a new writer opens
it, writes, and the structural check passes.
"""

import random
import struct
import subprocess
import sys
import textwrap
import time

import mmkv

KILLS = 30
MIN_PENDING = 3          # kills that must have left an intent pending
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
    pending = 0
    failures = []
    for i in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(i)],
                                stderr=subprocess.PIPE)
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
    assert pending >= MIN_PENDING, f"only {pending} of {KILLS} kills landed inside a write"
    with mmkv.open(path) as d:
        d[b"final"] = b"1"
        assert d[b"final"] == b"1"
        d._check()
    r = subprocess.run([sys.executable, "-m", "mmkv", "check", str(path)],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode()
