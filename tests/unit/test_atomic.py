"""Atomic read-modify-write and lock(), one handle at a time: incr, compare_and_set,
setdefault, pop, popitem and lock(), each test ending with the structural check.

The races between processes are in tests/multiproc/test_atomic_mp.py; the few tests here
that need a second process (lock() released after an exception, another writer waiting)
run `python -c` with a timeout, so a lock that is never released fails instead of hanging.
"""

import subprocess
import sys
import threading
import time
from fractions import Fraction

import pytest

import mmkv

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
BIG = 1 << 20  # larger than the Python layer's 64 KiB read buffer


@pytest.fixture
def d(db, check_store):
    """A read-write store; the structural check passes at the end of every test."""
    yield db
    check_store(db)


# ---- incr ----

def test_incr_of_missing_key_counts_from_zero_and_stores_ascii_decimal(d):
    """API.md: "the value is a decimal integer in ASCII ... a missing key counts as 0"."""
    assert d.incr(b"n") == 1
    assert d[b"n"] == b"1"
    assert d.incr("m", 42) == 42
    assert d[b"m"] == b"42"


def test_incr_returns_the_new_value_and_stores_it(d):
    """API.md: "incr(key, delta=1) -> int"."""
    d[b"n"] = b"10"
    assert d.incr(b"n") == 11
    assert d.incr(b"n", 1000) == 1011
    assert d[b"n"] == b"1011"
    assert type(d.incr(b"n", 0)) is int


def test_incr_with_negative_delta_goes_below_zero_and_stores_a_minus_sign(d):
    """API.md: "incr(key, delta=1) -> int"."""
    assert d.incr(b"n", -5) == -5
    assert d[b"n"] == b"-5"
    assert d.incr(b"n", 3) == -2
    assert d.incr(b"n", 2) == 0
    assert d[b"n"] == b"0"


def test_incr_of_a_stored_negative_decimal_adds_to_it(d):
    d[b"n"] = b"-7"
    assert d.incr(b"n", 2) == -5
    assert d[b"n"] == b"-5"


def test_incr_str_bytes_bytearray_and_memoryview_keys_name_the_same_counter(d):
    d.incr("k")
    d.incr(b"k")
    d.incr(bytearray(b"k"))
    d.incr(memoryview(b"k"))
    assert d[b"k"] == b"4" and len(d) == 1


def test_incr_reaches_both_ends_of_int64_exactly(d):
    assert d.incr(b"hi", INT64_MAX) == INT64_MAX
    assert d[b"hi"] == b"%d" % INT64_MAX
    assert d.incr(b"lo", INT64_MIN) == INT64_MIN
    assert d[b"lo"] == b"%d" % INT64_MIN
    assert d.incr(b"hi", INT64_MIN) == -1


@pytest.mark.parametrize("start, delta", [
    (INT64_MAX, 1),
    (INT64_MIN, -1),
    (1 << 62, 1 << 62),
    (-(1 << 62) - 1, -(1 << 62)),
    (-1, INT64_MIN),
])
def test_incr_past_int64_raises_value_error_and_leaves_the_value(d, start, delta):
    """Issue 4: "a result outside 64-bit signed range, is ValueError with the value unchanged"."""
    d[b"n"] = b"%d" % start
    with pytest.raises(ValueError):
        d.incr(b"n", delta)
    assert d[b"n"] == b"%d" % start


@pytest.mark.parametrize("delta", [1 << 63, -(1 << 63) - 1, 1 << 80])
def test_incr_with_delta_outside_int64_raises_value_error_and_changes_nothing(d, delta):
    d[b"n"] = b"0"
    with pytest.raises(ValueError):
        d.incr(b"n", delta)
    with pytest.raises(ValueError):
        d.incr(b"missing", delta)
    assert d[b"n"] == b"0" and b"missing" not in d


@pytest.mark.parametrize("value", [
    b"abc", b"", b" ", b" 1", b"1 ", b"1 2", b"\t1", b"1\n", b"1.5", b"1.0", b"1e3", b"0x10",
    b"12abc", b"-", b"+", b"--1", b"1_000", b"\x00", b"1\x00", b"inf", b"nan",
    "\u0661\u0662".encode(),  # Arabic-Indic digits: int() takes them, ASCII decimal does not
    b"9223372036854775808", b"-9223372036854775809", b"99999999999999999999999",
])
def test_incr_of_a_value_that_is_not_an_int64_decimal_raises_value_error_unchanged(d, value):
    """API.md: "a value that is not an integer: ValueError, unchanged"."""
    d[b"n"] = value
    before = len(d)
    with pytest.raises(ValueError):
        d.incr(b"n")
    assert d[b"n"] == value and len(d) == before


