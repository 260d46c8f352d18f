"""Unit tests for API.md "Opening": paths, flags, modes, missing stores and foreign files.

Each test checks one clause; foreign files are compared by sha256 before and after,
because the contract says a file that is not a store is never modified.
"""

import hashlib
import os
import pathlib
import random
import struct

import pytest

import mmkv


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class StrPath:
    """A minimal os.PathLike that is not a pathlib object."""

    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


def write_and_close(path, items, **options):
    with mmkv.open(path, "c", **options) as d:
        d.update(items)


def read_all(path):
    with mmkv.open(path, "r") as d:
        return dict(d.items())


# --- path types -------------------------------------------------------------------------


def test_open_str_path_creates_store(store_path, check_store):
    """`path` may be `str`."""
    write_and_close(str(store_path), {b"k": b"v"})
    assert read_all(store_path) == {b"k": b"v"}
    check_store(store_path)


def test_open_bytes_path_creates_store(store_path, check_store):
    """`path` may be `bytes`."""
    write_and_close(os.fsencode(store_path), {b"k": b"v"})
    assert store_path.exists()
    assert read_all(store_path) == {b"k": b"v"}
    check_store(store_path)


def test_open_pathlib_path_creates_store(store_path, check_store):
    """`path` may be any `os.PathLike` (pathlib)."""
    write_and_close(pathlib.Path(store_path), {b"k": b"v"})
    assert read_all(str(store_path)) == {b"k": b"v"}
    check_store(store_path)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["fspath-str", "fspath-bytes"])
def test_open_custom_pathlike_creates_store(store_path, check_store, as_bytes):
    """`path` may be any `os.PathLike` (a user class returning str or bytes)."""
    path = os.fsencode(store_path) if as_bytes else str(store_path)
    write_and_close(StrPath(path), {b"k": b"v"})
    assert read_all(store_path) == {b"k": b"v"}
    check_store(store_path)


def test_open_non_ascii_str_path_round_trips(tmp_path, check_store):
    """`path` may be `str` ..., non-ASCII names included."""
    path = tmp_path / "données-ключ-鍵-🗝.mmkv"
    write_and_close(str(path), {"clé": "valeur"})
    assert path.name in os.listdir(tmp_path)
    assert read_all(path) == {"clé".encode(): b"valeur"}
    check_store(path)


def test_open_non_utf8_bytes_path_round_trips(tmp_path, check_store):
    """`path` may be `bytes` ..., non-ASCII names included (even undecodable ones)."""
    path = os.fsencode(tmp_path) + b"/store-\xff\xfe.mmkv"
    write_and_close(path, {b"k": b"v"})
    assert os.path.exists(path)
    assert read_all(path) == {b"k": b"v"}
    check_store(path)


@pytest.mark.parametrize("path", [1, None, 1.5, ["s.mmkv"]], ids=["int", "None", "float", "list"])
def test_open_path_of_other_type_raises_type_error(path):
    """`path` may be `str`, `bytes` or any `os.PathLike` (anything else: `TypeError`, as `os.open`)."""
    with pytest.raises(TypeError):
        mmkv.open(path)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_open_path_with_nul_byte_raises_value_error(tmp_path, as_bytes):
    """`path` as `os.open` takes it: an embedded NUL is a `ValueError`, nothing is created."""
    path = str(tmp_path) + "/bad\0name.mmkv"
    with pytest.raises(ValueError):
        mmkv.open(os.fsencode(path) if as_bytes else path)
    assert os.listdir(tmp_path) == []


# --- flags ------------------------------------------------------------------------------


def test_open_default_flag_creates_missing_store(store_path):
    """`"c"` read-write, created if missing (the default)."""
    with mmkv.open(store_path) as d:
        d[b"k"] = b"v"
        assert d[b"k"] == b"v"
    assert store_path.exists()


def test_open_flag_c_missing_creates_empty_store(store_path, open_store):
    """`"c"` read-write, created if missing."""
    d = open_store(store_path, "c")
    assert len(d) == 0
    assert d.keys() == []
    assert store_path.exists()


def test_open_flag_c_existing_keeps_contents(store_path, open_store, check_store):
    """`"c"` opens an existing store read-write without emptying it."""
    write_and_close(store_path, {b"a": b"1", b"b": b"2"})
    d = open_store(store_path, "c")
    assert dict(d.items()) == {b"a": b"1", b"b": b"2"}
    d[b"c"] = b"3"
    assert len(d) == 3
    check_store(d)


