"""mmkv.dump and mmkv.restore, the command line's dump and restore as a library (issue 13):
the same format, streamed, checked and atomic, with errors a Python caller can catch."""

import errno
import hashlib
import io
import json

import pytest

import mmkv

ITEMS = {b"": b"", b"a": b"1", b"\xff\x00": b"\x00\x01", "héllo".encode(): b"x" * 70000}


def _store(path, items=ITEMS, **options):
    with mmkv.open(path, "n", **options) as d:
        d.update(items)
    return path


def _dump_bytes(source):
    out = io.BytesIO()
    count = mmkv.dump(source, out)
    return count, out.getvalue()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dump_path_then_restore_roundtrips_every_record(tmp_path):
    """dump writes every record sorted by key; restore rebuilds the same contents."""
    count, data = _dump_bytes(_store(tmp_path / "a.mmkv"))
    assert count == len(ITEMS)
    lines = data.splitlines()
    assert json.loads(lines[0])["mmkv-dump"] == 1 and "mmkv-dump-end" in json.loads(lines[-1])
    assert mmkv.restore(io.BytesIO(data), tmp_path / "b.mmkv") == len(ITEMS)
    with mmkv.open(tmp_path / "b.mmkv", "r") as d:
        assert dict(d.items()) == ITEMS


def test_dump_of_an_open_store_equals_dump_of_its_path(tmp_path):
    """dump takes an open Store as well as a path, with the same bytes."""
    path = _store(tmp_path / "a.mmkv")
    with mmkv.open(path, "r") as d:
        assert _dump_bytes(d) == _dump_bytes(path)


def test_dump_of_a_codec_store_writes_the_stored_bytes(tmp_path):
    """A store opened with codec=json dumps the bytes it holds, not decoded objects."""
    path = tmp_path / "j.mmkv"
    with mmkv.open(path, "n", codec=json) as d:
        d["doc"] = {"a": [1]}
        count, data = _dump_bytes(d)
    assert count == 1 and b'{"k":"doc","v":"{\\"a\\": [1]}"}' in data


def test_restore_existing_path_without_force_refused_unchanged(tmp_path):
    """restore refuses an existing store (mmkv.error, EEXIST) and leaves it as it was."""
    _, data = _dump_bytes(_store(tmp_path / "a.mmkv"))
    target = _store(tmp_path / "t.mmkv", {b"old": b"1"})
    before = _sha(target)
    with pytest.raises(mmkv.error) as info:
        mmkv.restore(io.BytesIO(data), target)
    assert info.value.errno == errno.EEXIST
    assert _sha(target) == before


def test_restore_force_replaces_existing_store(tmp_path):
    """force=True replaces an existing store with the dump's contents."""
    _, data = _dump_bytes(_store(tmp_path / "a.mmkv"))
    target = _store(tmp_path / "t.mmkv", {b"old": b"1"})
    mmkv.restore(io.BytesIO(data), target, force=True)
    with mmkv.open(target, "r") as d:
        assert dict(d.items()) == ITEMS


@pytest.mark.parametrize("cut", ["truncated", "altered"])
def test_restore_bad_dump_raises_dumperror_target_absent(tmp_path, cut):
    """A truncated or altered dump is refused (mmkv.DumpError, a ValueError) and the target
    does not appear, nor any temporary file."""
    _, data = _dump_bytes(_store(tmp_path / "a.mmkv"))
    bad = data[:len(data) // 2] if cut == "truncated" else data.replace(b'"1"', b'"2"')
    with pytest.raises(mmkv.DumpError) as info:
        mmkv.restore(io.BytesIO(bad), tmp_path / "t.mmkv")
    assert isinstance(info.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mmkv"]


def test_restore_endless_line_refused_before_reading_it(tmp_path):
    """Memory stays bounded: a first line longer than any header is refused once it passes
    that length; the rest of the input is not read."""
    class Endless(io.RawIOBase):
        consumed = 0

        def readable(self):
            return True

        def readinto(self, b):
            b[:] = b"\0" * len(b)
            Endless.consumed += len(b)
            assert Endless.consumed < 1 << 30, "read the whole input"
            return len(b)

    with pytest.raises(mmkv.DumpError, match="too long"):
        mmkv.restore(io.BufferedReader(Endless()), tmp_path / "t.mmkv")
    assert Endless.consumed < 1 << 20
    assert not (tmp_path / "t.mmkv").exists()


def test_dump_of_damaged_store_raises_corrupterror_unless_salvage(tmp_path):
    """A damaged store: dump raises mmkv.CorruptError; with salvage=True it dumps every
    record still valid.  (The damaged file is not named *.mmkv: the teardown check skips it.)"""
    path = _store(tmp_path / "d.damaged", {b"key-%04d" % i: b"value-%04d" % i for i in range(100)})
    data = bytearray(path.read_bytes())
    at = data.find(b"value-0042")
    data[at + 6:at + 10] = b"XXXX"              # that record's checksum fails
    path.write_bytes(bytes(data))
    with pytest.raises(mmkv.CorruptError):
        mmkv.dump(path, io.BytesIO())
    out = io.BytesIO()
    count = mmkv.dump(path, out, salvage=True)
    assert count == 99
    mmkv.restore(io.BytesIO(out.getvalue()), tmp_path / "r.mmkv")
    with mmkv.open(tmp_path / "r.mmkv", "r") as d:
        assert b"key-0042" not in d and d[b"key-0041"] == b"value-0041" and len(d) == 99
