"""The codec layer: CodecLayer, the mixin that puts a codec (any object with dumps and loads)
over any backend's bytes methods; CodecStore, a local Store with it (mmkv/_redis.py has
RedisCodecStore); and open_shelf(), the shelve.Shelf over a store in one call.

Keys stay bytes (str is UTF-8).  Values are encoded with codec.dumps (bytes, or str stored as
UTF-8) on every write and decoded with codec.loads (given bytes) on every read, so each
operation stays one atomic call into the core.  incr() is the core's, on the raw value: it
works on values that are decimal integers in ASCII (json stores 5 as b"5").  This module never
unpickles anything by itself: pickle is used only when the caller passes it as the codec.
"""
from __future__ import annotations

import importlib
import shelve
import sys
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, Protocol

from ._store import Store

if TYPE_CHECKING:
    from os import PathLike

    from ._store import Key

_MISSING: Any = object()


class Codec(Protocol):
    """What codec= accepts: the json, pickle and msgpack modules qualify as they are."""

    def dumps(self, obj: Any, /) -> bytes | str: ...

    def loads(self, data: bytes, /) -> Any: ...


def codec_ref(codec: Codec | None) -> tuple[str, Any]:
    """What a pickle holds for codec (every backend's __reduce__): a module (json, pickle,
    msgpack) by its name, since modules do not pickle; any other codec as itself (it must
    pickle); None as None."""
    if isinstance(codec, types.ModuleType) and sys.modules.get(codec.__name__) is codec:
        return ("module", codec.__name__)
    return ("object", codec)


def codec_from_ref(ref: tuple[str, Any]) -> Codec | None:
    """The codec that codec_ref(codec) stands for, its module imported again."""
    how, codec = ref
    if how == "module":
        module: Codec = importlib.import_module(codec)      # json, pickle, msgpack
        return module
    return check_codec(codec) if codec is not None else None


def check_codec(codec: object) -> Codec:
    """codec itself, if it has callable dumps and loads; else TypeError."""
    for name in ("dumps", "loads"):
        if not callable(getattr(codec, name, None)):
            raise TypeError(f"codec must have callable dumps() and loads(); "
                            f"{type(codec).__name__} object has no callable {name}()")
    return codec  # type: ignore[return-value]


class _Items(ItemsView[bytes, Any]):
    __slots__ = ()
    _mapping: CodecLayer

    def __iter__(self) -> Iterator[tuple[bytes, Any]]:
        store = self._mapping
        loads = store._loads
        for key, raw in store._iterate(True):
            yield key, loads(raw)


class _Values(ValuesView[Any]):
    __slots__ = ()
    _mapping: CodecLayer

    def __iter__(self) -> Iterator[Any]:
        store = self._mapping
        loads = store._loads
        for _, raw in store._iterate(True):
            yield loads(raw)


if TYPE_CHECKING:
    class _Raw:
        """What CodecLayer reaches through super(): the backend's bytes methods (here for
        the type checker only; at run time the next class in the MRO is the backend)."""

        def __getitem__(self, key: Key) -> Any: ...
        def get(self, key: Key, default: Any = None) -> Any: ...
        def get_many(self, keys: Iterable[Key], default: Any = None) -> list[Any]: ...
        def __setitem__(self, key: Key, value: Any) -> None: ...
        def pop(self, key: Key, default: Any = ...) -> Any: ...
        def popitem(self) -> tuple[bytes, Any]: ...
        def setdefault(self, key: Key, default: Any = None) -> Any: ...
        def set_many(self, items: Any) -> None: ...
        def compare_and_set(self, key: Key, expected: Any, new: Any) -> bool: ...
        def watch(self, since: int | None = None,
                  timeout: float | None = None) -> Iterator[tuple[int, bytes, Any]]: ...
        def _iterate(self, with_values: bool) -> Iterator[Any]: ...
else:
    _Raw = object


