"""watch() and seq on a Redis store: reading the change streams that the write scripts fill.

A change's stream entry is written by the same script as the change, so the stream is the
commit order.  seq is the entry id MS-N read as the integer MS << 20 | N.

One server: one stream, mmkv:NS:log.  The watcher reads it with a script that also checks
the stream's max-deleted-entry-id (trimmed by watch_backlog), so a watcher that fell behind
the trim gets mmkv.WatchLagged rather than a silent gap; it waits with XREAD BLOCK (no
polling), in slices shorter than the socket timeout.

A cluster: one stream per slot (a script touches one slot).  Order: commit order within a
slot; across slots, the order in which the watcher learns of them, seqs being the
primaries' clocks (not a total order; d.seq waits for them to pass a millisecond).  After
each write the writer publishes the slot's tag on mmkv:NS:changes; the watcher subscribes,
and at start reads every slot stream that exists.  A writer killed between its script and
its notice leaves that change in its stream, unseen by a running watcher until the next
change in the same slot.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._facade import check_timeout
from ._redis import id_of, seq_of
from ._redis_errors import remote, watch_lagged

if TYPE_CHECKING:
    from ._redis import RedisStore

_BATCH = 1000
Change = tuple[int, bytes, "bytes | None"]     # (seq, key, value or None for a delete)


def current_seq(store: RedisStore) -> int:
    """One server: the seq of the last change (0 if none).  A cluster: the primaries' clock
    as a seq, MS << 20 | 0xFFFFF, returned once every primary's clock has passed MS, so a
    change committed before the call has a seq <= it and one committed after, a greater."""
    client = store._live()
    if not store._u.cluster:
        with remote(store.url, False):
            last = client.xrevrange(store._base + b"log", count=1)
        last_id: bytes | None = last[0][0] if last else None
        return 0 if last_id is None else seq_of(last_id)
    primaries = store._primaries()
    ms = max(_clock_ms(store, primaries))
    while min(_clock_ms(store, primaries)) <= ms:
        time.sleep(0.0005)
    return ms << 20 | 0xFFFFF


def _clock_ms(store: RedisStore, primaries: list[Any]) -> list[int]:
    with remote(store.url, False):
        clocks: list[tuple[int, int]] = [c.time() for c in primaries]
    return [sec * 1000 + usec // 1000 for sec, usec in clocks]


def _read(store: RedisStore, stream: bytes, cursor: int) -> list[Change]:
    """The entries of stream after seq cursor, as (seq, key, value) triples."""
    with remote(store.url, False):
        reply = store._scripts["WATCH_READ"]([stream], [id_of(cursor), _BATCH], store._live())
    deleted: bytes = reply[0]
    entries: list[tuple[bytes, list[bytes]]] = reply[1]
    if seq_of(deleted) > cursor:
        raise watch_lagged(store.url, cursor)
    cut = len(store._kp)
    out: list[Change] = []
    for entry_id, fields in entries:
        pairs = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append((seq_of(entry_id), pairs[b"k"][cut:], pairs.get(b"v")))
    return out


def _remaining(timeout: float | None, last: float) -> float | None:
    return None if timeout is None else timeout - (time.monotonic() - last)


def _slice(store: RedisStore, remaining: float | None) -> float:
    """Seconds to wait in one blocking call: under the socket timeout."""
    cap = max(0.001, store._u.socket_timeout * 0.5)
    return cap if remaining is None else max(0.001, min(cap, remaining))


def watch(store: RedisStore, since: int | None, timeout: float | None) -> Iterator[Change]:
    if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
        raise TypeError(f"since must be an int seq, not {type(since).__name__}")
    timeout = check_timeout(timeout, "timeout")
    start = current_seq(store) if since is None else since
    if store._u.cluster:
        return _watch_cluster(store, start, timeout)
    return _watch_one(store, start, timeout)


def _watch_one(store: RedisStore, cursor: int, timeout: float | None) -> Iterator[Change]:
    stream = store._base + b"log"
    last = time.monotonic()
    while True:
        batch = _read(store, stream, cursor)
        for change in batch:
            yield change
            cursor = change[0]
        if batch:
            last = time.monotonic()
            continue
        remaining = _remaining(timeout, last)
        if remaining is not None and remaining <= 0:
            return
        with remote(store.url, False):
            store._live().xread({stream: id_of(cursor)}, count=1,
                                block=max(1, int(_slice(store, remaining) * 1000)))


def _drain(store: RedisStore, stream: bytes, cursors: dict[bytes, int],
           start: int) -> list[Change]:
    out: list[Change] = []
    while True:
        batch = _read(store, stream, cursors.get(stream, start))
        if not batch:
            return out
        out.extend(batch)
        cursors[stream] = batch[-1][0]


def _slot_streams(store: RedisStore) -> Iterable[bytes]:
    for client in store._primaries():
        with remote(store.url, False):
            found: list[bytes] = list(client.scan_iter(match=store._base + b"log:*", count=1000,
                                          _type="STREAM"))
        yield from found


def _watch_cluster(store: RedisStore, start: int,
                   timeout: float | None) -> Iterator[Change]:
    cursors: dict[bytes, int] = {}
    with remote(store.url, False):
        sub = store._live().pubsub()
        sub.subscribe(store._base + b"changes")
    try:
        changes = []
        for stream in _slot_streams(store):
            changes.extend(_drain(store, stream, cursors, start))
        changes.sort(key=lambda change: change[0])
        yield from changes
        last = time.monotonic()
        while True:
            remaining = _remaining(timeout, last)
            if remaining is not None and remaining <= 0:
                return
            with remote(store.url, False):
                message: dict[str, Any] | None = sub.get_message(
                    timeout=_slice(store, remaining))
            if not message or message.get("type") != "message":
                continue
            stream = store._base + b"log:{" + message["data"] + b"}"
            batch = _drain(store, stream, cursors, start)
            if batch:
                last = time.monotonic()
            yield from batch
    finally:
        sub.close()
