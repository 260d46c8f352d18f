"""Ordered views: Store.range() over a per-process sorted index of the store's keys.

The index is a sortedcontainers.SortedList of keys (bytes sort bytewise), built on the first
range() call from one batched scan and kept fresh by applying the log from where it last
stopped (mmkv_log_read): PUT adds a key, DEL removes it, a clear removes the keys it lists.
The log position is taken *before* the scan, so replaying from it fixes up whatever the scan
saw mid-change (applying a key's newest record is idempotent).  A compaction, by any
process, retires the file: the index finishes its log and goes on at the new file's own
changes, or rebuilds when changes between the two files were lost.  Table rebuilds do not
touch the log's records, so they need nothing.

One index per file per process: every handle of the process on the same file (and in the
same mode, see mmkv_log_file_id) shares it, whichever handle built it.  It is found by the
number of the file its log is pinned to, re-registered under the new file's number when
it follows a compaction; a handle whose file the index has not reached yet builds its own.
The log is read through the handle that built the index; if that handle is closed, the
next range() rebuilds the index through the handle calling it.

Iteration guarantee: range() refreshes the index, takes the next CHUNK keys after the last
one it yielded (a bound, never a position), yields them, and repeats.  A key present for
the whole iteration is in the index at every refresh and is passed exactly once; a yielded
key was in the store when the index was refreshed during the iteration.  With values=True
each chunk's values come from one get_many (one snapshot), and keys deleted meanwhile are
left out.  Memory: the index holds one bytes object per key (about 40 bytes + the key), 8 bytes for
its slot in the sorted list and about 30 for its entry in a set beside it (the set answers
"is this key indexed?" in O(1) while the log is applied, where the sorted list takes a
bisection: a catch-up per change cost about 40 % less with it when measured).  Nothing here is
written to the file.
"""
from __future__ import annotations

import itertools
import struct
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList

from ._core import ffi, lib

if TYPE_CHECKING:
    from ._store import Key, Store

CHUNK = 256
_BATCH = 1024
_BUF = 1 << 16
_PUT, _DEL, _CLEAR = 1, 2, 5
_MISSING = object()
_ITEM = struct.Struct("=QIIQQ")   # struct mmkv_log_item
_ITEMS = _ITEM.iter_unpack
_ITEM_SIZE = _ITEM.size
_by_file: dict[int, _Index] = {}    # the number of the file an index is pinned to -> it
_by_store: dict[int, _Index] = {}   # id(store) -> the index it uses; dropped with the store


class _Index:
    """The sorted keys of one handle's store and the log position they reflect."""

    def __init__(self, store: Store[Any]) -> None:
        self.mutex = threading.RLock()   # threads of one handle share the index
        self.keys: SortedList[bytes] = SortedList()
        self.present: set[bytes] = set()   # the same keys: membership in O(1) for catch-up
        self.log: Any = None              # the mmkv_log * (cffi cdata), None once closed
        self._finalizer: weakref.finalize[[Any, Any], _Index] | None = None
        self.buf = ffi.new("char[]", _BUF)
        self.items = ffi.new("struct mmkv_log_item[]", _BATCH)
        self.off = ffi.new("uint64_t *")
        self.sub = ffi.new("uint64_t *")
        self.n = ffi.new("size_t *")
        self.need = ffi.new("size_t *")
        self.pos = ffi.new("struct mmkv_log_pos *")
        self.lagged = ffi.new("int *")
        self.fid = 0                      # the number it is registered under in _by_file
        self.users = 0                    # stores whose range() uses it
        self.build(store)

    def build(self, store: Store[Any]) -> None:
        self.close()
        lgp = ffi.new("mmkv_log **")
        rc = lib.mmkv_log_open(store._h, lgp, self.pos)
        if rc < 0:
            store._fail(rc)
        self.log = lgp[0]
        # the finalizer holds the handle too, so the log is closed before the handle is freed
        self._finalizer = weakref.finalize(self, _close_log, self.log, store._h)
        self._register()
        self.off[0], self.sub[0] = self.pos.end, 0
        self.present = set(store)
        self.keys = SortedList(self.present)
        self.refresh(store)

    def _register(self) -> None:
        """File this index under the number of the file its log is pinned to now."""
        if _by_file.get(self.fid) is self:
            del _by_file[self.fid]
        self.fid = lib.mmkv_log_pinned_id(self.log) if self.log is not None else 0
        if self.fid:
            _by_file.setdefault(self.fid, self)

    def close(self) -> None:
        if self._finalizer is not None:
            if _by_file.get(self.fid) is self:
                del _by_file[self.fid]
            self.fid = 0
            self._finalizer()
            self._finalizer = None
            self.log = None

    def refresh(self, store: Store[Any]) -> None:
        """Apply every change published since the last refresh, following compactions."""
        while True:
            rc = lib.mmkv_log_read(self.log, self.off, self.sub, 0, self.buf, len(self.buf),
                                   self.items, _BATCH, self.n, self.need, self.pos)
            if rc == lib.MMKV_EBUFSIZE:
                self.buf = ffi.new("char[]", max(self.need[0], 2 * len(self.buf)))
                continue
            if rc == lib.MMKV_ECLOSED and not store._closed:
                self.build(store)   # the handle that built it was closed: go on through this one
                return
            if rc < 0:
                store._fail(rc)
            count = self.n[0]
            if count:
                self._apply(count)
                continue
            if self.off[0] < self.pos.end:
                continue
            if not self.pos.retired:
                return
            rc = lib.mmkv_log_repin(self.log, self.pos, self.lagged)
            if rc < 0:
                store._fail(rc)
            if self.lagged[0]:
                self.build(store)
                return
            self._register()
            self.off[0], self.sub[0] = self.pos.base_off, 0

    def _apply(self, count: int) -> None:
        # struct mmkv_log_item unpacked in one call: seq, type, klen, vlen, data_off
        items = list(_ITEMS(ffi.buffer(self.items, _ITEM_SIZE * count)))
        _, _, klen, vlen, at = items[-1]           # the log packs the items in order
        data = ffi.unpack(self.buf, min(at + klen + vlen, len(self.buf)))   # one bytes object
        keys, present = self.keys, self.present
        for _, kind, klen, _, at in items:
            if kind == _PUT:
                key = data[at:at + klen]
                if key not in present:
                    present.add(key)
                    keys.add(key)
            elif kind == _DEL:
                key = data[at:at + klen]
                if key in present:
                    present.discard(key)
                    keys.remove(key)
            elif kind == _CLEAR:
                keys.clear()
                present.clear()


