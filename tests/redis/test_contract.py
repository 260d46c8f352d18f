"""The mapping contract, one suite over every backend (issue 14: "the same contract tests run
against the local store, a Redis server and the cluster ... one parametrised suite").

`store` opens a fresh store on a local file, in shared memory, on a Redis server and on a
three-primary Redis Cluster (the servers are the session's, tests/redis/conftest.py; each
test has its own namespace).  Every assertion below holds for all four, word for word.
"""
import io
import json
import uuid

import pytest

import mmkv

BACKENDS = ["file", "shm", "redis", "cluster"]


class Opener:
    """Opens handles on one backend's store (each closed at teardown)."""

    def __init__(self, kind, spec, handles):
        self.kind, self.spec, self._handles = kind, spec, handles

    def __call__(self, flag="c", **options):
        if self.kind == "shm":
            handle = mmkv.open_shm(self.spec, flag, **options)
        else:
            handle = mmkv.open(self.spec, flag, **options)
        self._handles.append(handle)
        return handle


@pytest.fixture(params=BACKENDS)
def opener(request, tmp_path, _handles, check_store):
    """Opens the test's store; a local one must pass the structural check at teardown."""
    kind = request.param
    if kind == "file":
        path = tmp_path / "c.mmkv"
        yield Opener(kind, str(path), _handles)
        for handle in _handles:
            handle.close()
        if path.exists():
            check_store(str(path))
    elif kind == "shm":
        name = f"mmkv-contract-{uuid.uuid4().hex[:12]}"
        yield Opener(kind, name, _handles)
        for handle in _handles:
            handle.close()
        try:
            handle = mmkv.open_shm(name, "w")
        except mmkv.NotFoundError:
            return                      # the test never created it
        try:
            check_store(handle)
        finally:
            handle.close()
            mmkv.unlink_shm(name)
    else:
        servers = request.getfixturevalue("redis_server" if kind == "redis"
                                          else "redis_cluster")
        yield Opener(kind, servers.url(f"c{uuid.uuid4().hex[:12]}"), _handles)


@pytest.fixture
def d(opener):
    return opener()


# ---- keys and values ----

def test_keys_every_accepted_type_read_back_as_bytes(d):
    """API.md: "bytes, bytearray, memoryview and str (UTF-8 encoded) are accepted; reads
    always return bytes"."""
    d[b"b"] = b"1"
    d["caf\u00e9"] = "\u00e9t\u00e9"
    d[bytearray(b"ba")] = bytearray(b"2")
    d[memoryview(b"mv")] = memoryview(b"3")
    assert sorted(d.keys()) == sorted([b"b", "caf\u00e9".encode(), b"ba", b"mv"])
    assert d["caf\u00e9"] == "\u00e9t\u00e9".encode() == d["caf\u00e9".encode()]
    assert d[bytearray(b"ba")] == b"2" and d[memoryview(b"ba")] == b"2"
    assert d.get(memoryview(b"mv")) == b"3" and "mv" in d and bytearray(b"b") in d
    assert all(type(k) is bytes for k in d) and all(type(v) is bytes for v in d.values())


@pytest.mark.parametrize("bad", [1, 1.5, None, ("k",), object()],
                         ids=["int", "float", "None", "tuple", "object"])
def test_keys_other_types_type_error_store_unchanged(d, bad):
    """API.md: "Anything else: TypeError"."""
    d[b"k"] = b"v"
    for attempt in (lambda: d.__setitem__(bad, b"v"), lambda: d[bad], lambda: d.get(bad),
                    lambda: d.__delitem__(bad), lambda: d.pop(bad, None),
                    lambda: d.setdefault(bad, b"v"), lambda: d.incr(bad),
                    lambda: d.compare_and_set(bad, None, b"v")):
        with pytest.raises(TypeError):
            attempt()
    assert dict(d.items()) == {b"k": b"v"}


@pytest.mark.parametrize("bad", [1, 2.5, object()], ids=["int", "float", "object"])
def test_values_other_types_type_error_store_unchanged(d, bad):
    """API.md: "Keys and values are bytes ... Anything else: TypeError"."""
    with pytest.raises(TypeError):
        d[b"k"] = bad
    with pytest.raises(TypeError):
        d.setdefault(b"k", bad)
    assert b"k" not in d and len(d) == 0


def test_empty_key_and_empty_value_are_ordinary(d):
    """API.md: "The empty key and the empty value are ordinary keys and values (b"" is not
    absent)"."""
    d[b""] = b""
    d[b"e"] = b""
    assert b"" in d and d[b""] == b"" and d.get(b"e", b"default") == b""
    assert len(d) == 2 and sorted(d.keys()) == [b"", b"e"]
    assert d.pop(b"") == b"" and b"" not in d and len(d) == 1


