"""A compactor SIGKILLed at each step of compact() leaves the store whole and usable (issue 5).

The victim is a fresh interpreter started with MMKV_TEST_COMPACT_KILL=N in its environment
(only there: the variable would kill any process that compacts), which opens the store and
calls compact(); the core SIGKILLs it at step N (1 tag set, 2 new file built, 3 RETIRING,
4 renamed, 5 RETIRED). The survivors are other processes (`serve` in
tests/multiproc/_compact_workers.py), one of them holding the store since before the kill;
the test process never touches the store while a lock may be held, so an unrecovered lock
fails a test by timeout instead of hanging it.
"""

import glob
import os
import signal
import subprocess
import sys

import pytest

import mmkv

from _compact_workers import Remote
from _selfcheck import make, parse

pytestmark = pytest.mark.crash

STEPS = {1: "tag set", 2: "new file built", 3: "RETIRING", 4: "renamed", 5: "RETIRED"}
VICTIM = """
import sys
import mmkv
d = mmkv.open(sys.argv[1], "w")
d.compact()
print("compact() returned: the kill hook did not fire")
"""


def leftovers(path):
    return glob.glob(os.path.join(glob.escape(os.path.dirname(path)), ".mmkv-*.compact"))


def seed(path):
    """A store with ~1.5 MiB of garbage (under the 4 MiB auto-compaction threshold, so no
    survivor compacts on its own) and its expected contents."""
    items = {}
    with mmkv.open(path, "n") as d:
        for i in range(2000):
            key = b"key%05d" % i
            items[key] = make(key, "seed", 200 + i % 1500)
            d[key] = items[key]
        for i, key in enumerate(sorted(items)):
            if i % 3 == 0:
                del d[key]
                del items[key]
            elif i % 3 == 1:
                items[key] = make(key, "over", 100)
                d[key] = items[key]
        assert d.stats()["reclaimable_bytes"] > 1 << 20
    return items


def kill_compactor_at(path, step):
    """Run a compactor that SIGKILLs itself at `step`; fail unless it died that way."""
    env = dict(os.environ, MMKV_TEST_COMPACT_KILL=str(step))
    done = subprocess.run([sys.executable, "-c", VICTIM, path], env=env, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, (
        f"compactor exited {done.returncode}, not by SIGKILL at step {step}:\n"
        f"{done.stdout}{done.stderr}")


def assert_contents(remote, items):
    got = remote("contents")
    assert set(got) == set(items), (f"missing {sorted(set(items) - set(got))[:5]}, "
                                    f"unexpected {sorted(set(got) - set(items))[:5]}")
    for key, value in got.items():
        if key != b"counter":
            parse(key, value)                       # whole, and its own key's value
        assert value == items[key], f"{key!r}: not the value last written"


@pytest.mark.parametrize("first", ["bystander", "fresh", "alone"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_compactor_killed_at_step_leaves_store_whole_and_usable(children, db_path, step, first):
    """API.md: a process killed at any instant (SIGKILL) ... loses no write that had returned,
    corrupts nothing, and blocks no one: the next operation in any process goes on without
    manual repair. Issue 5: before the rename the next writer removes the temporary file and
    resumes on the old one; after it, the switch completes.

    first: who acts first after the kill: "bystander" (a process that held the store since
    before the kill), "fresh" (a process that opened it after), or "alone" (a fresh process
    with no other handle anywhere: its open runs the sole-opener recovery)."""
    items = seed(db_path)
    before = os.stat(db_path)
    bystander = None if first == "alone" else Remote(children, db_path, "w")
    if bystander:
        assert_contents(bystander, items)              # it maps the old file

    kill_compactor_at(db_path, step)

    after = os.stat(db_path)
    if step <= 3:
        assert after.st_ino == before.st_ino, "the path moved before the rename step"
        assert after.st_size == before.st_size
        assert len(leftovers(db_path)) == (0 if step == 1 else 1), leftovers(db_path)
    else:
        assert after.st_ino != before.st_ino, "the path does not name the new file"
        assert after.st_size < before.st_size, "the new file is not smaller"
        assert not leftovers(db_path)

    fresh = Remote(children, db_path, "w")
    survivors = [fresh] if bystander is None else [bystander, fresh]
    if first == "fresh":
        survivors.reverse()

    # the first survivor reads everything, then writes once: the temporary file is gone
    assert_contents(survivors[0], items)
    items[b"after-1"] = make(b"after-1", "after", 10)
    survivors[0]("set", b"after-1", items[b"after-1"])
    assert not leftovers(db_path), f"a write left {leftovers(db_path)} behind"
    assert os.stat(db_path).st_ino == after.st_ino, "the write moved the path again"
    survivors[0]("check")

    # every survivor sees the same store, writes to it and finds it sound
    for i, remote in enumerate(survivors[1:], 2):
        assert_contents(remote, items)
        key = b"after-%d" % i
        items[key] = make(key, "after", 10)
        remote("set", key, items[key])
    for n, remote in enumerate(survivors, 1):
        assert_contents(remote, items)
        assert remote("incr", b"counter") == n      # atomic read-modify-write works
        items[b"counter"] = b"%d" % n
        remote("check")

    # and the store compacts again, with the same contents
    size = os.path.getsize(db_path)
    fresh("compact")
    assert not leftovers(db_path)
    if step <= 3:
        assert os.path.getsize(db_path) < size, "the garbage left by the kill was not reclaimed"
    for remote in survivors:
        assert_contents(remote, items)
        remote("check")
    for remote in survivors:
        remote.close()
    with mmkv.open(db_path, "r") as d:
        assert d._check()["live"] == len(items)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_reader_holding_store_reads_through_compactor_killed_at_step(children, db_path, step):
    """API.md: a killed process blocks no one; reads never wait for writers. A reader that
    holds the store reads everything before any writer has come along to recover it."""
    items = seed(db_path)
    reader = Remote(children, db_path, "r")
    assert_contents(reader, items)

    kill_compactor_at(db_path, step)

    assert reader("len") == len(items)
    assert_contents(reader, items)
    writer = Remote(children, db_path, "w")
    writer("set", b"later", b"1")
    assert reader("get", b"later") == b"1"
    assert not leftovers(db_path)
    writer("check")
    reader.close()
    writer.close()
