"""Unit tests for API.md "The store is a mapping": dict methods, key and value types, limits.

Where a method has dict semantics the store is compared with a real dict doing the same
thing; the `db` fixture runs the structural check after every test.
"""

import array
import collections.abc
import inspect

import pytest

import mmkv

ITEMS = {b"alpha": b"1", b"beta": b"22", b"": b"empty-key", b"\x00\xff": b"", b"gamma": b"x" * 300}


@pytest.fixture
def filled(db):
    """The `db` store holding ITEMS."""
    for k, v in ITEMS.items():
        db[k] = v
    return db


# --- the basics -------------------------------------------------------------------------


def test_store_is_mutable_mapping(db):
    """`Store` is a `collections.abc.MutableMapping`."""
    assert isinstance(db, collections.abc.MutableMapping)
    assert isinstance(db, mmkv.Store)


def test_setitem_then_getitem_returns_value(db):
    """`d[k] = v` then `d[k]` gives v."""
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"


def test_setitem_existing_key_replaces_value(db):
    """`d[k] = v` on a present key replaces the value, as dict does."""
    db[b"k"] = b"old"
    db[b"k"] = b"new value, longer than the old one"
    assert db[b"k"] == b"new value, longer than the old one"
    assert len(db) == 1


def test_getitem_missing_key_raises_key_error(filled):
    """`d[k]` on a missing key: `KeyError`, as dict does."""
    with pytest.raises(KeyError):
        filled[b"missing"]


def test_delitem_present_key_removes_it(filled):
    """`del d[k]` removes the key."""
    del filled[b"alpha"]
    assert b"alpha" not in filled
    assert len(filled) == len(ITEMS) - 1
    with pytest.raises(KeyError):
        filled[b"alpha"]


def test_delitem_missing_key_raises_key_error(filled):
    """`del d[k]` on a missing key: `KeyError`, and the store is unchanged."""
    with pytest.raises(KeyError):
        del filled[b"missing"]
    assert dict(filled.items()) == ITEMS


def test_delitem_then_setitem_restores_key(filled):
    """A deleted key can be set again."""
    del filled[b"beta"]
    filled[b"beta"] = b"back"
    assert filled[b"beta"] == b"back"
    assert len(filled) == len(ITEMS)


def test_contains_present_and_missing_matches_dict(filled):
    """`k in d` as dict."""
    for k in ITEMS:
        assert k in filled
    assert b"missing" not in filled
    assert b"alph" not in filled
    assert b"alpha\x00" not in filled


def test_len_counts_live_keys(db):
    """`len(d)` counts keys: inserts add, overwrites do not, deletes remove."""
    assert len(db) == 0
    for i in range(50):
        db[b"%d" % i] = b"v"
    assert len(db) == 50
    for i in range(10):
        db[b"%d" % i] = b"w"
    assert len(db) == 50
    for i in range(20):
        del db[b"%d" % i]
    assert len(db) == 30


def test_iter_yields_each_key_once(filled):
    """`iter(d)` yields every key, once."""
    keys = list(filled)
    assert len(keys) == len(ITEMS)
    assert set(keys) == set(ITEMS)


def test_iter_empty_store_yields_nothing(db):
    """`iter(d)` of an empty store is empty."""
    assert list(db) == []


def test_keys_returns_list_snapshot(filled):
    """`keys()` returns a `list` snapshot, as every `dbm` module does."""
    keys = filled.keys()
    assert type(keys) is list
    assert sorted(keys) == sorted(ITEMS)
    filled[b"later"] = b"1"
    assert b"later" not in keys


def test_keys_empty_store_is_empty_list(db):
    """`d.keys() == []` on an empty store."""
    assert db.keys() == []


def test_values_match_dict(filled):
    """`values()` as dict."""
    assert sorted(filled.values()) == sorted(ITEMS.values())


def test_items_match_dict(filled):
    """`items()` as dict."""
    assert sorted(filled.items()) == sorted(ITEMS.items())


def test_get_present_key_returns_value(filled):
    """`get(k)` as dict: the value when present."""
    assert filled.get(b"beta") == b"22"
    assert filled.get(b"beta", b"default") == b"22"


def test_get_missing_key_returns_default(filled):
    """`get(k, default)` as dict: default (None if not given) when missing."""
    assert filled.get(b"missing") is None
    sentinel = object()
    assert filled.get(b"missing", sentinel) is sentinel


