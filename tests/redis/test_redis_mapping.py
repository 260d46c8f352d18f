"""The mapping contract on every backend: a local file, a Redis server, a Redis Cluster.

One suite, parametrised (`any_backend`): the same assertions hold for each.  Batches and
the codec are on the Redis backends (`backend`) here, the local ones being tested in
tests/unit.
"""
import json
import pickle
import random

import pytest

import mmkv


def test_mapping_random_ops_match_dict_model(any_backend):
    """API.md: "Store is a collections.abc.MutableMapping and behaves like dict"."""
    d = any_backend.open()
    model = {}
    rng = random.Random(14)
    keys = [b"", b"a", "\u00e9t\u00e9".encode(), b"k" * 300] + [b"k%d" % i for i in range(40)]
    for _ in range(600):
        op, key = rng.randrange(7), rng.choice(keys)
        value = rng.randbytes(rng.randrange(0, 64))
        if op == 0:
            d[key] = value
            model[key] = value
        elif op == 1:
            assert d.pop(key, None) == model.pop(key, None)
        elif op == 2:
            assert d.get(key) == model.get(key)
        elif op == 3:
            assert (key in d) == (key in model)
        elif op == 4 and key in model:
            del d[key]
            del model[key]
        elif op == 5:
            assert d.setdefault(key, value) == model.setdefault(key, value)
        else:
            assert len(d) == len(model)
    assert dict(d.items()) == model
    assert sorted(d.keys()) == sorted(model)
    assert sorted(d.values()) == sorted(model.values())
    assert d == model


def test_keys_empty_store_is_empty_list(any_backend):
    """API.md: "keys() returns a list snapshot ... (d.keys() == [] on an empty store)"."""
    d = any_backend.open()
    assert d.keys() == []
    assert isinstance(d.keys(), list)
    assert len(d) == 0


def test_keys_str_and_buffers_stored_as_bytes(any_backend):
    """API.md: "bytes, bytearray, memoryview and str (UTF-8 encoded) are accepted; reads
    always return bytes"."""
    d = any_backend.open()
    d["caf\u00e9"] = "v\u00e9"
    d[bytearray(b"ba")] = memoryview(b"mv")
    assert d["caf\u00e9".encode()] == "v\u00e9".encode()
    assert d[b"ba"] == b"mv"
    assert d[b""] if b"" in d else True


def test_keys_of_wrong_type_raise_typeerror(any_backend):
    """API.md: "Anything else: TypeError"."""
    d = any_backend.open()
    with pytest.raises(TypeError):
        d[1] = b"x"
    with pytest.raises(TypeError):
        d[b"x"] = 1.5
    with pytest.raises(TypeError):
        d.get(None)


def test_empty_key_and_value_are_ordinary(any_backend):
    """API.md: "The empty key and the empty value are ordinary keys and values"."""
    d = any_backend.open()
    d[b""] = b""
    assert b"" in d and d[b""] == b"" and len(d) == 1


def test_missing_key_raises_keyerror(any_backend):
    d = any_backend.open()
    with pytest.raises(KeyError):
        d[b"nope"]
    with pytest.raises(KeyError):
        del d[b"nope"]
    with pytest.raises(KeyError):
        d.pop(b"nope")
    with pytest.raises(KeyError):
        d.popitem()


def test_incr_counts_from_zero_and_refuses_non_integer_unchanged(any_backend):
    """API.md: "a missing key counts as 0; a value that is not an integer: ValueError,
    unchanged"."""
    d = any_backend.open()
    assert d.incr(b"n") == 1
    assert d.incr(b"n", 41) == 42
    assert d.incr(b"n", -50) == -8
    assert d[b"n"] == b"-8"
    d[b"t"] = b"twelve"
    with pytest.raises(ValueError):
        d.incr(b"t")
    assert d[b"t"] == b"twelve"
    assert len(d) == 2


def test_compare_and_set_none_means_absent_and_delete(any_backend):
    """API.md: "expected=None means absent, new=None means delete. Returns whether it
    swapped"."""
    d = any_backend.open()
    assert d.compare_and_set(b"k", None, b"1") is True
    assert d.compare_and_set(b"k", None, b"2") is False
    assert d.compare_and_set(b"k", b"0", b"2") is False
    assert d.compare_and_set(b"k", b"1", b"2") is True and d[b"k"] == b"2"
    assert d.compare_and_set(b"k", b"2", None) is True and b"k" not in d
    assert len(d) == 0


def test_popitem_removes_a_present_pair(any_backend):
    d = any_backend.open()
    d.update({b"a": b"1", b"b": b"2"})
    k, v = d.popitem()
    assert {k: v}.items() <= {b"a": b"1", b"b": b"2"}.items()
    assert k not in d and len(d) == 1


def test_delete_during_iteration_empties_store(any_backend):
    """API.md: "for k in d: del d[k] is allowed"."""
    d = any_backend.open()
    d.update({b"k%d" % i: b"v" for i in range(500)})
    for k in d:
        del d[k]
    assert len(d) == 0 and d.keys() == []