def test_open_flag_w_existing_is_read_write(store_path, open_store, check_store):
    """`"w"` read-write (must exist)."""
    write_and_close(store_path, {b"a": b"1"})
    d = open_store(store_path, "w")
    assert d[b"a"] == b"1"
    d[b"b"] = b"2"
    del d[b"a"]
    assert dict(d.items()) == {b"b": b"2"}
    check_store(d)


def test_open_flag_r_existing_reads_contents(store_path, open_store):
    """`"r"` read-only."""
    write_and_close(store_path, {b"a": b"1", b"b": b"2"})
    d = open_store(store_path, "r")
    assert dict(d.items()) == {b"a": b"1", b"b": b"2"}
    assert len(d) == 2


@pytest.mark.parametrize("flag", ["r", "w"])
def test_open_missing_store_flag_r_or_w_raises_not_found(store_path, flag):
    """A missing store with `"r"` or `"w"`: an instance of both `mmkv.error` and `FileNotFoundError`."""
    with pytest.raises(mmkv.error) as excinfo:
        mmkv.open(store_path, flag)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert isinstance(excinfo.value, mmkv.NotFoundError)


@pytest.mark.parametrize("flag", ["r", "w"])
def test_open_missing_store_flag_r_or_w_creates_no_file(store_path, flag):
    """`"w"` read-write (must exist): a failed open leaves nothing behind."""
    with pytest.raises(FileNotFoundError):
        mmkv.open(store_path, flag)
    assert os.listdir(store_path.parent) == []


def test_open_flag_n_existing_store_empties_it(store_path, open_store, check_store):
    """`"n"` always a new empty store."""
    write_and_close(store_path, {b"a": b"1", b"b": b"2"})
    d = open_store(store_path, "n")
    assert len(d) == 0
    assert d.keys() == []
    assert d.get(b"a") is None
    d[b"x"] = b"y"
    check_store(d)


def test_open_flag_n_missing_creates_store(store_path, open_store, check_store):
    """`"n"` always a new empty store (also when nothing is there)."""
    d = open_store(store_path, "n")
    assert len(d) == 0
    d[b"k"] = b"v"
    check_store(d)


@pytest.mark.parametrize("content", [b"", b"hello, not a store\n", bytes(range(256)) * 64])
def test_open_flag_n_non_store_file_replaces_it(store_path, open_store, check_store, content):
    """`"n"` ... replaces whatever file is there, even one that is not a store."""
    store_path.write_bytes(content)
    d = open_store(store_path, "n")
    assert len(d) == 0
    d[b"k"] = b"v"
    d.close()
    assert read_all(store_path) == {b"k": b"v"}
    check_store(store_path)


def test_open_flag_n_new_store_persists_after_reopen(store_path, check_store):
    """`"n"` builds a real store: what it holds survives close and reopen with `"w"`."""
    write_and_close(store_path, {b"old": b"1"})
    with mmkv.open(store_path, "n") as d:
        d[b"new"] = b"2"
    assert read_all(store_path) == {b"new": b"2"}
    check_store(store_path)


INVALID_FLAGS = ["", "x", "a", "rw", "wr", "C", "R", "N", "W", "cf", "cu", "c ", " r", "nn", "r+"]


@pytest.mark.parametrize("flag", INVALID_FLAGS)
def test_open_invalid_flag_raises_value_error(store_path, flag):
    """Any other flag: `ValueError`."""
    with pytest.raises(ValueError):
        mmkv.open(store_path, flag)


@pytest.mark.parametrize("flag", ["x", "rw", "cf"])
def test_open_invalid_flag_creates_no_file(store_path, flag):
    """Any other flag: `ValueError` (and nothing is created)."""
    with pytest.raises(ValueError):
        mmkv.open(store_path, flag)
    assert not store_path.exists()


@pytest.mark.parametrize("flag", ["x", "rw", "cf"])
def test_open_invalid_flag_existing_store_unchanged(store_path, flag):
    """Any other flag: `ValueError`; an existing store is left as it was."""
    write_and_close(store_path, {b"k": b"v"})
    before = sha256(store_path)
    with pytest.raises(ValueError):
        mmkv.open(store_path, flag)
    assert sha256(store_path) == before


# --- mode -------------------------------------------------------------------------------


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring the previous one afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def _set(mask):
        os.umask(mask)

    yield _set
    os.umask(saved)


