"""Every way of damaging a dump is refused by restore, with one line and exit 1, and the
target is untouched: an absent STORE stays absent, an existing one (--force) byte-identical,
and no temporary file is left beside it."""

import hashlib
import json

import pytest

from _cli import assert_one_line_error, make_store, run


def _lines(dump):
    return dump.splitlines(keepends=True)


def _retrail(lines, **change):
    """Recompute a valid trailer for the lines before it (a consistent forgery)."""
    body = b"".join(lines[:-1])
    trailer = {"mmkv-dump-end": 1, "records": len(lines) - 2,
               "sha256": hashlib.sha256(body).hexdigest(), **change}
    return body + json.dumps(trailer).encode() + b"\n"


def _alter(dump, index, old, new):
    lines = _lines(dump)
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new, 1)
    return b"".join(lines)


def _swap(dump):
    lines = _lines(dump)
    lines[2], lines[3] = lines[3], lines[2]
    return b"".join(lines)


def _drop(dump, index):
    lines = _lines(dump)
    del lines[index]
    return b"".join(lines)


def _only(dump, record):
    """The dump's header, one record line, and a trailer that matches them."""
    return _retrail([_lines(dump)[0], record, b"(trailer)\n"])


def _dup(dump, index):
    lines = _lines(dump)
    lines.insert(index, lines[index])
    return b"".join(lines)


DAMAGE = {
    "truncated_mid_line": lambda d: d[:len(d) // 2],
    "truncated_before_trailer": lambda d: b"".join(_lines(d)[:-1]),
    "truncated_last_newline": lambda d: d[:-1],
    "empty_input": lambda d: b"",
    "record_line_removed": lambda d: _drop(d, 3),
    "first_record_removed": lambda d: _drop(d, 1),
    "lines_swapped": _swap,
    "record_duplicated": lambda d: _dup(d, 2),
    "value_byte_altered": lambda d: d.replace(b"plain text", b"plain texT"),
    "header_byte_altered": lambda d: _alter(d, 0, b"65535", b"65534"),
    "trailer_count_wrong": lambda d: _alter(d, -1, b'"records":', b'"records":1'),
    "trailer_checksum_wrong": lambda d: _alter(d, -1, b'"sha256":"', b'"sha256":"0'),
    "trailer_missing_fields": lambda d: b"".join(_lines(d)[:-1]) + b'{"mmkv-dump-end":1}\n',
    "header_missing": lambda d: b"".join(_lines(d)[1:]),
    "header_version_2": lambda d: _alter(d, 0, b'"mmkv-dump":1', b'"mmkv-dump":2'),
    "garbage_appended": lambda d: d + b"garbage\n",
    "second_trailer_appended": lambda d: d + _lines(d)[-1],
    "crlf_line_ends": lambda d: d.replace(b"\n", b"\r\n"),
    "not_json_line": lambda d: _retrail(_lines(d)[:2] + [b"not json\n"] + _lines(d)[2:]),
    "blank_line": lambda d: _retrail(_lines(d)[:2] + [b"\n"] + _lines(d)[2:]),
    "unknown_field": lambda d: _only(d, b'{"k":"a","v":"1","x":1}\n'),
    "duplicate_json_name": lambda d: _only(d, b'{"k":"a","k":"b","v":""}\n'),
    "bad_base64": lambda d: _only(d, b'{"k64":"@@@@","v":""}\n'),
    "key_and_k64": lambda d: _only(d, b'{"k":"a","k64":"YQ==","v":""}\n'),
    "no_value": lambda d: _only(d, b'{"k":"a"}\n'),
    "lone_surrogate": lambda d: _only(d, b'{"k":"\\ud800","v":""}\n'),
    "not_utf8": lambda d: _only(d, b'{"k":"\xff","v":""}\n'),
    "value_not_string": lambda d: _only(d, b'{"k":"a","v":1}\n'),
    "record_is_array": lambda d: _only(d, b'["a","b"]\n'),
    "two_objects_one_line": lambda d: _only(d, b'{"k":"a","v":""}{}\n'),
    "header_limit_absurd": lambda d: _retrail([b'{"mmkv-dump":1,"max_key_len":-5}\n']
                                              + _lines(d)[1:]),
    "forged_order": lambda d: _retrail(_lines(d)[:1] + _lines(d)[1:-1][::-1]
                                       + [_lines(d)[-1]]),
}


@pytest.fixture
def text_dump(tmp_path):
    """A dump of a small store with text records (so edits keep each line valid JSON)."""
    make_store(tmp_path / "src.mmkv", {f"key-{i:03d}": f"value {i}" for i in range(20)}
               | {"ascii": "plain text", b"\xff": b"\x00"})
    r = run("dump", tmp_path / "src.mmkv")
    assert r.returncode == 0
    return r.stdout


def _others(directory, *keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_restore_damaged_dump_refused_store_absent(tmp_path, text_dump, damage):
    """"A truncated or altered dump is refused ...; STORE is then untouched" (absent)."""
    bad = DAMAGE[damage](text_dump)
    assert bad != text_dump
    target = tmp_path / "new" / "t.mmkv"
    target.parent.mkdir()
    message = assert_one_line_error(run("restore", "-", target, input=bad))
    assert "nothing restored" in message
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_restore_force_damaged_dump_refused_store_identical(tmp_path, text_dump, damage):
    """With --force over an existing STORE, a refused dump leaves it byte-identical."""
    bad_path = tmp_path / "bad.jsonl"
    bad_path.write_bytes(DAMAGE[damage](text_dump))
    target = make_store(tmp_path / "t.mmkv", {b"keep": b"me"})
    before = target.read_bytes()
    assert_one_line_error(run("restore", "--force", bad_path, target))
    assert target.read_bytes() == before
    assert _others(tmp_path, "bad.jsonl", "src.mmkv") == ["t.mmkv"]


def test_restore_intact_dump_control_accepted(tmp_path, text_dump):
    """The undamaged dump the damage cases start from restores (the cases are not vacuous)."""
    r = run("restore", "-", tmp_path / "ok.mmkv", input=text_dump)
    assert r.returncode == 0, r.stderr
