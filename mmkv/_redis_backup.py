"""mmkv.dump and mmkv.restore for the Redis backend: a namespace on a Redis server or Redis
Cluster written as a dump (the format of mmkv/_dump.py, unchanged) and a dump read back
into a namespace, so `mmkv dump redis://... | mmkv restore - local.mmkv` and back move a
store between the two.  mmkv/_backup.py calls here for a Redis URL or a RedisStore.

dump: SCAN of every primary (the namespace's keys only), each batch's value lengths asked in
one pipeline; the keys sorted in bounded memory by mmkv/_sort.py (which also drops SCAN's
repeats, so no set of the keys seen is kept); then the values read with get_many in
batches of bounded size, in key order.  Redis has no snapshot: the dump is not the state of
one moment.  A key present throughout is dumped once with a value it had during the dump; a
key deleted meanwhile is skipped; one written meanwhile may or may not be in it.  The
header declares mmkv.open()'s default limits, raised to fit the longest key and value seen,
so a namespace restored from a default local store dumps back byte for byte the same.

restore: refused (mmkv.error, EEXIST) when the namespace holds keys, unless force, which
clears it first; the records go in with set_many, a batch at a time, as they are read.  Not
atomic: other clients see the namespace fill.  When the dump fails a check on the way (a
bad line, a truncated dump, its trailer's count or checksum), or the restore is interrupted,
the namespace is cleared again, so no partial dump is left behind; a server lost mid-way
can leave the keys written so far.
"""
from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from . import _dump
from ._errors import error
from ._redis import RedisStore
from ._redis_errors import remote
from ._sort import KeySorter

if TYPE_CHECKING:
    from ._backup import ProgressFactory

SCAN_COUNT = 1000                  # the COUNT hint of one SCAN call
BATCH_KEYS = 1000                  # the most keys one get_many or set_many call carries
BATCH_BYTES = 8 * 1024 * 1024      # about the most value bytes one such call carries


# ---- dump ----

def _scan(store: RedisStore) -> Iterator[tuple[list[bytes], list[int]]]:
    """(keys, their value lengths) of each SCAN batch of every primary, the namespace
    prefix removed; SCAN may return a key twice (the sorter drops repeats)."""
    cut = len(store._kp)
    for client in store._primaries():
        cursor = 0
        while True:
            with remote(store.url, False):
                cursor, rkeys = client.scan(cursor, match=store._kp + b"*", count=SCAN_COUNT)
                pipe = client.pipeline(transaction=False)
                for rkey in rkeys:
                    pipe.strlen(rkey)
                lengths: list[int] = pipe.execute() if rkeys else []
            yield [k[cut:] for k in rkeys], lengths
            if cursor == 0:
                break


def _collect(store: RedisStore, sorter: KeySorter, progress: ProgressFactory) -> tuple[int, int]:
    """Add every key of the namespace to sorter; the longest key and value lengths seen."""
    bar = progress("mmkv dump: reading keys", total=len(store))
    longest_key = longest_value = 0
    for keys, lengths in _scan(store):
        for key in keys:
            sorter.add(key)
            longest_key = max(longest_key, len(key))
        longest_value = max([longest_value, *lengths])
        bar.update(sorter.count)
    bar.finish(sorter.count)
    return longest_key, longest_value


def _limits(store: RedisStore, longest_key: int, longest_value: int) -> tuple[int, int]:
    """The header's limits: mmkv.open()'s defaults, raised to fit what the namespace holds
    (a local store cannot hold a key over MAX_KEY_LEN: such a namespace cannot be dumped)."""
    if longest_key > _dump.MAX_KEY_LEN or longest_value > _dump.MAX_VALUE_LEN:
        raise error(errno.EFBIG, f"a key of {longest_key:,} bytes or a value of "
                                 f"{longest_value:,} bytes is over what a dump may hold "
                                 f"({_dump.MAX_KEY_LEN:,} and {_dump.MAX_VALUE_LEN:,})",
                    store.url)
    return (max(_dump.DEFAULT_LIMITS[0], longest_key),
            max(_dump.DEFAULT_LIMITS[1], longest_value))


def _batches(keys: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def dump_store(store: RedisStore, out: IO[bytes], progress: ProgressFactory) -> int:
    """Write the namespace of store to out as a dump, in key order (see the module's
    docstring for what a dump of a namespace others write holds); the records written.
    A codec store is dumped as its stored bytes."""
    with KeySorter() as sorter:
        longest_key, longest_value = _collect(store, sorter, progress)
        limits = _limits(store, longest_key, longest_value)
        writer = _dump.DumpWriter(out, *limits)
        bar = progress("mmkv dump: writing", total=sorter.count)
        per_call = max(1, min(BATCH_KEYS, BATCH_BYTES // max(1, longest_value)))
        for keys in _batches(sorter.sorted(), per_call):
            values: list[bytes | None] = RedisStore.get_many(store, keys)
            for key, value in zip(keys, values, strict=True):
                if value is None:
                    continue            # deleted since the scan
                if len(value) > limits[1]:
                    raise error(errno.EAGAIN, f"a value grew past the {limits[1]:,} bytes the "
                                              "dump's header declares while it was dumped "
                                              "(Redis has no snapshot); dump again", store.url)
                writer.write(key, value)
            bar.update(writer.count)
        bar.finish(writer.count)
        return writer.finish()


def dump_url(url: str, out: IO[bytes], progress: ProgressFactory) -> int:
    """dump_store() of the namespace a Redis URL names."""
    with RedisStore(url, "r") as store:
        return dump_store(store, out, progress)


# ---- restore ----

def _refuse_nonempty(store: RedisStore, force: bool) -> int:
    """The keys the namespace holds; mmkv.error (EEXIST) if some and not force."""
    count = len(store)
    if count and not force:
        raise error(errno.EEXIST, f"exists: its namespace holds {count:,} keys; use "
                                  "force=True (--force) to replace them", store.url)
    return count


def _fill(store: RedisStore, reader: _dump.DumpReader, progress: ProgressFactory) -> None:
    """Every record of the dump into store, set_many a batch at a time (DumpError as soon
    as the dump fails a check)."""
    bar = progress("mmkv restore:", total=None)
    batch: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in reader:
        batch.append((key, value))
        size += len(key) + len(value)
        if len(batch) >= BATCH_KEYS or size >= BATCH_BYTES:
            RedisStore.set_many(store, batch)
            batch, size = [], 0
            bar.update(reader.count)
    RedisStore.set_many(store, batch)
    bar.finish(reader.count)


def _clear_quietly(store: RedisStore) -> None:
    """Empty the namespace after a failed restore, as far as the server lets us."""
    try:
        RedisStore.clear(store)
    except OSError:
        pass                            # the server is gone: its own error is reported


def restore_url(file: IO[bytes], url: str, force: bool, progress: ProgressFactory) -> int:
    """Fill the namespace a Redis URL names from the dump read from file; the records.
    See the module's docstring: refused if not empty (unless force, which clears it); not
    atomic; cleared again when the dump fails a check on the way or the restore is
    interrupted."""
    with RedisStore(url, "c") as store:
        present = _refuse_nonempty(store, force)
        reader = _dump.DumpReader(file)         # a foreign header: refused, nothing touched
        if present:
            RedisStore.clear(store)
        try:
            _fill(store, reader, progress)
        except BaseException:
            _clear_quietly(store)
            raise
        return reader.count

