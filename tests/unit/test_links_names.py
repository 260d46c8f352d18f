"""Symbolic links, hard links and long names (API.md, "Containers, links and names").

"A store opened through a symbolic link is the file the link names: compaction replaces
that file and leaves the link a link.  A store with several hard links cannot be replaced
by a rename: compact() on it raises mmkv.error and changes nothing, and it is never
compacted automatically.  Every name the filesystem accepts works, up to its longest
(NAME_MAX), for creating, compacting and restoring.  Automatic compaction never fails
silently: stats()["compaction_error"] holds the last failure's message (or None), and it
is retried later."""

import errno
import io
import os

import pytest

import mmkv

MIB = 1 << 20


def _contents(d):
    return {k: d[k] for k in d}


def _long_name(tmp_path, total=255):
    """A file name of exactly `total` bytes (NAME_MAX on Linux file systems is 255)."""
    name = "n" * (total - len(".mmkv")) + ".mmkv"
    assert len(os.fsencode(name)) == total
    return tmp_path / name


def test_symlink_compact_replaces_target_and_keeps_link(tmp_path):
    """Compaction through a symbolic link replaces the file the link names; the link stays a
    link and the target opens, even read-only, with the contents."""
    real = tmp_path / "real.mmkv"
    link = tmp_path / "link.mmkv"
    with mmkv.open(real) as d:
        d[b"seed"] = b"1"
    link.symlink_to("real.mmkv")
    with mmkv.open(link) as d:
        for i in range(50):
            d[b"k%d" % (i % 5)] = b"v%d" % i
        ino = os.stat(real).st_ino
        d.compact()
        assert d.stats()["reclaimable_bytes"] == 0
        d[b"after"] = b"2"
        expected = _contents(d)
        d._check()
    assert link.is_symlink() and os.readlink(link) == "real.mmkv"
    assert os.stat(real).st_ino != ino, "the file the link names was not replaced"
    with mmkv.open(real, "r") as r:
        assert _contents(r) == expected
        r._check()
    with mmkv.open(link, "r") as r:
        assert _contents(r) == expected


def test_symlink_flag_n_replaces_target_and_keeps_link(tmp_path):
    """Flag "n" through a symbolic link makes the named file a new empty store; the link
    stays a link to it."""
    real = tmp_path / "real.mmkv"
    link = tmp_path / "link.mmkv"
    with mmkv.open(real) as d:
        d[b"old"] = b"1"
    link.symlink_to(real)
    with mmkv.open(link, "n") as d:
        assert len(d) == 0
        d[b"new"] = b"2"
        d._check()
    assert link.is_symlink()
    with mmkv.open(real, "r") as r:
        assert _contents(r) == {b"new": b"2"}


def test_symlink_other_handle_follows_compaction(tmp_path):
    """A handle on the target and one on the link see one store across a compaction: the
    handle on the target moves to the compacted file, with the writes made through the
    link."""
    real = tmp_path / "real.mmkv"
    link = tmp_path / "sub" / "link.mmkv"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(real, link.parent))
    with mmkv.open(real) as a, mmkv.open(link) as b:
        b[b"x"] = b"1"
        b.compact()
        b[b"y"] = b"2"
        assert a[b"x"] == b"1" and a[b"y"] == b"2"
        a[b"z"] = b"3"
        assert b[b"z"] == b"3"
        a._check()
        b._check()
    assert link.is_symlink()


def test_hard_linked_compact_raises_and_changes_nothing(tmp_path):
    """compact() on a store whose file has two hard links raises mmkv.error naming the
    cause; both names still open the same, unchanged store."""
    path = tmp_path / "a.mmkv"
    other = tmp_path / "b.mmkv"
    with mmkv.open(path) as d:
        for i in range(100):
            d[b"k%d" % (i % 7)] = b"v%d" % i
        expected = _contents(d)
    os.link(path, other)
    ino = os.stat(path).st_ino
    with mmkv.open(path) as d:
        before = d.stats()
        with pytest.raises(mmkv.error) as info:
            d.compact()
        assert info.value.errno == errno.EMLINK
        assert "hard link" in str(info.value)
        assert d.stats()["file_size"] == before["file_size"]
        assert d.stats()["reclaimable_bytes"] == before["reclaimable_bytes"]
        assert _contents(d) == expected
        d._check()
    assert os.stat(path).st_ino == ino == os.stat(other).st_ino
    for name in (path, other):
        with mmkv.open(name, "r") as r:
            assert _contents(r) == expected
            r._check()


