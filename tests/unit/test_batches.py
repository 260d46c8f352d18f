"""Batches: get_many, set_many, delete_many and update (API.md, "Batches"), and d.seq."""
import pytest

import mmkv


def test_get_many_present_and_missing_keys_returns_values_in_order_with_default(db):
    """get_many(keys, default=None) -> list: the values of keys in order."""
    db[b"a"], db[b"c"] = b"1", b""
    assert db.get_many([b"a", b"b", "c", bytearray(b"a")]) == [b"1", None, b"", b"1"]
    assert db.get_many([b"b"], default=b"-") == [b"-"]
    assert db.get_many([]) == []
    assert db.get_many(iter([b"a"])) == [b"1"]


def test_get_many_values_larger_than_the_buffer_returns_them_whole(db):
    """get_many returns every value whole, whatever its size."""
    big = {b"k%d" % i: bytes([i]) * (50_000 + i) for i in range(8)}
    db.set_many(big)
    assert db.get_many(list(big)) == list(big.values())


def test_get_many_bad_key_type_raises_typeerror(db):
    """Keys are bytes or str; anything else: TypeError."""
    with pytest.raises(TypeError):
        db.get_many([b"a", 3])


def test_set_many_mapping_and_pairs_store_everything(db):
    """set_many(items): a mapping or an iterable of pairs."""
    db.set_many({b"a": b"1", "b": "2"})
    db.set_many([(b"c", b"3"), (memoryview(b"d"), bytearray(b"4"))])
    db.set_many(iter([(b"e", b"5")]))
    assert dict(db.items()) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4", b"e": b"5"}


def test_set_many_duplicate_keys_last_value_wins_as_dict_update(db, check_store):
    """Duplicate keys within a batch: the last one wins, as dict.update."""
    db.set_many([(b"k", b"1"), (b"x", b"x"), (b"k", b"2"), (b"k", b"3")])
    assert db[b"k"] == b"3" and len(db) == 2
    check_store(db)


def test_set_many_bad_value_in_the_middle_writes_nothing(db):
    """Bad keys/values: TypeError/ValueError before anything is written."""
    db[b"keep"] = b"old"
    seq = db.seq
    with pytest.raises(TypeError):
        db.set_many([(b"keep", b"new"), (b"b", 5), (b"c", b"3")])
    with pytest.raises(TypeError):
        db.set_many([(b"keep", b"new"), (None, b"x")])
    with pytest.raises(ValueError):
        db.set_many([(b"keep", b"new"), (b"x", b"x", b"x")])
    with pytest.raises(ValueError):
        db.set_many([(b"keep", b"new"), (b"k" * 70_000, b"x")])
    assert dict(db.items()) == {b"keep": b"old"} and db.seq == seq


def test_set_many_value_over_the_limit_raises_valueerror_and_changes_nothing(open_store):
    """Anything over the store's limit: ValueError, and the store is unchanged."""
    d = open_store(max_value_len=1000)
    with pytest.raises(ValueError):
        d.set_many({b"a": b"1", b"b": b"x" * 1001})
    assert len(d) == 0


def test_set_many_many_new_keys_grows_the_table_once_and_stays_sound(db, check_store):
    """A batch bigger than the table: every key is stored (the table grows first)."""
    items = {b"key%06d" % i: b"v%d" % i for i in range(20_000)}
    db.set_many(items)
    assert len(db) == 20_000
    assert db.get_many([b"key000000", b"key019999"]) == [b"v0", b"v19999"]
    check_store(db)


def test_set_many_is_one_write_that_other_handles_see(db, open_store, store_path):
    """set_many is one write; other handles see it."""
    other = open_store(store_path)
    before = other.seq
    db.set_many({b"a": b"1", b"b": b"2"})
    assert other.get_many([b"a", b"b"]) == [b"1", b"2"]
    assert other.seq > before


def test_update_uses_one_batch_with_dict_semantics(db):
    """update() uses set_many: mapping, pairs, keyword arguments."""
    seq = db.seq
    db.update({b"a": b"1"}, b=b"2")
    changes = list(db.watch(since=seq, timeout=0))
    assert [c[1:] for c in changes] == [(b"a", b"1"), (b"b", b"2")]
    assert changes[0][0] + 1 == changes[1][0]   # one batch: consecutive seqs
    db.update([(b"c", b"3")])
    db.update()
    assert dict(db.items()) == {b"a": b"1", b"b": b"2", b"c": b"3"}


def test_delete_many_counts_removed_keys_once(db, check_store):
    """delete_many(keys) -> int: the number deleted."""
    db.set_many({b"a": b"1", b"b": b"2", b"c": b"3"})
    assert db.delete_many([b"a", b"a", b"zz", "b", b"q" * 100_000]) == 2
    assert dict(db.items()) == {b"c": b"3"}
    assert db.delete_many([]) == 0
    assert db.delete_many([b"nothing"]) == 0
    check_store(db)


def test_delete_many_bad_key_type_raises_typeerror_and_deletes_nothing(db):
    """Bad keys: TypeError before anything is written."""
    db[b"a"] = b"1"
    with pytest.raises(TypeError):
        db.delete_many([b"a", 1.5])
    assert db[b"a"] == b"1"


def test_batches_on_read_only_and_closed_handles_raise_mmkv_error(db, open_store, store_path):
    """"r" handles raise mmkv.error on every write; a closed handle: mmkv.error."""
    db[b"a"] = b"1"
    ro = open_store(store_path, "r")
    assert ro.get_many([b"a"]) == [b"1"]
    with pytest.raises(mmkv.error):
        ro.set_many({b"a": b"2"})
    with pytest.raises(mmkv.error):
        ro.delete_many([b"a"])
    other = open_store(store_path)
    other.close()
    for call in (lambda: other.get_many([b"a"]), lambda: other.set_many({b"a": b"1"}),
                 lambda: other.delete_many([b"a"]), lambda: other.seq,
                 lambda: other.get_many([]), lambda: other.set_many({})):
        with pytest.raises(mmkv.error):
            call()


def test_seq_grows_with_every_write_of_any_handle(db, open_store, store_path):
    """d.seq is the store's change counter: it grows with every write."""
    other = open_store(store_path)
    seen = [db.seq]
    for write in (lambda: db.__setitem__(b"a", b"1"), lambda: other.incr(b"n"),
                  lambda: other.pop(b"a"), lambda: db.set_many({b"x": b"1"}),
                  lambda: db.delete_many([b"x"]), db.clear, other.compact):
        write()
        seen.append(db.seq)
        assert other.seq == db.seq
    assert seen[:-1] == sorted(set(seen[:-1]))   # strictly growing over the writes
    assert seen[-1] >= seen[-2]                    # compaction keeps the counter


def test_batches_survive_compaction_and_reopen(db, open_store, store_path, check_store):
    """Contents are unchanged by compact(); batches are ordinary data afterwards."""
    db.set_many({b"k%d" % i: b"v%d" % i for i in range(1000)})
    db.delete_many([b"k%d" % i for i in range(0, 1000, 2)])
    db.compact()
    check_store(db)
    db.close()
    again = open_store(store_path)
    assert len(again) == 500 and again[b"k1"] == b"v1" and b"k0" not in again
    check_store(again)
