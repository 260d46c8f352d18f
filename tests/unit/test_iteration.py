"""Unit tests for API.md's iteration clause: changes during iteration never raise.

Every key present for the whole iteration is yielded exactly once, every yielded key was
present at some moment, whether this handle or another one changes the store meanwhile.
Stores start with initial_capacity=16 so that inserts force table rebuilds mid-iteration.
"""

import collections

import pytest

import mmkv


def fill(d, count, prefix=b"k"):
    keys = [b"%s%06d" % (prefix, i) for i in range(count)]
    for k in keys:
        d[k] = b"v:" + k
    return keys


def assert_no_duplicates(yielded):
    dupes = [k for k, n in collections.Counter(yielded).items() if n > 1]
    assert not dupes, f"{len(dupes)} keys yielded more than once, e.g. {dupes[:5]}"


@pytest.fixture
def small_table(open_store, store_path, check_store):
    """A read-write store created with initial_capacity=16; checked at teardown."""
    d = open_store(store_path, "c", initial_capacity=16)
    yield d
    check_store(store_path)


def test_iter_delete_each_yielded_key_empties_store(small_table):
    """`for k in d: del d[k]` is allowed (and empties the store)."""
    fill(small_table, 500)
    for k in small_table:
        del small_table[k]
    assert len(small_table) == 0
    assert small_table.keys() == []


def test_iter_delete_each_yielded_key_yields_every_key_once(small_table):
    """`for k in d: del d[k]`: every key present for the whole iteration is yielded exactly once."""
    keys = fill(small_table, 300)
    yielded = []
    for k in small_table:
        yielded.append(k)
        del small_table[k]
    assert_no_duplicates(yielded)
    assert sorted(yielded) == keys


def test_iter_while_inserting_grows_table(small_table):
    """Inserting many keys during an iteration forces table rebuilds (precondition of the tests below)."""
    before = small_table.stats()["table_capacity"]
    fill(small_table, 20)
    for i, _ in enumerate(small_table):
        if i < 20:
            fill(small_table, 50, prefix=b"n%03d-" % i)
    assert small_table.stats()["table_capacity"] > before


def test_iter_while_inserting_yields_original_keys_exactly_once(small_table):
    """Iteration never raises because the store changes meanwhile: every key present
    for the whole iteration is yielded exactly once."""
    original = fill(small_table, 40)
    inserted = set()
    yielded = []
    for i, k in enumerate(small_table):
        yielded.append(k)
        if i < 40:
            inserted.update(fill(small_table, 50, prefix=b"n%03d-" % i))
    assert_no_duplicates(yielded)
    assert set(original) <= set(yielded)
    assert set(yielded) <= set(original) | inserted
    assert len(small_table) == 40 + len(inserted)


def test_iter_while_overwriting_every_key_yields_each_once(small_table):
    """Every key present for the whole iteration is yielded exactly once (values overwritten meanwhile)."""
    keys = fill(small_table, 300)
    yielded = []
    for k in small_table:
        yielded.append(k)
        for other in keys[::7]:
            small_table[other] = b"overwritten" * 3
    assert_no_duplicates(yielded)
    assert sorted(yielded) == keys


def test_iter_while_deleting_other_keys_yields_survivors_once(small_table):
    """Every key present for the whole iteration is yielded exactly once; every yielded key
    was present at some moment."""
    keys = fill(small_table, 400)
    survivors = set(keys[::2])
    doomed = [k for k in keys if k not in survivors]
    yielded = []
    for k in small_table:
        yielded.append(k)
        for _ in range(3):
            if doomed:
                del small_table[doomed.pop()]
    assert_no_duplicates(yielded)
    assert survivors <= set(yielded)
    assert set(yielded) <= set(keys)


def test_iter_while_other_handle_inserts_yields_original_keys_once(small_table, open_store, store_path):
    """Iteration never raises ... whether this handle, another handle ... changes it."""
    original = fill(small_table, 40)
    other = open_store(store_path, "w")
    inserted = set()
    yielded = []
    for i, k in enumerate(small_table):
        yielded.append(k)
        if i < 40:
            inserted.update(fill(other, 50, prefix=b"o%03d-" % i))
    assert_no_duplicates(yielded)
    assert set(original) <= set(yielded)
    assert set(yielded) <= set(original) | inserted


def test_iter_while_other_handle_deletes_all_then_refills_never_raises(small_table, open_store, store_path):
    """Iteration never raises because another handle changes the store meanwhile."""
    original = fill(small_table, 100)
    other = open_store(store_path, "w")
    yielded = []
    for i, k in enumerate(small_table):
        yielded.append(k)
        if i == 10:
            other.clear()
            fill(other, 300, prefix=b"z")
    assert_no_duplicates(yielded)
    assert set(yielded) <= set(original) | {b"z%06d" % i for i in range(300)}
    assert len(small_table) == 300


def test_items_while_inserting_yields_original_pairs_once(small_table):
    """`items()` iterates like `iter(d)`: original pairs exactly once while inserts grow the table."""
    original = dict.fromkeys(fill(small_table, 40))
    for k in original:
        original[k] = small_table[k]
    seen = []
    for i, (k, v) in enumerate(small_table.items()):
        seen.append(k)
        if k in original:
            assert v == original[k]
        if i < 40:
            fill(small_table, 30, prefix=b"i%03d-" % i)
    assert_no_duplicates(seen)
    assert set(original) <= set(seen)


def test_iterator_of_unchanged_store_is_exhaustive_after_reopen(small_table, store_path):
    """Iteration of a store reopened from disk yields every key once."""
    keys = fill(small_table, 1000)
    small_table.close()
    with mmkv.open(store_path, "r") as d:
        yielded = list(d)
    assert_no_duplicates(yielded)
    assert sorted(yielded) == keys
