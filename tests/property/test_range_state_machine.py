"""A hypothesis state machine comparing d.range() with sorted() of a model dict.

One handle only reads with range() (every parameter combination: start, stop, prefix,
reverse, values); the writes come from another handle of this process and from another
process (a long-lived helper fed over a pipe), including batches, clear() and compactions
by either, so the per-handle index must follow changes it did not make, table rebuilds and
file replacements.  Invariant: the structural check passes.
"""

import itertools
import shutil
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import mmkv

ALPHABET = [b"", b"a", b"ab", b"abc", b"b", b"ba", b"\x00", b"\xff", b"\xff\x00", b"k" * 40]
KEYS = st.one_of(st.sampled_from(ALPHABET), st.binary(max_size=3))
BOUNDS = st.one_of(st.none(), KEYS)
VALUES = st.binary(max_size=16)

HELPER = r"""
import sys, mmkv
d = path = None
for line in sys.stdin:
    op, p, *args = line.split()
    if p != path:
        if d is not None:
            d.close()
        path, d = p, mmkv.open(p, "c")
    a = [bytes.fromhex(x) for x in args]
    if op == "set":
        d[a[0]] = a[1]
    elif op == "del":
        d.pop(a[0], None)
    elif op == "setmany":
        d.set_many(zip(a[0::2], a[1::2]))
    elif op == "compact":
        d.compact()
    elif op == "close":
        d.close()
        d = path = None
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"""


class Helper:
    """Another process that writes to the store on request and answers when done."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def do(self, op, path, *args):
        self.proc.stdin.write(" ".join([op, path] + [a.hex() or "" for a in args]) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n", "the helper process failed"

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class RangeMachine(RuleBasedStateMachine):
    helper = None

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="mmkv-range-")
        self.path = self.dir + "/s.mmkv"
        self.w = mmkv.open(self.path, "c", initial_capacity=16)
        self.r = mmkv.open(self.path, "c")
        self.model = {}

    def teardown(self):
        self.helper.do("close", self.path)
        self.w.close()
        self.r.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- writes by another handle -----------------------------------------------------------

    @rule(k=KEYS, v=VALUES)
    def put(self, k, v):
        self.w[k] = v
        self.model[k] = v

    @rule(k=KEYS)
    def delete(self, k):
        self.w.pop(k, None)
        self.model.pop(k, None)

    @rule(items=st.lists(st.tuples(KEYS, VALUES), max_size=12))
    def set_many(self, items):
        self.w.set_many(items)
        self.model.update(items)

    @rule(keys=st.lists(KEYS, max_size=8))
    def delete_many(self, keys):
        removed = self.w.delete_many(keys)
        assert removed == len({k for k in keys if k in self.model})
        for k in keys:
            self.model.pop(k, None)

    @rule(n=st.integers(20, 120))
    def grow(self, n):
        items = {b"g%03d" % i: b"" for i in range(n)}
        self.w.set_many(items)
        self.model.update(items)

    @rule()
    def clear(self):
        self.w.clear()
        self.model.clear()

    @rule()
    def compact(self):
        self.w.compact()

    # --- writes by another process ------------------------------------------------------------

    @rule(k=KEYS, v=VALUES)
    def other_process_put(self, k, v):
        if k and v:
            self.helper.do("set", self.path, k, v)
        else:   # an empty key or value cannot travel as a word on the helper's line
            self.w.set_many([(k, v)])
        self.model[k] = v

    @rule(k=KEYS)
    def other_process_delete(self, k):
        if k:
            self.helper.do("del", self.path, k)
        else:
            self.w.pop(k, None)
        self.model.pop(k, None)

    @rule(n=st.integers(1, 40))
    def other_process_set_many(self, n):
        items = {b"p%02d" % i: b"v%d" % i for i in range(n)}
        self.helper.do("setmany", self.path, *[x for kv in items.items() for x in kv])
        self.model.update(items)

    @rule()
    def other_process_compact(self):
        self.helper.do("compact", self.path)

    # --- the reads under test -----------------------------------------------------------------

    @rule(start=BOUNDS, stop=BOUNDS, prefix=BOUNDS, reverse=st.booleans(), values=st.booleans())
    def range_matches_sorted_model(self, start, stop, prefix, reverse, values):
        got = list(self.r.range(start, stop, prefix=prefix, reverse=reverse, values=values))
        keys = [k for k in sorted(self.model)
                if (start is None or k >= start) and (stop is None or k < stop)
                and (prefix is None or k.startswith(prefix))]
        if reverse:
            keys.reverse()
        expected = [(k, self.model[k]) for k in keys] if values else keys
        assert got == expected

    @rule(start=BOUNDS, prefix=st.one_of(st.none(), st.sampled_from([b"a", b"g", b""])),
          reverse=st.booleans(), n=st.integers(0, 6), put=KEYS, gone=KEYS, compact=st.booleans())
    def range_interleaved_with_writes_keeps_the_iteration_guarantee(self, start, prefix, reverse,
                                                                    n, put, gone, compact):
        def inside(k):
            return (start is None or k >= start) and (prefix is None or k.startswith(prefix))
        before = {k for k in self.model if inside(k)}
        it = self.r.range(start, prefix=prefix, reverse=reverse)
        got = list(itertools.islice(it, n))
        self.w[put] = b"new"
        self.model[put] = b"new"
        self.w.pop(gone, None)
        self.model.pop(gone, None)
        if compact:
            self.helper.do("compact", self.path)
        got += list(it)
        after = {k for k in self.model if inside(k)}
        assert got == sorted(got, reverse=reverse) and len(got) == len(set(got))
        assert (before & after) - {put, gone} <= set(got)   # present throughout: exactly once
        assert set(got) <= before | after                    # present at some moment

    @invariant()
    def store_is_sound(self):
        self.r._check()


@pytest.fixture(scope="module")
def helper():
    h = Helper()
    yield h
    h.stop()


def test_range_state_machine_matches_sorted_model(helper, monkeypatch):
    """range() yields keys in bytewise order, start <= key < stop, beginning with prefix,
    whichever handle or process wrote."""
    RangeMachine.helper = helper
    monkeypatch.setattr("mmkv._ordered.CHUNK", 2)   # iterations span many index refreshes
    run_state_machine_as_test(RangeMachine, settings=settings(
        max_examples=120, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
