"""Closed handles: every operation raises mmkv.error, including iterators already started and
arguments that would otherwise be a KeyError or a ValueError.

API.md "Handles": "`close()` flushes and releases the handle; closing twice is harmless. Any
other operation on a closed handle: `mmkv.error`."  (tests/unit/test_handles.py covers the
mapping methods; this file covers the rest, started iterators and over-limit keys.)
"""
import inspect

import pytest

import mmkv

LIMITS = {"max_key_len": 64, "max_value_len": 1024}     # the store's limits, set at creation
BIG_KEY = b"k" * 100             # over max_key_len: ValueError on an open handle
BIG_VALUE = b"v" * 2000          # over max_value_len

# Every public method of Store, with a call that would work (or raise KeyError/ValueError) on
# an open handle.  test_closed_every_public_method_is_listed keeps this list complete.
CALLS = {
    "__getitem__": [lambda d: d[b"a"], lambda d: d[b"missing"], lambda d: d[BIG_KEY]],
    "__setitem__": [lambda d: d.__setitem__(b"k", b"v"),
                    lambda d: d.__setitem__(BIG_KEY, b"v"),
                    lambda d: d.__setitem__(b"k", BIG_VALUE)],
    "__delitem__": [lambda d: d.__delitem__(b"a"), lambda d: d.__delitem__(BIG_KEY)],
    "__contains__": [lambda d: b"a" in d, lambda d: BIG_KEY in d],
    "__len__": [len],
    "__iter__": [lambda d: next(iter(d))],
    "__eq__": [lambda d: d == {}],
    "get": [lambda d: d.get(b"a"), lambda d: d.get(BIG_KEY), lambda d: d.get(BIG_KEY, 1)],
    "pop": [lambda d: d.pop(b"a"), lambda d: d.pop(BIG_KEY, None)],
    "popitem": [lambda d: d.popitem()],
    "setdefault": [lambda d: d.setdefault(b"a", b"v"), lambda d: d.setdefault(BIG_KEY, b"v")],
    "update": [lambda d: d.update({b"k": b"v"})],
    "clear": [lambda d: d.clear()],
    "keys": [lambda d: d.keys()],
    "items": [lambda d: list(d.items())],
    "values": [lambda d: list(d.values())],
    "incr": [lambda d: d.incr(b"n"), lambda d: d.incr(BIG_KEY)],
    "compare_and_set": [lambda d: d.compare_and_set(b"a", b"1", b"2"),
                        lambda d: d.compare_and_set(BIG_KEY, None, b"2")],
    "lock": [lambda d: d.lock().__enter__(), lambda d: d.lock(timeout=1).__enter__()],
    "compact": [lambda d: d.compact()],
    "reorganize": [lambda d: d.reorganize()],
    "sync": [lambda d: d.sync()],
    "stats": [lambda d: d.stats()],
    "_check": [lambda d: d._check(), lambda d: d._check(full=False)],
}
# API.md names these too (batches, ordered views, watching): tested once Store has them.
LATER = {
    "get_many": [lambda d: d.get_many([b"a"]), lambda d: d.get_many([BIG_KEY])],
    "set_many": [lambda d: d.set_many([(b"k", b"v")])],
    "delete_many": [lambda d: d.delete_many([b"a"])],
    "range": [lambda d: next(iter(d.range()))],
    "watch": [lambda d: next(iter(d.watch(timeout=0.1)))],
}
CALLS.update((name, calls) for name, calls in LATER.items() if hasattr(mmkv.Store, name))
# Methods of Mapping/object that do not touch the store or are about the handle itself.
NOT_STORE_CALLS = {"close", "__enter__", "__exit__", "__repr__", "__init__", "__reduce__",
                   "__reduce_ex__", "__class_getitem__", "__init_subclass__", "__subclasshook__",
                   "__getstate__", "__setstate__", "__ne__", "__hash__", "__format__",
                   "__sizeof__", "__dir__", "__str__", "__getattribute__", "__setattr__",
                   "__delattr__", "__new__", "__lt__", "__le__", "__gt__", "__ge__",
                   "__reversed__", "__copy__", "__deepcopy__", "__fspath__", "__class__"}


def _closed(store_path):
    with mmkv.open(store_path, "c", **LIMITS) as d:
        d[b"a"] = b"1"
    d = mmkv.open(store_path, "w")
    d.close()
    return d


def _cases():
    for name, calls in CALLS.items():
        for i, call in enumerate(calls):
            yield pytest.param(name, call, id=f"{name}-{i}")


@pytest.mark.parametrize("name, call", list(_cases()))
def test_closed_handle_method_raises_mmkv_error(store_path, name, call):
    """"Any other operation on a closed handle: `mmkv.error`" - not KeyError, not ValueError
    for an over-limit key or value, not TypeError."""
    d = _closed(store_path)
    with pytest.raises(mmkv.error):
        call(d)
    with mmkv.open(store_path, "r") as r:
        assert dict(r.items()) == {b"a": b"1"}       # and nothing was written


def test_closed_every_public_method_is_listed():
    """Every method of Store that touches the store is in CALLS above (so each is tested)."""
    methods = {name for name, _ in inspect.getmembers(mmkv.Store, callable)
               if not name.startswith("_") or (name.startswith("__") and name.endswith("__"))}
    missing = sorted(methods - set(CALLS) - NOT_STORE_CALLS)
    assert not missing, f"add these Store methods to CALLS in {__file__}: {missing}"


ITERATORS = {
    "keys": lambda d: iter(d),
    "items": lambda d: iter(d.items()),
    "values": lambda d: iter(d.values()),
}


@pytest.mark.parametrize("make", ITERATORS.values(), ids=ITERATORS.keys())
def test_closed_handle_started_iterator_next_raises_at_once(store_path, make):
    """"Any other operation on a closed handle" includes iterators already started: the next
    `next()` raises mmkv.error, it does not yield the rest of its batch."""
    with mmkv.open(store_path, "c") as d:
        d.update((b"%05d" % i, b"v") for i in range(5000))
    d = mmkv.open(store_path, "w")
    it = make(d)
    next(it)
    d.close()
    with pytest.raises(mmkv.error):
        next(it)


def test_closed_handle_started_iterator_other_handle_still_iterates(store_path):
    """Closing one handle leaves other handles (and their iterators) working."""
    with mmkv.open(store_path, "c") as d:
        d.update((b"%05d" % i, b"v") for i in range(3000))
    d = mmkv.open(store_path, "w")
    e = mmkv.open(store_path, "w")
    it_d, it_e = iter(d), iter(e)
    next(it_d)
    first = next(it_e)
    d.close()
    with pytest.raises(mmkv.error):
        next(it_d)
    assert len({first, *it_e}) == 3000
    e.close()


def test_closed_handle_close_again_harmless_and_repr_says_closed(store_path):
    """"closing twice is harmless"; "`repr(d)` names ... whether the handle is closed"."""
    d = mmkv.open(store_path, "c")
    before = repr(d).replace(str(store_path), "")
    d.close()
    d.close()
    after = repr(d).replace(str(store_path), "")
    assert "closed" in after and "closed" not in before, (before, after)