def _close_log(log: Any, handle: Any) -> None:
    lib.mmkv_log_close(log)


def _index_for(store: Store[Any]) -> _Index:
    """The index store's range() uses: its own from earlier calls, else the one this process
    keeps for the file it reads now, else a new one."""
    index = _by_store.get(id(store))
    if index is not None and index.log is not None:
        return index
    fid = lib.mmkv_log_file_id(store._h)
    if fid < 0:
        store._fail(fid)
    shared = _by_file.get(fid)
    fresh = shared if shared is not None and shared.log is not None else _Index(store)
    if index is None:
        weakref.finalize(store, _release, id(store))
    else:
        index.users -= 1
    fresh.users += 1
    _by_store[id(store)] = fresh
    return fresh


def _release(store_id: int) -> None:
    index = _by_store.pop(store_id, None)
    if index is not None:
        index.users -= 1
        if index.users <= 0:
            index.close()


def _bound(x: Key | None, what: str) -> bytes | None:
    from ._store import _bytes
    if x is None:
        return None
    try:
        return _bytes(x, what)
    except TypeError:
        raise TypeError(f"range() {what} must be bytes, bytearray, memoryview, str or None, "
                        f"not {type(x).__name__}") from None


def _after_prefix(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key beginning with prefix (None: no such key)."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


def range_of(store: Store[Any], start: Key | None, stop: Key | None, prefix: Key | None,
             reverse: object, values: object) -> Iterator[bytes | tuple[bytes, Any]]:
    """Store.range(): check the arguments now, iterate lazily."""
    lo, hi = _bound(start, "start"), _bound(stop, "stop")
    pre = _bound(prefix, "prefix")
    if pre is not None:
        lo = pre if lo is None else max(lo, pre)
        end = _after_prefix(pre)
        hi = end if hi is None else (hi if end is None else min(hi, end))
    return _walk(store, lo, hi, bool(reverse), bool(values))


def _walk(store: Store[Any], lo: bytes | None, hi: bytes | None, reverse: bool,
          values: bool) -> Iterator[bytes | tuple[bytes, Any]]:
    index = _index_for(store)
    last: bytes | None = None
    while True:
        if store._closed:          # the shared index may be read through another handle
            store._fail(lib.MMKV_ECLOSED)
        with index.mutex:
            index.refresh(store)
            if lo is not None and hi is not None and lo >= hi:
                return
            if not reverse:
                if last is None:
                    it = index.keys.irange(lo, hi, inclusive=(True, False))
                else:
                    it = index.keys.irange(last, hi, inclusive=(False, False))
            else:
                it = index.keys.irange(lo, hi if last is None else last,
                                       inclusive=(True, False), reverse=True)
            chunk = list(itertools.islice(it, CHUNK))
        if not chunk:
            return
        last = chunk[-1]
        if values:
            for key, value in zip(chunk, store.get_many(chunk, _MISSING), strict=True):
                if value is not _MISSING:
                    yield key, value
        else:
            yield from chunk