def test_keys_is_a_list_snapshot(d):
    """API.md: "keys() returns a list snapshot, as every dbm module does (d.keys() == [] on
    an empty store)"."""
    assert d.keys() == [] and isinstance(d.keys(), list)
    d[b"a"] = b"1"
    snapshot = d.keys()
    d[b"b"] = b"2"
    assert isinstance(snapshot, list) and snapshot == [b"a"]


# ---- the dict methods ----

def test_get_and_pop_defaults_and_key_error(d):
    """API.md: "behaves like dict: ... get, pop"."""
    d[b"a"] = b"1"
    assert d.get(b"a") == b"1" and d.get(b"zz") is None and d.get(b"zz", b"-") == b"-"
    with pytest.raises(KeyError):
        d[b"zz"]
    assert d.pop(b"a") == b"1" and b"a" not in d
    assert d.pop(b"a", None) is None and d.pop(b"a", b"x") == b"x"
    with pytest.raises(KeyError):
        d.pop(b"a")
    with pytest.raises(KeyError):
        del d[b"a"]


def test_popitem_removes_a_pair_then_key_error_when_empty(d):
    """API.md: "popitem ... atomic too"; dict: KeyError on an empty mapping."""
    d.update({b"a": b"1", b"b": b"2"})
    got = dict([d.popitem(), d.popitem()])
    assert got == {b"a": b"1", b"b": b"2"} and len(d) == 0
    with pytest.raises(KeyError):
        d.popitem()


def test_setdefault_present_absent_and_none(d):
    """API.md: "setdefault" behaves like dict's; a store holds bytes, so a None default for
    an absent key is a TypeError and nothing is inserted."""
    assert d.setdefault(b"a", b"1") == b"1"
    assert d.setdefault(b"a", b"2") == b"1" and d[b"a"] == b"1"
    assert d.setdefault(b"a") == b"1"
    with pytest.raises(TypeError):
        d.setdefault(b"absent")
    assert b"absent" not in d and len(d) == 1


def test_update_mapping_pairs_and_keywords(d):
    """API.md: "update" as dict.update: a mapping, pairs, keywords."""
    d.update({b"a": b"1"})
    d.update([(b"b", b"2"), ("c", "3")])
    d.update(kw=b"4")
    d.update({b"a": b"9"}, kx=b"5")
    assert d == {b"a": b"9", b"b": b"2", b"c": b"3", b"kw": b"4", b"kx": b"5"}


def test_clear_empties_the_store(d):
    """API.md: "clear"."""
    d.update({b"k%d" % i: b"v" for i in range(30)})
    d.clear()
    assert len(d) == 0 and d.keys() == [] and d.get(b"k1") is None
    d[b"after"] = b"1"
    assert d.keys() == [b"after"]


def test_items_values_and_equality_with_dict(d):
    """API.md: "values(), items(), == with a dict"."""
    model = {b"a": b"1", b"b": b"", b"c": b"3"}
    d.update(model)
    assert dict(d.items()) == model and sorted(d.values()) == sorted(model.values())
    assert d == model and d != {b"a": b"1"}
    assert len(d.items()) == 3 and (b"a", b"1") in d.items()


# ---- atomic read-modify-write ----

def test_incr_absent_counts_zero_and_stores_decimal(d):
    """API.md: "incr(key, delta=1) -> int: the value is a decimal integer in ASCII ... a
    missing key counts as 0"."""
    assert d.incr(b"n") == 1
    assert d.incr(b"n", 41) == 42 and d[b"n"] == b"42"
    assert d.incr("n", -50) == -8 and d[b"n"] == b"-8"
    d[b"m"] = b"7"
    assert d.incr(b"m", 0) == 7


def test_incr_non_integer_value_error_unchanged(d):
    """API.md: "a value that is not an integer: ValueError, unchanged"."""
    for value in (b"abc", b"1.5", b""):
        d[b"x"] = value
        with pytest.raises(ValueError):
            d.incr(b"x")
        assert d[b"x"] == value
    d[b"big"] = b"%d" % ((1 << 63) - 1)
    with pytest.raises(ValueError):
        d.incr(b"big")
    assert d[b"big"] == b"%d" % ((1 << 63) - 1)


def test_incr_bad_delta_rejected(d):
    """incr's delta is an int in the 64-bit range (as Redis's INCRBY): a bool or float is a
    TypeError, a delta outside the range a ValueError; nothing is written."""
    with pytest.raises(TypeError):
        d.incr(b"n", 1.0)
    with pytest.raises(TypeError):
        d.incr(b"n", True)
    with pytest.raises(ValueError):
        d.incr(b"n", 1 << 63)
    assert b"n" not in d