@pytest.mark.parametrize("delta", [1.0, 0.5, "1", b"1", None, Fraction(1, 1), [1]])
def test_incr_with_a_delta_that_is_not_an_int_raises_type_error_and_changes_nothing(d, delta):
    d[b"n"] = b"5"
    with pytest.raises(TypeError):
        d.incr(b"n", delta)
    with pytest.raises(TypeError):
        d.incr(b"missing", delta)
    assert d[b"n"] == b"5" and b"missing" not in d


@pytest.mark.parametrize("key", [1, None, 1.5])
def test_incr_with_a_key_of_the_wrong_type_raises_type_error(d, key):
    with pytest.raises(TypeError):
        d.incr(key)
    assert len(d) == 0


def test_incr_from_four_threads_on_one_handle_loses_no_increment(d):
    """API.md: "Any number of processes and threads may open the same store at once"."""
    n, n_threads = 5000, 4
    barrier = threading.Barrier(n_threads)
    returned = [[] for _ in range(n_threads)]

    def work(i):
        barrier.wait(30)
        returned[i].extend(d.incr(b"n") for _ in range(n))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "an incr thread hung"
    assert d[b"n"] == b"%d" % (n * n_threads)
    assert sorted(v for r in returned for v in r) == list(range(1, n * n_threads + 1))


def test_incr_cas_and_setdefault_with_a_key_over_the_limit_raise_value_error_unchanged(d):
    """API.md: "Anything over the store's limit: ValueError, and the store is unchanged"."""
    key = b"k" * 70000  # over the default max_key_len (65535)
    d[b"other"] = b"1"
    with pytest.raises(ValueError):
        d.incr(key)
    with pytest.raises(ValueError):
        d.compare_and_set(key, None, b"v")
    with pytest.raises(ValueError):
        d.setdefault(key, b"v")
    assert dict(d.items()) == {b"other": b"1"}


def test_cas_with_a_new_value_over_the_limit_raises_value_error_unchanged(
        open_store, tmp_path, check_store):
    h = open_store(tmp_path / "small.mmkv", max_value_len=1024)
    h[b"k"] = b"v"
    with pytest.raises(ValueError):
        h.compare_and_set(b"k", b"v", b"x" * 1025)
    with pytest.raises(ValueError):
        h.compare_and_set(b"new", None, b"x" * 1025)
    assert dict(h.items()) == {b"k": b"v"}
    assert h.compare_and_set(b"k", b"v", b"x" * 1024) is True
    check_store(h)


def test_incr_on_a_read_only_handle_raises_mmkv_error_and_writes_nothing(
        d, open_store, store_path):
    """API.md: ""r" handles raise mmkv.error on every write"."""
    d[b"n"] = b"1"
    r = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        r.incr(b"n")
    with pytest.raises(mmkv.error):
        r.incr(b"new")
    assert d[b"n"] == b"1" and b"new" not in d


def test_incr_on_a_closed_handle_raises_mmkv_error(open_store, store_path, check_store):
    """API.md: "Any other operation on a closed handle: mmkv.error"."""
    h = open_store(store_path)
    h.close()
    with pytest.raises(mmkv.error):
        h.incr(b"n")
    check_store(store_path)


# ---- compare_and_set ----

def test_cas_with_expected_none_creates_an_absent_key(d):
    """API.md: "expected=None means "absent""."""
    assert d.compare_and_set(b"k", None, b"v") is True
    assert d[b"k"] == b"v"


def test_cas_with_expected_none_on_a_present_key_returns_false_unchanged(d):
    d[b"k"] = b"v"
    assert d.compare_and_set(b"k", None, b"w") is False
    assert d[b"k"] == b"v"


def test_cas_with_matching_expected_swaps_and_returns_true(d):
    d[b"k"] = b"old"
    assert d.compare_and_set(b"k", b"old", b"new") is True
    assert d[b"k"] == b"new"


def test_cas_with_mismatching_expected_returns_false_and_changes_nothing(d):
    d[b"k"] = b"old"
    d[b"other"] = b"x"
    assert d.compare_and_set(b"k", b"ol", b"new") is False
    assert d.compare_and_set(b"k", b"old ", b"new") is False
    assert d.compare_and_set(b"k", b"", b"new") is False
    assert d.compare_and_set(b"k", b"other", None) is False
    assert dict(d.items()) == {b"k": b"old", b"other": b"x"}