class CodecLayer(_Raw):
    """The codec layer of every backend, a mixin placed before the backend's bytes class:
    class CodecStore(CodecLayer, Store[Any]) (a local store), class
    RedisCodecStore(CodecLayer, RedisStore).  Writes encode with codec.dumps, reads decode
    with codec.loads, and each operation is still the backend's one atomic call on bytes.
    incr(), delete_many() and the key views are the backend's, untouched.
    """

    __slots__ = ()
    _codec: Codec
    _dumps: Callable[[Any], object]
    _loads: Callable[[bytes], Any]

    def __init__(self, *args: Any, codec: Codec, **kwargs: Any) -> None:
        self._codec = check_codec(codec)        # before the backend opens anything
        self._loads = codec.loads
        self._dumps = codec.dumps
        super().__init__(*args, **kwargs)

    @property
    def codec(self) -> Codec:
        """The codec this store's values go through."""
        return self._codec

    def _encode(self, value: Any) -> bytes:
        data = self._dumps(value)
        if isinstance(data, str):
            return data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        raise TypeError(f"codec.dumps() must return bytes or str, not {type(data).__name__}")

    # ---- reads ----

    def __getitem__(self, key: Key) -> Any:
        return self._loads(super().__getitem__(key))

    def get(self, key: Key, default: Any = None) -> Any:
        """D.get(k[, d]) -> D[k] decoded if k in D, else d (default None)."""
        raw = super().get(key, _MISSING)
        return default if raw is _MISSING else self._loads(raw)

    def items(self) -> ItemsView[bytes, Any]:
        return _Items(self)                     # type: ignore[arg-type]  # a Mapping, mixed

    def values(self) -> ValuesView[Any]:
        return _Values(self)                    # type: ignore[arg-type]  # a Mapping, mixed

    def get_many(self, keys: Iterable[Key], default: Any = None) -> list[Any]:
        """The decoded values of keys, in order, all as of one moment; default for a
        missing key."""
        loads = self._loads
        return [default if raw is _MISSING else loads(raw)
                for raw in super().get_many(keys, _MISSING)]

    # ---- writes ----

    def __setitem__(self, key: Key, value: Any) -> None:
        super().__setitem__(key, self._encode(value))

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        """Remove key and return its decoded value, atomically; default (or KeyError)."""
        raw = super().pop(key, _MISSING)
        if raw is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return self._loads(raw)

    def popitem(self) -> tuple[bytes, Any]:
        """Remove some (key, value) pair and return it decoded, atomically."""
        key, raw = super().popitem()
        return key, self._loads(raw)

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """Return D[key] decoded, inserting default (encoded; None included) first if key
        is absent, atomically."""
        return self._loads(super().setdefault(key, self._encode(default)))

    def set_many(self, items: Mapping[Key, Any] | Iterable[tuple[Key, Any]]) -> None:
        """Set every (key, value) of a mapping or of an iterable of pairs, values encoded,
        in one write."""
        pairs: Iterable[tuple[Key, Any]]
        if isinstance(items, Mapping):
            pairs = items.items()
        elif hasattr(items, "keys"):            # dict.update's rule: keys() means a mapping
            mapping: Any = items
            pairs = ((k, mapping[k]) for k in mapping.keys())  # noqa: SIM118
        else:
            pairs = items
        encode = self._encode
        super().set_many([(k, encode(v)) for k, v in pairs])

    def compare_and_set(self, key: Key, expected: Any, new: Any) -> bool:
        """Set key to new if its decoded value equals expected, atomically; return whether
        it swapped.  expected=None means "key absent"; new=None means "delete key".

        The comparison is on decoded objects (two encodings of equal objects match): the
        current bytes are read, compared after decoding, and swapped by the backend only if
        they are still those bytes; a concurrent change makes it read again."""
        raw_new = None if new is None else self._encode(new)
        if expected is None:
            return super().compare_and_set(key, None, raw_new)
        while True:
            raw = super().get(key, _MISSING)
            if raw is _MISSING or self._loads(raw) != expected:
                return False
            if super().compare_and_set(key, raw, raw_new):
                return True

    # ---- watching: values decoded the same way ----

    def watch(self, since: int | None = None,
              timeout: float | None = None) -> Iterator[tuple[int, bytes, Any]]:
        """As the backend's watch(); values come decoded (None still means a delete)."""
        loads = self._loads
        for seq, key, raw in super().watch(since, timeout):
            yield seq, key, None if raw is None else loads(raw)


class CodecStore(CodecLayer, Store[Any]):
    """A Store whose values are the codec's objects: writes take whatever codec.dumps
    accepts, reads return codec.loads of the stored bytes.  Open one with
    mmkv.open(path, codec=json) (or open_shm(..., codec=...)).

    Warning: a store opened with codec=pickle unpickles what it reads, and unpickling data
    that someone else could write runs their code.  Use pickle only on stores that no
    untrusted process can write; json or msgpack cannot execute anything.
    """

    __slots__ = ("_codec", "_dumps", "_loads")

    # range(values=True) is Store's: it reads each chunk's values with self.get_many, which
    # decodes them (decoding again here was a TypeError or a wrong value)


def open_shelf(path: str | bytes | PathLike[str] | PathLike[bytes], flag: str = "c",
               protocol: int | None = None, writeback: bool = False,
               **options: Any) -> shelve.Shelf[Any]:
    """shelve.Shelf(mmkv.open(path, flag, **options), protocol, writeback): a persistent
    dict of Python objects, keys str.

    Warning: a shelf pickles its values, and reading a value unpickles it: never open a
    shelf on a store that an untrusted process can write.
    """
    from ._open import open as open_store

    store: Any = open_store(path, flag, **options)     # Shelf wants a str-keyed mapping
    return shelve.Shelf(store, protocol=protocol, writeback=writeback)
