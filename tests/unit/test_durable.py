"""durable=True and sync(): the durability points are real fdatasync calls.

API.md: "With the option durable=True, every write is durable when it returns." and
"sync() returns when every write made so far, by any handle, is on stable storage."
"""
import mmkv
from mmkv._core import lib


def test_durable_every_write_syncs_before_returning(tmp_path):
    """Each write on a durable handle makes at least one fdatasync before it returns."""
    with mmkv.open(tmp_path / "s.mmkv", "n", durable=True) as d:
        for i in range(20):
            before = lib.mmkv_debug_sync_count()
            d[b"k%d" % i] = b"v"
            assert lib.mmkv_debug_sync_count() > before
        before = lib.mmkv_debug_sync_count()
        tail_before = d.stats()["tail"]
        del d[b"k0"]
        assert lib.mmkv_debug_sync_count() == before + 1        # one sync per durable write
        # synced_tail records what the previous durable write made durable
        assert d.stats()["synced_tail"] == tail_before


def test_durable_off_writes_do_not_sync(tmp_path):
    """Without durable=True, writes make no fdatasync (the page cache holds them)."""
    with mmkv.open(tmp_path / "s.mmkv", "n") as d:
        before = lib.mmkv_debug_sync_count()
        for i in range(200):
            d[b"k%d" % i] = b"v"
        assert lib.mmkv_debug_sync_count() == before


def test_sync_records_synced_tail_and_calls_fdatasync(tmp_path):
    """sync() syncs the data and then records how far the log is durable."""
    with mmkv.open(tmp_path / "s.mmkv", "n") as d:
        for i in range(100):
            d[b"k%d" % i] = b"v" * 100
        assert d.stats()["synced_tail"] < d.stats()["tail"]
        before = lib.mmkv_debug_sync_count()
        d.sync()
        assert lib.mmkv_debug_sync_count() >= before + 2
        assert d.stats()["synced_tail"] == d.stats()["tail"]


def test_sync_on_another_handle_covers_this_handles_writes(tmp_path):
    """sync() by one handle makes every write so far, by any handle, durable."""
    path = tmp_path / "s.mmkv"
    with mmkv.open(path, "n") as a, mmkv.open(path) as b:
        a[b"x"] = b"1"
        b.sync()
        assert a.stats()["synced_tail"] == a.stats()["tail"]
