"""Shared-memory stores: open_shm shared by unrelated processes and outliving them, no file
in the working directory, name checks, unlink_shm, and sync() as a no-op.

Unrelated processes are fresh interpreters (`python -c`) started with subprocess, every one
with a timeout. Names are unique (uuid) and every test unlinks its store in a finally block.
The races (incr, pop, popitem) on a shared-memory store are in test_atomic_mp.py, and fork
in test_fork.py.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

import mmkv

SHM_DIR = "/dev/shm"  # where Linux keeps POSIX shared-memory objects
TIMEOUT = 60


@pytest.fixture
def name():
    """A unique shared-memory store name; whatever it names is unlinked after the test."""
    shm_name = f"mmkv-test-{uuid.uuid4().hex}"
    try:
        yield shm_name
    finally:
        try:
            mmkv.unlink_shm(shm_name)
        except mmkv.NotFoundError:
            pass


def leftovers(shm_name):
    """Shared-memory objects whose name contains shm_name (the store, or temporaries)."""
    return [f for f in os.listdir(SHM_DIR) if shm_name in f]


def check_sound(shm_name):
    with mmkv.open_shm(shm_name, "r") as d:
        report = d._check()
        assert report["live"] == len(d) == len(list(d)), report


CREATOR = """
import sys, time, mmkv
d = mmkv.open_shm(sys.argv[1], "n")
d["a"] = "from the creator"
d.incr("n", 5)
deadline = time.monotonic() + 30
while d.get("b") is None:
    assert time.monotonic() < deadline, "the other process never wrote b"
    time.sleep(0.005)
d["creator-saw-b"] = d["b"]
d.close()
"""

OTHER = """
import sys, time, mmkv
deadline = time.monotonic() + 30
while True:                       # the creator may not have created it yet
    try:
        d = mmkv.open_shm(sys.argv[1], "w")
        break
    except mmkv.NotFoundError:
        assert time.monotonic() < deadline, "the store never appeared"
        time.sleep(0.005)
def wait(key):
    while d.get(key) is None:
        assert time.monotonic() < deadline, f"{key} never appeared"
        time.sleep(0.005)
wait("a")
d["b"] = "from the other"
wait("creator-gone")              # set by the test once the creator has exited
assert d["creator-saw-b"] == b"from the other"
d.incr("n", 10)
d["b-after"] = d["a"]
d.close()
"""

READER = """
import sys, json, mmkv
with mmkv.open_shm(sys.argv[1], "r") as d:
    d._check()
    print(json.dumps({k.decode(): v.decode() for k, v in d.items()}))