def test_cas_with_an_expected_value_on_an_absent_key_returns_false_and_creates_nothing(d):
    assert d.compare_and_set(b"k", b"v", b"w") is False
    assert d.compare_and_set(b"k", b"", b"w") is False
    assert d.compare_and_set(b"k", b"v", None) is False
    assert b"k" not in d and len(d) == 0


def test_cas_with_new_none_deletes_the_key_when_expected_matches(d):
    """API.md: "new=None means "delete""."""
    d[b"k"] = b"v"
    assert d.compare_and_set(b"k", b"v", None) is True
    assert b"k" not in d and len(d) == 0


def test_cas_with_new_none_and_mismatch_keeps_the_key(d):
    d[b"k"] = b"v"
    assert d.compare_and_set(b"k", b"w", None) is False
    assert d[b"k"] == b"v"


def test_cas_with_expected_none_and_new_none_leaves_an_absent_key_absent(d):
    assert isinstance(d.compare_and_set(b"k", None, None), bool)
    assert b"k" not in d and len(d) == 0


def test_cas_treats_the_empty_value_as_present_not_absent(d):
    """API.md: "The empty key and the empty value are ordinary keys and values"."""
    d[b"k"] = b""
    assert d.compare_and_set(b"k", None, b"x") is False
    assert d[b"k"] == b""
    assert d.compare_and_set(b"k", b"", b"x") is True
    assert d[b"k"] == b"x"
    assert d.compare_and_set(b"", None, b"") is True
    assert d[b""] == b""


@pytest.mark.parametrize("expected", ["caf\u00e9", "caf\u00e9".encode(),
                                      bytearray("caf\u00e9".encode()),
                                      memoryview("caf\u00e9".encode())])
@pytest.mark.parametrize("new", ["n\u00e9w", bytearray("n\u00e9w".encode())])
def test_cas_treats_str_as_its_utf8_bytes_for_key_expected_and_new(d, expected, new):
    """API.md: "bytes, bytearray, memoryview and str (UTF-8 encoded) are accepted"."""
    d["k\u00e9y"] = "caf\u00e9"
    assert d.compare_and_set("k\u00e9y".encode(), expected, new) is True
    assert d["k\u00e9y"] == "n\u00e9w".encode()


@pytest.mark.parametrize("expected, new", [(1, b"v"), (b"v", 1), (b"v", 1.5), ([], b"v")])
def test_cas_with_a_value_of_the_wrong_type_raises_type_error_unchanged(d, expected, new):
    d[b"k"] = b"v"
    with pytest.raises(TypeError):
        d.compare_and_set(b"k", expected, new)
    assert d[b"k"] == b"v"


def test_cas_on_a_read_only_handle_raises_mmkv_error(d, open_store, store_path):
    d[b"k"] = b"v"
    r = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        r.compare_and_set(b"k", b"v", b"w")
    assert d[b"k"] == b"v"


def test_cas_swaps_a_large_value(d):
    old, new = b"o" * BIG, b"n" * BIG
    d[b"k"] = old
    assert d.compare_and_set(b"k", b"o" * (BIG - 1) + b"x", new) is False
    assert d.compare_and_set(b"k", old, new) is True
    assert d[b"k"] == new


# ---- setdefault ----

def test_setdefault_on_an_absent_key_inserts_and_returns_the_default(d):
    """API.md: behaves like dict; "setdefault ... atomic too"."""
    assert d.setdefault(b"k", b"v") == b"v"
    assert d[b"k"] == b"v" and len(d) == 1


def test_setdefault_on_a_present_key_returns_it_unchanged(d):
    d[b"k"] = b"old"
    assert d.setdefault(b"k", b"new") == b"old"
    assert d[b"k"] == b"old" and len(d) == 1


def test_setdefault_returns_a_present_empty_value_not_the_default(d):
    d[b"k"] = b""
    assert d.setdefault(b"k", b"default") == b""
    assert d[b"k"] == b""


def test_setdefault_with_a_str_default_stores_and_returns_utf8_bytes(d):
    assert d.setdefault("k", "\u00e9t\u00e9") == "\u00e9t\u00e9".encode()
    assert d[b"k"] == "\u00e9t\u00e9".encode()


