"""Unit tests for API.md "The store is a mapping": repr names the path, the flag letter and
whether the handle is closed; a Store pickles by path and flag and reopens the same store,
so it can be handed to multiprocessing pools under every start method."""

import json
import multiprocessing
import os
import pickle
import sys

import pytest

import mmkv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _pickle_workers  # noqa: E402


@pytest.mark.parametrize("flag", ["r", "w", "c", "n"])
def test_repr_names_path_flag_letter_and_open_state(store_path, flag):
    """API.md: "repr(d) names the path, the flag letter and whether the handle is closed"."""
    mmkv.open(store_path, "c").close()
    d = mmkv.open(store_path, flag)
    text = repr(d)
    assert str(store_path) in text and f"flag={flag!r}" in text and "open" in text
    assert "closed" not in text
    d.close()
    text = repr(d)
    assert str(store_path) in text and f"flag={flag!r}" in text and "closed" in text


def test_pickle_roundtrip_reopens_the_same_store(store_path):
    """API.md: "A Store pickles by path and flag (it reopens the same store)"."""
    with mmkv.open(store_path) as d:
        d["a"] = b"1"
        with pickle.loads(pickle.dumps(d)) as e:
            assert isinstance(e, mmkv.Store) and e is not d
            assert e["a"] == b"1"
            e["b"] = b"2"
            assert d["b"] == b"2"


def test_pickle_of_flag_n_store_reopens_without_emptying(store_path):
    """API.md: flag "n" makes a new empty store once; a pickle reopens the same store, so
    its contents survive the round trip."""
    with mmkv.open(store_path, "n") as d:
        d["kept"] = b"yes"
        blob = pickle.dumps(d)
        with pickle.loads(blob) as e, pickle.loads(blob) as f:
            assert e["kept"] == b"yes" and f["kept"] == b"yes" and len(d) == 1


def test_pickle_of_read_only_store_stays_read_only(store_path):
    """API.md: ""r" handles raise mmkv.error on every write"; the flag travels."""
    with mmkv.open(store_path) as d:
        d["a"] = b"1"
    with mmkv.open(store_path, "r") as d, pickle.loads(pickle.dumps(d)) as e:
        assert e["a"] == b"1"
        with pytest.raises(mmkv.error):
            e["a"] = b"2"


def test_pickle_keeps_options_and_codec(store_path):
    """API.md: a pickled Store reopens with its options and its codec (json by name)."""
    with mmkv.open(store_path, max_value_len=1000, codec=json) as d:
        d["doc"] = {"x": 1}
        with pickle.loads(pickle.dumps(d)) as e:
            assert e["doc"] == {"x": 1}
            with pytest.raises(ValueError):
                e["big"] = "x" * 2000
            assert "big" not in d


def test_pickle_from_another_working_directory_finds_the_store(tmp_path, monkeypatch):
    """A relative path is pickled absolute: the receiver may have another working directory."""
    monkeypatch.chdir(tmp_path)
    with mmkv.open("rel.mmkv") as d:
        d["a"] = b"1"
        blob = pickle.dumps(d)
    monkeypatch.chdir("/")
    with pickle.loads(blob) as e:
        assert e["a"] == b"1"


def test_pickle_of_closed_store_is_mmkv_error(store_path):
    """API.md: "Any other operation on a closed handle: mmkv.error"."""
    d = mmkv.open(store_path)
    d.close()
    with pytest.raises(mmkv.error):
        pickle.dumps(d)


def test_pickle_of_shared_memory_store_reopens_it():
    """API.md: open_shm stores pickle the same way (by name and flag)."""
    name = f"mmkv-test-pickle-{os.getpid()}"
    try:
        with mmkv.open_shm(name, "n") as d:
            d["a"] = b"1"
            with pickle.loads(pickle.dumps(d)) as e:
                assert e["a"] == b"1" and "shm" in repr(e)
    finally:
        mmkv.unlink_shm(name)


@pytest.mark.multiproc
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("codec", [None, json], ids=["bytes", "json"])
def test_pool_workers_write_to_the_same_store_under_start_method(store_path, method, codec):
    """API.md: "so it can be handed to multiprocessing pools under every start method"."""
    options = {} if codec is None else {"codec": codec}
    ctx = multiprocessing.get_context(method)
    with mmkv.open(store_path, "n", **options) as d:
        with ctx.Pool(2) as pool:
            results = pool.starmap(_pickle_workers.add_keys,
                                   [(d, i * 50, 50) for i in range(4)])
            assert pool.apply(_pickle_workers.read_value, (d, "k00007")) == d["k00007"]
        assert {pid for pid, _, _ in results} - {os.getpid()}, "ran in other processes"
        assert all(str(store_path) in text for _, text, _ in results)
        assert {kind for _, _, kind in results} == {type(d).__name__}
        assert d.incr("counter", 0) == 200
        assert len(d) == 201
        expected = {"i": 7} if codec else b"7"
        assert d["k00007"] == expected