"""


def python(code, *args, cwd, stdout=None):
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=stdout,
                            text=True)


@pytest.mark.multiproc
def test_open_shm_is_shared_by_unrelated_processes_and_outlives_its_creator(name, tmp_path):
    """Issue 4: "open_shm shared by two unrelated processes, surviving its creator"; API.md:
    "POSIX shared memory, no file"."""
    procs = []
    try:
        creator = python(CREATOR, name, cwd=tmp_path)
        other = python(OTHER, name, cwd=tmp_path)
        procs += [creator, other]
        assert creator.wait(timeout=TIMEOUT) == 0, "the creator failed"
        with mmkv.open_shm(name, "w") as d:  # the creator is gone; the store is not
            assert d["a"] == b"from the creator"
            d["creator-gone"] = b"yes"
        assert other.wait(timeout=TIMEOUT) == 0, "the other process failed"
        # a third one, after both have exited
        reader = python(READER, name, cwd=tmp_path, stdout=subprocess.PIPE)
        procs.append(reader)
        out, _ = reader.communicate(timeout=TIMEOUT)
        assert reader.returncode == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    assert json.loads(out) == {
        "a": "from the creator", "b": "from the other", "creator-saw-b": "from the other",
        "creator-gone": "yes", "n": "15", "b-after": "from the creator"}
    assert os.listdir(tmp_path) == [], "a shared-memory store left a file in the cwd"
    check_sound(name)


def test_open_shm_creates_no_file_in_the_working_directory(name, tmp_path, monkeypatch):
    """Issue 4: "no file appears in the working directory"; not while it grows or compacts."""
    monkeypatch.chdir(tmp_path)
    with mmkv.open_shm(name) as d:
        for i in range(300):
            d[b"k%d" % i] = os.urandom(4096)
        for i in range(0, 300, 2):
            del d[b"k%d" % i]
        d.compact()
        d.sync()
        assert len(d) == 150
        d._check()
    assert os.listdir(tmp_path) == []
    check_sound(name)


@pytest.mark.parametrize("bad", ["", "a/b", "abc/", "/", "//abc", ".", "..", "x" * 256,
                                 "y" * 1000, "a\0b"])
def test_open_shm_and_unlink_shm_with_a_bad_name_raise_value_error(bad):
    """Issue 4: "bad names get ValueError"."""
    with pytest.raises(ValueError):
        mmkv.open_shm(bad)
    with pytest.raises(ValueError):
        mmkv.unlink_shm(bad)


@pytest.mark.parametrize("bad", [b"name", bytearray(b"name"), 5, None, ["name"]])
def test_open_shm_and_unlink_shm_with_a_name_that_is_not_str_raise_type_error(bad):
    with pytest.raises(TypeError):
        mmkv.open_shm(bad)
    with pytest.raises(TypeError):
        mmkv.unlink_shm(bad)


def test_unlink_shm_removes_the_store_so_r_and_w_raise_not_found(name):
    """API.md: "mmkv.unlink_shm(name) remove a shared-memory store"; "A missing store with
    "r" or "w": an exception that is an instance of both mmkv.error and FileNotFoundError"."""
    with mmkv.open_shm(name) as d:
        d["k"] = "v"
        d.compact()  # any temporary a compaction used is gone too
        d._check()
    mmkv.unlink_shm(name)
    assert leftovers(name) == []
    for flag in ("r", "w"):
        with pytest.raises(mmkv.NotFoundError) as info:
            mmkv.open_shm(name, flag)
        assert isinstance(info.value, mmkv.error) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        mmkv.unlink_shm(name)
    with mmkv.open_shm(name, "c") as d:  # a new, empty store under the same name
        assert len(d) == 0 and d.get("k") is None
        d._check()


def test_unlink_shm_while_open_leaves_the_open_handle_working(name):
    """mmkv.unlink_shm: "Handles still open keep working until closed"."""
    d = mmkv.open_shm(name)
    try:
        d["k"] = "v"
        mmkv.unlink_shm(name)
        with pytest.raises(mmkv.NotFoundError):
            mmkv.open_shm(name, "r")
        d["k2"] = "v2"
        assert d["k"] == b"v" and d.incr("n") == 1
        d._check()
    finally:
        d.close()


def test_missing_shm_store_with_r_or_w_raises_not_found(name):
    for flag in ("r", "w"):
        with pytest.raises(mmkv.NotFoundError):
            mmkv.open_shm(name, flag)
    assert leftovers(name) == []


def test_open_shm_flag_n_empties_an_existing_store(name):
    with mmkv.open_shm(name) as d:
        d["k"] = "v"
    with mmkv.open_shm(name, "n") as d:
        assert len(d) == 0
        d._check()


def test_open_shm_read_only_handle_refuses_writes(name):
    with mmkv.open_shm(name) as d:
        d["k"] = "v"
    with mmkv.open_shm(name, "r") as r:
        with pytest.raises(mmkv.error):
            r["k"] = "w"
        with pytest.raises(mmkv.error):
            r.incr("n")
        with pytest.raises(mmkv.error):
            with r.lock():
                pass
        assert r["k"] == b"v"
    check_sound(name)


@pytest.mark.parametrize("flag", ["c", "w", "r"])
def test_sync_on_a_shared_memory_store_is_a_no_op_that_succeeds(name, flag):
    """Issue 4: "sync() is a no-op there and says so in its docstring"."""
    with mmkv.open_shm(name) as d:
        d["k"] = "v"
        with mmkv.open_shm(name, flag) as h:
            assert h.sync() is None
            h.sync()
            assert h["k"] == b"v"
        d._check()
    assert "shared" in mmkv.Store.sync.__doc__.lower()


def test_open_shm_creates_the_object_with_mode_0o600_by_default(name):
    """API.md: "mmkv.open_shm(name, flag="c", mode=0o600, **options)"."""
    umask = os.umask(0)
    os.umask(umask)
    with mmkv.open_shm(name):
        pass
    mode = os.stat(os.path.join(SHM_DIR, name)).st_mode & 0o777
    assert mode == 0o600 & ~umask
