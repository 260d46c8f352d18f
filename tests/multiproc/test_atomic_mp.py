"""Atomic read-modify-write and lock() across real processes, on a file and in shared memory.

Workers live in _atomic_workers.py and are spawned interpreters that start together on a
barrier. Counters must be exact, every value raced for must go to exactly one winner, lock()
must exclude other writers (and survive a SIGKILLed holder) but never readers. Every test
ends with the structural check of the store.
"""

import collections
import time
import uuid

import pytest

import mmkv

import _atomic_workers as workers
from _harness import CTX

pytestmark = pytest.mark.multiproc

N_PROCS = 4
N_INCR = 10_000
COUNTERS = [b"c0", b"c1", b"c2"]
REPORT_TIMEOUT = 90.0
JOIN_TIMEOUT = 30.0


def _shm_target():
    return ("shm", f"mmkv-test-{uuid.uuid4().hex}")


def _drop(target):
    if target[0] == "shm":
        try:
            mmkv.unlink_shm(target[1])
        except mmkv.NotFoundError:
            pass


@pytest.fixture(params=["file", "shm"])
def target(request, db_path):
    """A store target, ("file", path) or ("shm", unique name); a shm store is unlinked after."""
    tgt = ("file", db_path) if request.param == "file" else _shm_target()
    try:
        yield tgt
    finally:
        _drop(tgt)


def check_sound(target):
    """The store passes _check() and len() agrees with it and with iteration."""
    with workers.open_target(target, "w") as d:
        report = d._check()
        assert report["live"] == len(d) == len(list(d)), report
        return report


def run_workers(children, target_fn, names, args_for, timeout=REPORT_TIMEOUT):
    """Start one reporting worker per name with a shared barrier as last argument; return
    their reports once all are in and joined."""
    go = CTX.Barrier(len(names))
    procs = [children.start_reporting(target_fn, who, *args_for(i), go)
             for i, who in enumerate(names)]
    reports = children.collect(names, timeout)
    children.join(procs, timeout=JOIN_TIMEOUT)
    return reports


# ---- incr ----

def test_incr_by_four_processes_ten_thousand_times_gives_exact_totals(children, target):
    """API.md: "incr(key, delta=1) -> int" is atomic across processes."""
    with workers.open_target(target, "n") as d:
        d[b"c1"] = b"-5"  # a counter that already exists, negative
    start = {b"c0": 0, b"c1": -5, b"c2": 0}
    names = [f"incr-{p}" for p in range(N_PROCS)]
    reports = run_workers(children, workers.incr_worker, names,
                          lambda i: (target, COUNTERS, N_INCR))

    with workers.open_target(target, "r") as d:
        for ci, c in enumerate(COUNTERS):
            per_proc = len(range(ci, N_INCR, len(COUNTERS)))
            want = start[c] + N_PROCS * per_proc
            assert d[c] == b"%d" % want, (c, d[c], want)
            returned = [v for r in reports.values() for v in r["returned"][c]]
            # each increment returned a distinct value: exactly start+1 .. want, once each
            assert sorted(returned) == list(range(start[c] + 1, want + 1)), c
            for who, r in reports.items():
                mine = r["returned"][c]
                assert mine == sorted(mine) and len(set(mine)) == len(mine), (who, c)
    gaps = {who: sum(b - a > 1 for a, b in zip(r["returned"][b"c0"], r["returned"][b"c0"][1:]))
            for who, r in reports.items()}
    print("\nincr interleavings on c0 per process:", gaps)
    check_sound(target)


def test_counter_driven_only_by_compare_and_set_retries_is_exact(children, target):
    """API.md: "compare_and_set(key, expected, new) -> bool ... Returns whether it swapped"."""
    n_procs, n = 3, 10_000
    with workers.open_target(target, "n"):
        pass
    names = [f"cas-{p}" for p in range(n_procs)]
    reports = run_workers(children, workers.cas_counter_worker, names,
                          lambda i: (target, b"counter", n))

    installed = [v for r in reports.values() for v in r["installed"]]
    assert sorted(installed) == list(range(1, n_procs * n + 1))
    with workers.open_target(target, "r") as d:
        assert d[b"counter"] == b"%d" % (n_procs * n)
    retries = {w: r["retries"] for w, r in reports.items()}
    print("\ncompare_and_set retries:", retries)
    assert sum(retries.values()) > 0, "the processes never raced: the test proved nothing"
    check_sound(target)


# ---- races that hand each value to exactly one winner ----

def test_setdefault_race_gives_every_process_the_same_single_winner(children, target):
    """API.md: "setdefault, pop and popitem are atomic too"."""
    keys = [b"sd%05d" % i for i in range(2000)]
    with workers.open_target(target, "n") as d:
        d[b"sd00007"] = b"preset"  # present before the race: nobody may replace it
    names = [f"setdefault-{p}" for p in range(N_PROCS)]
    reports = run_workers(children, workers.setdefault_worker, names,
                          lambda i: (target, i, keys, i % 2))  # pairs race in step

    tags = {r["tag"] for r in reports.values()}
    with workers.open_target(target, "r") as d:
        assert len(d) == len(keys)
        for key in keys:
            stored = d[key]
            seen = {r["got"][key] for r in reports.values()}
            assert seen == {stored}, (key, seen, stored)
            assert stored in tags or (key == b"sd00007" and stored == b"preset"), (key, stored)
    check_sound(target)


