"""mmkv.dump and mmkv.restore: the dump format (mmkv/_dump.py) written from a store and read
back into a new one, with the command line's guarantees; `mmkv dump` and `mmkv restore` are
thin adapters over these.

dump writes a snapshot of one moment (mmkv/_snapshot.py: the log up to a tail read under
the lock, so never inside another process's lock() block), its keys sorted in bounded memory
(mmkv/_sort.py) and each value read when its record is written.  A damaged store is salvaged
(mmkv/_salvage.py) when asked: its valid records are replayed into a scratch store first.
restore builds the new store beside the target, syncs it, and moves it into place only when
the whole dump has checked (mmkv/_atomicfile.py), so the target appears whole or not at all.
A Redis URL or an open RedisStore goes to mmkv/_redis_backup.py instead: the same format,
but no snapshot and no atomic restore (Redis offers neither; that file says what it gives).
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from . import _atomicfile, _dump, _salvage, _snapshot
from ._errors import CorruptError, error
from ._redis_url import is_redis_url
from ._store import Store

if TYPE_CHECKING:
    from typing import TypeAlias

    PathArg: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class _Bar(Protocol):
    def update(self, done: int, note: str = "") -> None: ...
    def finish(self, done: int | None = None, note: str | None = None) -> None: ...


class _NoBar:
    def update(self, done: int, note: str = "") -> None:
        pass

    def finish(self, done: int | None = None, note: str | None = None) -> None:
        pass


ProgressFactory = Callable[..., _Bar]


def _no_progress(label: str, total: int | None = None, unit: str = "records") -> _Bar:
    return _NoBar()


class DumpReport(NamedTuple):
    """What a dump did: records written; for a salvaged dump of a damaged store, why it was
    salvaged (reason, else None), the valid records found in its log and those skipped."""

    records: int
    reason: str | None = None
    valid: int = 0
    skipped: int = 0


# ---- dump ----

def _write_sorted(store: Store[Any], out: IO[bytes], max_key_len: int, max_value_len: int,
                  progress: ProgressFactory) -> int:
    """Dump store to out in key order, a snapshot of one moment (never inside another
    process's lock() block, mmkv/_snapshot.py), with the raw bytes whatever codec the store
    has; the number of records written."""
    total = len(store)
    bar = progress("mmkv dump: reading keys", total=total)
    items = _snapshot.snapshot_items(store, sort=True, on_key=bar.update)
    writer = _dump.DumpWriter(out, max_key_len, max_value_len)
    for i, (key, value) in enumerate(items, 1):
        if i == 1:
            bar.finish(total)
            bar = progress("mmkv dump: writing", total=total)
        writer.write(key, value)
        if not i & 1023:
            bar.update(i)
    bar.finish(writer.count)
    return writer.finish()


def _dump_store(store: Store[Any], out: IO[bytes], progress: ProgressFactory) -> int:
    st = store.stats()
    return _write_sorted(store, out, st["max_key_len"], st["max_value_len"], progress)


def _dump_salvaged(path: PathArg, out: IO[bytes], progress: ProgressFactory) -> DumpReport:
    """Replay the valid records of the damaged store at path into a scratch store and dump
    that."""
    from ._open import open as open_store

    with tempfile.TemporaryDirectory(prefix="mmkv-salvage-") as tmp, \
            open_store(os.path.join(tmp, "salvaged.mmkv"), "n", max_key_len=_dump.MAX_KEY_LEN,
                       max_value_len=_dump.MAX_VALUE_LEN) as scratch:
        salvage = _salvage.Salvage(path)
        try:
            bar = progress("mmkv dump: salvaging")
            max_k, max_v = _salvage.replay(salvage, scratch, bar.update)
            valid, skipped = salvage.counts()
            bar.finish(valid)
        finally:
            salvage.close()
        limits = (max(max_k, _dump.DEFAULT_LIMITS[0]), max(max_v, _dump.DEFAULT_LIMITS[1]))
        count = _write_sorted(scratch, out, *limits, progress)
    return DumpReport(count, None, valid, skipped)


def _open_verified(path: PathArg) -> tuple[Store[bytes] | None, CorruptError | None]:
    """(store, None) for a sound store, or (None, the damage found) for a damaged one."""
    from ._open import open as open_store

    try:
        store = open_store(path, "r")
    except CorruptError as e:
        return None, e
    try:
        store._check(full=False)     # every record verified, in constant memory
    except CorruptError as e:
        store.close()
        return None, e
    except BaseException:
        store.close()
        raise
    return store, None


def dump_report(source: Store[Any] | PathArg, file: IO[bytes], *, salvage: bool = False,
                progress: ProgressFactory = _no_progress,
                describe: Callable[[CorruptError], str] = str) -> DumpReport:
    """dump(), returning a DumpReport; progress makes the progress bars (the CLI's)."""
    if is_redis_url(source) or _is_redis_store(source):
        from . import _redis_backup  # mmkv[redis]

        if isinstance(source, str):
            return DumpReport(_redis_backup.dump_url(source, file, progress))
        return DumpReport(_redis_backup.dump_store(cast("Any", source), file, progress))
    if isinstance(source, Store):
        return DumpReport(_dump_store(source, file, progress))
    store, damage = _open_verified(source)
    if store is not None:
        with store:
            return DumpReport(_dump_store(store, file, progress))
    assert damage is not None
    if not salvage:
        raise damage
    report = _dump_salvaged(source, file, progress)
    return report._replace(reason=describe(damage))


def dump(source: Store[Any] | PathArg, file: IO[bytes], *, salvage: bool = False) -> int:
    """Write every record of source (an open Store, or the path of a store) to the binary
    file object file as a dump (the format of `mmkv dump`, specified in mmkv/_dump.py):
    sorted by key, streamed, in memory that does not grow with the store.  Returns the
    number of records written.  A store opened with a codec is dumped as its stored bytes.

    A path to a damaged store raises mmkv.CorruptError, unless salvage=True: then every
    record that is still valid is dumped (what `mmkv dump` does, exit status 3).

    source may also be a Redis URL ("redis://...", "redis+cluster://...") or a store opened
    from one: its namespace is dumped in the same format, sorted in bounded memory.  Redis
    has no snapshot, so that dump is not one moment's state: a key deleted meanwhile is
    skipped, one written meanwhile may or may not be in it (mmkv/_redis_backup.py).

        >>> import io, mmkv, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.mmkv")
        >>> with mmkv.open(path) as d:
        ...     d["k"] = "v"
        >>> out = io.BytesIO()
        >>> mmkv.dump(path, out)
        1
        >>> out.getvalue().splitlines()[1]
        b'{"k":"k","v":"v"}'
    """
    return dump_report(source, file, salvage=salvage).records


# ---- restore ----

def _fill(store: Store[bytes], reader: _dump.DumpReader, total: int | None,
          progress: ProgressFactory) -> None:
    """Put every record of the dump into store (DumpError if the dump fails a check)."""
    bar = progress("mmkv restore:", total=total, unit="bytes" if total else "records")
    for key, value in reader:
        try:
            store[key] = value
        except ValueError as e:         # over the limits the header declared
            raise _dump.DumpError(f"line {reader.lineno}: {e}") from None
        if not reader.count & 1023:
            bar.update(reader.bytes_read if total else reader.count,
                       f"{reader.count:,} records" if total else "")
    bar.finish(reader.bytes_read if total else reader.count,
               f"{reader.count:,} records" if total else "")


def _input_size(f: IO[bytes]) -> int | None:
    import stat

    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def restore(file: IO[bytes], path: PathArg, *, force: bool = False,
            progress: ProgressFactory = _no_progress) -> int:
    """Build the store at path from the dump read from the binary file object file, and
    return the number of records.  Atomic: the store is built beside path, synced, and
    moved into place only once the whole dump has checked (its trailer's count and
    checksum), so path appears whole or not at all; a refused dump (mmkv.DumpError, a
    ValueError naming the line) or any other failure leaves path as it was.  An existing
    path is refused (mmkv.error with errno EEXIST) unless force=True, which replaces it.
    Memory is bounded: a line longer than the dump's limits allow is refused as soon as it
    passes them.

    path may also be a Redis URL: the records go into its namespace, which must hold no key
    (else mmkv.error with errno EEXIST) unless force=True, which clears it first.  That is
    not atomic (Redis offers no such step): other clients see the namespace fill, and a dump
    that fails a check on the way, or an interrupted restore, leaves the namespace cleared
    again, with no partial dump in it (mmkv/_redis_backup.py).

        >>> import io, mmkv, os, tempfile
        >>> where = tempfile.mkdtemp()
        >>> with mmkv.open(os.path.join(where, "a.mmkv")) as d:
        ...     d["k"] = "v"
        >>> out = io.BytesIO()
        >>> mmkv.dump(os.path.join(where, "a.mmkv"), out)
        1
        >>> mmkv.restore(io.BytesIO(out.getvalue()), os.path.join(where, "b.mmkv"))
        1
        >>> with mmkv.open(os.path.join(where, "b.mmkv"), "r") as d:
        ...     d["k"]
        b'v'
    """
    from ._open import open as open_store

    if is_redis_url(path):
        from . import _redis_backup  # mmkv[redis]

        assert isinstance(path, str)
        return _redis_backup.restore_url(file, path, force, progress)
    target = os.fsdecode(os.fspath(path))
    if os.path.isdir(target):
        raise error(errno.EISDIR, "is a directory", target)
    if not force and os.path.lexists(target):
        raise _atomicfile.exists_error(target)
    reader = _dump.DumpReader(file)
    options: dict[str, Any] = {}
    if reader.max_key_len is not None:
        options["max_key_len"] = reader.max_key_len
    if reader.max_value_len is not None:
        options["max_value_len"] = reader.max_value_len
    given = target
    target = os.path.realpath(target)   # through a symlink: replace the file, keep the link
    with contextlib.suppress(FileNotFoundError):
        if os.stat(target).st_nlink > 1:
            raise error(errno.EMLINK, "the store's file has more than one hard link; "
                        "replacing it would replace only one of its names", given)
    tmp = _atomicfile.temp_beside(target, "restore")
    try:
        with open_store(tmp, "n", **options) as store:
            _fill(store, reader, _input_size(file), progress)
            store.sync()                # every record is durable before the rename
        _atomicfile.install(tmp, target, force)
    except BaseException as e:
        _atomicfile.unlink_quietly(tmp)
        named = _atomicfile.naming_target(e, tmp, given)
        if named is not e:
            raise named from None
        raise
    return reader.count


def _is_redis_store(source: object) -> bool:
    """Whether source is a store of the Redis backend (none exists unless mmkv._redis, which
    needs redis-py, was imported: so nothing is imported here)."""
    redis_module = sys.modules.get("mmkv._redis")
    return redis_module is not None and isinstance(source, redis_module.RedisStore)
