"""Reopening with other limits (issue 10, "Messages that name the cause": reopening with
other max_key_len/max_value_len than the store was created with raises ValueError naming the
store's limits instead of silently ignoring them)."""

import pytest

import mmkv


@pytest.mark.parametrize("flag", ["r", "w", "c"])
def test_reopen_other_limits_raises_value_error_naming_them(store_path, flag):
    """An existing store opened with max_key_len or max_value_len other than its own raises
    ValueError naming the limits it has; the same values, or none, open it."""
    with mmkv.open(store_path, "n", max_key_len=100, max_value_len=1000) as d:
        d[b"k"] = b"v"
    for options in ({"max_key_len": 200}, {"max_value_len": 999},
                    {"max_key_len": 100, "max_value_len": 2000}):
        with pytest.raises(ValueError) as info:
            mmkv.open(store_path, flag, **options)
        assert "max_key_len=100" in str(info.value) and "max_value_len=1000" in str(info.value)
    with mmkv.open(store_path, flag, max_key_len=100, max_value_len=1000) as d:
        assert d[b"k"] == b"v"
        d._check()
    with mmkv.open(store_path, flag) as d:
        assert d.stats()["max_key_len"] == 100


def test_new_store_takes_the_limits(store_path):
    """Flag "n" (and "c" on a missing file) creates the store with the limits asked for."""
    with mmkv.open(store_path, "c", max_key_len=10) as d:
        assert d.stats()["max_key_len"] == 10
    with mmkv.open(store_path, "n", max_key_len=20) as d:
        assert d.stats()["max_key_len"] == 20
        d._check()