@pytest.mark.parametrize("how", ["pop", "popitem", "cas"])
def test_claim_race_hands_each_prefilled_value_to_exactly_one_process(children, target, how):
    """API.md: "setdefault, pop and popitem are atomic too" (and compare_and_set to delete)."""
    items = {b"p%05d" % i: b"value-%05d-%s" % (i, uuid.uuid4().hex.encode())
             for i in range(3000)}
    with workers.open_target(target, "n") as d:
        d.update(items)
    names = [f"{how}-{p}" for p in range(N_PROCS)]
    reports = run_workers(children, workers.claim_worker, names,
                          lambda i: (target, how, list(items), i % 2))

    got = [tuple(pair) for r in reports.values() for pair in r["got"]]
    dups = [k for k, n in collections.Counter(k for k, _ in got).items() if n > 1]
    assert not dups, f"{len(dups)} keys taken by more than one process, e.g. {dups[:5]}"
    assert dict(got) == items
    print(f"\n{how}: taken per process", {w: len(r["got"]) for w, r in reports.items()})
    with workers.open_target(target, "r") as d:
        assert len(d) == 0 and list(d) == []
    check_sound(target)


# ---- lock() ----

def test_lock_makes_a_multi_key_read_modify_write_never_interleave(children, target):
    """API.md: "with d.lock(): holds the store's write lock across processes; this handle's
    operations inside still work, other writers wait"."""
    total, n_movers, n_moves = 10_000, 3, 1500
    with workers.open_target(target, "n") as d:
        d.update({b"a": b"%d" % total, b"b": b"0", b"moves": b"0"})
    stop = CTX.Event()
    go = CTX.Barrier(n_movers + 1)
    movers = [children.start_reporting(workers.mover, f"mover-{m}", target, m, n_moves, total,
                                       3000 + m, go) for m in range(n_movers)]
    checker = children.start_reporting(workers.invariant_checker, "checker", target, total,
                                       stop, go)
    mover_names = [f"mover-{m}" for m in range(n_movers)]
    try:
        reports = children.collect(mover_names, REPORT_TIMEOUT)
    finally:
        stop.set()
    reports.update(children.collect(["checker"], REPORT_TIMEOUT))
    children.join(movers + [checker], timeout=JOIN_TIMEOUT)

    for who, r in reports.items():
        assert not r["violations"], f"{who} saw a + b != {total}: {r['violations']}"
    assert reports["checker"]["checks"] > 0
    with workers.open_target(target, "r") as d:
        assert int(d[b"a"]) + int(d[b"b"]) == total
        assert d[b"moves"] == b"%d" % (n_movers * n_moves), "a locked read-modify-write was lost"
    check_sound(target)


@pytest.mark.crash
def test_lock_holder_killed_by_sigkill_releases_waiting_writers_within_seconds(
        children, target):
    """API.md: "A process killed at any instant (SIGKILL), even while ... holding the lock,
    ... blocks no one"."""
    n = 200
    with workers.open_target(target, "n") as d:
        d[b"a"] = b"before"
    victim = children.start(workers.lock_victim, target)
    with workers.open_target(target, "r") as d:
        deadline = time.monotonic() + 60
        while d.get(b"holder") is None:
            assert victim.is_alive(), f"victim died before holding the lock: {victim.exitcode}"
            assert time.monotonic() < deadline, "victim never took the lock"
            time.sleep(0.01)
        started = [CTX.Event() for _ in range(2)]
        waiters = [children.start_reporting(workers.lock_waiter, f"waiter-{w}", target, n,
                                            started[w]) for w in range(2)]
        for ev in started:
            assert ev.wait(60), "a waiter never started"
        time.sleep(0.5)
        assert d.get(b"after") is None, "a writer got past a lock held by another process"
        assert all(w.is_alive() for w in waiters)

        kill_at = time.monotonic()
        victim.kill()
        victim.join(10)
        assert victim.exitcode is not None, "the victim survived SIGKILL"
        reports = children.collect(["waiter-0", "waiter-1"], timeout=30)
        children.join(waiters, timeout=JOIN_TIMEOUT)
        delays = [r["first_done"] - kill_at for r in reports.values()]
        assert max(delays) < 5.0, f"waiters released {delays} s after the kill"
        assert d[b"after"] == b"%d" % (2 * n)
        # writes the victim made inside lock() before dying had returned: they stay
        assert d[b"holder"] == b"%d" % victim.pid
        assert d[b"a"] == b"inside"
    print(f"\nwaiters released {[round(x, 3) for x in delays]} s after SIGKILL")
    check_sound(target)


def test_readers_never_wait_while_another_process_holds_the_lock(children, target):
    """API.md: "Reads never wait for writers"; lock(): "other writers wait, readers never do"."""
    hold = 2.0
    with workers.open_target(target, "n") as d:
        d.update({b"k%d" % i: b"v%d" % i for i in range(100)})
        d[b"state"] = b"idle"
    flags = ["r", "w"]
    ready = [CTX.Event() for _ in flags]
    readers = [children.start_reporting(workers.lockfree_reader, f"reader-{flag}", target,
                                        flag, ready[i]) for i, flag in enumerate(flags)]
    for ev in ready:
        assert ev.wait(60), "a reader never opened the store"
    holder = children.start_reporting(workers.lock_holder, "holder", target, hold)
    names = [f"reader-{flag}" for flag in flags] + ["holder"]
    reports = children.collect(names, timeout=REPORT_TIMEOUT)
    children.join(readers + [holder], timeout=JOIN_TIMEOUT)

    for flag in flags:
        r = reports[f"reader-{flag}"]
        print(f"\nreader {flag!r}: {r['reads']} reads in {r['seconds']:.2f} s under the lock, "
              f"longest {r['longest'] * 1e3:.2f} ms")
        assert r["last_state"] == b"released", r
        assert r["seconds"] > hold / 2, r
        assert r["reads"] > 1000, f"reader {flag!r} was held up by the lock: {r}"
        assert r["longest"] < hold / 2, f"one read of reader {flag!r} waited: {r}"
    check_sound(target)
