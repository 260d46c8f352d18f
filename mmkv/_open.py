"""open, open_shm and unlink_shm: paths, flags, modes and options, checked before any file
is touched.  codec= (any object with dumps and loads) gives a CodecStore; a Store pickles
as a call to _reopen with what it was opened with."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast, overload

from ._codec import Codec, CodecStore, check_codec, codec_from_ref, codec_ref
from ._core import ffi, lib
from ._errors import NotFoundError, exception_for
from ._facade import check_flag, check_timeout
from ._store import Store

if TYPE_CHECKING:
    from typing import TypeAlias

    PathArg: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]

_FLAGS = {"r": lib.MMKV_OPEN_READ, "w": lib.MMKV_OPEN_WRITE, "c": lib.MMKV_OPEN_CREATE,
          "n": lib.MMKV_OPEN_NEW}
_INT_OPTIONS = ("initial_capacity", "max_key_len", "max_value_len")
_SHM_DIR = "/dev/shm"


def _options(options: dict[str, Any]) -> Any:
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


def _flag(flag: str) -> int:
    code: int = _FLAGS[check_flag(flag)]
    return code


def _mode(mode: int) -> int:
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise TypeError(f"mode must be an int, not {type(mode).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be between 0 and 0o7777, not {oct(mode)}")
    return mode


def _open(target: bytes, display: str | bytes, code: int, mode: int, options: dict[str, Any],
          shm: bool, reopen: tuple[str, str | bytes, str]) -> Store[Any]:
    codec = options.pop("codec", None)
    if codec is not None:
        check_codec(codec)
    lock_timeout = check_timeout(options.pop("lock_timeout", None), "lock_timeout")
    opt = _options(options)
    out = ffi.new("mmkv_store **")
    rc = lib.mmkv_open(target, code, mode, opt, out)
    if rc < 0:
        raise exception_for(rc, display)
    kind, name, flag = reopen
    kept = options if lock_timeout is None else dict(options, lock_timeout=lock_timeout)
    again = (_reopen, (kind, name, "w" if flag == "n" else flag, mode, kept, codec_ref(codec)))
    store: Store[Any]
    if codec is None:
        store = Store(out[0], display, code, shm, reopen=again, lock_timeout=lock_timeout)
    else:
        store = CodecStore(out[0], display, code, shm, reopen=again, codec=codec,
                           lock_timeout=lock_timeout)
    _check_limits(store, display, options)
    return store


def _check_limits(store: Store[Any], display: str | bytes, options: dict[str, Any]) -> None:
    """An existing store keeps the limits it was created with: asking for others is a
    ValueError naming them, never silently ignored."""
    asked = {n: options[n] for n in ("max_key_len", "max_value_len") if n in options}
    if not asked:
        return
    st = store.stats()
    if any(st[n] != v for n, v in asked.items()):
        store.close()
        raise ValueError(f"{display!s}: the store was created with max_key_len="
                         f"{st['max_key_len']} and max_value_len={st['max_value_len']}; open it"
                         f" without these options or with the same values")


# ---- pickling: a Store is rebuilt by reopening its store (Store.__reduce__) ----

def _reopen(kind: str, name: str | bytes, flag: str, mode: int, options: dict[str, Any],
            codec_ref: tuple[str, Any]) -> Store[Any]:
    """Unpickle a Store: open it again as it was opened (kind "file" or "shm")."""
    codec = codec_from_ref(codec_ref)
    if codec is not None:
        options = dict(options, codec=codec)
    if kind == "shm":
        return open_shm(os.fsdecode(name), flag, mode, **options)
    return open(name, flag, mode, **options)


@overload
def open(path: PathArg, flag: str = "c", mode: int = 0o666, *, codec: None = None,
         **options: Any) -> Store[bytes]: ...
@overload
def open(path: PathArg, flag: str = "c", mode: int = 0o666, *, codec: Codec,
         **options: Any) -> Store[Any]: ...
def open(path: PathArg, flag: str = "c", mode: int = 0o666,
         **options: Any) -> Store[Any]:
    """Open the store at path (str, bytes or os.PathLike) and return a Store.

    flag: "r" read-only, "w" read-write (must exist), "c" read-write, created if missing
    (default), "n" always a new empty store.  mode: permission bits of a new file, masked
    by the umask.  options (keyword-only, none required): initial_capacity (keys the
    table holds before its first rebuild), max_key_len (default 65535), max_value_len
    (default 64 MiB), durable (every write is on stable storage when it returns),
    auto_compact (default True: compact when garbage passes half the file and 4 MiB),
    lock_timeout (seconds, default None: wait; how long each write waits for the lock
    before mmkv.LockTimeout, unapplied).
    codec (an object with dumps and loads, such as the json module: values are encoded
    on write and decoded on read; default None, bytes in and bytes out).

    Nothing is ever unpickled unless codec=pickle (or a codec that unpickles) is passed,
    and unpickling data that an untrusted process could have written runs its code.
    """
    if isinstance(path, str) and path.startswith(("redis://", "rediss://", "redis+cluster://")):
        from ._redis import open_url  # mmkv[redis]: Redis or Redis Cluster

        # a RedisStore is no Store subclass but offers the same surface (StoreProtocol,
        # checked by tests/redis/test_redis_protocol.py): typed as the Store it stands for
        return cast("Store[Any]", open_url(path, flag, mode, **options))
    code = _flag(flag)
    mode = _mode(mode)
    fspath = os.fspath(path)
    raw = os.fsencode(fspath)
    if b"\0" in raw:
        raise ValueError("embedded null byte in path")
    # A symbolic link names the store's file: resolve it once, here, so that compaction,
    # "n" and a handle moving to a compacted file all act on that file and leave the link
    # a link.  Messages keep the caller's spelling; a pickle reopens the same file from any
    # working directory.
    real = os.path.realpath(raw) if raw else raw
    where = os.path.abspath(fspath)
    return _open(real, fspath, code, mode, options, False, ("file", where, flag))


def _shm_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"shared-memory name must be str, not {type(name).__name__}")
    bare = name[1:] if name.startswith("/") else name
    if not bare or "/" in bare or "\0" in bare or bare in (".", "..") or len(bare) > 200:
        raise ValueError(f"invalid shared-memory name {name!r}: want 1-200 characters, no '/'")
    return bare


@overload
def open_shm(name: str, flag: str = "c", mode: int = 0o600, *, codec: None = None,
             **options: Any) -> Store[bytes]: ...
@overload
def open_shm(name: str, flag: str = "c", mode: int = 0o600, *, codec: Codec,
             **options: Any) -> Store[Any]: ...
def open_shm(name: str, flag: str = "c", mode: int = 0o600, **options: Any) -> Store[Any]:
    """Open a store in POSIX shared memory (no file on disk): the same format and behaviour
    as open(), living until unlink_shm(name) or a reboot.  sync() does nothing there."""
    bare = _shm_name(name)
    code = _flag(flag) | lib.MMKV_OPEN_SHM
    return _open(os.fsencode(bare), f"shm:{bare}", code, _mode(mode), options, True,
                 ("shm", bare, flag))


def unlink_shm(name: str) -> None:
    """Remove a shared-memory store.  Handles still open keep working until closed."""
    bare = _shm_name(name)
    try:
        os.unlink(os.path.join(os.environ.get("MMKV_TEST_SHM_DIR", _SHM_DIR), bare))
    except FileNotFoundError:
        raise NotFoundError(2, "no such shared-memory store", f"shm:{bare}") from None
