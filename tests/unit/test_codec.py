"""Unit tests for API.md "Opening", codec=: values through any object with dumps and loads,
incr on decimal-integer values, open_shelf, and no unpickling unless asked."""

import json
import pickle
import shelve
import uuid
from collections.abc import MutableMapping

import pytest

import mmkv


class StrCodec:
    """A codec whose dumps returns str (API.md: stored as UTF-8)."""

    @staticmethod
    def dumps(obj):
        return f"<{obj}>"

    @staticmethod
    def loads(data):
        assert isinstance(data, bytes)
        return data.decode("utf-8")[1:-1]


UNPICKLED = []


def record_unpickling(what):
    UNPICKLED.append(what)


class Exploding:
    """A pickle payload that records being unpickled (in UNPICKLED)."""

    def __reduce__(self):
        return (record_unpickling, ("unpickled",))


def test_codec_json_roundtrips_objects_and_is_still_a_mutable_mapping(open_store):
    """API.md: "Writes take any object the codec accepts, reads return decoded objects"."""
    d = open_store(codec=json)
    assert isinstance(d, mmkv.Store) and isinstance(d, MutableMapping)
    d["doc"] = {"name": "Ada", "tags": [1, 2]}
    d[b"list"] = [None, True, 1.5]
    assert d["doc"] == {"name": "Ada", "tags": [1, 2]}
    assert d.get("list") == [None, True, 1.5]
    assert d.get("missing") is None and d.get("missing", 7) == 7
    assert sorted(d) == [b"doc", b"list"] and len(d) == 2


def test_codec_json_stores_the_encoded_bytes(open_store, store_path):
    """API.md: "json stores 5 as b"5"": the raw store holds the codec's bytes."""
    d = open_store(codec=json)
    d["n"] = 5
    d["s"] = "x"
    with mmkv.open(store_path, "r") as raw:
        assert raw["n"] == b"5" and raw["s"] == b'"x"'


def test_codec_incr_works_on_decimal_integer_values(open_store):
    """API.md: "incr still works on values that are decimal integers"."""
    d = open_store(codec=json)
    d["hits"] = 41
    assert d.incr("hits") == 42
    assert d["hits"] == 42
    assert d.incr("fresh", 3) == 3 and d["fresh"] == 3


def test_codec_incr_on_non_integer_value_is_valueerror_unchanged(open_store):
    """API.md: incr: "a value that is not an integer: ValueError, unchanged"."""
    d = open_store(codec=json)
    d["doc"] = {"a": 1}
    with pytest.raises(ValueError):
        d.incr("doc")
    assert d["doc"] == {"a": 1}


def test_codec_dumps_returning_str_is_stored_as_utf8(open_store, store_path):
    """API.md: "dumps may return str, stored as UTF-8"."""
    d = open_store(codec=StrCodec)
    d["k"] = "héllo"
    assert d["k"] == "héllo"
    with mmkv.open(store_path, "r") as raw:
        assert raw["k"] == "<héllo>".encode("utf-8")