def test_compare_and_set_none_means_absent_and_delete(d):
    """API.md: "compare_and_set(key, expected, new) -> bool: expected=None means "absent",
    new=None means "delete". Returns whether it swapped"."""
    assert d.compare_and_set(b"k", None, b"1") is True and d[b"k"] == b"1"
    assert d.compare_and_set(b"k", None, b"2") is False and d[b"k"] == b"1"
    assert d.compare_and_set(b"k", b"0", b"2") is False and d[b"k"] == b"1"
    assert d.compare_and_set(b"k", b"1", b"2") is True and d[b"k"] == b"2"
    assert d.compare_and_set(b"k", b"2", None) is True and b"k" not in d
    assert d.compare_and_set(b"k", b"2", None) is False
    assert d.compare_and_set(b"gone", None, None) is True and b"gone" not in d


# ---- codec ----

def test_codec_json_round_trips_and_stores_json_bytes(opener):
    """API.md: "values go through any object with dumps(obj) and loads(data) ... reads
    return decoded objects, and incr still works on values that are decimal integers"."""
    j = opener(codec=json)
    j[b"doc"] = {"a": [1, 2], "b": None}
    j["n"] = 5
    assert j[b"doc"] == {"a": [1, 2], "b": None} and j.get(b"zz") is None
    assert j.incr(b"n") == 6 and j[b"n"] == 6
    assert j.setdefault(b"s", [1]) == [1] and j.setdefault(b"s", [2]) == [1]
    assert j.compare_and_set(b"n", 6, 7) and not j.compare_and_set(b"n", 6, 8)
    assert dict(j.items()) == {b"doc": {"a": [1, 2], "b": None}, b"n": 7, b"s": [1]}
    assert sorted(map(json.dumps, j.values())) == sorted(
        map(json.dumps, [{"a": [1, 2], "b": None}, 7, [1]]))
    assert j.pop(b"s") == [1] and j.pop(b"s", "none") == "none"
    raw = opener()
    assert raw[b"doc"] == b'{"a": [1, 2], "b": null}' and raw[b"n"] == b"7"
    j.clear()
    j[b"only"] = {"x": 1}
    assert j.popitem() == (b"only", {"x": 1}) and len(j) == 0


def test_codec_compare_and_set_compares_decoded_objects(opener):
    """With a codec, compare_and_set's expected is an object: another encoding of an equal
    object matches (CodecLayer, the same on every backend)."""
    opener()[b"doc"] = b'{"b": 2,  "a": 1}'
    j = opener(codec=json)
    assert j.compare_and_set(b"doc", {"a": 1, "b": 2}, {"c": 3}) is True
    assert j[b"doc"] == {"c": 3}
    assert j.compare_and_set(b"doc", {"c": 4}, None) is False and b"doc" in j


def test_codec_without_dumps_or_loads_type_error(opener):
    """API.md: "codec=: values go through any object with dumps(obj) and loads(data)"."""
    with pytest.raises(TypeError):
        opener(codec=object())


# ---- the handle ----

def test_closed_handle_operations_raise_mmkv_error(opener):
    """API.md: "close() ... closing twice is harmless. Any other operation on a closed
    handle: mmkv.error"."""
    d = opener()
    d[b"a"] = b"1"
    d.close()
    d.close()
    for attempt in (lambda: d[b"a"], lambda: d.__setitem__(b"a", b"2"), lambda: len(d),
                    lambda: list(d), lambda: d.pop(b"a"), lambda: d.incr(b"n"),
                    lambda: d.compare_and_set(b"a", None, b"1")):
        with pytest.raises(mmkv.error):
            attempt()
    assert opener()[b"a"] == b"1"


def test_with_closes_on_exit(opener):
    """API.md: "with mmkv.open(path) as d: closes on exit"."""
    with opener() as d:
        d[b"a"] = b"1"
    with pytest.raises(mmkv.error):
        d[b"a"]


@pytest.mark.parametrize("flag", ["r", "w"])
def test_missing_store_r_w_raise_notfounderror_then_c_creates(opener, flag):
    """API.md: "A missing store with "r" or "w": an exception that is an instance of both
    mmkv.error and FileNotFoundError"; once created ("c"), even empty, it opens."""
    with pytest.raises(mmkv.NotFoundError) as info:
        opener(flag)
    assert isinstance(info.value, mmkv.error) and isinstance(info.value, FileNotFoundError)
    opener("c").close()
    d = opener(flag)
    assert len(d) == 0 and list(d) == []


@pytest.mark.parametrize("flag", ["c", "w", "r"])
def test_repr_names_the_flag_letter_and_closed(opener, flag):
    """API.md: "repr(d) names the path, the flag letter and whether the handle is closed"."""
    opener("c")[b"a"] = b"1"
    d = opener(flag)
    assert f"flag={flag!r}" in repr(d) and "closed" not in repr(d)
    assert repr(d).endswith(" open>")       # the same words on every backend
    d.close()
    assert f"flag={flag!r}" in repr(d) and "closed" in repr(d)
    assert repr(d).endswith(" closed>")


