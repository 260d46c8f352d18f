"""Ordered views: d.range() (API.md, "Ordered views")."""
import pytest

import mmkv

KEYS = [b"", b"a", b"a\x00", b"ab", b"abc", b"b", b"ba", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]


@pytest.fixture
def filled(db):
    db.set_many({k: b"v" + k for k in KEYS})
    return db


def test_range_without_bounds_yields_every_key_in_bytewise_order(filled):
    """range() yields keys in bytewise order."""
    assert list(filled.range()) == sorted(KEYS)
    assert list(filled.range(reverse=True)) == sorted(KEYS, reverse=True)


def test_range_start_stop_is_half_open(filled):
    """start <= key < stop."""
    assert list(filled.range(b"a", b"b")) == [b"a", b"a\x00", b"ab", b"abc"]
    assert list(filled.range(start=b"ab")) == [k for k in sorted(KEYS) if k >= b"ab"]
    assert list(filled.range(stop=b"a\x00")) == [b"", b"a"]
    assert list(filled.range(b"a", b"b", reverse=True)) == [b"abc", b"ab", b"a\x00", b"a"]
    assert list(filled.range("a", "ab")) == [b"a", b"a\x00"]


def test_range_start_after_stop_is_empty(filled):
    """start > stop: an empty result, as sorted containers give."""
    assert list(filled.range(b"b", b"a")) == []
    assert list(filled.range(b"b", b"b", reverse=True)) == []


def test_range_prefix_yields_keys_beginning_with_it(filled):
    """Keys beginning with prefix when given."""
    assert list(filled.range(prefix=b"a")) == [b"a", b"a\x00", b"ab", b"abc"]
    assert list(filled.range(prefix=b"\xff")) == [b"\xff", b"\xff\xff"]
    assert list(filled.range(prefix=b"")) == sorted(KEYS)
    assert list(filled.range(prefix=b"ab", reverse=True)) == [b"abc", b"ab"]
    assert list(filled.range(b"a\x01", b"abc", prefix=b"a")) == [b"ab"]
    assert list(filled.range(b"c", prefix=b"a")) == []


def test_range_values_yields_pairs(filled):
    """values=True yields (key, value) pairs."""
    assert list(filled.range(prefix=b"a", values=True)) == [(k, b"v" + k) for k in
                                                          [b"a", b"a\x00", b"ab", b"abc"]]


def test_range_bad_bound_types_raise_typeerror(filled):
    """Bounds of the wrong type: TypeError."""
    for kwargs in ({"start": 1}, {"stop": 2.0}, {"prefix": object()}):
        with pytest.raises(TypeError):
            list(filled.range(**kwargs))


def test_range_sees_writes_of_other_handles_and_compactions(db, open_store, store_path):
    """The index follows other handles' writes, compaction and table rebuilds."""
    other = open_store(store_path)
    assert list(db.range()) == []
    for i in range(3000):                        # several table rebuilds
        other[b"k%05d" % i] = b"x"
    assert list(db.range(prefix=b"k0000")) == [b"k%05d" % i for i in range(10)]
    other.delete_many([b"k%05d" % i for i in range(0, 3000, 3)])
    other.compact()
    other[b"new"] = b"1"
    expected = sorted([b"k%05d" % i for i in range(3000) if i % 3] + [b"new"])
    assert list(db.range()) == expected
    other.clear()
    other[b"only"] = b"1"
    assert list(db.range()) == [b"only"]


def test_range_index_lagging_two_compactions_rebuilds(db, open_store, store_path):
    """A compaction that dropped changes the index had not applied: the index is rebuilt."""
    other = open_store(store_path)
    db[b"a"] = b"1"
    assert list(db.range()) == [b"a"]
    other[b"b"] = b"2"
    other.compact()
    other[b"c"] = b"3"
    other.compact()
    other[b"d"] = b"4"
    assert list(db.range()) == [b"a", b"b", b"c", b"d"]