def test_get_arguments_by_name_as_mapping_get(filled):
    """API.md: "`Store` is a `collections.abc.MutableMapping`": `get(key, default=None)` takes
    its arguments as `Mapping.get` does, by position or by name; other calls are TypeError."""
    sentinel = object()
    assert filled.get(b"missing", default=sentinel) is sentinel
    assert filled.get(b"beta", default=sentinel) == b"22"
    assert filled.get(key=b"beta") == b"22"
    assert filled.get(key=b"missing", default=7) == 7
    for args, kwargs in [((), {}), ((b"beta", 1, 2), {}), ((b"beta",), {"key": b"beta"}),
                         ((b"beta", 1), {"default": 2}), ((b"beta",), {"dflt": 1}),
                         ((), {"default": 1})]:
        with pytest.raises(TypeError):
            filled.get(*args, **kwargs)
    assert list(inspect.signature(mmkv.Store.get).parameters) == ["self", "key", "default"]


def test_pop_present_key_returns_and_removes(filled):
    """`pop(k)` as dict: returns the value and removes the key."""
    assert filled.pop(b"alpha") == b"1"
    assert b"alpha" not in filled
    assert len(filled) == len(ITEMS) - 1


def test_pop_present_key_with_default_ignores_default(filled):
    """`pop(k, default)` as dict: the value when present."""
    assert filled.pop(b"alpha", b"default") == b"1"
    assert b"alpha" not in filled


def test_pop_missing_key_with_default_returns_default(filled):
    """`pop(k, default)` as dict: default when missing, store unchanged."""
    sentinel = object()
    assert filled.pop(b"missing", sentinel) is sentinel
    assert filled.pop(b"missing", None) is None
    assert dict(filled.items()) == ITEMS


def test_pop_missing_key_without_default_raises_key_error(filled):
    """`pop(k)` as dict: `KeyError` when missing, store unchanged."""
    with pytest.raises(KeyError):
        filled.pop(b"missing")
    assert dict(filled.items()) == ITEMS


def test_popitem_returns_present_pair_and_removes_it(filled):
    """`popitem()` as dict: removes and returns some (key, value) pair."""
    key, value = filled.popitem()
    assert ITEMS[key] == value
    assert type(key) is bytes and type(value) is bytes
    assert key not in filled
    assert len(filled) == len(ITEMS) - 1


def test_popitem_repeated_empties_store_with_every_pair(filled):
    """`popitem()` until empty returns every pair exactly once."""
    popped = dict(filled.popitem() for _ in range(len(ITEMS)))
    assert popped == ITEMS
    assert len(filled) == 0


def test_popitem_empty_store_raises_key_error(db):
    """`popitem()` on an empty store: `KeyError`, as dict does."""
    with pytest.raises(KeyError):
        db.popitem()


def test_setdefault_missing_key_sets_and_returns_default(filled):
    """`setdefault(k, v)` as dict: sets and returns v when missing."""
    assert filled.setdefault(b"new", b"dflt") == b"dflt"
    assert filled[b"new"] == b"dflt"
    assert len(filled) == len(ITEMS) + 1


def test_setdefault_present_key_returns_existing_value(filled):
    """`setdefault(k, v)` as dict: returns the existing value and does not write."""
    assert filled.setdefault(b"alpha", b"other") == b"1"
    assert filled[b"alpha"] == b"1"
    assert filled.setdefault(b"alpha") == b"1"
    assert len(filled) == len(ITEMS)


def test_setdefault_str_default_returns_bytes(db):
    """`setdefault` stores str UTF-8 encoded; reads always return `bytes`."""
    assert db.setdefault("ключ", "значение") == "значение".encode()
    assert db["ключ".encode()] == "значение".encode()


def test_update_from_dict_matches_dict(filled):
    """`update(mapping)` as dict."""
    model = dict(ITEMS)
    model.update({b"alpha": b"one", b"delta": b"4"})
    filled.update({b"alpha": b"one", b"delta": b"4"})
    assert dict(filled.items()) == model


def test_update_from_iterable_of_pairs_matches_dict(db):
    """`update(iterable of pairs)` as dict; later pairs win."""
    pairs = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    db.update(pairs)
    assert dict(db.items()) == dict(pairs)


def test_update_from_generator_matches_dict(db):
    """`update(generator of pairs)` as dict."""
    db.update((b"k%d" % i, b"v%d" % i) for i in range(20))
    assert dict(db.items()) == {b"k%d" % i: b"v%d" % i for i in range(20)}


