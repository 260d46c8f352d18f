"""What every backend's facade shares, above the part that differs (the C core of a local
store, the scripts of a Redis one): argument coercion, the checks that come before any call,
the dict views, and the iteration bookkeeping of a backend whose scan can repeat keys.

The codec layer is shared too, as a mixin of its own (mmkv/_codec.py, CodecLayer); the
error mapping is one function per backend (mmkv/_errors.py exception_for, the local core's
return codes; mmkv/_redis_errors.py remote, redis-py's exceptions).  The surface that all
backends offer is named by mmkv/_protocol.py, StoreProtocol.
"""
from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, ValuesView
from typing import Any, Protocol

from ._store import _bytes, _timeout

as_bytes = _bytes
"""as_bytes(x, what="key") -> bytes: bytes as they are; str as UTF-8; bytearray and
memoryview copied; anything else a TypeError naming `what` ("key" or "value")."""

check_timeout = _timeout
"""check_timeout(value, what) -> float | None: None, or a number of seconds >= 0 as a
float; TypeError for a non-number (bools included), ValueError for a negative or NaN."""

FLAGS = ("r", "w", "c", "n")


def check_flag(flag: object) -> str:
    """open()'s flag, as dbm's: one of "r", "w", "c", "n"; ValueError otherwise."""
    if not isinstance(flag, str) or flag not in FLAGS:
        raise ValueError(f"flag must be one of 'r', 'w', 'c', 'n', not {flag!r}")
    return flag

_INT64 = 1 << 63


def check_delta(delta: object) -> int:
    """incr()'s delta, checked before anything is sent: an int (not a bool) in the 64-bit
    signed range; TypeError or ValueError otherwise."""
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise TypeError(f"delta must be an int, not {type(delta).__name__}")
    if not -_INT64 <= delta < _INT64:
        raise ValueError("delta outside the 64-bit signed range")
    return delta


def none_default() -> TypeError:
    """setdefault(absent_key) without a codec: a store holds only bytes, so the default None
    cannot be inserted."""
    return TypeError("mmkv values must be bytes, bytearray, memoryview or str, not NoneType")


class _Iterable(Protocol):
    def _iterate(self, with_values: bool) -> Iterator[Any]: ...


class Items(ItemsView[bytes, Any]):
    """d.items() of a backend whose _iterate(True) yields (key, value) pairs."""

    __slots__ = ()
    _mapping: _Iterable

    def __iter__(self) -> Iterator[tuple[bytes, Any]]:
        return self._mapping._iterate(True)


class Values(ValuesView[Any]):
    """d.values() of a backend whose _iterate(True) yields (key, value) pairs."""

    __slots__ = ()
    _mapping: _Iterable

    def __iter__(self) -> Iterator[Any]:
        for _, value in self._mapping._iterate(True):
            yield value


def unseen(keys: Iterable[bytes], seen: set[bytes]) -> list[bytes]:
    """The keys of one scan batch not yielded before, in order, each once, added to seen.

    For a backend whose scan returns every key present throughout at least once but maybe
    more often (Redis SCAN): filtering every batch through one `seen` set makes each key
    yielded exactly once; the set grows with the keys yielded."""
    fresh = []
    for key in keys:
        if key not in seen:
            seen.add(key)
            fresh.append(key)
    return fresh
