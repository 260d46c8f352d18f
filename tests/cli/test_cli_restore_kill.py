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
    """A dump of N records, and the size of the store a restore of it builds."""
    d = tmp_path_factory.mktemp("kill")
    make_store(d / "src.mmkv", {b"key-%08d" % i: b"value-%08d" % i for i in range(N)})
    dump = d / "src.jsonl"
    subprocess.run([sys.executable, "-m", "mmkv", "dump", d / "src.mmkv", "-o", dump],
                   check=True, env=cli_env(), timeout=TIMEOUT)
    subprocess.run([sys.executable, "-m", "mmkv", "restore", dump, d / "timed.mmkv"],
                   check=True, env=cli_env(), timeout=TIMEOUT)
    return dump, (d / "timed.mmkv").stat().st_size


def _building(directory):
    return [directory / p for p in os.listdir(directory)
            if p.startswith(".mmkv-") and p.endswith(".restore")]


def _size(paths):
    try:
        return max(p.stat().st_size for p in paths)
    except (FileNotFoundError, ValueError):
        return 0


def _restore_and_kill(dump, target, grown, force, sig=signal.SIGKILL):
    """Start a restore, wait until the store it builds has grown to `grown` bytes (0: until
    it starts building), kill it; returns whether it was still running when killed.  The
    kill point is chosen by the build's progress, not by a delay, so it lands mid-build
    however fast or loaded the machine is."""
    argv = [sys.executable, "-m", "mmkv", "restore", *(["--force"] if force else []),
            dump, target]
    earlier = set(_building(target.parent))       # left by restores killed before
    with subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:
            building = [p for p in _building(target.parent) if p not in earlier]
            if building and _size(building) >= grown:
                break
            assert time.monotonic() < deadline, "restore never started building"
            time.sleep(0.001)
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
    """After SIGKILL at any point of the build, STORE is absent (or the old bytes) or the
    whole dump."""
    dump, final_size = big_dump
    rng = random.Random(20261201)
    mid_build = 0
    for k in range(KILLS):
        target = tmp_path / f"t{k}.mmkv"
        old = make_store(target, {b"old": b"store"}).read_bytes() if force else None
        grown = 0 if k == 0 else int(final_size * rng.uniform(0.02, 0.6))
        alive, _ = _restore_and_kill(dump, target, grown, force)
        mid_build += alive
        if target.exists() and target.read_bytes() != old:
            _assert_whole(target)
        elif force:
            assert target.read_bytes() == old
        else:
            assert not os.path.lexists(target)
    assert mid_build >= KILLS - 1, f"only {mid_build} of {KILLS} kills landed mid-restore"


def test_restore_sigterm_midway_exit143_no_leftovers(tmp_path, big_dump):
    """SIGTERM unwinds like Ctrl-C: exit 143, STORE absent, no temporary file left."""
    dump, _ = big_dump
    target = tmp_path / "t.mmkv"
    alive, rc = _restore_and_kill(dump, target, 1, False, signal.SIGTERM)
    assert alive and rc == 143
    assert list(tmp_path.iterdir()) == []