def test_update_from_kwargs_encodes_keys(db):
    """`update(**kwargs)` as dict; str keys are UTF-8 encoded."""
    db.update(alpha=b"1", été="2")
    assert dict(db.items()) == {b"alpha": b"1", "été".encode(): b"2"}


def test_update_from_dict_and_kwargs_kwargs_win(db):
    """`update(mapping, **kwargs)` as dict: keyword arguments are applied last."""
    db.update({b"a": b"from-dict", b"b": b"2"}, a=b"from-kwargs")
    assert dict(db.items()) == {b"a": b"from-kwargs", b"b": b"2"}


def test_update_from_other_store_copies_items(filled, open_store, tmp_path):
    """`update(other_store)` copies every item, as dict."""
    other = open_store(tmp_path / "other.mmkv")
    other.update(filled)
    assert dict(other.items()) == ITEMS
    other._check()


def test_update_with_no_arguments_changes_nothing(filled):
    """`update()` with nothing is a no-op, as dict."""
    filled.update()
    assert dict(filled.items()) == ITEMS


def test_clear_removes_every_key(filled):
    """`clear()` as dict."""
    filled.clear()
    assert len(filled) == 0
    assert list(filled) == []
    assert filled.keys() == []
    assert b"alpha" not in filled


def test_clear_then_setitem_works(filled):
    """After `clear()` the store is usable as an empty one."""
    filled.clear()
    filled[b"alpha"] = b"again"
    assert dict(filled.items()) == {b"alpha": b"again"}


def test_eq_equal_dict_is_true(filled):
    """`==` with a dict: equal contents compare equal, both ways round."""
    assert filled == ITEMS
    assert ITEMS == filled
    assert not (filled != ITEMS)


def test_eq_different_dict_is_false(filled):
    """`==` with a dict: a different value, key or size compares unequal."""
    assert filled != {**ITEMS, b"alpha": b"2"}
    assert filled != {**ITEMS, b"extra": b"1"}
    smaller = dict(ITEMS)
    del smaller[b"alpha"]
    assert filled != smaller
    assert filled != {}


def test_eq_empty_store_equals_empty_dict(db):
    """`==` with a dict: an empty store equals `{}`."""
    assert db == {}


def test_dict_methods_sequence_matches_real_dict(db):
    """`Store` behaves like `dict`: a scripted mix of every method gives dict's results."""
    model = {}
    script = [
        ("setitem", b"a", b"1"), ("setitem", b"b", b"2"), ("setitem", b"", b""),
        ("get", b"a"), ("get", b"zz"), ("pop", b"a"), ("pop_default", b"a"),
        ("setdefault", b"c", b"3"), ("setdefault", b"c", b"4"), ("update", [(b"d", b"4")]),
        ("delitem", b"b"), ("contains", b"b"), ("contains", b""), ("setitem", b"a", b"5"),
        ("popitem",), ("len",), ("clear",), ("len",), ("setitem", b"x", b"y" * 5000),
    ]
    for op, *args in script:
        if op == "popitem":
            k, v = db.popitem()
            assert model.pop(k) == v
            continue
        got, want = _apply(db, op, args), _apply(model, op, args)
        assert got == want, (op, args)
        assert dict(db.items()) == model
    assert db == model


def _apply(target, op, args):
    if op == "setitem":
        target[args[0]] = args[1]
        return None
    if op == "delitem":
        del target[args[0]]
        return None
    if op == "contains":
        return args[0] in target
    if op == "len":
        return len(target)
    if op == "pop_default":
        return target.pop(args[0], b"default")
    return getattr(target, op)(*args)


# --- key and value types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [bytearray(b"key"), memoryview(b"key"), "key", memoryview(b"xkeyx")[1:4]],
    ids=["bytearray", "memoryview", "str", "memoryview-slice"],
)
def test_key_bytes_like_or_str_equals_bytes_key(db, key):
    """`bytes`, `bytearray`, `memoryview` and `str` (UTF-8 encoded) are accepted as keys."""
    db[key] = b"v"
    assert db[b"key"] == b"v"
    assert key in db
    assert db[key] == b"v"
    assert db.keys() == [b"key"]
    del db[key]
    assert len(db) == 0


