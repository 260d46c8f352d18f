"""A consistent snapshot of a store: its contents at one moment, read while other processes
go on writing (what `mmkv dump` writes).

The core takes the moment (native/snapshot.c): the end of the log at an instant when no
`lock()` block and no write is in progress, found under the writer lock for a writable
handle (held for two loads) and by watching the lock for a read-only one (one that finds
the lock busy for long, and may write the file, takes it through a writable twin); it pins
that file
and walks its log up to the moment, keeping each key's last record at or below it.  Writers
are held up for no longer than one write; a compaction meanwhile changes nothing, since the
pinned file stays mapped.

    snapshot_items(store)               (key, value) pairs of the moment, in no order
    snapshot_items(store, sort=True)    the same in increasing bytewise key order, sorted in
                                        bounded memory (external merge sort of (key, offset)
                                        pairs; values are read one at a time at the end)
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ._core import ffi, lib
from ._sort import KEY_OVERHEAD, KeySorter

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._store import Store

_BATCH_KEYS = 1024
_BUF_LEN = 1 << 20
_WAIT_FIRST, _WAIT_MAX = 0.0002, 0.02     # sleeps while a writer holds the lock (read-only)


class _Snapshot:
    """The pinned moment; use as a context manager."""

    def __init__(self, store: Store[Any], patience: float | None = None) -> None:
        self._store = store
        out = ffi.new("mmkv_snapshot **")
        seq = ffi.new("uint64_t *")
        wait = _WAIT_FIRST
        start = time.monotonic()
        while True:
            rc = lib.mmkv_snapshot_begin(store._h, out, seq)
            if rc == lib.MMKV_EWAIT:      # the lock is held: waited one slice; again
                continue
            if rc != -11:                 # -EAGAIN: a live thread holds the lock; look again
                break
            if patience is not None and time.monotonic() - start > patience:
                raise _Busy
            time.sleep(wait)
            wait = min(wait * 2, _WAIT_MAX)
        if rc < 0:
            store._fail(rc)
        self._h = ffi.gc(out[0], lib.mmkv_snapshot_end)
        self.seq = seq[0]
        self._buf = ffi.new("char[]", _BUF_LEN)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._h is not None:
            h, self._h = self._h, None
            ffi.release(h)                # runs mmkv_snapshot_end now

    def entries(self) -> Iterator[tuple[bytes, int]]:
        """(key, offset) of every key live at the moment, in no particular order."""
        cap = _BUF_LEN
        buf = ffi.new("char[]", cap)
        klens = ffi.new("uint32_t[]", _BATCH_KEYS)
        offs = ffi.new("uint64_t[]", _BATCH_KEYS)
        n = ffi.new("size_t *")
        need = ffi.new("size_t *")
        done = False
        while not done:
            rc = lib.mmkv_snapshot_next(self._h, buf, cap, klens, offs, _BATCH_KEYS, n, need)
            if rc == lib.MMKV_EBUFSIZE:
                cap = need[0]
                buf = ffi.new("char[]", cap)
                continue
            if rc < 0:
                self._store._fail(rc)
            done = rc == 1
            raw = ffi.unpack(buf, sum(klens[i] for i in range(n[0])))
            pos = 0
            for i in range(n[0]):
                end = pos + klens[i]
                yield raw[pos:end], offs[i]
                pos = end

    def value(self, off: int) -> bytes:
        """The value of the record at off (from keys()), its checksum verified."""
        rc = lib.mmkv_snapshot_value(self._h, off, self._buf, len(self._buf))
        if rc > len(self._buf):
            buf = ffi.new("char[]", rc)
            rc = lib.mmkv_snapshot_value(self._h, off, buf, rc)
            if rc < 0:
                self._store._fail(rc)
            data: bytes = ffi.unpack(buf, rc)
            return data
        if rc < 0:
            self._store._fail(rc)
        data = ffi.unpack(self._buf, rc)
        return data


class _PairSorter(KeySorter):
    """KeySorter over (key, offset) pairs, counting memory by the key's length."""

    def add(self, pair: tuple[bytes, int]) -> None:  # type: ignore[override]  # pairs, not keys
        self._batch.append(pair)  # type: ignore[arg-type]  # the base sorts keys; pairs sort too
        self.count += 1
        self._batch_bytes += len(pair[0]) + KEY_OVERHEAD + 32
        if self._batch_bytes >= self._run_bytes:
            self._spill()


class _Busy(Exception):
    """A read-only handle watched the lock for its patience without finding it free."""


_PATIENCE = 0.05    # seconds a read-only handle watches the lock before it asks for a twin


def _writable_twin(store: Store[Any]) -> Store[Any] | None:
    """A writable handle on the same store as read-only `store`, if this process may write
    the file, else None.  Its snapshot takes the lock, which a writer that re-takes the lock
    as soon as it lets go cannot starve, as it can starve a read-only handle watching it."""
    from ._open import open as _open_file
    from ._open import open_shm
    try:
        if store._shm:
            return open_shm(os.fsdecode(store._path).split(":", 1)[1], "w")
        return _open_file(store._path, "w")
    except (OSError, ValueError):
        return None


def snapshot_items(store: Store[Any], sort: bool = False,
                   on_key: Callable[[int], object] | None = None
                   ) -> Iterator[tuple[bytes, bytes]]:
    """Iterate the (key, value) pairs of store at one moment (see the module docstring).
    on_key(count), if given, is called every 1024 keys while the keys are gathered."""
    readonly = store._flag & 0xFF == lib.MMKV_OPEN_READ
    try:
        snap = _Snapshot(store, _PATIENCE if readonly else None)
    except _Busy:
        snap = None
    if snap is not None:
        yield from _items(snap, sort, on_key)
        return
    twin = _writable_twin(store)
    try:
        yield from _items(_Snapshot(store if twin is None else twin), sort, on_key)
    finally:
        if twin is not None:
            twin.close()


def _items(snap: _Snapshot, sort: bool, on_key: Callable[[int], object] | None
           ) -> Iterator[tuple[bytes, bytes]]:
    with snap:
        if not sort:
            for key, off in snap.entries():
                yield key, snap.value(off)
            return
        with _PairSorter() as sorter:
            for pair in snap.entries():
                sorter.add(pair)
                if on_key is not None and not sorter.count & 1023:
                    on_key(sorter.count)
            pairs = cast("Iterator[tuple[bytes, int]]", sorter.sorted())   # it sorted pairs
            for key, off in pairs:
                yield key, snap.value(off)
