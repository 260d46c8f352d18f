"""Atomics and lock() across real processes, on a local store, a Redis server and a cluster.

Counters must be exact (no lost or doubled incr), lock() must exclude other lock() holders,
a SIGKILLed holder's lease must expire by itself, and a wait past its timeout must be
mmkv.LockTimeout holding nothing.
"""
import multiprocessing
import os
import signal
import time

import pytest

import mmkv

import _redis_workers as workers

pytestmark = pytest.mark.multiproc
CTX = multiprocessing.get_context("spawn")
DEADLINE = 120.0


class _Procs:
    def __init__(self):
        self.procs, self.results, self.go = [], CTX.Queue(), CTX.Event()

    def start(self, target, *args):
        proc = CTX.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def reports(self, n, timeout=DEADLINE):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(out)} of {n} child reports arrived: {out}"
            out.append(self.results.get(timeout=left))
        return out

    def finish(self):
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)


@pytest.fixture
def procs():
    p = _Procs()
    yield p
    for proc in p.procs:
        if proc.is_alive():
            proc.kill()
    p.finish()


def test_incr_from_processes_counts_exactly(any_backend, procs):
    """API.md: "incr(key, delta=1) -> int ... Atomic read-modify-write, across processes"."""
    d = any_backend.open()
    n_procs, n_incr = 4, 300
    for _ in range(n_procs):
        procs.start(workers.incr_many, any_backend.spec, b"c", n_incr, procs.go, procs.results)
    procs.go.set()
    reports = procs.reports(n_procs)
    procs.finish()
    assert int(d[b"c"]) == n_procs * n_incr
    assert len({last for _, _, last in reports}) == n_procs   # each saw a distinct value


def test_lock_excludes_other_processes_no_lost_update(backend, procs):
    """API.md: "with d.lock(timeout=None): holds the store's write lock across processes"."""
    d = backend.open()
    n_procs, n = 3, 40
    for _ in range(n_procs):
        procs.start(workers.locked_increments, backend.spec, b"c", n, procs.go, procs.results)
    procs.go.set()
    procs.reports(n_procs)
    procs.finish()
    assert int(d[b"c"]) == n_procs * n


def test_lock_held_elsewhere_times_out_holding_nothing(backend, procs):
    """API.md: "timeout (seconds) bounds the wait: past it, mmkv.LockTimeout (an
    mmkv.error and a TimeoutError), holding nothing"."""
    d = backend.open()
    procs.start(workers.hold_lock, backend.spec, 4.0, procs.results)
    kind, _, fence = procs.reports(1)[0]
    assert kind == "held"
    t0 = time.monotonic()
    with pytest.raises(mmkv.LockTimeout) as info:
        with d.lock(timeout=0.3):
            pytest.fail("lock granted while another process holds it")
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, mmkv.error)
    assert time.monotonic() - t0 >= 0.3
    assert procs.reports(1)[0][0] == "released"
    lk = d.lock(timeout=10)
    with lk:
        assert lk.fence > fence


def test_lock_lease_expires_after_holder_sigkill(backend, procs):
    """Issue 14: lock() is "released ... by expiry if the holder vanishes" (lease 1 s)."""
    d = backend.open()
    holder = procs.start(workers.hold_lock, backend.spec, 120.0, procs.results)
    kind, pid, fence = procs.reports(1)[0]
    assert kind == "held" and pid == holder.pid
    with pytest.raises(mmkv.LockTimeout):
        with d.lock(timeout=0.2):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=10)
    lk = d.lock(timeout=30)
    with lk:
        assert lk.fence > fence            # a new grant: the fencing token grew


def test_lock_recursive_in_thread_released_on_close(backend):
    """API.md: "The lock belongs to the calling thread: that thread's operations inside,
    through any handle of this store, still work"; close() releases it."""
    a, b = backend.open(), backend.open()
    with a.lock(timeout=1):
        with b.lock(timeout=1):
            b[b"k"] = b"1"
        a.incr(b"n")
    a.lock(timeout=1).__enter__()
    a.close()
    with b.lock(timeout=2):
        assert b[b"k"] == b"1"


def test_lock_thread_ends_holding_lease_released(backend):
    """API.md: "A thread that ends while holding the lock releases it"."""
    import threading
    d = backend.open()
    t = threading.Thread(target=lambda: d.lock(timeout=1).__enter__())
    t.start()
    t.join(10)
    with d.lock(timeout=10):
        d[b"after"] = b"1"


def test_lock_other_thread_waits(backend):
    """API.md: "other threads and processes that write wait" (for lock(), on Redis)."""
    import threading
    d = backend.open()
    got = []
    with d.lock(timeout=1):
        t = threading.Thread(target=lambda: got.append(_try_lock(d, 0.3)))
        t.start()
        t.join(10)
    assert got == ["timeout"]


def _try_lock(d, timeout):
    try:
        with d.lock(timeout=timeout):
            return "held"
    except mmkv.LockTimeout:
        return "timeout"