@pytest.mark.parametrize(
    "value",
    [bytearray(b"value"), memoryview(b"value"), "value", memoryview(b"-value-")[1:6]],
    ids=["bytearray", "memoryview", "str", "memoryview-slice"],
)
def test_value_bytes_like_or_str_reads_back_as_bytes(db, value):
    """`bytes`, `bytearray`, `memoryview` and `str` values are accepted; reads always return `bytes`."""
    db[b"k"] = value
    got = db[b"k"]
    assert type(got) is bytes
    assert got == b"value"


@pytest.mark.parametrize(
    "view",
    [
        memoryview(b"abcdef")[::2],
        memoryview(array.array("i", [1, 2, 3])),
        memoryview(b"abcd").cast("B", (2, 2)),
    ],
    ids=["non-contiguous", "int-format", "two-dimensional"],
)
def test_memoryview_of_any_shape_stores_its_bytes(db, view):
    """`memoryview` keys and values are accepted: the store holds `bytes(view)`."""
    db[view] = view
    assert db[bytes(view)] == bytes(view)
    assert db.keys() == [bytes(view)]


def test_str_key_and_value_are_utf8_encoded(db):
    """`str` (UTF-8 encoded) keys and values."""
    db["клю́ч-鍵-🗝"] = "ценность-値-💎"
    assert db.keys() == ["клю́ч-鍵-🗝".encode("utf-8")]
    assert db["клю́ч-鍵-🗝".encode("utf-8")] == "ценность-値-💎".encode("utf-8")


def test_reads_return_bytes_type_everywhere(filled):
    """Reads always return `bytes`: getitem, get, keys, iter, values, items, pop, popitem."""
    filled[bytearray(b"ba")] = bytearray(b"bv")
    assert type(filled[b"ba"]) is bytes
    assert type(filled.get(b"ba")) is bytes
    assert all(type(k) is bytes for k in filled.keys())
    assert all(type(k) is bytes for k in filled)
    assert all(type(v) is bytes for v in filled.values())
    assert all(type(k) is bytes and type(v) is bytes for k, v in filled.items())
    assert type(filled.pop(b"ba")) is bytes
    k, v = filled.popitem()
    assert type(k) is bytes and type(v) is bytes


def test_bytearray_key_mutated_after_set_does_not_change_store(db):
    """Keys and values are bytes: the store keeps a copy, not the caller's buffer."""
    key, value = bytearray(b"key"), bytearray(b"value")
    db[key] = value
    key[0:3] = b"XXX"
    value[0:5] = b"YYYYY"
    assert db[b"key"] == b"value"
    assert b"XXX" not in db