def test_codec_value_methods_decode_and_encode(open_store):
    """API.md: the mapping methods (pop, popitem, setdefault, values, items, ==) with a codec
    take and return the codec's objects."""
    d = open_store(codec=json)
    d.update({"a": [1], "b": {"x": None}})
    assert dict(d.items()) == {b"a": [1], b"b": {"x": None}}
    assert sorted(map(json.dumps, d.values())) == ['[1]', '{"x": null}']
    assert d == {b"a": [1], b"b": {"x": None}}
    assert (b"a", [1]) in d.items()
    assert d.setdefault("c", [3]) == [3] and d.setdefault("c", [4]) == [3]
    assert d.setdefault("none") is None and d["none"] is None      # json null is a value
    assert d.pop("c") == [3] and d.pop("c", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("c")
    key, value = d.popitem()
    assert (key, value) in [(b"a", [1]), (b"b", {"x": None}), (b"none", None)]


def test_codec_range_with_values_yields_each_value_decoded_once(open_store):
    """API.md: "reads return decoded objects"; d.range(..., values=True) yields "(key, value)
    pairs": with codec=json each value is decoded once (a list, a str, a dict), in key order."""
    d = open_store(codec=json)
    d.update({"a": [1, 2], "b": "text", "c": {"k": None}, "d": 5})
    assert list(d.range(values=True)) == [(b"a", [1, 2]), (b"b", "text"),
                                          (b"c", {"k": None}), (b"d", 5)]
    assert list(d.range(b"b", b"d", reverse=True, values=True)) == [(b"c", {"k": None}),
                                                                     (b"b", "text")]
    assert list(d.range(prefix="a")) == [b"a"]


def test_codec_compare_and_set_compares_decoded_objects(open_store):
    """API.md: compare_and_set: "expected=None means absent, new=None means delete"."""
    d = open_store(codec=json)
    assert d.compare_and_set("k", None, {"v": 1}) is True
    assert d.compare_and_set("k", None, {"v": 2}) is False
    assert d.compare_and_set("k", {"v": 9}, {"v": 2}) is False and d["k"] == {"v": 1}
    assert d.compare_and_set("k", {"v": 1}, {"v": 2}) is True and d["k"] == {"v": 2}
    assert d.compare_and_set("k", {"v": 2}, None) is True and "k" not in d


def test_codec_that_rejects_a_value_leaves_the_store_unchanged(open_store):
    """API.md: "Writes take any object the codec accepts": json refuses a set, nothing is
    written."""
    d = open_store(codec=json)
    with pytest.raises(TypeError):
        d["k"] = {1, 2}
    assert "k" not in d and len(d) == 0


def test_codec_without_dumps_or_loads_is_typeerror(store_path):
    """API.md: codec= takes "any object with dumps(obj) and loads(data)"."""
    class OnlyDumps:
        dumps = staticmethod(json.dumps)

    for bad in (object(), OnlyDumps, "json", 5):
        with pytest.raises(TypeError):
            mmkv.open(store_path, codec=bad)
    assert not store_path.exists()


def test_codec_on_open_shm_decodes():
    """API.md: open_shm(name, ..., **options) takes the same codec= option."""
    shm_name = f"mmkv-test-{uuid.uuid4().hex}"
    try:
        with mmkv.open_shm(shm_name, "n", codec=json) as d:
            d["k"] = [1, "two"]
            assert d["k"] == [1, "two"] and d.incr("n") == 1
    finally:
        mmkv.unlink_shm(shm_name)


def test_no_codec_reads_return_bytes_and_nothing_is_unpickled(open_store, store_path):
    """API.md: "Nothing is ever unpickled unless the caller passed pickle"."""
    UNPICKLED.clear()
    d = open_store()
    d["p"] = pickle.dumps(Exploding())
    assert type(d["p"]) is bytes and UNPICKLED == []
    with mmkv.open(store_path, "r", codec=json) as j:
        with pytest.raises(ValueError):
            j["p"]
    assert UNPICKLED == []
    with mmkv.open(store_path, "r", codec=pickle) as p:
        p["p"]
    assert UNPICKLED == ["unpickled"]


def test_codec_pickle_roundtrips_python_objects(open_store):
    """API.md: "the json, pickle and msgpack modules qualify as they are"."""
    d = open_store(codec=pickle)
    d["t"] = (1, {2, 3}, b"raw")
    assert d["t"] == (1, {2, 3}, b"raw")


def test_open_shelf_is_a_shelf_over_a_store(store_path):
    """API.md: "mmkv.open_shelf(path) is shelve.Shelf(mmkv.open(path)) in one call"."""
    with mmkv.open_shelf(store_path) as sh:
        assert isinstance(sh, shelve.Shelf)
        sh["user"] = {"name": "Ada", "ids": {1, 2}}
    with mmkv.open_shelf(store_path, "r") as sh:
        assert dict(sh) == {"user": {"name": "Ada", "ids": {1, 2}}}
    with shelve.Shelf(mmkv.open(store_path, "r")) as sh:
        assert sh["user"]["ids"] == {1, 2}


def test_open_shelf_writeback_persists_mutations(store_path):
    """API.md: open_shelf is shelve.Shelf: writeback=True writes mutated entries on close."""
    with mmkv.open_shelf(store_path, writeback=True) as sh:
        sh["l"] = []
        sh["l"].append(1)
    with mmkv.open_shelf(store_path, "r") as sh:
        assert sh["l"] == [1]