def test_get_default_by_name_on_every_backend(opener):
    """API.md: the store "behaves like dict" and is a MutableMapping: `get(key, default)`
    takes its default by position or by name, on every backend."""
    d = opener()
    d[b"a"] = b"1"
    assert d.get(b"a", default=0) == b"1" and d.get(b"z", default=0) == 0
    assert d.get(key=b"z") is None


def test_read_only_handle_writes_raise_mmkv_error(opener):
    """API.md: ""r" handles raise mmkv.error on every write"."""
    opener("c")[b"a"] = b"1"
    r = opener("r")
    for attempt in (lambda: r.__setitem__(b"a", b"2"), lambda: r.__delitem__(b"a"),
                    lambda: r.pop(b"a"), lambda: r.incr(b"n"), lambda: r.clear(),
                    lambda: r.compare_and_set(b"a", b"1", b"2")):
        with pytest.raises(mmkv.error):
            attempt()
    assert r[b"a"] == b"1" and len(r) == 1


def test_read_only_handle_setdefault_present_and_pop_missing_need_no_write(opener):
    """What changes nothing is no write, as with dbm: on an "r" handle `setdefault` of a
    present key returns its value, `pop` of a missing key its default (KeyError without);
    setdefault of a missing key is still a write, refused."""
    opener("c")[b"a"] = b"1"
    r = opener("r")
    assert r.setdefault(b"a", b"2") == b"1"
    assert r.pop(b"zz", b"d") == b"d"
    with pytest.raises(KeyError):
        r.pop(b"zz")
    with pytest.raises(mmkv.error):
        r.setdefault(b"new", b"v")
    assert dict(r.items()) == {b"a": b"1"}


def test_pickle_with_codec_reopens_the_store_decoding(opener):
    """API.md: "A Store pickles by path and flag (it reopens the same store in the receiving
    process)"; the codec goes with it (a module by its name)."""
    import pickle
    j = opener(codec=json)
    j[b"doc"] = {"a": 1}
    again = pickle.loads(pickle.dumps(j))
    try:
        assert again[b"doc"] == {"a": 1} and again.codec is json
        again[b"more"] = [1, 2]
        assert j[b"more"] == [1, 2]
    finally:
        again.close()


def test_lock_holds_and_checks_its_timeout(d):
    """API.md: "with d.lock(timeout=None): ... timeout (seconds) bounds the wait"; a timeout
    that is not a number is a TypeError, a negative one a ValueError."""
    with d.lock(timeout=5):
        d[b"a"] = b"1"
        assert d.incr(b"n") == 1
    with d.lock():
        assert d[b"a"] == b"1"
    with pytest.raises(TypeError):
        d.lock("1")
    with pytest.raises(ValueError):
        d.lock(-1)


# ---- the dump round trip ----

DUMP_ITEMS = {b"": b"", b"empty": b"", b"\xff\x00": b"\x00\x01", "h\u00e9llo".encode():
              "w\u00f6rld \u2713".encode(), b'q"\\\n\t': b"\r\n\x7f", b"\xed\xa0\x80": b"x",
              b"big": bytes(range(256)) * 256}


def _restore_target(opener, tmp_path):
    """Where the test's dump is restored: a fresh store of the same backend (a fresh
    namespace on Redis), or a file for shared memory (mmkv.restore builds files and Redis
    namespaces)."""
    if opener.kind in ("redis", "cluster"):
        return opener.spec.replace("namespace=", "namespace=r", 1)
    return str(tmp_path / "restored.mmkv")


def _dumped(store):
    out = io.BytesIO()
    count = mmkv.dump(store, out)
    return count, out.getvalue()


def test_dump_round_trip_same_bytes_as_a_local_store(opener, tmp_path):
    """Issue 14: "the dump round trip": every backend dumps in the one format, byte for
    byte what a local store with the same records dumps; restored and dumped again, the
    same bytes and the same records."""
    d = opener()
    d.update(DUMP_ITEMS)
    with mmkv.open(str(tmp_path / "reference.mmkv"), "n") as reference:
        reference.update(DUMP_ITEMS)
        _, expected = _dumped(reference)
    count, first = _dumped(d)
    assert count == len(DUMP_ITEMS) and first == expected
    target = _restore_target(opener, tmp_path)
    assert mmkv.restore(io.BytesIO(first), target) == len(DUMP_ITEMS)
    with mmkv.open(target, "r") as back:
        assert dict(back.items()) == DUMP_ITEMS
        assert _dumped(back) == (len(DUMP_ITEMS), first)