def test_setdefault_returns_a_present_large_value(d):
    d[b"k"] = b"x" * BIG
    assert d.setdefault(b"k", b"y") == b"x" * BIG
    assert d.setdefault(b"big", b"z" * BIG) == b"z" * BIG


def test_setdefault_with_default_none_returns_a_present_value(d):
    d[b"k"] = b"v"
    assert d.setdefault(b"k") == b"v"


def test_setdefault_with_default_none_on_an_absent_key_raises_type_error_inserts_nothing(d):
    """A store holds bytes only: dict's inserted None cannot be stored."""
    with pytest.raises(TypeError):
        d.setdefault(b"k")
    with pytest.raises(TypeError):
        d.setdefault(b"k", 5)
    assert b"k" not in d and len(d) == 0


# ---- pop ----

def test_pop_of_a_present_key_returns_its_value_and_removes_it(d):
    d[b"k"] = b"v"
    d[b"other"] = b"o"
    assert d.pop(b"k") == b"v"
    assert b"k" not in d and dict(d.items()) == {b"other": b"o"}


def test_pop_of_an_absent_key_raises_key_error(d):
    d[b"other"] = b"o"
    with pytest.raises(KeyError):
        d.pop(b"k")
    assert len(d) == 1


def test_pop_of_an_absent_key_with_a_default_returns_the_default_as_is(d):
    sentinel = object()
    assert d.pop(b"k", sentinel) is sentinel
    assert d.pop(b"k", None) is None
    assert len(d) == 0


def test_pop_of_an_empty_value_returns_empty_bytes_not_the_default(d):
    d[b"k"] = b""
    assert d.pop(b"k", None) == b""
    assert b"k" not in d


