"""watch() across processes (API.md, "Watching changes"): the exact sequence of changes,
in commit order, across table rebuilds and compactions; WatchLagged; no CPU while idle;
a stopped or killed watcher never holds a writer up."""
import itertools
import os
import signal
import time

import pytest

import mmkv

import _watch_workers as workers
from _harness import CTX

pytestmark = pytest.mark.multiproc


def wait_for(progress, seq, timeout=30.0):
    """Until the watcher has seen seq (a watcher that keeps up never misses a change)."""
    deadline = time.monotonic() + timeout
    while progress.value < seq:
        assert time.monotonic() < deadline, "the watcher did not keep up"
        time.sleep(0.005)


def grouped(changes):
    """[(seq, [(key, value), ...]), ...]: a clear's deletes share its seq, in no set order."""
    return [(seq, sorted((k, v) for _, k, v in group))
            for seq, group in itertools.groupby(changes, key=lambda c: c[0])]


class Writer:
    """Makes changes and records, as groups, what a watcher must see."""

    def __init__(self, d):
        self.d = d
        self.expected = []
        self.model = {}

    def one(self, key, value):
        self.expected.append([(key, value)])
        if value is None:
            self.model.pop(key, None)
        else:
            self.model[key] = value

    def put(self, k, v):
        self.d[k] = v
        self.one(k, v)

    def delete(self, k):
        del self.d[k]
        self.one(k, None)

    def incr(self, k, n):
        self.one(k, b"%d" % self.d.incr(k, n))

    def pop(self, k):
        present = k in self.model
        self.d.pop(k, None)
        if present:
            self.one(k, None)

    def popitem(self):
        key, _ = self.d.popitem()
        self.one(key, None)

    def setdefault(self, k, v):
        inserted = k not in self.model
        self.d.setdefault(k, v)
        if inserted:
            self.one(k, v)

    def cas(self, k, expected, new):
        if self.d.compare_and_set(k, expected, new):
            self.one(k, new)

    def set_many(self, items):
        self.d.set_many(items)
        last = {}
        for i, (k, v) in enumerate(items):
            last[k] = (i, v)
        for k, (_, v) in sorted(last.items(), key=lambda kv: kv[1][0]):
            self.one(k, v)

    def delete_many(self, keys):
        gone = [k for k in dict.fromkeys(keys) if k in self.model]
        assert self.d.delete_many(keys) == len(gone)
        for k in gone:
            self.one(k, None)

    def clear(self):
        group = sorted((k, None) for k in self.model)
        self.d.clear()
        if group:
            self.expected.append(group)
        self.model.clear()


def test_watch_in_another_process_sees_exactly_the_writers_changes_in_order(children, db_path):
    """watch() yields every change committed after since, in commit order, by any process;
    value None for a delete; across table rebuilds and compactions."""
    d = mmkv.open(db_path, "c", initial_capacity=16)
    d[b"before"] = b"not watched"
    since = d.seq
    progress = CTX.Value("q", 0)
    proc = children.start_reporting(workers.watch_until_end, "watcher", db_path, since,
                                    progress, 120.0)
    w = Writer(d)
    w.model[b"before"] = b"not watched"      # present, so the first clear removes it
    w.put(b"a", b"1")
    w.put(b"b", b"")
    w.put(b"", b"empty key")
    w.delete(b"a")
    w.incr(b"n", 5)
    w.incr(b"n", -2)
    w.pop(b"b")
    w.pop(b"absent")
    w.setdefault(b"sd", b"first")
    w.setdefault(b"sd", b"second")
    w.cas(b"sd", b"first", b"swapped")
    w.cas(b"sd", b"wrong", b"never")
    w.cas(b"sd", b"swapped", None)
    w.popitem()
    for i in range(300):                      # table rebuilds (initial_capacity=16)
        w.put(b"k%03d" % i, b"v%d" % i)
    w.set_many([(b"s1", b"x"), (b"s2", b"y"), (b"s1", b"z")])
    w.delete_many([b"k000", b"k001", b"k000", b"nope"])
    for round_ in range(3):                   # compactions, with writes between
        wait_for(progress, d.seq - 1)
        d.compact()
        w.put(b"after-compact-%d" % round_, b"%d" % round_)
        w.set_many([(b"c%d-%d" % (round_, i), b"v") for i in range(40)])
        w.delete_many([b"k%03d" % (10 + round_)])
    w.clear()
    w.put(b"a", b"again")
    w.clear()
    w.set_many([(b"big", b"x" * 200_000)])
    d[workers.END] = b""
    report = children.collect(["watcher"], timeout=120)["watcher"]
    children.join([proc], timeout=30)
    changes = report["changes"]
    assert "timed_out" not in report
    assert all(seq > since for seq, _, _ in changes)
    seqs = [seq for seq, _, _ in changes]
    assert seqs == sorted(seqs)
    assert [kv for _, kv in grouped(changes)] == [sorted(g) for g in w.expected]
    d._check()
    d.close()


def test_watch_behind_a_compaction_that_dropped_its_changes_raises_watchlagged(db_path):
    """A watcher that fell behind a compaction that discarded changes it had not seen gets
    mmkv.WatchLagged (an mmkv.error) and can resume from a fresh read and d.seq."""
    d = mmkv.open(db_path, "c")
    watcher = mmkv.open(db_path, "c")
    w = watcher.watch(timeout=5)
    d[b"x"] = b"1"
    d.compact()
    d[b"y"] = b"2"
    d.compact()
    d[b"z"] = b"3"
    assert next(w)[1:] == (b"x", b"1")        # still in the file it started on
    with pytest.raises(mmkv.WatchLagged) as info:
        next(w)
    assert isinstance(info.value, mmkv.error)
    resumed = watcher.watch(since=watcher.seq, timeout=5)
    d[b"w"] = b"4"
    assert next(resumed)[1:] == (b"w", b"4")
    d.close()
    watcher.close()


