"""Salvage: the binding of the core's read-only salvage walk (mmkv_salvage_*), and replay(),
which applies the valid records it finds to a scratch store, so `dump` of a damaged store
can write what is still there.  Never writes the damaged file.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from ._core import ffi, lib
from ._errors import exception_for


class Salvage:
    """The core's read-only salvage walk over any file, replayed: items() yields
    (type, key, value) for every valid PUT, DEL and CLEAR record in log order; counts() gives
    (valid, skipped) as the core reports them.  Never writes the file."""

    PUT, DEL, CLEAR = 1, 2, 5
    _BATCH = 1024

    def __init__(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
        self._path = path
        out = ffi.new("mmkv_salvage **")
        rc = lib.mmkv_salvage_open(os.fsencode(path), out)
        if rc < 0:
            raise exception_for(rc, os.fsdecode(path))
        self._h: Any = ffi.gc(out[0], lib.mmkv_salvage_close)

    def items(self) -> Iterator[tuple[int, bytes, bytes]]:
        cap = 1 << 20
        buf = ffi.new("char[]", cap)
        items = ffi.new("struct mmkv_salvage_item[]", self._BATCH)
        n, need = ffi.new("size_t *"), ffi.new("size_t *")
        while True:
            rc = lib.mmkv_salvage_next(self._h, buf, cap, items, self._BATCH, n, need)
            if rc == lib.MMKV_EBUFSIZE:
                cap = max(need[0], 2 * cap)
                buf = ffi.new("char[]", cap)
                continue
            if rc < 0:
                raise exception_for(rc, os.fsdecode(self._path))
            yield from self._batch(buf, items, n[0])
            if rc == 1:
                return

    @staticmethod
    def _batch(buf: Any, items: Any, n: int) -> Iterator[tuple[int, bytes, bytes]]:
        batch = [items[i] for i in range(n)]
        end = max((it.data_off + it.klen + it.vlen for it in batch), default=0)
        data: bytes = ffi.unpack(buf, end)
        for it in batch:
            k_off = it.data_off
            v_off = k_off + it.klen
            yield it.type, data[k_off:v_off], data[v_off:v_off + it.vlen]

    def counts(self) -> tuple[int, int]:
        valid, skipped = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.mmkv_salvage_counts(self._h, valid, skipped)
        return valid[0], skipped[0]

    def close(self) -> None:
        if self._h is not None:
            ffi.release(self._h)     # runs mmkv_salvage_close now
            self._h = None


def replay(salvage: Salvage, store: Any,
           progress: Callable[[int], object] | None = None) -> tuple[int, int]:
    """Apply the salvaged records to store in log order (PUT sets, DEL removes, CLEAR
    empties), calling progress(records so far) every 1024 records.  Returns the longest key
    and value put, so a dump of the result can declare limits its records fit."""
    max_k = max_v = 0
    for i, (kind, key, value) in enumerate(salvage.items(), 1):
        if kind == Salvage.PUT:
            store[key] = value
            max_k, max_v = max(max_k, len(key)), max(max_v, len(value))
        elif kind == Salvage.DEL:
            store.pop(key, None)
        elif kind == Salvage.CLEAR:
            store.clear()
        if progress is not None and not i & 1023:
            progress(i)
    return max_k, max_v
