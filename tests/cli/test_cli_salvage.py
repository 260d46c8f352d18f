"""dump of a damaged store: every valid record is salvaged, the loss is counted on stderr,
and the exit status is 3 (a dump was written, but the store is damaged)."""

import json
import re

import pytest

from _cli import make_store, ok, read_store, run

N = 1000


def _model():
    """Keys put, then some overwritten and some deleted: what a replay must reproduce."""
    model = {b"key-%06d" % i: b"value-%06d" % i for i in range(N)}
    for i in range(100):
        model[b"key-%06d" % i] = b"again-%06d" % i
    for i in range(100, 200):
        del model[b"key-%06d" % i]
    return model


def _build(path):
    import mmkv

    with mmkv.open(path, "n") as d:
        for i in range(N):
            d[b"key-%06d" % i] = b"value-%06d" % i
        for i in range(100):
            d[b"key-%06d" % i] = b"again-%06d" % i
        for i in range(100, 200):
            del d[b"key-%06d" % i]
    return path


def _flip(path, needle):
    """Invert 4 bytes in the middle of the one record holding needle (its CRC fails)."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at > 0 and data.find(needle, at + 1) == -1
    for i in range(at + len(needle) - 4, at + len(needle)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _records(dump):
    lines = dump.splitlines()
    assert json.loads(lines[0])["mmkv-dump"] == 1 and "mmkv-dump-end" in json.loads(lines[-1])
    return {json.loads(x)["k"].encode(): json.loads(x)["v"].encode() for x in lines[1:-1]}


@pytest.fixture
def damaged(tmp_path):
    """A store whose record for key-000500 (in the middle of the log) is damaged."""
    path = _build(tmp_path / "dmg.mmkv")
    _flip(path, b"key-000500value-000500")
    return path


def test_check_damaged_record_exit1_report(damaged):
    """`mmkv check`: "exit 0 when sound, 1 with a report when not"."""
    r = run("check", damaged)
    assert r.returncode == 1, r
    assert b"damaged" in r.stdout and b"Traceback" not in r.stderr


def test_dump_damaged_record_others_salvaged_exit3(tmp_path, damaged):
    """"dump of a damaged store salvages every record that is still valid and says how
    many it had to skip"."""
    before = damaged.read_bytes()
    r = run("dump", damaged)
    assert r.returncode == 3, r.stderr
    stderr = r.stderr.decode()
    assert re.search(r"salvaged 899 records, skipped 1 damaged", stderr), stderr
    expected = _model()
    del expected[b"key-000500"]
    assert _records(r.stdout) == expected
    assert damaged.read_bytes() == before             # salvage never writes the store
    ok("restore", "-", tmp_path / "fixed.mmkv", input=r.stdout)
    assert read_store(tmp_path / "fixed.mmkv") == expected


def test_dump_damaged_header_all_records_salvaged_exit3(tmp_path):
    """A store that no longer opens (damaged header) still dumps all of its log."""
    path = _build(tmp_path / "hdr.mmkv")
    data = bytearray(path.read_bytes())
    data[64:68] = bytes(b ^ 0xFF for b in data[64:68])
    path.write_bytes(bytes(data))
    r = run("dump", path)
    assert r.returncode == 3, r.stderr
    assert b"skipped 0 damaged" in r.stderr
    assert _records(r.stdout) == _model()


def test_dump_damaged_output_file_written_exit3(tmp_path, damaged):
    """With -o the salvaged dump is written to FILE and is a valid dump."""
    r = run("dump", damaged, "-o", tmp_path / "out.jsonl")
    assert r.returncode == 3 and r.stdout == b""
    assert len(_records((tmp_path / "out.jsonl").read_bytes())) == 899


def test_dump_sound_store_no_salvage_exit0(tmp_path):
    """A sound store dumps with exit 0 and a silent stderr."""
    path = _build(tmp_path / "ok.mmkv")
    assert _records(ok("dump", path)) == _model()


def test_dump_foreign_file_one_line_exit1(tmp_path):
    """A file that is not a store is not "salvaged": one line, exit 1, nothing on stdout."""
    (tmp_path / "x.mmkv").write_bytes(b"this is not a store\n" * 1000)
    r = run("dump", tmp_path / "x.mmkv")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.count(b"\n") == 1 and b"not an mmkv store" in r.stderr


def test_stat_check_sound_store_exit0(tmp_path):
    """check says sound; stat --json reports counts, sizes, reclaimable space, table load."""
    path = make_store(tmp_path / "s.mmkv", {b"a": b"1", b"b": b"2"})
    assert b"sound" in ok("check", path)
    st = json.loads(ok("stat", "--json", path))
    assert st["count"] == 2 and st["format_version"] >= 1
    assert {"file_size", "reclaimable_bytes", "table_load"} <= set(st)
    assert b"reclaimable" in ok("stat", path)
