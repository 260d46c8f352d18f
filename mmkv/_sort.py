"""KeySorter: an external merge sort of keys in bounded memory, for `dump` (which writes
records in key order while the store hands them out in hash order).

Sorted runs are spilled to files in a private temporary directory, merged FAN_IN at a time,
and streamed by a final heapq.merge; nothing here knows about stores or the dump format.
"""
from __future__ import annotations

import heapq
import marshal
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

RUN_BYTES = 8 * 1024 * 1024           # memory budget of one sorted run (keys + overhead)
KEY_OVERHEAD = 64                     # what a bytes object and its list slot cost beyond len
FAN_IN = 64                           # runs merged at once
_BLOCK_KEYS = 1024                    # keys per block of a run file


class KeySorter:
    """External merge sort of keys: add() them in any order, then iterate sorted() for the
    distinct keys in bytewise order.

    Keys are held in memory up to run_bytes (counting KEY_OVERHEAD per key), then sorted and
    spilled as a run to a temporary file (marshal'd lists of up to 1024 keys; the files live
    in a private directory of this process and are only ever read by it).
    Runs are merged FAN_IN at a time into runs of the next level, so open files and memory
    stay bounded whatever the number of keys; the final merge streams with heapq.merge.
    Memory: O(run_bytes + FAN_IN * levels * (64 KiB + a block of keys)); disk: about twice
    the keys' size.
    Use as a context manager: the temporary directory goes away on exit.
    """

    def __init__(self, run_bytes: int = RUN_BYTES, tmpdir: str | None = None) -> None:
        self._run_bytes = run_bytes
        self._tmpdir = tmpdir
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._levels: list[list[str]] = []      # self._levels[i]: paths of runs at level i
        self._runs = 0
        self.count = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def add(self, key: bytes) -> None:
        self._batch.append(key)
        self.count += 1
        self._batch_bytes += len(key) + KEY_OVERHEAD
        if self._batch_bytes >= self._run_bytes:
            self._spill()

    def _new_run_path(self) -> str:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="mmkv-sort-", dir=self._tmpdir)
        self._runs += 1
        return os.path.join(self._dir.name, f"run-{self._runs}")

    def _write_run(self, keys: Iterable[bytes]) -> str:
        path = self._new_run_path()
        with open(path, "wb", buffering=1 << 16) as f:
            block = []
            for key in keys:
                block.append(key)
                if len(block) == _BLOCK_KEYS:
                    marshal.dump(block, f)
                    block = []
            if block:
                marshal.dump(block, f)
        return path

    def _add_run(self, path: str, level: int) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        self._levels[level].append(path)
        if len(self._levels[level]) >= FAN_IN:
            paths, self._levels[level] = self._levels[level], []
            merged = self._write_run(_unique(heapq.merge(*map(_read_run, paths))))
            for p in paths:
                os.unlink(p)
            self._add_run(merged, level + 1)

    def _spill(self) -> None:
        self._batch.sort()
        path = self._write_run(_unique(self._batch))
        self._batch, self._batch_bytes = [], 0
        self._add_run(path, 0)

    def sorted(self) -> Iterator[bytes]:
        """Iterate the distinct keys added, in increasing bytewise order (call once)."""
        self._batch.sort()
        batch, self._batch = self._batch, []
        paths = [p for level in self._levels for p in level]
        if not paths:
            return _unique(batch)
        return _unique(heapq.merge(iter(batch), *map(_read_run, paths)))


def _read_run(path: str) -> Iterator[bytes]:
    """The keys of a run file, in file order."""
    with open(path, "rb", buffering=1 << 16) as f:
        while True:
            try:
                block: list[bytes] = marshal.load(f)
            except EOFError:
                return
            yield from block


def _unique(keys: Iterable[bytes]) -> Iterator[bytes]:
    """Drop adjacent duplicates from a sorted iterable (iteration may meet a key twice)."""
    last = None
    for key in keys:
        if key != last:
            yield key
            last = key