def test_pop_of_a_large_value_returns_all_of_it(d):
    d[b"k"] = bytes(range(256)) * (BIG // 256)
    assert d.pop(b"k") == bytes(range(256)) * (BIG // 256)
    assert b"k" not in d


def test_pop_on_a_read_only_handle_raises_mmkv_error_and_removes_nothing(
        d, open_store, store_path):
    d[b"k"] = b"v"
    r = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        r.pop(b"k")
    assert d[b"k"] == b"v"


# ---- popitem ----

def test_popitem_returns_and_removes_one_present_pair(d):
    d.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    key, value = d.popitem()
    assert (key, value) in {(b"a", b"1"), (b"b", b"2"), (b"c", b"3")}
    assert key not in d and len(d) == 2


def test_popitem_until_empty_yields_every_pair_once_then_key_error(d):
    items = {b"k%d" % i: b"v%d" % i for i in range(300)}
    items[b""] = b""
    d.update(items)
    got = []
    while True:
        try:
            got.append(d.popitem())
        except KeyError:
            break
    assert len(got) == len(items) and dict(got) == items
    assert len(d) == 0


def test_popitem_on_an_empty_store_raises_key_error(d):
    with pytest.raises(KeyError):
        d.popitem()


def test_popitem_returns_a_large_pair_whole(d):
    d[b"k" * 300] = b"v" * BIG
    assert d.popitem() == (b"k" * 300, b"v" * BIG)
    assert len(d) == 0


def test_popitem_on_a_read_only_handle_raises_mmkv_error(d, open_store, store_path):
    d[b"k"] = b"v"
    r = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        r.popitem()
    assert d[b"k"] == b"v"


# ---- lock() ----

WRITER = """
import sys, mmkv
with mmkv.open(sys.argv[1], "w") as d:
    d[sys.argv[2]] = b"from another process"
"""


def write_in_another_process(path, key, timeout=30):
    """Write key in a fresh interpreter; raises subprocess.TimeoutExpired (after killing it)
    if the write does not complete within timeout."""
    subprocess.run([sys.executable, "-c", WRITER, str(path), key], check=True,
                   timeout=timeout)


def test_lock_is_recursive_and_same_handle_writes_inside_it_work(d):
    """API.md: "with d.lock(): ... this handle's operations inside still work"."""
    with d.lock():
        d[b"a"] = b"1"
        with d.lock():
            d[b"b"] = b"2"
            with d.lock():
                d[b"c"] = b"3"
            assert d[b"c"] == b"3"
        d[b"d"] = b"4"
    assert dict(d.items()) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}


def test_every_operation_of_the_same_handle_works_inside_lock(d):
    d.update({b"x": b"1", b"y": b"2", b"z": b"3"})
    with d.lock():
        d[b"a"] = b"1"
        del d[b"x"]
        assert d.incr(b"n", 5) == 5
        assert d.compare_and_set(b"a", b"1", b"2") is True
        assert d.setdefault(b"s", b"v") == b"v"
        assert d.pop(b"y") == b"2"
        assert d.popitem() in {(b"z", b"3"), (b"a", b"2"), (b"n", b"5"), (b"s", b"v")}
        d.update({b"u1": b"1", b"u2": b"2"})
        assert len(d) == len(list(d)) == len(d.keys())
        assert b"u1" in d and d.get(b"u2") == b"2"
        d.sync()
        d.stats()
        d.clear()
        assert len(d) == 0
        d[b"last"] = b"1"
    assert dict(d.items()) == {b"last": b"1"}


@pytest.mark.multiproc
def test_lock_released_by_an_exception_inside_the_block_lets_another_process_write(
        d, store_path):
    """Issue 4: "An exception inside the block releases the lock"."""
    with pytest.raises(RuntimeError):
        with d.lock():
            d[b"a"] = b"1"
            with d.lock():
                raise RuntimeError("boom")
    write_in_another_process(store_path, "b")
    assert d[b"a"] == b"1" and d[b"b"] == b"from another process"
    d[b"c"] = b"3"  # and this handle still writes


@pytest.mark.multiproc
def test_lock_makes_a_writer_in_another_process_wait_until_the_block_ends(d, store_path):
    """API.md: "with d.lock(): holds the store's write lock across processes; ... other
    writers wait"."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store_path), "b"])
    try:
        with d.lock():
            d[b"a"] = b"1"
            time.sleep(1.5)  # the writer starts and blocks meanwhile
            assert proc.poll() is None, "the other process wrote while the lock was held"
            assert b"b" not in d
            d[b"a"] = b"2"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert d[b"b"] == b"from another process" and d[b"a"] == b"2"


def test_lock_makes_another_threads_write_on_the_same_handle_wait(d):
    """mmkv.h: the lock "must be released by the thread that took it": it is held by a thread,
    so another thread of the same process is another writer and waits."""
    done = threading.Event()
    errors = []

    def write():
        try:
            d[b"t"] = b"thread"
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    with d.lock():
        thread.start()
        assert not done.wait(1.0), "another thread wrote while this thread held the lock"
        assert b"t" not in d
    assert done.wait(30), "the other thread's write never completed after the lock was left"
    thread.join(10)
    assert not errors and d[b"t"] == b"thread"


def test_close_inside_lock_raises_mmkv_error_and_the_handle_keeps_working(
        open_store, store_path, check_store):
    """Issue 4: "Closing a handle whose thread holds the lock is refused with a clear error"."""
    h = open_store(store_path)
    with h.lock():
        h[b"a"] = b"1"
        with pytest.raises(mmkv.error):
            h.close()
        h[b"b"] = b"2"
        assert h[b"a"] == b"1"
    check_store(h)
    h.close()
    with pytest.raises(mmkv.error):
        h[b"c"] = b"3"
    check_store(store_path)
    with mmkv.open(store_path, "r") as r:
        assert dict(r.items()) == {b"a": b"1", b"b": b"2"}


def test_close_refused_inside_lock_also_in_a_nested_block(open_store, store_path, check_store):
    h = open_store(store_path)
    with h.lock():
        with h.lock():
            pass
        with pytest.raises(mmkv.error):
            h.close()
    h.close()
    check_store(store_path)


def test_lock_on_a_read_only_handle_raises_mmkv_error_and_reads_still_work(
        d, open_store, store_path):
    d[b"k"] = b"v"
    r = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        with r.lock():
            pass
    assert r[b"k"] == b"v"
    d[b"k"] = b"w"  # no lock was left held
    assert r[b"k"] == b"w"
    r.close()


def test_lock_on_a_closed_handle_raises_mmkv_error(open_store, store_path, check_store):
    h = open_store(store_path)
    h.close()
    with pytest.raises(mmkv.error):
        with h.lock():
            pass
    check_store(store_path)


@pytest.mark.parametrize("text", [b"+3", b"007", b"-0", b"00", b"-", b" 1", b"1 "])
def test_incr_redis_integer_syntax_rejected_value_unchanged(tmp_path, text):
    """incr parses like Redis: no '+', no leading zero, no "-0"; the value is unchanged."""
    with mmkv.open(tmp_path / "s.mmkv", "n") as d:
        d[b"x"] = text
        with pytest.raises(ValueError):
            d.incr(b"x")
        assert d[b"x"] == text
