"""The nth system call of the write path fails (ENOSPC, EIO, EINTR), through the os.c table.

`mmkv_debug_fail(call, nth, err)` (native/os.c) makes the nth upcoming call of one os_vt
entry return -err.  For every step n of each write path (puts that grow the file, durable
puts, compaction, sync), the operation that meets the failure raises mmkv.error (ENOSPC, EIO)
or succeeds (EINTR: an interrupted system call is retried, never reported), with nothing
lost: every write that returned is there, the failed write is absent or wholly present, the
store takes writes again, and `_check()` passes on a fresh handle.

API.md "Crashes and damage": "A full disk gives `mmkv.error` (never SIGBUS), and the store
stays usable with its contents intact."  Each scenario runs in its own interpreter with a
deadline (tests/_script.py).
"""
import json

import pytest

import _script

pytestmark = pytest.mark.crash

BODY = r"""
import errno, json, os, sys
import mmkv
from mmkv._core import lib

path, scenario, err_name = sys.argv[1:4]
err = getattr(errno, err_name)

def arm(call, n):
    assert lib.mmkv_debug_fail(call.encode(), n, err) == 0

def disarm():
    assert lib.mmkv_debug_fail(b"", 0, 0) == 0

def value(i, size):
    return ((b"%06d:" % i) * (size // 7 + 1))[:size]

class Run:
    # one store, its model, and the failures met
    def __init__(self, **opts):
        self.d = mmkv.open(path, "n", **opts)
        self.model = {}
        self.failures = []

    def put(self, k, v):
        try:
            self.d[k] = v
        except mmkv.error as e:
            self.failed(e, k, v)
        else:
            self.model[k] = v

    def delete(self, k):
        try:
            del self.d[k]
        except mmkv.error as e:
            self.failed(e, k, None)
        else:
            del self.model[k]

    def call(self, fn):
        try:
            fn()
        except mmkv.error as e:
            self.failed(e, None, None)
        assert dict(self.d.items()) == self.model

    def failed(self, e, k, v):
        disarm()
        self.failures.append(str(e))
        if k is not None:      # the failed write is absent (old value) or wholly present
            now = self.d.get(k)
            assert now in (self.model.get(k), v), (k, now[:40] if now else now)
            if now is None:
                self.model.pop(k, None)
            else:
                self.model[k] = now
        assert dict(self.d.items()) == self.model, "a write that returned was lost"

    def finish(self):
        disarm()
        self.put(b"after", b"the store takes writes again")
        assert not self.failures[1:], self.failures
        assert dict(self.d.items()) == self.model
        self.d.close()
        with mmkv.open(path, "w") as e:
            assert dict(e.items()) == self.model
            e._check()
        return self.failures

def grow(call, n):             # puts of 16 KiB: the file grows from 128 KiB several times
    r = Run()
    arm(call, n)
    for i in range(60):
        r.put(b"g%d" % i, value(i, 16 << 10))
    return r.finish()

def durable(call, n):
    r = Run(durable=True)
    r.put(b"base", b"0")
    arm(call, n)
    for i in range(4):
        r.put(b"d%d" % i, value(i, 100))
    r.delete(b"d0")
    r.put(b"d1", b"overwritten")
    return r.finish()

def compact(call, n):
    r = Run(auto_compact=False)
    for i in range(300):
        r.put(b"c%d" % i, value(i, 1000))
    for i in range(250):
        r.delete(b"c%d" % i)
    arm(call, n)
    r.call(r.d.compact)
    r.put(b"c0", b"back")
    return r.finish()

def sync(call, n):
    r = Run()
    r.put(b"s0", b"0")
    arm(call, n)
    r.call(r.d.sync)
    r.put(b"s1", b"1")
    r.call(r.d.sync)
    return r.finish()

def table(call, n):            # many small keys from a tiny table: rebuilds and growth
    r = Run(initial_capacity=8)
    arm(call, n)
    for i in range(3000):
        r.put(b"t%d" % i, b"v")
    return r.finish()

SCENARIOS = {
    "grow": (grow, ["fallocate"], 8),
    "durable": (durable, ["fdatasync"], 8),
    "compact": (compact, ["open", "fchmod", "fallocate", "fdatasync", "rename"], 3),
    "sync": (sync, ["fdatasync"], 3),
    "table": (table, ["fallocate"], 6),
}
fn, calls, most = SCENARIOS[scenario]
report = {}
for call in calls:
    for n in range(1, most + 1):
        failures = fn(call, n)
        report["%s#%d" % (call, n)] = failures
        if err == errno.EINTR:
            assert not failures, f"EINTR at {call} #{n} was reported, not retried: {failures}"
        elif n == 1:
            assert failures, f"{err_name} at the first {call} did not fail the operation"
        elif not failures:
            break              # the path makes fewer than n such calls
print(json.dumps(report))
"""


@pytest.mark.parametrize("err", ["ENOSPC", "EIO", "EINTR"])
@pytest.mark.parametrize("scenario", ["grow", "durable", "compact", "sync", "table"])
def test_nth_syscall_fails_operation_raises_or_retries_nothing_lost(db_path, scenario, err):
    """"A full disk gives `mmkv.error` ..., and the store stays usable with its contents
    intact" - for every step of the write path, and EINTR is retried, not reported."""
    report = json.loads(_script.run(BODY, db_path, scenario, err, timeout=180))
    assert report
