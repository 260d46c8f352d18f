"""dump and restore round trips, the dump's shape, and get/set/del for shell scripts."""

import base64
import hashlib
import json

import pytest

from _cli import assert_one_line_error, make_store, ok, read_store, run


def test_dump_restore_every_shape_roundtrip_identical(tmp_path, sample_store, sample_items):
    """restore: "builds STORE from a dump" — binary, UTF-8, empty keys and values alike."""
    dump = tmp_path / "d.jsonl"
    ok("dump", sample_store, "-o", dump)
    ok("restore", dump, tmp_path / "copy.mmkv")
    assert read_store(tmp_path / "copy.mmkv") == sample_items


def test_dump_pipe_to_restore_stdin_roundtrip_identical(tmp_path, sample_store, sample_items):
    """`mmkv dump a | mmkv restore - b` works."""
    dump = ok("dump", sample_store)
    ok("restore", "-", tmp_path / "b.mmkv", input=dump)
    assert read_store(tmp_path / "b.mmkv") == sample_items


def test_dump_of_restored_store_same_bytes(tmp_path, sample_store, sample_dump):
    """A dump depends only on the contents: dump(restore(dump(s))) == dump(s)."""
    ok("restore", "-", tmp_path / "b.mmkv", input=sample_dump)
    assert ok("dump", tmp_path / "b.mmkv") == sample_dump


def test_dump_empty_store_header_and_trailer_only(tmp_path):
    """An empty store dumps as a header and a trailer with 0 records, and restores empty."""
    make_store(tmp_path / "e.mmkv", {})
    lines = ok("dump", tmp_path / "e.mmkv").splitlines(keepends=True)
    assert len(lines) == 2
    assert json.loads(lines[0])["mmkv-dump"] == 1
    trailer = json.loads(lines[1])
    assert trailer["records"] == 0
    assert trailer["sha256"] == hashlib.sha256(lines[0]).hexdigest()
    ok("restore", "-", tmp_path / "r.mmkv", input=b"".join(lines))
    assert read_store(tmp_path / "r.mmkv") == {}


def test_dump_records_sorted_bytewise_text_readable(sample_dump, sample_items):
    """"writes every record, sorted by key"; text where UTF-8, base64 otherwise."""
    lines = sample_dump.splitlines()
    records = [json.loads(line) for line in lines[1:-1]]
    keys = [r["k"].encode() if "k" in r else base64.b64decode(r["k64"]) for r in records]
    assert keys == sorted(sample_items)
    by_key = dict(zip(keys, records))
    assert by_key["héllo wörld ✓".encode()] == {"k": "héllo wörld ✓", "v": "ünïcödé 值 🙂"}
    binary = b"\xff\xfe binary key"
    assert by_key[binary] == {"k64": base64.b64encode(binary).decode(), "v64": "AAEC/w=="}
    assert "héllo wörld ✓".encode() in sample_dump     # UTF-8 as is, not \\u escapes


def test_dump_trailer_count_and_sha256_match_lines(sample_dump, sample_items):
    """The trailer carries the record count and the SHA-256 of every line before it."""
    body, _, trailer_line = sample_dump[:-1].rpartition(b"\n")
    trailer = json.loads(trailer_line)
    assert trailer == {"mmkv-dump-end": 1, "records": len(sample_items),
                       "sha256": hashlib.sha256(body + b"\n").hexdigest()}
    assert sample_dump.endswith(b"}\n")


def test_restore_handwritten_dump_accepted(tmp_path):
    """Another program can write a dump from the specification alone (mmkv/_dump.py)."""
    lines = [b'{"mmkv-dump": 1}\n', b'{"v": "1", "k": "a"}\n', b'{"k64":"/w==","v64":""}\n']
    body = b"".join(lines)
    trailer = {"mmkv-dump-end": 1, "records": 2, "sha256": hashlib.sha256(body).hexdigest()}
    ok("restore", "-", tmp_path / "h.mmkv", input=body + json.dumps(trailer).encode() + b"\n")
    assert read_store(tmp_path / "h.mmkv") == {b"a": b"1", b"\xff": b""}