BAD_KEYS = [1, 0, None, 1.5, (b"a",), [b"a"], object(), True]
BAD_KEY_IDS = ["int", "zero", "None", "float", "tuple", "list", "object", "bool"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
def test_setitem_bad_key_type_raises_type_error(filled, key):
    """Anything else (as a key): `TypeError`, and the store is unchanged."""
    with pytest.raises(TypeError):
        filled[key] = b"v"
    assert dict(filled.items()) == ITEMS


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
def test_getitem_bad_key_type_raises_type_error(filled, key):
    """Anything else (as a key): `TypeError`."""
    with pytest.raises(TypeError):
        filled[key]


@pytest.mark.parametrize("key", BAD_KEYS, ids=BAD_KEY_IDS)
def test_delitem_bad_key_type_raises_type_error(filled, key):
    """Anything else (as a key): `TypeError`, and the store is unchanged."""
    with pytest.raises(TypeError):
        del filled[key]
    assert dict(filled.items()) == ITEMS


@pytest.mark.parametrize("key", [1, None, 1.5], ids=["int", "None", "float"])
def test_contains_bad_key_type_raises_type_error(filled, key):
    """Anything else (as a key): `TypeError`."""
    with pytest.raises(TypeError):
        key in filled  # noqa: B015


@pytest.mark.parametrize("key", [1, None, 1.5], ids=["int", "None", "float"])
def test_get_bad_key_type_raises_type_error(filled, key):
    """Anything else (as a key): `TypeError` (get does not hide it behind the default)."""
    with pytest.raises(TypeError):
        filled.get(key, b"default")


BAD_VALUES = [1, None, 1.5, [b"a"], object(), True]
BAD_VALUE_IDS = ["int", "None", "float", "list", "object", "bool"]


@pytest.mark.parametrize("value", BAD_VALUES, ids=BAD_VALUE_IDS)
def test_setitem_bad_value_type_raises_type_error(filled, value):
    """Anything else (as a value, `None` included): `TypeError`, and the store is unchanged."""
    with pytest.raises(TypeError):
        filled[b"alpha"] = value
    with pytest.raises(TypeError):
        filled[b"brand-new"] = value
    assert dict(filled.items()) == ITEMS


@pytest.mark.parametrize("value", [1, None], ids=["int", "None"])
def test_setdefault_bad_default_type_missing_key_raises_type_error(filled, value):
    """Anything else (as a value): `TypeError` from setdefault on a missing key, store unchanged."""
    with pytest.raises(TypeError):
        filled.setdefault(b"brand-new", value)
    assert dict(filled.items()) == ITEMS


def test_update_bad_value_type_raises_type_error(db):
    """Anything else (as a value): `TypeError` from update."""
    with pytest.raises(TypeError):
        db.update({b"k": 1})
    assert b"k" not in db


def test_str_key_with_lone_surrogate_raises_value_error(db):
    """`str` keys are UTF-8 encoded; one that UTF-8 cannot encode is refused, store unchanged."""
    with pytest.raises(ValueError):
        db["bad-\udcff"] = b"v"
    assert len(db) == 0


# --- empty key, empty value ---------------------------------------------------------------


def test_empty_key_is_ordinary_key(db):
    """The empty key ... is an ordinary key (`b""` is not absent)."""
    assert b"" not in db
    db[b""] = b"value of the empty key"
    assert b"" in db
    assert db[b""] == b"value of the empty key"
    assert db.keys() == [b""]
    assert list(db) == [b""]
    assert len(db) == 1
    del db[b""]
    assert b"" not in db
    assert len(db) == 0


def test_empty_str_key_is_empty_bytes_key(db):
    """The empty key: `""` encodes to `b""`, an ordinary key."""
    db[""] = b"v"
    assert db[b""] == b"v"


def test_empty_value_is_ordinary_value(db):
    """The empty value is an ordinary value (`b""` is not absent)."""
    db[b"k"] = b""
    assert b"k" in db
    assert db[b"k"] == b""
    assert db.get(b"k", b"default") == b""
    assert db.pop(b"k", b"default") == b""
    assert b"k" not in db


def test_empty_key_with_empty_value_round_trips(db, store_path):
    """The empty key and the empty value are ordinary keys and values, also after reopening."""
    db[b""] = b""
    db.close()
    with mmkv.open(store_path, "r") as d:
        assert dict(d.items()) == {b"": b""}


def test_empty_value_setdefault_returns_empty_not_default(db):
    """`b""` is not absent: setdefault on a key holding `b""` returns `b""`."""
    db[b"k"] = b""
    assert db.setdefault(b"k", b"other") == b""


# --- limits -------------------------------------------------------------------------------


def test_key_511_bytes_round_trips(db, store_path):
    """Keys of at least 511 bytes ... work with default options."""
    keys = [bytes([i]) * 511 for i in range(8)]
    for i, k in enumerate(keys):
        db[k] = b"v%d" % i
    db.close()
    with mmkv.open(store_path, "r") as d:
        assert sorted(d.keys()) == sorted(keys)
        assert all(d[k] == b"v%d" % i for i, k in enumerate(keys))


def test_value_16_mib_round_trips(db, store_path):
    """Values of at least 16 MiB work with default options."""
    value = bytes(range(256)) * (16 * 1024 * 1024 // 256)
    db[b"big"] = value
    assert db[b"big"] == value
    db.close()
    with mmkv.open(store_path, "r") as d:
        assert d[b"big"] == value


def test_key_at_default_limit_65535_bytes_round_trips(db):
    """Default key limit is 65535 bytes: a key of exactly that length works."""
    key = b"k" * 65535
    db[key] = b"v"
    assert db[key] == b"v"
    assert db.keys() == [key]


def test_key_over_default_limit_raises_value_error_store_unchanged(filled):
    """Anything over the store's limit: `ValueError`, and the store is unchanged."""
    with pytest.raises(ValueError):
        filled[b"k" * 65536] = b"v"
    assert len(filled) == len(ITEMS)
    assert dict(filled.items()) == ITEMS


def test_value_over_default_limit_raises_value_error_store_unchanged(filled):
    """Anything over the store's limit (64 MiB values): `ValueError`, and the store is unchanged."""
    too_big = bytes(64 * 1024 * 1024 + 1)
    with pytest.raises(ValueError):
        filled[b"alpha"] = too_big
    with pytest.raises(ValueError):
        filled[b"new"] = too_big
    assert len(filled) == len(ITEMS)
    assert dict(filled.items()) == ITEMS


@pytest.fixture
def small(open_store, store_path, check_store):
    """A store with max_key_len=8 and max_value_len=16, holding {b"key": b"value"}."""
    d = open_store(store_path, "c", max_key_len=8, max_value_len=16)
    d[b"key"] = b"value"
    yield d
    check_store(store_path)


def test_key_at_option_limit_round_trips(small):
    """`max_key_len` sets the limit; a key of exactly that length works."""
    small[b"12345678"] = b"v"
    assert small[b"12345678"] == b"v"


def test_value_at_option_limit_round_trips(small):
    """`max_value_len` sets the limit; a value of exactly that length works."""
    small[b"k"] = b"x" * 16
    assert small[b"k"] == b"x" * 16


def test_key_over_option_limit_raises_value_error_store_unchanged(small):
    """Anything over the store's limit: `ValueError`, and the store is unchanged."""
    with pytest.raises(ValueError):
        small[b"123456789"] = b"v"
    assert len(small) == 1
    assert dict(small.items()) == {b"key": b"value"}


def test_value_over_option_limit_raises_value_error_store_unchanged(small):
    """Anything over the store's limit: `ValueError`, and the store is unchanged (old value kept)."""
    with pytest.raises(ValueError):
        small[b"key"] = b"x" * 17
    with pytest.raises(ValueError):
        small[b"new"] = b"x" * 17
    assert len(small) == 1
    assert dict(small.items()) == {b"key": b"value"}


def test_str_key_over_limit_in_utf8_bytes_raises_value_error(small):
    """Limits count UTF-8 bytes: 5 characters that encode to 10 bytes exceed an 8-byte limit."""
    with pytest.raises(ValueError):
        small["ééééé"] = b"v"
    assert dict(small.items()) == {b"key": b"value"}


def test_setdefault_over_limit_value_raises_value_error_store_unchanged(small):
    """Anything over the store's limit: `ValueError` from setdefault, store unchanged."""
    with pytest.raises(ValueError):
        small.setdefault(b"new", b"x" * 17)
    assert dict(small.items()) == {b"key": b"value"}


def test_over_limit_key_lookup_is_absent_or_value_error(small):
    """A key over the limit can never be present: lookups do not find it."""
    try:
        assert (b"k" * 9 in small) is False
    except ValueError:
        pass
    assert dict(small.items()) == {b"key": b"value"}


def test_option_limits_persist_after_reopen(small, store_path, open_store):
    """Anything over the store's limit: the limit belongs to the store, not the handle."""
    small.close()
    d = open_store(store_path, "w")
    with pytest.raises(ValueError):
        d[b"123456789"] = b"v"
    with pytest.raises(ValueError):
        d[b"k"] = b"x" * 17
    assert dict(d.items()) == {b"key": b"value"}


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 4087, 4095, 4096, 4097, 8192, 65_536, 1 << 20])
def test_value_sizes_around_boundaries_round_trip(db, store_path, size):
    """Keys and values are bytes of any size within the limits: sizes around 8-byte and page edges."""
    value = bytes((i * 7 + size) & 0xFF for i in range(size))
    db[b"before"] = b"x"
    db[b"k"] = value
    db[b"after"] = b"y"
    assert db[b"k"] == value
    db.close()
    with mmkv.open(store_path, "r") as d:
        assert d == {b"before": b"x", b"k": value, b"after": b"y"}


def test_many_keys_from_small_initial_capacity_round_trip(open_store, store_path):
    """The store grows as needed: 20,000 keys from initial_capacity=16 are all there."""
    d = open_store(store_path, "c", initial_capacity=16)
    model = {b"key-%d" % i: b"%d" % (i * i) for i in range(20_000)}
    d.update(model)
    assert len(d) == len(model)
    assert d == model
    d._check()


def test_eq_two_stores_with_same_items_are_equal(filled, open_store, tmp_path):
    """`==` compares contents, as Mapping does: two stores with the same items are equal."""
    other = open_store(tmp_path / "other.mmkv")
    other.update(ITEMS)
    assert filled == other
    other[b"alpha"] = b"different"
    assert filled != other
