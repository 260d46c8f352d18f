"""Unit tests for API.md "Handles": close, `with`, read-only handles, sync, stats, sharing.

Also the mapping clauses that need more than one handle: persistence across reopen, two
handles in one process, and `shelve.Shelf` on top of a store. compact() is not covered here.
"""

import ast
import hashlib
import os
import shelve
import shutil
import tempfile

import pytest

import mmkv


def fingerprint(path):
    """(sha256 of the bytes, size, mtime in ns): what "never modify the file" compares."""
    st = os.stat(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns


def make_store(path, items):
    with mmkv.open(path, "c") as d:
        d.update(items)


ITEMS = {b"a": b"1", b"b": b"2", b"": b"", b"big": b"x" * 10_000}


# --- close and closed handles ---------------------------------------------------------------


def test_close_twice_is_harmless(store_path):
    """`close()` ...; closing twice is harmless."""
    d = mmkv.open(store_path)
    d[b"k"] = b"v"
    d.close()
    d.close()


def test_close_flushes_writes_for_next_open(store_path, check_store):
    """`close()` flushes and releases the handle: a new handle sees every write."""
    d = mmkv.open(store_path)
    d.update(ITEMS)
    del d[b"a"]
    d.close()
    with mmkv.open(store_path, "r") as r:
        assert dict(r.items()) == {k: v for k, v in ITEMS.items() if k != b"a"}
    check_store(store_path)


CLOSED_OPS = {
    "getitem": lambda d: d[b"a"],
    "getitem-missing": lambda d: d[b"missing"],
    "setitem": lambda d: d.__setitem__(b"k", b"v"),
    "delitem": lambda d: d.__delitem__(b"a"),
    "contains": lambda d: b"a" in d,
    "len": len,
    "bool": bool,
    "iter": lambda d: next(iter(d)),
    "list": list,
    "keys": lambda d: d.keys(),
    "values": lambda d: list(d.values()),
    "items": lambda d: list(d.items()),
    "get": lambda d: d.get(b"a"),
    "get-missing": lambda d: d.get(b"missing", b"default"),
    "pop": lambda d: d.pop(b"a"),
    "pop-missing-default": lambda d: d.pop(b"missing", None),
    "popitem": lambda d: d.popitem(),
    "setdefault": lambda d: d.setdefault(b"new", b"v"),
    "update": lambda d: d.update({b"k": b"v"}),
    "clear": lambda d: d.clear(),
    "sync": lambda d: d.sync(),
    "stats": lambda d: d.stats(),
    "eq": lambda d: d == {b"a": b"1"},
}


@pytest.mark.parametrize("op", CLOSED_OPS.values(), ids=CLOSED_OPS.keys())
def test_closed_handle_any_operation_raises_error(store_path, op):
    """Any other operation on a closed handle: `mmkv.error`."""
    make_store(store_path, ITEMS)
    d = mmkv.open(store_path, "w")
    d.close()
    with pytest.raises(mmkv.error):
        op(d)


def test_closed_handle_write_leaves_store_unchanged(store_path, check_store):
    """Any other operation on a closed handle: `mmkv.error` (and nothing is written)."""
    make_store(store_path, ITEMS)
    d = mmkv.open(store_path, "w")
    d.close()
    with pytest.raises(mmkv.error):
        d[b"k"] = b"v"
    with mmkv.open(store_path, "r") as r:
        assert dict(r.items()) == ITEMS
    check_store(store_path)


def test_closed_handle_live_iterator_raises_error(store_path):
    """Any other operation on a closed handle: `mmkv.error`, also from an iterator made before."""
    with mmkv.open(store_path) as d:
        d.update((b"%05d" % i, b"v") for i in range(5000))
    d = mmkv.open(store_path, "w")
    it = iter(d)
    next(it)
    d.close()
    with pytest.raises(mmkv.error):
        list(it)


def test_closed_read_only_handle_operation_raises_error(store_path):
    """Any other operation on a closed handle (an `"r"` one too): `mmkv.error`."""
    make_store(store_path, ITEMS)
    d = mmkv.open(store_path, "r")
    d.close()
    with pytest.raises(mmkv.error):
        d[b"a"]


# --- with -----------------------------------------------------------------------------------


def test_with_returns_the_store(store_path):
    """`with mmkv.open(path) as d:` binds the store itself."""
    handle = mmkv.open(store_path)
    with handle as d:
        assert d is handle


def test_with_exit_closes_handle(store_path, check_store):
    """`with mmkv.open(path) as d:` closes on exit."""
    with mmkv.open(store_path) as d:
        d[b"k"] = b"v"
    with pytest.raises(mmkv.error):
        d[b"k"]
    check_store(store_path)


def test_with_exit_by_exception_closes_handle_and_propagates(store_path):
    """`with mmkv.open(path) as d:` closes on exit, also when the body raises."""
    with pytest.raises(RuntimeError, match="boom"):
        with mmkv.open(store_path) as d:
            d[b"k"] = b"v"
            raise RuntimeError("boom")
    with pytest.raises(mmkv.error):
        len(d)
    with mmkv.open(store_path, "r") as r:
        assert r[b"k"] == b"v"


def test_with_body_closing_handle_exit_is_harmless(store_path):
    """Closing twice is harmless: `close()` inside a `with` body, then the exit."""
    with mmkv.open(store_path) as d:
        d.close()


# --- read-only handles ------------------------------------------------------------------------


READ_ONLY_WRITES = {
    "setitem-new": lambda d: d.__setitem__(b"new", b"v"),
    "setitem-existing": lambda d: d.__setitem__(b"a", b"changed"),
    "setitem-same-value": lambda d: d.__setitem__(b"a", b"1"),
    "delitem": lambda d: d.__delitem__(b"a"),
    "pop": lambda d: d.pop(b"a"),
    "pop-with-default": lambda d: d.pop(b"a", None),
    "popitem": lambda d: d.popitem(),
    "setdefault-missing": lambda d: d.setdefault(b"new", b"v"),
    "update-dict": lambda d: d.update({b"new": b"v"}),
    "update-kwargs": lambda d: d.update(new=b"v"),
    "clear": lambda d: d.clear(),
}


@pytest.mark.parametrize("op", READ_ONLY_WRITES.values(), ids=READ_ONLY_WRITES.keys())
def test_read_only_handle_write_raises_error(store_path, open_store, op):
    """`"r"` handles raise `mmkv.error` on every write."""
    make_store(store_path, ITEMS)
    d = open_store(store_path, "r")
    with pytest.raises(mmkv.error):
        op(d)
    assert dict(d.items()) == ITEMS


def test_read_only_handle_setdefault_present_and_pop_missing_need_no_write(store_path):
    """What changes nothing is no write: on an `"r"` handle, as on a dbm opened "r",
    `setdefault` of a present key returns its value and `pop` of a missing key returns the
    default (KeyError without one); the file is not modified."""
    make_store(store_path, ITEMS)
    before = fingerprint(store_path)
    with mmkv.open(store_path, "r") as d:
        assert d.setdefault(b"a", b"other") == ITEMS[b"a"]
        assert d.pop(b"missing", b"dflt") == b"dflt"
        assert d.pop(b"missing", None) is None
        with pytest.raises(KeyError):
            d.pop(b"missing")
        assert dict(d.items()) == ITEMS
    assert fingerprint(store_path) == before


@pytest.mark.parametrize("op", READ_ONLY_WRITES.values(), ids=READ_ONLY_WRITES.keys())
def test_read_only_handle_write_leaves_file_unchanged(store_path, op):
    """`"r"` handles ... never modify the file (bytes and mtime)."""
    make_store(store_path, ITEMS)
    before = fingerprint(store_path)
    with mmkv.open(store_path, "r") as d:
        with pytest.raises(mmkv.error):
            op(d)
        assert fingerprint(store_path) == before
    assert fingerprint(store_path) == before


def test_read_only_handle_reads_and_sync_leave_file_unchanged(store_path):
    """`"r"` handles never modify the file: open, every read, sync and close."""
    make_store(store_path, ITEMS)
    before = fingerprint(store_path)
    with mmkv.open(store_path, "r") as d:
        assert dict(d.items()) == ITEMS
        assert d.keys() and list(d) and len(d) == len(ITEMS)
        assert d.get(b"missing") is None
        d.stats()
        d.sync()
    assert fingerprint(store_path) == before


def test_read_only_handle_on_copied_store_leaves_copy_unchanged(store_path, tmp_path):
    """`"r"` handles never modify the file, even a copy of a store (a new inode) opened first."""
    make_store(store_path, ITEMS)
    copy = tmp_path / "copy.mmkv"
    shutil.copyfile(store_path, copy)
    before = fingerprint(copy)
    with mmkv.open(copy, "r") as d:
        assert dict(d.items()) == ITEMS
    assert fingerprint(copy) == before


def test_read_only_open_creates_no_file_in_directory(store_path):
    """`"r"` works in a directory the process cannot write: it creates nothing there."""
    make_store(store_path, ITEMS)
    before = sorted(os.listdir(store_path.parent))
    with mmkv.open(store_path, "r") as d:
        assert sorted(os.listdir(store_path.parent)) == before
        assert d[b"a"] == b"1"
    assert sorted(os.listdir(store_path.parent)) == before


@pytest.fixture
def read_only_tree():
    """A store 0o444 in a directory 0o555, under a 0o755 directory of /tmp (so any user can reach it)."""
    base = tempfile.mkdtemp(prefix="mmkv-readonly-")
    os.chmod(base, 0o755)
    directory = os.path.join(base, "ro")
    os.mkdir(directory)
    path = os.path.join(directory, "s.mmkv")
    make_store(path, ITEMS)
    os.chmod(path, 0o444)
    os.chmod(directory, 0o555)
    yield path
    os.chmod(directory, 0o755)
    shutil.rmtree(base)


def test_read_only_handle_chmod_444_file_in_555_dir_reads(read_only_tree):
    """`"r"` works on a file (and directory) that the process cannot write (read part, any user)."""
    before = fingerprint(read_only_tree)
    with mmkv.open(read_only_tree, "r") as d:
        assert dict(d.items()) == ITEMS
        d.sync()
    assert fingerprint(read_only_tree) == before


def _read_as_unprivileged(path):
    """In a forked child that gave up root (uid/gid 65534), open `path` with "r" and read it.

    Returns (tag, detail): ("ok", (writable, items)), ("setuid-failed", msg) or ("error", msg).
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(rfd)
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            except OSError as exc:
                result = ("setuid-failed", repr(exc))
            else:
                writable = os.access(path, os.W_OK) or os.access(os.path.dirname(path), os.W_OK)
                try:
                    with mmkv.open(path, "r") as d:
                        items = dict(d.items())
                        d.sync()
                    result = ("ok", (writable, items))
                except BaseException as exc:  # report, whatever it is
                    result = ("error", repr(exc))
            os.write(wfd, repr(result).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    return ast.literal_eval(b"".join(chunks).decode())


def test_read_only_handle_unwritable_file_and_dir_reads_without_privilege(read_only_tree):
    """`"r"` works on a file (and directory) that the process cannot write.

    As root the kernel would let any open succeed, so the read runs in a child that
    dropped to uid 65534; as another user it runs in this process.
    """
    before = fingerprint(read_only_tree)
    if os.geteuid() == 0:
        tag, detail = _read_as_unprivileged(read_only_tree)
        if tag == "setuid-failed":
            pytest.skip(f"cannot drop root privileges here: {detail}")
        assert tag == "ok", f"'r' open as an unprivileged user failed: {detail}"
        writable, items = detail
    else:
        writable = os.access(read_only_tree, os.W_OK)
        with mmkv.open(read_only_tree, "r") as d:
            items = dict(d.items())
    assert not writable, "precondition: the file and its directory must be unwritable"
    assert items == ITEMS
    assert fingerprint(read_only_tree) == before


# --- sync and stats ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["r", "w", "c", "n"])
def test_sync_allowed_on_every_handle(store_path, open_store, flag):
    """`sync()` is allowed on every handle."""
    make_store(store_path, ITEMS)
    d = open_store(store_path, flag)
    assert d.sync() is None


def test_sync_after_writes_keeps_contents(db, store_path):
    """`sync()` returns when every write so far is on stable storage; the contents are unchanged."""
    db.update(ITEMS)
    db.sync()
    assert dict(db.items()) == ITEMS
    with mmkv.open(store_path, "r") as r:
        assert dict(r.items()) == ITEMS


def test_stats_returns_dict_with_required_keys(db):
    """`stats()` returns a dict with at least `count`, `file_size` and `reclaimable_bytes`."""
    stats = db.stats()
    assert isinstance(stats, dict)
    assert {"count", "file_size", "reclaimable_bytes"} <= stats.keys()


def test_stats_has_table_capacity_and_tail(db):
    """`stats()` also reports `table_capacity` and `tail` (the Python interface)."""
    stats = db.stats()
    assert {"table_capacity", "tail"} <= stats.keys()
    assert stats["table_capacity"] > 0
    assert 0 < stats["tail"] <= stats["file_size"]


def test_stats_count_equals_len(db):
    """`stats()["count"]` is the number of keys."""
    assert db.stats()["count"] == 0
    db.update(ITEMS)
    del db[b"a"]
    assert db.stats()["count"] == len(db) == len(ITEMS) - 1


def test_stats_file_size_equals_file_length(db, store_path):
    """`stats()["file_size"]` is the size of the store's file."""
    db.update(ITEMS)
    db[b"large"] = b"y" * (3 << 20)
    assert db.stats()["file_size"] == os.path.getsize(store_path)


def test_stats_reclaimable_bytes_grow_after_overwrite(db):
    """`reclaimable_bytes`: space of overwritten data counts."""
    db[b"k"] = b"v" * 1000
    before = db.stats()["reclaimable_bytes"]
    db[b"k"] = b"w" * 1000
    assert db.stats()["reclaimable_bytes"] >= before + 1000


def test_stats_reclaimable_bytes_grow_after_delete(db):
    """`reclaimable_bytes`: space of deleted data counts."""
    db[b"k"] = b"v" * 1000
    before = db.stats()["reclaimable_bytes"]
    del db[b"k"]
    assert db.stats()["reclaimable_bytes"] >= before + 1000


# --- persistence and sharing within one process -----------------------------------------------


def test_reopen_after_close_keeps_every_write(store_path, check_store):
    """A persistent key-value store: data written, overwritten and deleted survives close/reopen."""
    model = {}
    with mmkv.open(store_path) as d:
        for i in range(2000):
            d[b"k%d" % i] = model[b"k%d" % i] = b"v%d" % i
        for i in range(0, 2000, 3):
            del d[b"k%d" % i]
            del model[b"k%d" % i]
        for i in range(1, 2000, 5):
            d[b"k%d" % i] = model[b"k%d" % i] = b"new" * i
        d[b"big"] = model[b"big"] = bytes(range(256)) * 8192
    with mmkv.open(store_path, "r") as d:
        assert d == model
        assert len(d) == len(model)
    check_store(store_path)


def test_reopen_many_times_accumulates_writes(store_path, check_store):
    """Data persists across repeated close/reopen cycles with "c" and "w"."""
    for i in range(10):
        with mmkv.open(store_path, "c" if i % 2 == 0 else "w") as d:
            assert len(d) == i
            d[b"%d" % i] = b"round %d" % i
    with mmkv.open(store_path, "r") as d:
        assert d == {b"%d" % i: b"round %d" % i for i in range(10)}
    check_store(store_path)


def test_two_handles_see_each_others_writes_immediately(db, open_store, store_path):
    """Once a write has returned, every read that starts later sees it (two handles, one process)."""
    other = open_store(store_path, "w")
    db[b"k"] = b"from db"
    assert other[b"k"] == b"from db"
    other[b"k"] = b"from other"
    assert db[b"k"] == b"from other"
    del db[b"k"]
    assert b"k" not in other
    other.update(ITEMS)
    assert db == ITEMS
    assert len(db) == len(other) == len(ITEMS)
    db.clear()
    assert len(other) == 0
    assert other.keys() == []


def test_two_handles_see_growth_of_the_file(db, open_store, store_path):
    """A read that starts after a write returned sees it, even when the write grew the file."""
    other = open_store(store_path, "w")
    assert other.get(b"probe") is None
    big = bytes(range(256)) * 4096
    for i in range(8):
        db[b"big%d" % i] = big
    assert all(other[b"big%d" % i] == big for i in range(8))
    for i in range(3000):
        other[b"n%d" % i] = b"v"
    assert len(db) == 3008
    assert db[b"n2999"] == b"v"


def test_read_only_handle_sees_writes_of_other_handle(db, open_store, store_path):
    """Every read that starts later, in any handle, sees a returned write (an `"r"` handle too)."""
    db[b"k"] = b"1"
    reader = open_store(store_path, "r")
    assert reader[b"k"] == b"1"
    db[b"k"] = b"2"
    db[b"new"] = b"3"
    assert reader[b"k"] == b"2"
    assert reader[b"new"] == b"3"
    del db[b"k"]
    assert b"k" not in reader


def test_closing_one_handle_leaves_the_other_working(db, store_path, check_store):
    """`close()` releases only that handle; another handle on the store keeps working."""
    other = mmkv.open(store_path, "w")
    other[b"k"] = b"v"
    other.close()
    assert db[b"k"] == b"v"
    db[b"k2"] = b"v2"
    check_store(db)


# --- shelve -----------------------------------------------------------------------------------


def test_shelf_round_trips_python_objects(store_path, check_store):
    """`shelve.Shelf(mmkv.open(path))` works as a persistent dict of Python objects."""
    objects = {"list": [1, 2, [3]], "dict": {"x": (1.5, None)}, "ключ": "значение", "": b"bytes"}
    with shelve.Shelf(mmkv.open(store_path)) as shelf:
        for k, v in objects.items():
            shelf[k] = v
        del shelf["list"]
        shelf["list"] = [4, 5]
    with shelve.Shelf(mmkv.open(store_path, "r")) as shelf:
        assert dict(shelf) == {**objects, "list": [4, 5]}
        assert "dict" in shelf and "missing" not in shelf
        assert shelf.get("missing") is None
        assert sorted(shelf) == sorted(objects)
        assert len(shelf) == len(objects)
    check_store(store_path)


def test_shelf_writeback_persists_mutated_objects(store_path):
    """`shelve.Shelf(mmkv.open(path), writeback=True)` writes mutated cached objects back on close."""
    with shelve.Shelf(mmkv.open(store_path), writeback=True) as shelf:
        shelf["items"] = []
        shelf["items"].append(1)
        shelf["items"].append(2)
    with shelve.Shelf(mmkv.open(store_path, "r")) as shelf:
        assert shelf["items"] == [1, 2]


def test_handle_address_cannot_be_replaced_or_deleted(db):
    """The C base holds the core's handle; Python code cannot point an open Store at
    another address (a crash) or drop it: AttributeError, and the store keeps working."""
    db[b"a"] = b"1"
    with pytest.raises(AttributeError):
        db._addr = 5
    with pytest.raises(AttributeError):
        del db._addr
    assert db[b"a"] == b"1"