@pytest.mark.parametrize(
    "mask, mode, expected",
    [
        (0o022, 0o666, 0o644),
        (0o022, 0o600, 0o600),
        (0o077, 0o666, 0o600),
        (0o000, 0o640, 0o640),
        (0o027, 0o777, 0o750),
    ],
)
def test_open_mode_new_file_masked_by_umask(store_path, open_store, umask, mask, mode, expected):
    """`mode`: permission bits of a newly created file, masked by the umask, as `os.open`."""
    umask(mask)
    open_store(store_path, "c", mode)
    assert store_path.stat().st_mode & 0o777 == expected


def test_open_mode_keyword_argument_accepted(store_path, open_store, umask):
    """`mmkv.open(path, flag="c", mode=0o666, ...)`: mode may be passed by keyword."""
    umask(0o022)
    open_store(store_path, flag="c", mode=0o604)
    assert store_path.stat().st_mode & 0o777 == 0o604


def test_open_default_mode_is_0o666_masked(store_path, open_store, umask):
    """`mode=0o666` by default, masked by the umask."""
    umask(0o002)
    open_store(store_path)
    assert store_path.stat().st_mode & 0o777 == 0o664


def test_open_mode_flag_n_missing_file_masked_by_umask(store_path, open_store, umask):
    """`mode`: permission bits of a newly created file (created by `"n"`), masked by the umask."""
    umask(0o022)
    open_store(store_path, "n", 0o660)
    assert store_path.stat().st_mode & 0o777 == 0o640


def test_open_mode_existing_file_permissions_unchanged(store_path, open_store, umask):
    """`mode` applies to a newly created file only; an existing store keeps its bits."""
    umask(0o022)
    write_and_close(store_path, {b"k": b"v"})
    os.chmod(store_path, 0o640)
    open_store(store_path, "c", 0o600)
    assert store_path.stat().st_mode & 0o777 == 0o640


# --- exception tree ---------------------------------------------------------------------


def test_error_is_subclass_of_oserror():
    """`mmkv.error` is the package's base exception and a subclass of `OSError`."""
    assert issubclass(mmkv.error, OSError)


def test_corrupt_error_is_subclass_of_error():
    """`mmkv.CorruptError` for damage found (a kind of `mmkv.error`)."""
    assert issubclass(mmkv.CorruptError, mmkv.error)


def test_not_found_error_is_subclass_of_error_and_file_not_found():
    """An exception that is an instance of both `mmkv.error` and `FileNotFoundError`."""
    assert issubclass(mmkv.NotFoundError, mmkv.error)
    assert issubclass(mmkv.NotFoundError, FileNotFoundError)


# --- options ----------------------------------------------------------------------------


def test_open_unknown_option_raises_type_error(store_path):
    """`options` are keyword-only tuning knobs; an unknown one is a `TypeError`."""
    with pytest.raises(TypeError):
        mmkv.open(store_path, "c", 0o666, no_such_option=1)


def test_open_options_are_keyword_only(store_path):
    """`options` are keyword-only: a fourth positional argument is a `TypeError`."""
    with pytest.raises(TypeError):
        mmkv.open(store_path, "c", 0o666, 1024)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_capacity": -1},
        {"max_key_len": -1},
        {"max_value_len": -1},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_open_bad_option_value_raises_value_error(store_path, options):
    """Bad option values: `ValueError`."""
    with pytest.raises(ValueError):
        mmkv.open(store_path, "c", **options)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_capacity": 16},
        {"initial_capacity": 100_000},
        {"max_key_len": 511},
        {"max_value_len": 1 << 20},
        {"durable": True},
        {"durable": False},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_open_valid_option_gives_working_store(store_path, open_store, check_store, options):
    """`options` are keyword-only tuning knobs (initial capacity, record geometry, durability)."""
    d = open_store(store_path, "c", **options)
    for i in range(100):
        d[b"k%d" % i] = b"v%d" % i
    assert len(d) == 100
    assert d[b"k42"] == b"v42"
    check_store(d)


def test_open_durable_store_writes_survive_reopen(store_path, check_store):
    """With the option `durable=True`, every write is durable when it returns."""
    with mmkv.open(store_path, "c", durable=True) as d:
        d[b"k"] = b"v"
        del d[b"k"]
        d[b"k2"] = b"v2"
    assert read_all(store_path) == {b"k2": b"v2"}
    check_store(store_path)


# --- foreign files ----------------------------------------------------------------------


def _real_store_bytes(tmp_path):
    path = tmp_path / "real-store.mmkv"
    write_and_close(path, {b"key": b"value"})
    data = path.read_bytes()
    path.unlink()
    return data