def test_hard_linked_store_not_replaced_by_flag_n_or_restore_force(tmp_path):
    """"A store with several hard links cannot be replaced by a rename": flag "n" and
    restore(force=True) raise mmkv.error (EMLINK) and leave both names holding the store."""
    path, other = tmp_path / "a.mmkv", tmp_path / "b.mmkv"
    with mmkv.open(path, "n") as d:
        d[b"k"] = b"v"
    os.link(path, other)
    ino = os.stat(path).st_ino
    with pytest.raises(mmkv.error) as info:
        mmkv.open(path, "n")
    assert info.value.errno == errno.EMLINK and "hard link" in str(info.value)
    dump = io.BytesIO()
    with mmkv.open(path, "r") as d:
        mmkv.dump(d, dump)
    dump.seek(0)
    with pytest.raises(mmkv.error) as info:
        mmkv.restore(dump, other, force=True)
    assert info.value.errno == errno.EMLINK and "hard link" in str(info.value)
    assert os.stat(path).st_ino == ino == os.stat(other).st_ino
    for name in (path, other):
        with mmkv.open(name, "r") as r:
            assert dict(r.items()) == {b"k": b"v"}
    assert sorted(os.listdir(tmp_path)) == ["a.mmkv", "b.mmkv"]   # no temporary left


def test_hard_linked_never_auto_compacted_error_reported_then_retried(tmp_path):
    """A hard-linked store is never compacted automatically; the refusal is reported in
    stats()["compaction_error"], and once the second name is gone a later write compacts
    (the error goes back to None)."""
    path = tmp_path / "a.mmkv"
    other = tmp_path / "b.mmkv"
    value = b"x" * MIB
    with mmkv.open(path) as d:
        d[b"k"] = b"0"
        assert d.stats()["compaction_error"] is None
        os.link(path, other)
        ino, epoch = os.stat(path).st_ino, d.stats()["epoch"]
        for i in range(24):
            d[b"big"] = value
        st = d.stats()
        assert os.stat(path).st_ino == ino, "a hard-linked store was compacted"
        assert st["epoch"] == epoch
        assert st["reclaimable_bytes"] > 16 * MIB
        assert st["compaction_error"] is not None and "hard link" in st["compaction_error"]
        os.unlink(other)
        for i in range(24):
            d[b"big"] = value
        st = d.stats()
        assert st["epoch"] > epoch, "no retry after the cause went away"
        assert st["compaction_error"] is None
        assert st["file_size"] < 12 * MIB
        assert d[b"k"] == b"0" and d[b"big"] == value
        d._check()


@pytest.mark.parametrize("length", [231, 240, 250, 255])
def test_long_name_create_n_compact_reopen(tmp_path, length):
    """A store whose name is up to NAME_MAX bytes long is created with "n", compacted and
    reopened."""
    path = _long_name(tmp_path, length)
    with mmkv.open(path, "n") as d:
        for i in range(40):
            d[b"k%d" % (i % 4)] = b"v%d" % i
        d.compact()
        assert d.stats()["reclaimable_bytes"] == 0
        expected = _contents(d)
        d._check()
    with mmkv.open(path, "n") as d:      # "n" over an existing long-named store
        assert len(d) == 0
        d.update(expected)
    with mmkv.open(path, "r") as d:
        assert _contents(d) == expected
        d._check()
    assert sorted(os.listdir(tmp_path)) == [path.name], "a temporary file was left behind"


def test_long_name_auto_compaction_keeps_file_small(tmp_path):
    """After 200 overwrites of 1 MiB, a store with a 255-byte name has been compacted
    automatically: the file stays small and no compaction error is reported."""
    path = _long_name(tmp_path)
    value = b"y" * MIB
    with mmkv.open(path, "n") as d:
        for i in range(200):
            d[b"big"] = value[:-1] + bytes([i % 256])
        st = d.stats()
        assert st["compaction_error"] is None
        assert os.stat(path).st_size < 16 * MIB, st
        assert st["reclaimable_bytes"] < 16 * MIB
        assert d[b"big"] == value[:-1] + bytes([199])
        d._check()
