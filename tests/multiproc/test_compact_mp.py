"""Compaction while other processes use the store (issue 5): no lost write, no stale read,
iteration across a compaction done elsewhere, and the old file let go once everyone moved.

Other processes are real spawned interpreters: `serve` (in _compact_workers.py) holds a store
open and runs one command at a time, so a test decides exactly when the other process acts;
the concurrent test runs reporting workers. Every test ends with the structural check.
"""

import glob
import os
import time

import pytest

import mmkv
from _checks import assert_iteration_ok, delete_most, fill

import _compact_workers as workers
from _compact_workers import Remote
from _harness import CTX
from _selfcheck import parse

pytestmark = pytest.mark.multiproc

TIMEOUT = 60.0


def assert_sound(path, items=None):
    with mmkv.open(path, "r") as d:
        report = d._check()
        keys = [key for key in d]
        assert len(keys) == len(set(keys)) == len(d) == report["live"], (report, len(keys))
        if items is not None:
            assert {key: d[key] for key in keys} == items


# --- contents and iteration across a compaction done by another process ----------------------


def test_other_process_sees_same_contents_after_compaction_and_can_write(children, db_path):
    """API.md: compact() ... Contents are unchanged. It is safe while other processes use
    the store."""
    d = mmkv.open(db_path, "n", auto_compact=False)
    try:
        items = fill(d, 3000, 200)
        other = Remote(children, db_path, "w", auto_compact=False)
        assert other("len") == 3000
        delete_most(d, items)

        d.compact()

        assert other("len") == len(items)
        assert other("contents") == items
        other("set", b"from-other", b"1")
        assert d[b"from-other"] == b"1"
        d[b"from-test"] = b"2"
        assert other("get", b"from-test") == b"2"
        other("check")
        other.close()
    finally:
        d.close()
    items.update({b"from-other": b"1", b"from-test": b"2"})
    assert_sound(db_path, items)


def test_iteration_across_compaction_by_other_process_yields_each_key_once(children, db_path):
    """API.md: iteration never raises because another process changes the store; every key
    present throughout is yielded exactly once, every yielded key was present."""
    with mmkv.open(db_path, "n", auto_compact=False) as d:
        items = fill(d, 6000, 40)
        delete_most(d, items, keep_every=2)
        other = Remote(children, db_path, "w", auto_compact=False)
        seen = []
        for key in d:
            seen.append(key)
            if len(seen) == 1500:
                other("compact")
        assert d.stats()["epoch"] == 2
        assert_iteration_ok(seen, set(items), set(items))
        assert len(seen) == len(items)
        other.close()
    assert_sound(db_path, items)


def test_iteration_across_compactions_and_writes_by_other_process_keeps_guarantee(children,
                                                                                 db_path):
    """Several compactions elsewhere, with deletes and inserts between, while this process
    iterates: keys present throughout once each, nothing that never existed."""
    with mmkv.open(db_path, "n", auto_compact=False) as d:
        items = fill(d, 8000, 30)
        delete_most(d, items, keep_every=2)
        present = sorted(items)
        doomed = present[::5]
        throughout = set(items) - set(doomed)
        ever = set(items)
        other = Remote(children, db_path, "w", auto_compact=False)
        seen, step = [], 0
        for key in d:
            seen.append(key)
            if len(seen) % 800 == 0 and step < 3:
                step += 1
                other("delete_many", doomed[step::3])
                new = {b"new%d-%04d" % (step, i): b"n" for i in range(400)}
                ever.update(new)
                other("set_many", new)
                other("compact")
        assert step == 3
        assert_iteration_ok(seen, throughout, ever)
        other.close()
    assert_sound(db_path)


@pytest.mark.parametrize("flag", ["r", "w"])
def test_iteration_in_other_process_begun_after_compaction_sees_later_writes(children, db_path,
                                                                             flag):
    """API.md: once a write has returned, every read that starts later, in any process, sees
    it. The other process's first operation after the compaction is an iteration."""
    with mmkv.open(db_path, "n", auto_compact=False) as d:
        items = fill(d, 500, 20)
        doomed = fill(d, 50, 20, prefix=b"doomed")
        other = Remote(children, db_path, flag)
        assert other("len") == 550
        d.compact()
        for key in doomed:
            del d[key]
        added = fill(d, 50, 20, prefix=b"added")
        items.update(added)

        seen = other("iterate")

        stale = set(seen) & set(doomed)
        assert not stale, f"the iteration yielded {len(stale)} keys deleted before it began"
        missing = set(added) - set(seen)
        assert not missing, f"the iteration missed {len(missing)} keys added before it began"
        assert_iteration_ok(seen, set(items), set(items))
        other.close()
    assert_sound(db_path, items)


# --- many processes, repeated compactions -------------------------------------------------