def _lmdb_like_bytes():
    """Two 4 KiB LMDB meta pages: page header, then MDB_meta with magic 0xBEEFC0DE."""
    pages = []
    for pgno in (0, 1):
        header = struct.pack("<QHHHH", pgno, 0, 0x08, 0, 0)  # P_META
        meta = struct.pack("<II", 0xBEEFC0DE, 1) + struct.pack("<Q", 0) + struct.pack("<Q", 1 << 20)
        page = header + meta
        pages.append(page + bytes(4096 - len(page)))
    return b"".join(pages)


def _foreign_content(kind, tmp_path):
    if kind == "wrong-magic":
        data = bytearray(_real_store_bytes(tmp_path))
        for i in range(8):
            data[i] ^= 0x5A
        return bytes(data)
    if kind.startswith("truncated-header-"):
        return _real_store_bytes(tmp_path)[: int(kind.rsplit("-", 1)[1])]
    if kind == "header-page-only":
        return _real_store_bytes(tmp_path)[:4096]
    if kind == "random-bytes":
        return random.Random(20240601).randbytes(64 * 1024)
    if kind == "zero-page":
        return bytes(8192)
    if kind == "lmdb":
        return _lmdb_like_bytes()
    if kind == "sqlite":
        return b"SQLite format 3\x00" + bytes([0x10, 0x00, 1, 1]) + bytes(4096 - 20)
    if kind == "text":
        return "a plain text file\nwith a few lines, ünïcode too\n".encode() * 10
    if kind == "one-byte":
        return b"M"
    raise AssertionError(kind)


FOREIGN_KINDS = [
    "wrong-magic",
    "truncated-header-16",
    "truncated-header-100",
    "truncated-header-4095",
    "header-page-only",
    "random-bytes",
    "zero-page",
    "lmdb",
    "sqlite",
    "text",
    "one-byte",
]


@pytest.fixture(params=FOREIGN_KINDS)
def foreign_file(request, tmp_path):
    """A file that is not a store, at tmp_path/"foreign.db"."""
    path = tmp_path / "foreign.db"
    path.write_bytes(_foreign_content(request.param, tmp_path))
    return path


@pytest.mark.parametrize("flag", ["r", "w", "c"])
def test_open_foreign_file_raises_error_naming_path(foreign_file, flag):
    """A file that is not a store ... opened with `"r"`, `"w"` or `"c"`: `mmkv.error` naming the file."""
    with pytest.raises(mmkv.error) as excinfo:
        mmkv.open(foreign_file, flag)
    assert str(foreign_file) in str(excinfo.value)
    assert not isinstance(excinfo.value, FileNotFoundError)


@pytest.mark.parametrize("flag", ["r", "w", "c"])
def test_open_foreign_file_leaves_bytes_unchanged(foreign_file, flag):
    """A file that is not a store ...: the file is not modified."""
    before = sha256(foreign_file)
    size = foreign_file.stat().st_size
    with pytest.raises(mmkv.error):
        mmkv.open(foreign_file, flag)
    assert foreign_file.stat().st_size == size
    assert sha256(foreign_file) == before


@pytest.mark.parametrize("flag", ["r", "w", "c"])
def test_open_foreign_file_str_and_bytes_path_message_names_file(tmp_path, flag):
    """`mmkv.error` naming the file, whatever type the path was given as."""
    path = tmp_path / "naïve-foreign.db"
    path.write_bytes(b"not a store at all\n" * 300)
    for given in (str(path), os.fsencode(path)):
        with pytest.raises(mmkv.error) as excinfo:
            mmkv.open(given, flag)
        assert str(path) in str(excinfo.value)


def test_open_zero_length_file_flag_c_initialises_store(store_path, check_store):
    """A zero-length file with `"c"` is initialised as a new store."""
    store_path.write_bytes(b"")
    with mmkv.open(store_path, "c") as d:
        assert len(d) == 0
        d[b"k"] = b"v"
    assert store_path.stat().st_size > 0
    assert read_all(store_path) == {b"k": b"v"}
    check_store(store_path)


def test_open_zero_length_file_flag_r_leaves_file_empty(store_path):
    """`"r"` handles ... never modify the file (not even a zero-length one)."""
    store_path.write_bytes(b"")
    try:
        with mmkv.open(store_path, "r") as d:
            assert len(d) == 0
    except mmkv.error as exc:
        assert not isinstance(exc, FileNotFoundError)
    assert store_path.stat().st_size == 0
