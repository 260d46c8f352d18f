"""watch() and seq on Redis: every change, in commit order (per slot on a cluster), deletes
as None, nothing from before `since`, a stop after `timeout`, WatchLagged past the trim."""
import multiprocessing
import threading
import time

import pytest

import mmkv

import _redis_workers as workers

CTX = multiprocessing.get_context("spawn")


def test_watch_yields_changes_in_commit_order(backend):
    """API.md: "d.watch(since=None, timeout=None) yields (seq, key, value) for every change
    committed after since ..., in commit order, by any process; value is None for a
    delete"."""
    d = backend.open()
    d[b"before"] = b"0"
    since = d.seq
    d[b"a"] = b"1"
    d[b"b"] = b"2"
    d[b"a"] = b"3"
    del d[b"b"]
    d.incr(b"n")
    got = list(d.watch(since=since, timeout=0.5))
    changes = [(k, v) for _, k, v in got]
    if backend.kind == "redis":
        assert changes == [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None), (b"n", b"1")]
        assert [s for s, _, _ in got] == sorted(s for s, _, _ in got)
    else:   # a cluster: commit order within each key's slot, every change once
        for key in (b"a", b"b", b"n"):
            assert [c for c in changes if c[0] == key] == \
                [c for c in [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None),
                             (b"n", b"1")] if c[0] == key]
        assert len(changes) == 5
    assert all(s > since for s, _, _ in got)


def test_watch_default_since_is_now_and_blocks_for_next(backend):
    """API.md: "(default: now) ... It blocks until the next change"."""
    d = backend.open()
    d[b"old"] = b"x"
    seen = []
    started = threading.Event()

    def watcher():
        it = d.watch(timeout=10)
        started.set()
        for change in it:
            seen.append(change)
            return

    # the generator starts reading (and fixes "now") at its first next()
    other = backend.open()
    t = threading.Thread(target=watcher)
    t.start()
    started.wait(5)
    time.sleep(0.5)
    other[b"new"] = b"y"
    t.join(20)
    assert not t.is_alive()
    assert [(k, v) for _, k, v in seen] == [(b"new", b"y")]


def test_watch_sees_other_process_writes(backend):
    """API.md: "by any process"."""
    d = backend.open()
    since = d.seq
    keys = [b"w%d" % i for i in range(30)]
    results = CTX.Queue()
    proc = CTX.Process(target=workers.write_sequence, args=(backend.spec, keys, results))
    proc.start()
    assert results.get(timeout=60)[0] == "wrote"
    proc.join(30)
    got = {k: v for _, k, v in d.watch(since=since, timeout=0.5)}
    assert got == {k: b"%d" % i for i, k in enumerate(keys)}


def test_watch_stops_after_timeout_without_change(backend):
    """API.md: "stops after timeout seconds without one"."""
    d = backend.open()
    t0 = time.monotonic()
    assert list(d.watch(timeout=0.3)) == []
    assert time.monotonic() - t0 >= 0.3


def test_seq_grows_with_every_write(backend):
    """API.md: "d.seq is the store's change counter: it grows with every write"."""
    d = backend.open()
    s0 = d.seq
    d[b"a"] = b"1"
    s1 = d.seq
    d[b"a"] = b"2"
    assert s0 < s1 < d.seq


def test_watch_behind_trim_raises_watchlagged(redis_server):
    """API.md: "one that fell behind a compaction that discarded changes it had not seen
    gets mmkv.WatchLagged"; here the stream's trim (watch_backlog) plays that part."""
    with mmkv.open(redis_server.url("lag", watch_backlog=1), "n") as d:
        since = d.seq
        for i in range(500):
            d[b"k"] = b"%d" % i
        with pytest.raises(mmkv.WatchLagged):
            list(d.watch(since=since, timeout=0.2))