def test_repeated_compactions_beside_two_readers_writers_lose_nothing_and_read_nothing_stale(
        children, db_path):
    """API.md: once a write has returned, every read that starts later, in any process, sees
    it or a newer value; compact() is safe while other processes use the store.

    Two workers read and write (counter_worker), an "r" handle reads (counter_reader), and a
    fourth process compacts every 10 ms: the counter ends at the number of increments, each
    worker's keys hold its last writes, and no read is older than a published write."""
    n_keys, run_seconds = 300, 4.0
    with mmkv.open(db_path, "n") as d:
        d[b"counter"] = b"0"
    published = CTX.Array("q", 2)        # the last counter value each worker got from incr
    stop = CTX.Event()
    procs = [children.start_reporting(workers.counter_worker, f"worker-{w}", db_path, w,
                                      n_keys, published, stop, 500 + w) for w in range(2)]
    procs.append(children.start_reporting(workers.counter_reader, "reader", db_path, n_keys,
                                          published, stop, 600))
    procs.append(children.start_reporting(workers.compactor, "compactor", db_path, stop, 0.01))
    deadline = time.monotonic() + run_seconds
    while time.monotonic() < deadline and all(p.exitcode is None for p in procs):
        time.sleep(0.05)
    stop.set()
    reports = children.collect(["worker-0", "worker-1", "reader", "compactor"], timeout=TIMEOUT)
    children.join(procs, timeout=TIMEOUT)

    for who in ("worker-0", "worker-1", "reader"):
        r = reports[who]
        assert r["errors"] == 0, f"{who}: {r['errors']} errors:\n" + "\n".join(r["first_errors"])
    for who in ("worker-0", "worker-1"):
        assert reports[who]["ops"] >= 200 and reports[who]["iterations"] >= 2, reports[who]
    assert reports["reader"]["reads"] >= 200, reports["reader"]
    compactions = reports["compactor"]["compactions"]
    assert compactions >= 20, f"only {compactions} compactions: the test proves little"

    with mmkv.open(db_path, "r") as d:
        d._check()
        incrs = reports["worker-0"]["incrs"] + reports["worker-1"]["incrs"]
        assert int(d[b"counter"]) == incrs, "an increment was lost"
        expected = {**reports["worker-0"]["expected"], **reports["worker-1"]["expected"]}
        keys = [key for key in d]
        assert set(keys) == set(expected) | {b"counter"}
        for key, tag in expected.items():
            assert parse(key, d[key]) == tag, f"{key!r}: not the last value written"
        assert d.stats()["epoch"] >= compactions + 1
    assert not glob.glob(os.path.join(glob.escape(os.path.dirname(db_path)), ".mmkv-*.compact"))


# --- the old file is let go ---------------------------------------------------------------


def deleted_store_entries(pid, path):
    """The lines of /proc/PID/maps and the /proc/PID/fd links that name a deleted file at
    `path` (the old file a compaction renamed over), as (maps, fds)."""
    target = f"{path} (deleted)"
    with open(f"/proc/{pid}/maps") as f:
        maps = [line.rstrip("\n") for line in f if line.rstrip("\n").endswith(target)]
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if link == target:
            fds.append(f"fd {fd} -> {link}")
    return maps, fds


def store_maps(pid, path):
    with open(f"/proc/{pid}/maps") as f:
        return [line for line in f if line.rstrip("\n").endswith(str(path))]


OPERATIONS = {
    "get": ("get", b"k000000"),
    "contains": ("contains", b"k000000"),
    "len": ("len",),
    "set": ("set", b"new", b"value"),
    "delete": ("delete", b"k000010"),
    "iterate": ("iterate",),
}


@pytest.mark.parametrize("flag,op", [("w", name) for name in OPERATIONS] + [("r", "get"),
                                                                           ("r", "iterate")])
def test_old_file_released_by_other_process_after_its_next_operation(children, db_path, flag,
                                                                     op):
    """DESIGN.md: disk space of a compacted file is released when the last process has moved
    off it; a process moves on its next operation."""
    d = mmkv.open(db_path, "n", auto_compact=False)
    try:
        items = fill(d, 3000, 300)
        other = Remote(children, db_path, flag)
        assert other("get", b"k000000") == items[b"k000000"]     # other maps the file now
        assert store_maps(other.pid, db_path), "the other process does not map the store"
        delete_most(d, items)

        d.compact()

        maps, fds = deleted_store_entries(other.pid, db_path)
        assert maps, "before its next operation the other process still maps the old file"
        own_maps, own_fds = deleted_store_entries(os.getpid(), db_path)
        assert not own_maps and not own_fds, ("the compacting process kept the old file",
                                              own_maps, own_fds)

        other(*OPERATIONS[op])

        maps, fds = deleted_store_entries(other.pid, db_path)
        assert not maps and not fds, (f"after one {op} the other process still holds the old "
                                      f"file:\n" + "\n".join(maps + fds))
        assert store_maps(other.pid, db_path), "the other process no longer maps the store"
        assert other("len") == len(d)
        other.close()
    finally:
        d.close()
    assert_sound(db_path)


def test_old_files_of_repeated_compactions_all_released_after_one_operation(children, db_path):
    """Three compactions while the other process sleeps: one operation lets go of every old
    file, not only the newest one."""
    d = mmkv.open(db_path, "n", auto_compact=False)
    try:
        items = fill(d, 2000, 300)
        other = Remote(children, db_path, "w")
        assert other("len") == 2000
        for _ in range(3):
            delete_most(d, items, keep_every=2)
            d.compact()
        assert other("get", sorted(items)[0]) == items[sorted(items)[0]]
        maps, fds = deleted_store_entries(other.pid, db_path)
        assert not maps and not fds, "\n".join(maps + fds)
        assert other("contents") == items
        other.close()
    finally:
        d.close()
    assert_sound(db_path, items)