def test_range_deleting_while_iterating_yields_each_key_once(db):
    """Iteration guarantee: for k in d.range(): del d[k] is allowed."""
    db.set_many({b"k%04d" % i: b"" for i in range(1000)})
    seen = []
    for k in db.range():
        seen.append(k)
        del db[k]
        if k.startswith(b"k"):
            db[b"z" + k] = b""           # keys inserted meanwhile may or may not appear
    assert seen[:1000] == [b"k%04d" % i for i in range(1000)]
    assert len(seen) == len(set(seen))
    assert set(seen) <= {b"k%04d" % i for i in range(1000)} | {b"zk%04d" % i for i in range(1000)}


def test_range_values_skips_keys_deleted_meanwhile(db, open_store, store_path):
    """Every yielded key was present at some moment of the iteration."""
    other = open_store(store_path)
    db.set_many({b"k%04d" % i: b"v" for i in range(2000)})
    out = []
    for key, value in db.range(values=True):
        out.append(key)
        if len(out) == 1:
            other.delete_many([b"k%04d" % i for i in range(1000, 2000)])
    assert out[:256] == [b"k%04d" % i for i in range(256)]
    assert all(int(k[1:]) < 1000 for k in out)


def test_range_on_a_closed_handle_raises_mmkv_error(db, open_store, store_path):
    """Any other operation on a closed handle: mmkv.error."""
    other = open_store(store_path)
    list(other.range())
    other.close()
    with pytest.raises(mmkv.error):
        list(other.range())
    fresh = open_store(store_path)
    fresh.close()
    with pytest.raises(mmkv.error):
        list(fresh.range())


def test_range_on_read_only_handle_works(db, open_store, store_path):
    """A read-only handle can use range()."""
    db.set_many({b"b": b"", b"a": b""})
    ro = open_store(store_path, "r")
    assert list(ro.range()) == [b"a", b"b"]
    db[b"c"] = b""
    assert list(ro.range(values=True)) == [(b"a", b""), (b"b", b""), (b"c", b"")]


def test_range_index_is_shared_by_the_handles_of_a_process_on_one_file(db, open_store,
                                                                         store_path):
    """DESIGN.md: ordered views keep a per-process SortedList for a store: two handles on
    one file use one index, and it follows a compaction without a rebuild."""
    from mmkv import _ordered
    db.set_many({b"k%d" % i: b"v" for i in range(20)})
    other = open_store(store_path)
    assert list(other.range(prefix=b"k1")) == [b"k1"] + [b"k1%d" % i for i in range(10)]
    index = _ordered._index_for(db)
    assert _ordered._index_for(other) is index
    keys_before = index.keys
    db.compact()
    other[b"k99"] = b"x"
    assert list(db.range(prefix=b"k9")) == [b"k9", b"k99"]
    assert index.keys is keys_before                  # applied the log, not rebuilt
    late = open_store(store_path)                     # opened on the compacted file
    assert _ordered._index_for(late) is index
    assert list(late.range(prefix=b"k99")) == [b"k99"]


def test_range_index_survives_the_handle_that_built_it_being_closed(db, open_store,
                                                                     store_path):
    """Every handle keeps its own iteration guarantee whichever handle of the process built
    the shared index: closing that one leaves the others' range() working and fresh, while
    range() on the closed one raises mmkv.error."""
    db.set_many({b"a": b"1", b"b": b"2"})
    other = open_store(store_path)
    assert list(db.range()) == [b"a", b"b"]           # db builds the index
    db.close()
    other[b"c"] = b"3"
    assert list(other.range()) == [b"a", b"b", b"c"]
    assert list(other.range(values=True)) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    with pytest.raises(mmkv.error):
        list(db.range())


def test_range_index_dropped_when_no_handle_uses_it(store_path):
    """The shared index lives as long as a handle that used it: dropping them frees it."""
    import gc

    from mmkv import _ordered
    before = len(_ordered._by_file)
    d1, d2 = mmkv.open(store_path, "n"), mmkv.open(store_path)
    d1[b"x"] = b"1"
    assert list(d1.range()) == list(d2.range()) == [b"x"]
    assert len(_ordered._by_file) == before + 1
    d1.close()
    d2.close()
    del d1, d2
    gc.collect()
    assert len(_ordered._by_file) == before
