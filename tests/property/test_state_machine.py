"""A hypothesis state machine that drives a Store and a dict with the same operations.

Keys come from a small alphabet (b"" included) so overwrites, deletes of present keys and
collisions are frequent; values include b"" and ~5 KB ones. The store is created with
initial_capacity=16, so table rebuilds happen; handles are reopened and doubled to check
that what one handle did is what the next one sees. The atomic operations (incr,
compare_and_set), compact(), sync() and a few operations inside `with d.lock():` (through any
open handle) are rules too. Invariants after every step: every open handle has
len() == len(model), and the C structural check passes.
"""

import re
import shutil
import tempfile

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import mmkv

KEYS = st.one_of(
    st.sampled_from([b"", b"a", b"b", b"ab", b"\x00", b"\xff\xfe", b"key-" * 20, b"k" * 511]),
    st.binary(max_size=2),
)
SMALL_VALUES = st.binary(max_size=24)
LARGE_VALUES = st.builds(  # ~5 KB, cheap to generate and to shrink
    lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=5), st.integers(1000, 1300)
)
VALUES = st.one_of(st.just(b""), SMALL_VALUES, LARGE_VALUES)
MISSING = object()
INT64 = (-(1 << 63), (1 << 63) - 1)
# values that are, or nearly are, incr's decimal integers ("as Redis does")
NUMBER_TEXTS = st.one_of(
    st.sampled_from([b"0", b"-0", b"007", b"+5", b" 5", b"5 ", b"12", b"-12", b"1e3",
                     b"9223372036854775807", b"-9223372036854775808",
                     b"9223372036854775808", b"-9223372036854775809", b"99999999999999999999"]),
    st.integers(*INT64).map(lambda n: b"%d" % n),
)
INT_KEYS = st.one_of(st.just(b"n"), KEYS)
LOCK_OPS = st.lists(st.tuples(st.sampled_from(["set", "del", "get", "incr", "cas"]), KEYS, VALUES),
                    min_size=1, max_size=5)


def as_int(value):
    """incr's reading of a stored value: "0", or an optional '-' and 1 to 19 digits without a
    leading zero, within 64 bits; None for anything else."""
    if not re.fullmatch(rb"0|-?[1-9][0-9]{0,18}", value):
        return None
    n = int(value)
    return n if INT64[0] <= n <= INT64[1] else None


