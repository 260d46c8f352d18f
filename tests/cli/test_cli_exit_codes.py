"""Exit codes and error lines: usage errors exit 2 with one line, a missing or foreign store is
one line and exit 1, no traceback ever; `python -m mmkv` behaves exactly as `mmkv`."""

import json

import pytest

from _cli import assert_one_line_error, make_store, ok, run

USAGE = [
    [],
    ["frobnicate"],
    ["dump"],
    ["dump", "a", "b"],
    ["restore", "only-one"],
    ["get", "s.mmkv"],
    ["set", "s.mmkv", "k"],
    ["get", "--hex", "--base64", "s.mmkv", "k"],
    ["get", "--hex", "s.mmkv", "not-hex"],
    ["set", "--base64", "s.mmkv", "k", "!!!"],
    ["stat", "s.mmkv", "--bogus"],
    ["demo", "--rounds", "many"],
]


@pytest.mark.parametrize("args", USAGE, ids=lambda a: " ".join(a) or "none")
def test_usage_error_exit2_one_line(tmp_path, args):
    """"Usage errors exit 2 with a one-line message"."""
    make_store(tmp_path / "s.mmkv", {b"k": b"v"})
    assert_one_line_error(run(*args, cwd=tmp_path), rc=2)


COMMANDS = [
    ["dump", "{}"], ["check", "{}"], ["stat", "{}"], ["stat", "--json", "{}"],
    ["compact", "{}"], ["get", "{}", "k"], ["set", "{}", "k", "v"], ["del", "{}", "k"],
    ["restore", "{}", "{}.out"],
]


@pytest.mark.parametrize("args", [c for c in COMMANDS if c[0] != "set"],
                         ids=lambda a: " ".join(a))
def test_missing_store_one_line_exit1(tmp_path, args):
    """"a missing or foreign store is a one-line error" (set creates a missing store, as
    mmkv.open does)."""
    path = str(tmp_path / "missing.mmkv")
    r = run(*[a.format(path) for a in args])
    assert "missing.mmkv" in assert_one_line_error(r)
    assert not (tmp_path / "missing.mmkv").exists()


@pytest.mark.parametrize("args", [c for c in COMMANDS if c[0] != "restore"],
                         ids=lambda a: " ".join(a))
def test_foreign_store_one_line_exit1_file_unchanged(tmp_path, args):
    """A file that is not a store: one line, exit 1, and the file is not modified."""
    path = tmp_path / "foreign.txt"
    path.write_bytes(b"hello, I am not a store\n" * 500)
    r = run(*[a.format(path) for a in args])
    assert "not an mmkv store" in assert_one_line_error(r)
    assert path.read_bytes() == b"hello, I am not a store\n" * 500


def test_restore_missing_dump_file_one_line_exit1(tmp_path):
    assert_one_line_error(run("restore", tmp_path / "nope.jsonl", tmp_path / "s.mmkv"))
    assert list(tmp_path.iterdir()) == []


def test_restore_into_directory_one_line_exit1(tmp_path, sample_dump):
    assert_one_line_error(run("restore", "--force", "-", tmp_path, input=sample_dump))


def test_restore_into_missing_directory_one_line_exit1(tmp_path, sample_dump):
    assert_one_line_error(run("restore", "-", tmp_path / "no" / "s.mmkv", input=sample_dump))


def test_dump_and_restore_into_missing_directory_message_names_the_path_given(tmp_path,
                                                                           sample_dump):
    """"A truncated or altered dump is refused with a clear message and a non-zero exit" and
    "no command prints a traceback for bad input": an output path in a missing directory is
    one line naming that path (not the hidden temporary file beside it), exit 1."""
    store = make_store(tmp_path / "s.mmkv", {b"k": b"v"})
    for where, args in [("x.jsonl", ["dump", store, "-o"]), ("x.mmkv", ["restore", "-"])]:
        target = tmp_path / "no" / where
        line = assert_one_line_error(run(*args, target, input=sample_dump))
        assert str(target) in line and ".mmkv-" not in line


def test_dump_onto_store_itself_refused_store_unchanged(tmp_path):
    path = make_store(tmp_path / "s.mmkv", {b"k": b"v"})
    before = path.read_bytes()
    assert_one_line_error(run("dump", path, "-o", path))
    assert path.read_bytes() == before


def test_set_value_over_limit_one_line_exit1(tmp_path):
    """A value over the store's limit is bad input: one line, no traceback."""
    path = make_store(tmp_path / "s.mmkv", {}, max_value_len=10)
    assert_one_line_error(run("set", path, "k", "x" * 11))


def test_dump_into_closed_pipe_no_traceback(tmp_path):
    """`mmkv dump s | head -1`: the broken pipe ends the dump quietly."""
    import subprocess
    import sys

    make_store(tmp_path / "s.mmkv", {b"k%06d" % i: b"v" * 100 for i in range(20000)})
    with subprocess.Popen([sys.executable, "-m", "mmkv", "dump", tmp_path / "s.mmkv"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) != 0
    assert b"Traceback" not in err and err.count(b"\n") <= 1


def test_compact_store_contents_unchanged(tmp_path):
    """`mmkv compact STORE` "as compact()": contents unchanged, the file does not grow."""
    items = {b"k%05d" % i: b"v" * 200 for i in range(5000)}
    path = make_store(tmp_path / "s.mmkv", items)
    import mmkv

    with mmkv.open(path) as d:
        for i in range(4000):
            del d[b"k%05d" % i]
    size = path.stat().st_size
    ok("compact", path)
    with mmkv.open(path, "r") as d:
        d._check()
        assert dict(d.items()) == {k: v for k, v in items.items() if int(k[1:]) >= 4000}
    assert path.stat().st_size <= size


def test_check_sound_store_exit0(tmp_path):
    path = make_store(tmp_path / "s.mmkv", {b"k": b"v"})
    assert ok("check", path).startswith(str(path).encode() + b": sound")


SAME = [
    ["dump", "{s}"], ["stat", "--json", "{s}"], ["get", "{s}", "ascii"], ["get", "{s}", "no"],
    ["check", "{s}"], ["--help"], ["dump", "--help"], ["restore"], ["get", "--hex", "{s}", "z"],
    ["--version"],
]


@pytest.mark.parametrize("args", SAME, ids=lambda a: " ".join(a))
def test_python_m_mmkv_equals_mmkv_script(sample_store, args):
    """`mmkv` and `python -m mmkv` are the same program: stdout, stderr, exit status."""
    argv = [a.format(s=sample_store) for a in args]
    module, script = run(*argv), run(*argv, script=True)
    assert (module.returncode, module.stdout, module.stderr) == \
        (script.returncode, script.stdout, script.stderr)


def test_mmkv_script_dump_restore_roundtrip(tmp_path, sample_store, sample_items):
    """The console script `mmkv` works on its own."""
    dump = ok("dump", sample_store, script=True)
    ok("restore", "-", tmp_path / "r.mmkv", input=dump, script=True)
    assert json.loads(ok("stat", "--json", tmp_path / "r.mmkv", script=True))["count"] == \
        len(sample_items)


def test_demo_small_run_exit0_sound():
    """`mmkv demo` (used by the README) still runs: two processes, the check passes."""
    out = ok("demo", "--rounds", "50")
    assert b"structural check: sound" in out and b"(expected 100)" in out