def test_restore_header_limits_large_key_fits(tmp_path):
    """The header's max_key_len/max_value_len carry the source store's limits over."""
    big_key = b"k" * 100_000
    make_store(tmp_path / "s.mmkv", {big_key: b"v"}, max_key_len=200_000)
    ok("restore", "-", tmp_path / "r.mmkv", input=ok("dump", tmp_path / "s.mmkv"))
    assert read_store(tmp_path / "r.mmkv") == {big_key: b"v"}


def test_dump_output_file_equals_stdout(tmp_path, sample_store, sample_dump):
    """`-o FILE` writes the same bytes as stdout, and leaves no temporary file."""
    ok("dump", sample_store, "-o", tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == sample_dump
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "src.mmkv"]


def test_restore_existing_store_refused_unchanged(tmp_path, sample_store, sample_dump):
    """"an existing STORE is refused without --force"."""
    target = make_store(tmp_path / "t.mmkv", {b"old": b"data"})
    before = target.read_bytes()
    assert "--force" in assert_one_line_error(run("restore", "-", target, input=sample_dump))
    assert target.read_bytes() == before


def test_restore_force_existing_store_replaced(tmp_path, sample_store, sample_dump,
                                               sample_items):
    """With --force an existing STORE is replaced as a whole."""
    target = make_store(tmp_path / "t.mmkv", {b"old": b"data"})
    ok("restore", "--force", "-", target, input=sample_dump)
    assert read_store(target) == sample_items
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.mmkv", "t.mmkv"]


@pytest.mark.parametrize("flag,key,value", [
    ([], "héllo", "wörld"),
    (["--hex"], "ff00", "000102"),
    (["-x"], "", ""),
    (["--base64"], "/wA=", "AAEC"),
])
def test_set_get_del_encodings_roundtrip(tmp_path, flag, key, value):
    """get/set/del "for shell scripts", with --hex/--base64 for binary keys and values."""
    store = make_store(tmp_path / "s.mmkv", {})
    decode = {"--hex": bytes.fromhex, "-x": bytes.fromhex,
              "--base64": base64.b64decode}.get(flag[0] if flag else None, str.encode)
    ok("set", *flag, store, key, value)
    assert ok("get", *flag, store, key) == decode(value)
    assert read_store(store) == {decode(key): decode(value)}
    ok("del", *flag, store, key)
    assert read_store(store) == {}


def test_set_value_dash_reads_stdin_binary(tmp_path):
    """A VALUE of "-" is read raw from stdin; get writes the raw bytes back."""
    store = make_store(tmp_path / "s.mmkv", {})
    payload = bytes(range(256)) * 100 + b"\n"
    ok("set", store, "k", "-", input=payload)
    assert ok("get", store, "k") == payload


def test_get_missing_key_exit1_one_line(tmp_path):
    """A missing key exits 1 with one line."""
    store = make_store(tmp_path / "s.mmkv", {b"a": b"1"})
    r = run("get", store, "nope")
    assert "nope" in assert_one_line_error(r)
    assert r.stdout == b""
    assert_one_line_error(run("del", store, "nope"))
    assert read_store(store) == {b"a": b"1"}


def test_set_missing_store_creates_it_as_mmkv_open_does(tmp_path):
    """`mmkv set STORE KEY VALUE` on a missing STORE creates it, as mmkv.open's default
    flag "c" does (and `--create`, kept for old scripts, changes nothing)."""
    ok("set", tmp_path / "n.mmkv", "k", "v")
    assert read_store(tmp_path / "n.mmkv") == {b"k": b"v"}
    ok("set", "--create", tmp_path / "m.mmkv", "k", "w")
    assert read_store(tmp_path / "m.mmkv") == {b"k": b"w"}
