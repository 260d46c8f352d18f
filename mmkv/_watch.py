"""Store.watch(): follow the store's log, by any process, and block on its futex when idle.

Every write appends records carrying their seq and, once they are published, bumps a futex
word in the header (and wakes it when a watcher is registered).  A watcher reads the log
from where it stopped (mmkv_log_read), yields each change as (seq, key, value), and when it
has read everything sleeps in mmkv_log_wait: a shared FUTEX_WAIT of at most 100 ms per call,
made through cffi with the GIL released, so Ctrl-C and other threads are never held up and
an idle watcher uses no CPU.  A watcher never takes the writer lock and never makes a writer
wait: one that is slow, stopped or killed only keeps the file it reads mapped.

What a change looks like: a put, incr, setdefault or compare_and_set that stores is
(seq, key, value); a delete, pop, popitem or compare_and_set that deletes is (seq, key, None);
set_many and delete_many give one item per key they changed, in the batch's order (a key
given twice in set_many appears once, with its last value); clear() gives (seq, key, None)
for every key it removed, all with the clear's seq (for a clear recorded by a version that
did not list its keys: one (seq, None, None)).  Seqs grow but are not consecutive: tables
and batch bookkeeping take seqs too.

Compaction keeps seqs: the watcher finishes the old file's log and goes on with the new
file's own changes.  If a compaction dropped changes it had not read yet (it fell behind
two compactions, or started from a `since` older than the current file), it raises
mmkv.WatchLagged; resume from a fresh read and Store.seq.
"""
from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeAlias

from ._core import ffi, lib
from ._errors import WatchLagged

if TYPE_CHECKING:
    from ._store import Store

# (seq, key, value): key None only for a clear recorded without its keys, value None for a
# delete
Change: TypeAlias = tuple[int, bytes | None, bytes | None]

_BATCH = 256
_BUF = 1 << 16
_PUT, _DEL, _CLEAR = 1, 2, 5
_SLICE = 0.1
_ITEM = struct.Struct("=QIIQQ")   # struct mmkv_log_item
_ITEMS = _ITEM.iter_unpack
_ITEM_SIZE = _ITEM.size


def _lagged(store: Store[Any]) -> WatchLagged:
    return WatchLagged(5, "watch() fell behind a compaction that dropped changes it had not "
                          "seen; resume from a fresh read and Store.seq", store._path)


def watch_of(store: Store[Any], since: object, timeout: object) -> Iterator[Change]:
    """Check the arguments and take the starting point now; the changes come lazily."""
    if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
        raise TypeError(f"since must be an int or None, not {type(since).__name__}")
    if since is not None and since < 0:
        raise ValueError("since must be >= 0")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
        if timeout < 0:
            raise ValueError("timeout must be >= 0")
    pos = ffi.new("struct mmkv_log_pos *")
    lgp = ffi.new("mmkv_log **")
    rc = lib.mmkv_log_open(store._h, lgp, pos)
    if rc < 0:
        store._fail(rc)
    log = lgp[0]
    off = ffi.new("uint64_t *")
    lagged = False
    if since is None:
        off[0] = pos.end
        since = 0
    else:
        rc = lib.mmkv_log_find(log, since, off)
        if rc < 0:
            lib.mmkv_log_close(log)
            store._fail(rc)
        lagged = rc == 1
    return _follow(store, store._h, log, off, pos, since, timeout, lagged)


def _follow(store: Store[Any], handle: Any, log: Any, off: Any, pos: Any, since: int,
            timeout: float | None, behind: bool) -> Iterator[Change]:
    if behind:   # raised on the first next(), as every other outcome of the watch
        lib.mmkv_log_close(log)
        raise _lagged(store)
    sub = ffi.new("uint64_t *")
    buf = ffi.new("char[]", _BUF)
    items = ffi.new("struct mmkv_log_item[]", _BATCH)
    n, need, lagged = ffi.new("size_t *"), ffi.new("size_t *"), ffi.new("int *")
    idle_since = time.monotonic()
    try:
        while True:
            rc = lib.mmkv_log_read(log, off, sub, 1, buf, len(buf), items, _BATCH, n, need, pos)
            if rc == lib.MMKV_EBUFSIZE:
                buf = ffi.new("char[]", max(need[0], 2 * len(buf)))
                continue
            if rc < 0:
                store._fail(rc)
            if n[0]:
                changes = _changes(buf, items, n[0], since)
                if changes:
                    yield from changes
                    idle_since = time.monotonic()
                continue
            if pos.retired:
                rc = lib.mmkv_log_repin(log, pos, lagged)
                if rc < 0:
                    store._fail(rc)
                if lagged[0]:
                    raise _lagged(store)
                off[0], sub[0] = pos.base_off, 0
                continue
            left = _SLICE if timeout is None else timeout - (time.monotonic() - idle_since)
            if left <= 0:
                return
            rc = lib.mmkv_log_wait(log, off[0], int(min(left, _SLICE) * 1e9))
            if rc < 0:
                store._fail(rc)
    finally:
        lib.mmkv_log_close(log)
        del handle   # kept alive until the log is closed


def _changes(buf: Any, items: Any, count: int, since: int) -> list[Change]:
    data = ffi.buffer(buf, len(buf))
    out: list[Change] = []
    # struct mmkv_log_item unpacked in one call: seq, type, klen, vlen, data_off
    for seq, kind, klen, vlen, at in _ITEMS(ffi.buffer(items, _ITEM_SIZE * count)):
        if seq <= since:
            continue
        if kind == _PUT:
            out.append((seq, data[at:at + klen], data[at + klen:at + klen + vlen]))
        elif kind == _DEL:
            out.append((seq, data[at:at + klen], None))
        elif kind == _CLEAR:
            out.append((seq, None, None))
    return out