class StoreMachine(RuleBasedStateMachine):
    """Store vs dict; `self.d` is the handle in use, `self.handles` every open handle."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="mmkv-state-")
        self.path = self.dir + "/s.mmkv"
        self.d = mmkv.open(self.path, "c", initial_capacity=16)
        self.handles = [self.d]
        self.model = {}

    def teardown(self):
        for handle in self.handles:
            handle.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- writes ---------------------------------------------------------------------------

    @rule(k=KEYS, v=VALUES)
    def set_item(self, k, v):
        self.d[k] = v
        self.model[k] = v

    @rule(k=KEYS)
    def delete_item(self, k):
        if k in self.model:
            del self.d[k]
            del self.model[k]
        else:
            with pytest.raises(KeyError):
                del self.d[k]

    @rule(k=KEYS, default=st.one_of(st.just(MISSING), st.none(), VALUES))
    def pop_item(self, k, default):
        if default is MISSING:
            if k in self.model:
                assert self.d.pop(k) == self.model.pop(k)
            else:
                with pytest.raises(KeyError):
                    self.d.pop(k)
        else:
            assert self.d.pop(k, default) == self.model.pop(k, default)

    @rule()
    def pop_any_item(self):
        if self.model:
            k, v = self.d.popitem()
            assert self.model.pop(k) == v
        else:
            with pytest.raises(KeyError):
                self.d.popitem()

    @rule(k=KEYS, v=VALUES)
    def set_default(self, k, v):
        assert self.d.setdefault(k, v) == self.model.setdefault(k, v)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=8), as_dict=st.booleans())
    def update_many(self, pairs, as_dict):
        arg = dict(pairs) if as_dict else pairs
        self.d.update(arg)
        self.model.update(arg)

    @rule()
    def clear_all(self):
        self.d.clear()
        self.model.clear()

    @rule(n=st.integers(17, 120), v=SMALL_VALUES)
    def set_many(self, n, v):
        """Enough distinct keys at once to force a table rebuild from capacity 16."""
        for i in range(n):
            k = b"many-%d" % i
            self.d[k] = v
            self.model[k] = v

    # --- atomic read-modify-write ------------------------------------------------------------

    @rule(k=INT_KEYS, text=NUMBER_TEXTS)
    def set_number(self, k, text):
        self.d[k] = text
        self.model[k] = text

    @rule(k=INT_KEYS, delta=st.one_of(st.integers(-1000, 1000), st.integers(*INT64)))
    def incr(self, k, delta):
        """API.md: a missing key counts as 0; a value that is not an integer: ValueError,
        unchanged (and so is a result outside 64 bits)."""
        cur = self.model.get(k)
        n = 0 if cur is None else as_int(cur)
        if n is None or not INT64[0] <= n + delta <= INT64[1]:
            with pytest.raises(ValueError):
                self.d.incr(k, delta)
            return
        assert self.d.incr(k, delta) == n + delta
        self.model[k] = b"%d" % (n + delta)

    @rule(k=KEYS, data=st.data(), new=st.one_of(st.none(), VALUES))
    def compare_and_set(self, k, data, new):
        """API.md: `expected=None` means "absent", `new=None` means "delete"."""
        cur = self.model.get(k)
        # the shape of what is drawn must not depend on the model: popitem's choice of key
        # follows the store's per-file hash key, so the model differs between replays
        kind = data.draw(st.sampled_from(["absent", "value", "current"]), label="expected")
        expected = {"absent": None, "current": cur}.get(kind)
        if kind == "value":
            expected = data.draw(VALUES, label="value")
        swapped = cur is None if expected is None else cur == expected
        assert self.d.compare_and_set(k, expected, new) is swapped
        if swapped:
            if new is None:
                self.model.pop(k, None)
            else:
                self.model[k] = new

    @rule(data=st.data(), ops=LOCK_OPS)
    def in_lock(self, data, ops):
        """A few operations inside `with d.lock():`, each through any open handle (API.md:
        "that thread's operations inside, through any handle of this store, still work")."""
        with self.d.lock():
            for op, k, v in ops:
                h = data.draw(st.sampled_from(self.handles), label="handle")
                self._apply(h, op, k, v)

    def _apply(self, h, op, k, v):
        if op == "set":
            h[k] = v
            self.model[k] = v
        elif op == "del":
            assert h.pop(k, None) == self.model.pop(k, None)
        elif op == "get":
            assert h.get(k) == self.model.get(k)
        elif op == "incr":
            cur = self.model.get(k)
            n = 0 if cur is None else as_int(cur)
            if n is None:
                with pytest.raises(ValueError):
                    h.incr(k)
            else:
                assert h.incr(k) == n + 1
                self.model[k] = b"%d" % (n + 1)
        else:
            swapped = self.model.get(k) is None
            assert h.compare_and_set(k, None, v) is swapped
            if swapped:
                self.model[k] = v

    # --- compaction and sync ------------------------------------------------------------------

    @rule(data=st.data())
    def compact(self, data):
        """compact() (or its dbm name) through any handle: contents unchanged."""
        h = data.draw(st.sampled_from(self.handles), label="handle")
        data.draw(st.sampled_from([h.compact, h.reorganize]), label="method")()
        assert dict(self.d.items()) == self.model

    @rule()
    def sync(self):
        self.d.sync()

    # --- reads ----------------------------------------------------------------------------

    @rule(k=KEYS)
    def get_item_or_default(self, k):
        assert self.d.get(k) == self.model.get(k)
        assert self.d.get(k, b"dflt") == self.model.get(k, b"dflt")

    @rule(k=KEYS)
    def get_item(self, k):
        if k in self.model:
            assert self.d[k] == self.model[k]
        else:
            with pytest.raises(KeyError):
                self.d[k]

    @rule(k=KEYS)
    def contains(self, k):
        assert (k in self.d) == (k in self.model)

    @rule()
    def iterate(self):
        yielded = list(self.d)
        assert len(yielded) == len(set(yielded)), "a key was yielded twice"
        assert set(yielded) == set(self.model)
        keys = self.d.keys()
        assert isinstance(keys, list)
        assert sorted(keys) == sorted(self.model)

    @rule()
    def items_equal(self):
        assert dict(self.d.items()) == self.model
        assert self.d == self.model

    # --- handles --------------------------------------------------------------------------

    @rule(flag=st.sampled_from(["w", "c"]))
    def close_and_reopen(self, flag):
        for handle in self.handles:
            handle.close()
        self.d = mmkv.open(self.path, flag)
        self.handles = [self.d]

    @precondition(lambda self: len(self.handles) < 3)
    @rule()
    def open_second_handle(self):
        """Open another handle on the same file and use it for the operations that follow."""
        self.d = mmkv.open(self.path, "w")
        self.handles.append(self.d)

    @precondition(lambda self: len(self.handles) > 1)
    @rule(data=st.data())
    def switch_handle(self, data):
        self.d = data.draw(st.sampled_from(self.handles))

    @precondition(lambda self: len(self.handles) > 1)
    @rule()
    def close_current_handle(self):
        self.d.close()
        # by identity: a Store is a Mapping, so == would compare contents
        self.handles = [h for h in self.handles if h is not self.d]
        self.d = self.handles[-1]

    @rule()
    def read_only_handle_sees_model(self):
        with mmkv.open(self.path, "r") as reader:
            assert len(reader) == len(self.model)
            assert dict(reader.items()) == self.model

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def lengths_match_model(self):
        for handle in self.handles:
            assert len(handle) == len(self.model)

    @invariant()
    def structural_check_passes(self):
        report = self.d._check()
        assert report["live"] == len(self.model)


TestStoreAgainstDict = StoreMachine.TestCase