def test_closed_handle_raises_error_and_close_is_idempotent(any_backend):
    """API.md: "closing twice is harmless. Any other operation on a closed handle:
    mmkv.error"."""
    d = any_backend.open()
    d[b"a"] = b"1"
    d.close()
    d.close()
    for op in (lambda: d[b"a"], lambda: d.__setitem__(b"a", b"2"), lambda: len(d),
               lambda: list(d), lambda: d.incr(b"n")):
        with pytest.raises(mmkv.error):
            op()


def test_with_closes_on_exit(any_backend):
    """API.md: "with mmkv.open(path) as d: closes on exit"."""
    with any_backend.open() as d:
        d[b"a"] = b"1"
    with pytest.raises(mmkv.error):
        d[b"a"]
    assert "closed" in repr(d) or any_backend.kind == "local"


def test_stats_reports_count_size_reclaimable(any_backend):
    """API.md: "stats() returns a dict with at least count, file_size and
    reclaimable_bytes"."""
    d = any_backend.open()
    d.update({b"a": b"1", b"b": b"2"})
    st = d.stats()
    assert st["count"] == 2 and st["file_size"] > 0 and st["reclaimable_bytes"] >= 0


def test_compact_and_sync_allowed(any_backend):
    d = any_backend.open()
    d[b"a"] = b"1"
    d.sync()
    d.compact()
    assert d[b"a"] == b"1"


def test_flag_r_refuses_writes(backend):
    """API.md: ""r" handles raise mmkv.error on every write"."""
    backend.open()[b"a"] = b"1"
    r = backend.open("r")
    assert r[b"a"] == b"1"
    with pytest.raises(mmkv.error):
        r[b"b"] = b"2"
    with pytest.raises(mmkv.error):
        r.incr(b"n")


def test_flag_n_empties_namespace(backend):
    backend.open()[b"a"] = b"1"
    assert len(backend.open("n")) == 0


def test_batches_get_many_set_many_delete_many(backend):
    """API.md: get_many(keys, default=None) -> list; set_many(items); delete_many(keys) ->
    int."""
    d = backend.open()
    d.set_many({b"k%d" % i: b"v%d" % i for i in range(50)})
    assert d.get_many([b"k0", b"zz", b"k49"], b"-") == [b"v0", b"-", b"v49"]
    assert d.get_many([]) == []
    assert d.delete_many([b"k%d" % i for i in range(10)] + [b"zz"]) == 10
    assert len(d) == 40
    d.set_many([(b"p", b"1"), ("q", "2")])
    assert d[b"q"] == b"2"


def test_codec_json_round_trips_objects_and_incr(backend):
    """API.md: "values go through any object with dumps(obj) and loads(data) ... incr
    still works on values that are decimal integers"."""
    d = backend.open(codec=json)
    d[b"doc"] = {"a": [1, 2]}
    d[b"n"] = 5
    assert d[b"doc"] == {"a": [1, 2]}
    assert d.incr(b"n") == 6 and d[b"n"] == 6
    assert d.compare_and_set(b"n", 6, 7) and d.get_many([b"n"]) == [7]
    raw = backend.open()
    assert raw[b"doc"] == b'{"a": [1, 2]}'


def test_pickle_reopens_same_store(backend):
    """API.md: "A Store pickles by path and flag (it reopens the same store ...)"."""
    d = backend.open()
    d[b"a"] = b"1"
    other = pickle.loads(pickle.dumps(d))
    try:
        assert other[b"a"] == b"1"
    finally:
        other.close()


def test_keys_spread_over_cluster_slots(redis_cluster):
    """API.md: "Keys ... are spread over the cluster's slots (no hash tag forces one
    slot)"."""
    import redis
    url = redis_cluster.url("spread")
    with mmkv.open(url, "n") as d:
        d.update({b"k%d" % i: b"v" for i in range(300)})
        per_node = []
        for node in redis_cluster.nodes:
            client = redis.Redis(port=node.port)
            per_node.append(sum(1 for _ in client.scan_iter(match=b"mmkv:spread:k:*")))
            client.close()
        assert sum(per_node) == 300 and all(n > 0 for n in per_node)


def test_large_value_and_long_key_work(any_backend):
    """API.md: "keys of at least 511 bytes and values of at least 16 MiB work with default
    options"."""
    d = any_backend.open()
    key, value = b"k" * 511, bytes(range(256)) * (16 * 4096)
    d[key] = value
    assert d[key] == value and len(d) == 1


def test_redis_stat_reports_count_and_memory(redis_server):
    """Issue 14: "mmkv stat on a URL reports what Redis knows (keys in the namespace,
    memory if the server reports it)"."""
    from mmkv._redis import redis_stat
    url = redis_server.url("stat")
    with mmkv.open(url, "n") as d:
        d.update({b"a": b"1", b"b": b"2"})
    st = redis_stat(url)
    assert st["count"] == 2 and st["file_size"] > 0 and st["namespace"] == "stat"
