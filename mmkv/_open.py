"""open, open_shm and unlink_shm: paths, flags, modes and options, checked before any file
is touched."""
import os

from ._core import ffi, lib
from ._errors import NotFoundError, exception_for
from ._store import Store

_FLAGS = {"r": lib.MMKV_OPEN_READ, "w": lib.MMKV_OPEN_WRITE, "c": lib.MMKV_OPEN_CREATE,
          "n": lib.MMKV_OPEN_NEW}
_INT_OPTIONS = ("initial_capacity", "max_key_len", "max_value_len")
_SHM_DIR = "/dev/shm"


def _options(options):
    opt = ffi.new("struct mmkv_options *")
    for name, value in options.items():
        if name in _INT_OPTIONS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 1 or value >= 1 << 62:
                raise ValueError(f"{name} must be a positive int, not {value}")
            setattr(opt, name, value)
        elif name == "durable":
            opt.durable = bool(value)
        elif name == "auto_compact":
            opt.no_auto_compact = not value
        else:
            raise TypeError(f"open() got an unexpected keyword argument {name!r}")
    return opt


def _flag(flag):
    if not isinstance(flag, str) or flag not in _FLAGS:
        raise ValueError(f"flag must be one of 'r', 'w', 'c', 'n', not {flag!r}")
    return _FLAGS[flag]


def _mode(mode):
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise TypeError(f"mode must be an int, not {type(mode).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be between 0 and 0o7777, not {oct(mode)}")
    return mode


def _open(target, display, code, mode, options, shm):
    opt = _options(options)
    out = ffi.new("mmkv_store **")
    rc = lib.mmkv_open(target, code, mode, opt, out)
    if rc < 0:
        raise exception_for(rc, display)
    store = Store(out[0], display, code, shm)
    _check_limits(store, display, options)
    return store


def _check_limits(store, display, options):
    """An existing store keeps the limits it was created with: asking for others is a
    ValueError naming them, never silently ignored."""
    asked = {n: options[n] for n in ("max_key_len", "max_value_len") if n in options}
    if not asked:
        return
    st = store.stats()
    if any(st[n] != v for n, v in asked.items()):
        store.close()
        raise ValueError(f"{display}: the store was created with max_key_len={st['max_key_len']}"
                         f" and max_value_len={st['max_value_len']}; open it without these"
                         f" options or with the same values")


def open(path, flag="c", mode=0o666, **options):  # noqa: A001 - the dbm name
    """Open the store at path (str, bytes or os.PathLike) and return a Store.

    flag: "r" read-only, "w" read-write (must exist), "c" read-write, created if missing
    (default), "n" always a new empty store.  mode: permission bits of a new file, masked
    by the umask.  options (keyword-only, none required): initial_capacity (keys the
    table holds before its first rebuild), max_key_len (default 65535), max_value_len
    (default 64 MiB), durable (every write is on stable storage when it returns),
    auto_compact (default True: compact when garbage passes half the file and 4 MiB).
    """
    code = _flag(flag)
    mode = _mode(mode)
    fspath = os.fspath(path)
    raw = os.fsencode(fspath)
    if b"\0" in raw:
        raise ValueError("embedded null byte in path")
    # A symbolic link names the store's file: resolve it once, here, so that compaction,
    # "n" and a handle moving to a compacted file all act on that file and leave the link
    # a link.  Messages keep the caller's spelling.
    return _open(os.path.realpath(raw) if raw else raw, fspath, code, mode, options, False)


def _shm_name(name):
    if not isinstance(name, str):
        raise TypeError(f"shared-memory name must be str, not {type(name).__name__}")
    bare = name[1:] if name.startswith("/") else name
    if not bare or "/" in bare or "\0" in bare or bare in (".", "..") or len(bare) > 200:
        raise ValueError(f"invalid shared-memory name {name!r}: want 1-200 characters, no '/'")
    return bare


def open_shm(name, flag="c", mode=0o600, **options):
    """Open a store in POSIX shared memory (no file on disk): the same format and behaviour
    as open(), living until unlink_shm(name) or a reboot.  sync() does nothing there."""
    bare = _shm_name(name)
    code = _flag(flag) | lib.MMKV_OPEN_SHM
    return _open(os.fsencode(bare), f"shm:{bare}", code, _mode(mode), options, True)


def unlink_shm(name):
    """Remove a shared-memory store.  Handles still open keep working until closed."""
    bare = _shm_name(name)
    try:
        os.unlink(os.path.join(os.environ.get("MMKV_TEST_SHM_DIR", _SHM_DIR), bare))
    except FileNotFoundError:
        raise NotFoundError(2, "no such shared-memory store", f"shm:{bare}") from None