def test_watch_since_older_than_the_last_compaction_raises_watchlagged(db_path):
    """Compaction keeps seqs; changes older than the compacted file are gone."""
    with mmkv.open(db_path, "c") as d:
        old = d.seq
        d[b"x"] = b"1"
        del d[b"x"]
        d.compact()
        assert d.seq >= old
        with pytest.raises(mmkv.WatchLagged):
            next(d.watch(since=old, timeout=1))
        now = d.seq
        d[b"y"] = b"2"
        assert next(d.watch(since=now, timeout=1))[1:] == (b"y", b"2")


def test_watch_keeping_up_across_compaction_misses_nothing(db_path):
    """A watcher that keeps up never misses a change, across a compaction."""
    with mmkv.open(db_path, "c") as d, mmkv.open(db_path, "c") as other:
        w = other.watch(timeout=5)
        d[b"a"] = b"1"
        assert next(w)[1:] == (b"a", b"1")
        d[b"b"] = b"2"
        d.compact()
        d[b"c"] = b"3"
        assert [c[1:] for c in itertools.islice(w, 2)] == [(b"b", b"2"), (b"c", b"3")]


def test_idle_watcher_in_another_process_uses_almost_no_cpu(children, db_path):
    """It blocks until the next change (no polling: an idle watcher uses no CPU)."""
    mmkv.open(db_path, "c").close()
    report = children.run(workers.idle_watch_cpu, db_path, 1.5, timeout=60)
    assert report["changes"] == 0
    assert report["wall"] >= 1.5
    assert report["cpu"] < 0.1 * report["wall"], report


def test_watch_timeout_without_changes_ends_the_generator(db_path):
    """It stops after timeout seconds without a change."""
    with mmkv.open(db_path, "c") as d:
        t0 = time.monotonic()
        assert list(d.watch(timeout=0.3)) == []
        elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 5.0
        assert list(d.watch(timeout=0)) == []


def test_watch_bad_arguments_raise_and_closed_handle_raises_mmkv_error(db_path):
    """Bad arguments: TypeError/ValueError; a closed handle: mmkv.error."""
    d = mmkv.open(db_path, "c")
    for kwargs in ({"since": "1"}, {"timeout": "x"}, {"since": 1.5}):
        with pytest.raises(TypeError):
            d.watch(**kwargs)
    for kwargs in ({"since": -1}, {"timeout": -1}):
        with pytest.raises(ValueError):
            d.watch(**kwargs)
    d.close()
    with pytest.raises(mmkv.error):
        d.watch()


def test_stopped_or_killed_watcher_never_holds_writers_up(children, db_path):
    """A watcher that is SIGKILLed, stopped or slow never holds writers up."""
    d = mmkv.open(db_path, "c")
    ready = CTX.Event()
    proc = children.start(workers.watch_forever, db_path, ready)
    assert ready.wait(60)
    time.sleep(0.2)                            # asleep in its futex wait
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        report = children.run(workers.batch_writer, db_path, [b"k%d" % i for i in range(20)],
                              200, 50, timeout=120)
        assert report["rounds"] == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    for i in range(100):
        d[b"after-kill-%d" % i] = b""
    d._check()
    d.close()


def test_watch_on_read_only_handle_waits_for_other_processes_writes(children, db_path):
    """Watching needs no write access: a read-only watcher blocks, then sees the writes."""
    mmkv.open(db_path, "c").close()
    ro = mmkv.open(db_path, "r")
    w = ro.watch(timeout=30)
    children.start_reporting(workers.batch_writer, "writer", db_path, [b"a", b"b"], 1, 0)
    got = sorted(c[1:] for c in itertools.islice(w, 2))   # waits: the child is starting
    assert got == [(b"a", b"%08d" % 0), (b"b", b"%08d" % 0)]
    children.collect(["writer"], timeout=60)
    ro.close()


def test_writers_make_no_wake_call_without_watchers_and_wake_a_sleeping_one(children, db_path):
    """Writers FUTEX_WAKE only while a watcher is registered: otherwise they pay nothing."""
    from mmkv._core import lib
    d = mmkv.open(db_path, "c")
    before = lib.mmkv_debug_wake_count()
    for i in range(200):
        d[b"k%d" % i] = b"v"
    d.set_many({b"a": b"1", b"b": b"2"})
    assert lib.mmkv_debug_wake_count() == before
    ready = CTX.Event()
    proc = children.start(workers.watch_forever, db_path, ready)
    assert ready.wait(60)
    deadline = time.monotonic() + 30
    while lib.mmkv_debug_wake_count() == before:   # until the watcher is asleep, registered
        assert time.monotonic() < deadline, "no write woke the sleeping watcher"
        d[b"poke"] = b"x"
        time.sleep(0.01)
    proc.kill()
    proc.join(10)
    d.close()


def test_ctrl_c_interrupts_a_blocked_watcher(children, db_path):
    """A blocked watch() lets KeyboardInterrupt through (its waits are short slices)."""
    mmkv.open(db_path, "c").close()
    ready = CTX.Event()
    proc = children.start_reporting(workers.watch_until_interrupted, "watcher", db_path, ready)
    assert ready.wait(60)
    time.sleep(0.3)                            # asleep in its futex wait
    os.kill(proc.pid, signal.SIGINT)
    report = children.collect(["watcher"], timeout=30)["watcher"]
    assert report["interrupted"] is True
    children.join([proc], timeout=30)
