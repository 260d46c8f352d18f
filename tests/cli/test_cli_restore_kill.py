"""restore killed with SIGKILL midway: STORE appears whole or not at all.

"builds STORE from a dump, atomically: STORE appears whole or not at all".  Each kill lands
after the restore has started building (its temporary file exists beside STORE), at a random
point of the run; afterwards STORE is absent (or, with --force, byte-identical to the old
one) or holds the whole dump and passes the structural check.  A run where no kill landed
mid-build fails rather than passing vacuously.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from _cli import TIMEOUT, cli_env, make_store

pytestmark = pytest.mark.crash

N = 150_000
KILLS = 6


@pytest.fixture(scope="module")
def big_dump(tmp_path_factory):
    """A dump of N records, and how long one restore of it takes here."""
    d = tmp_path_factory.mktemp("kill")
    make_store(d / "src.mmkv", {b"key-%08d" % i: b"value-%08d" % i for i in range(N)})
    dump = d / "src.jsonl"
    subprocess.run([sys.executable, "-m", "mmkv", "dump", d / "src.mmkv", "-o", dump],
                   check=True, env=cli_env(), timeout=TIMEOUT)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "mmkv", "restore", dump, d / "timed.mmkv"],
                   check=True, env=cli_env(), timeout=TIMEOUT)
    return dump, time.monotonic() - start


def _building(directory, name):
    return [p for p in os.listdir(directory) if p.startswith(".mmkv-") and p.endswith(".restore")]


def _restore_and_kill(dump, target, delay, force, sig=signal.SIGKILL):
    """Start a restore, wait until it is building, kill it after delay seconds; returns
    whether it was still running when killed."""
    argv = [sys.executable, "-m", "mmkv", "restore", *(["--force"] if force else []),
            dump, target]
    with subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + TIMEOUT
        while not _building(target.parent, target.name) and proc.poll() is None:
            assert time.monotonic() < deadline, "restore never started building"
            time.sleep(0.002)
        time.sleep(delay)
        alive = proc.poll() is None
        proc.send_signal(sig)
        rc = proc.wait(timeout=TIMEOUT)
    return alive, rc


def _assert_whole(target):
    import mmkv

    with mmkv.open(target, "r") as d:
        d._check()
        assert len(d) == N
        for i in random.Random(N).sample(range(N), 200) + [0, N - 1]:
            assert d[b"key-%08d" % i] == b"value-%08d" % i


@pytest.mark.parametrize("force", [False, True], ids=["absent", "existing_force"])
def test_restore_sigkill_midway_store_absent_old_or_whole(tmp_path, big_dump, force):
    """After SIGKILL at any point, STORE is absent (or the old bytes) or the whole dump."""
    dump, duration = big_dump
    rng = random.Random()
    mid_build = 0
    for k in range(KILLS):
        target = tmp_path / f"t{k}.mmkv"
        old = make_store(target, {b"old": b"store"}).read_bytes() if force else None
        alive, _ = _restore_and_kill(dump, target, rng.uniform(0, duration * 0.9), force)
        mid_build += alive
        if target.exists() and target.read_bytes() != old:
            _assert_whole(target)
        elif force:
            assert target.read_bytes() == old
        else:
            assert not os.path.lexists(target)
    assert mid_build >= KILLS // 2, f"only {mid_build} of {KILLS} kills landed mid-restore"


def test_restore_sigterm_midway_exit143_no_leftovers(tmp_path, big_dump):
    """SIGTERM unwinds like Ctrl-C: exit 143, STORE absent, no temporary file left."""
    dump, _ = big_dump
    target = tmp_path / "t.mmkv"
    alive, rc = _restore_and_kill(dump, target, 0.05, False, signal.SIGTERM)
    assert alive and rc == 143
    assert list(tmp_path.iterdir()) == []
