"""RedisStore: the Store surface over one Redis server or a Redis Cluster, through redis-py.

Layout under namespace NS (every name begins "mmkv:NS:"):
    mmkv:NS:k:<key>           one plain string per key, spread over the cluster's slots
    mmkv:NS:log / :n          the change stream and the key counter (one server)
    mmkv:NS:log:{T} / :n:{T}  the same per cluster slot, T a hash tag of that slot
    {mmkv:NS:lock}, ...:fence  the lease and its fencing counter (mmkv/_redis_lease.py)
Each write is one Lua script (mmkv/_redis_scripts.py) touching one slot: the key, its
slot's stream and counter.  Retries are off, so a write is sent once: it is applied, or
its error says it was not, or (reply lost) mmkv.OutcomeUnknown says nobody knows.

Iteration
---------
SCAN on every primary with MATCH on the namespace prefix.  SCAN returns every key present
for the whole scan at least once, possibly more; a set of the keys yielded removes the
repeats, so a key present throughout is yielded exactly once, and every key yielded was
present when SCAN saw it.  The set costs memory in proportion to the keys yielded.  SCAN
walks the whole database, other namespaces included.  A slot moving during the scan (a
resharding) is not covered by the guarantee.
"""
from __future__ import annotations

import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from typing import TYPE_CHECKING, Any, TypeVar, overload

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.crc import key_slot
    from redis.retry import Retry
except ImportError as exc:                      # pragma: no cover - depends on the install
    raise ImportError("Redis URLs need the redis extra: pip install 'mmkv[redis]'") from exc

from . import _redis_scripts as lua
from ._codec import Codec, CodecLayer, codec_from_ref, codec_ref
from ._facade import Items, Values, as_bytes, check_delta, check_flag, none_default, unseen
from ._redis_errors import closed, not_found, read_only, remote
from ._redis_url import RedisURL, parse

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._redis_lease import Lease
    from ._store import Key

_T = TypeVar("_T")
_MISSING: Any = object()
_SCAN_BATCH = 1000
_SCRIPTS = ("PUT", "DELETE", "POP", "SETDEFAULT", "INCR", "CAS", "SET_MANY", "DELETE_MANY",
            "WATCH_READ", "COUNT_SUM", "LEASE_ACQUIRE", "LEASE_RENEW", "LEASE_RELEASE")
_TAGS: list[bytes] = []   # slot -> a short hash tag mapping to it, built on first cluster use
_TAGS_LOCK = threading.Lock()

# redis-py annotates every command's reply as `Awaitable[Any] | Any` (its sync and async
# clients share the annotations), so the clients and their replies are Any here: each reply
# is given its type where it is read (an annotated variable, int(), bool()).


def _slot_tags() -> list[bytes]:
    with _TAGS_LOCK:
        if not _TAGS:
            table: dict[int, bytes] = {}
            i = 0
            while len(table) < 16384:
                table.setdefault(key_slot(b"%d" % i), b"%d" % i)
                i += 1
            _TAGS.extend(table[s] for s in range(16384))
    return _TAGS


def seq_of(entry_id: bytes) -> int:
    """The integer seq of a stream entry id b"MS-N": MS << 20 | N (ordered as the ids)."""
    ms, _, n = entry_id.partition(b"-")
    return int(ms) << 20 | int(n)


def id_of(seq: int) -> bytes:
    return b"%d-%d" % (seq >> 20, seq & 0xFFFFF)


class RedisStore(MutableMapping[bytes, bytes]):
    """A mapping of bytes to bytes kept by a Redis server or Redis Cluster, under a namespace.

    The same surface as mmkv.Store; what differs is in the README ("Beyond one machine"):
    durability is the server's, lock() is a lease, errors name the URL.  len() reads a
    counter that the write scripts keep: O(1) on one server, O(slots) on a cluster (one
    script per primary sums its slots' counters).  Open one with mmkv.open("redis://...");
    with codec= it is a RedisCodecStore, the shared codec layer over this class.
    """

    def __init__(self, url: str, flag: str = "c", **options: Any) -> None:
        check_flag(flag)
        self._raw_url, self._flag, self._options = url, flag, options
        self._u: RedisURL = parse(url, **options)
        self.url: str = self._u.url
        ns = self._u.namespace.encode()
        self._kp = b"mmkv:" + ns + b":k:"
        self._base = b"mmkv:" + ns + b":"
        self._closed = False
        self._client: Any = self._connect()
        self._scripts: dict[str, Any] = {name: self._client.register_script(getattr(lua, name))
                                         for name in _SCRIPTS}
        with remote(self.url, flag in ("c", "n")):
            self._client.ping()
            # a namespace is a store once created ("c", "n"), empty or not, as a file is;
            # "r" and "w" on one never created are NotFoundError, as for a missing file
            if flag in ("c", "n"):
                self._client.set(self._base + b"store", b"1", nx=True)
                created = True
            else:
                created = bool(self._client.exists(self._base + b"store"))
        if not created:
            self._closed = True
            self._client.close()
            raise not_found(self.url)
        if flag == "n":
            self.clear()

    def _connect(self) -> Any:
        u = self._u
        common: dict[str, Any] = {
            "username": u.username, "password": u.password, "socket_timeout": u.socket_timeout,
            "socket_connect_timeout": u.connect_timeout, "retry": Retry(NoBackoff(), 0),
            "ssl": u.tls}
        with remote(self.url, False):
            if u.cluster:
                _slot_tags()
                return redis.RedisCluster(host=u.host, port=u.port, **common)
            return redis.Redis(host=u.host, port=u.port, db=u.db,
                               **common)

    # ---- plumbing ----

    def _live(self) -> Any:
        if self._closed:
            raise closed(self.url)
        return self._client

    def _writable(self) -> Any:
        client = self._live()
        if self._flag == "r":
            raise read_only(self.url)
        return client

    def _rkey(self, key: object) -> bytes:
        return self._kp + (key if type(key) is bytes else as_bytes(key))

    def _meta(self, rkey: bytes) -> list[bytes]:
        """The stream and counter that the script changing rkey writes."""
        if not self._u.cluster:
            return [self._base + b"log", self._base + b"n"]
        tag = _TAGS[key_slot(rkey)]
        return [self._base + b"log:{" + tag + b"}", self._base + b"n:{" + tag + b"}"]

    def _run(self, name: str, rkeys: list[bytes], args: list[Any], write: bool = True) -> Any:
        keys = self._meta(rkeys[0]) + list(rkeys)
        client = self._writable() if write else self._live()
        with remote(self.url, write):
            result = self._scripts[name](keys, [self._u.watch_backlog, *args], client)
        if write and self._u.cluster:
            self._notify(keys[0])
        return result

    def _notify(self, stream: bytes) -> None:
        """Cluster: tell watchers which slot's stream grew (mmkv/_redis_watch.py).  A lost
        notice delays a watcher; it never loses the change, which is in the stream."""
        tag = stream[stream.rindex(b"{") + 1:-1]
        try:
            self._client.publish(self._base + b"changes", tag)
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            pass

    def _value(self, value: object) -> bytes:
        return value if type(value) is bytes else as_bytes(value, "value")

    def _primaries(self) -> list[Any]:
        """A plain client per primary (one server: the client itself)."""
        client = self._live()
        if not self._u.cluster:
            return [client]
        with remote(self.url, False):
            return [client.get_redis_connection(n) for n in client.get_primaries()]

    # ---- reads ----

    def __getitem__(self, key: Key) -> bytes:
        rkey = self._rkey(key)
        with remote(self.url, False):
            data: bytes | None = self._live().get(rkey)
        if data is None:
            raise KeyError(key)
        return data

    @overload
    def get(self, key: Key, default: None = None) -> bytes | None: ...
    @overload
    def get(self, key: Key, default: bytes | _T) -> bytes | _T: ...
    def get(self, key: Key, default: object = None) -> object:
        """D.get(k[, d]) -> D[k] if k in D, else d (default None)."""
        rkey = self._rkey(key)
        with remote(self.url, False):
            data: bytes | None = self._live().get(rkey)
        return default if data is None else data

    def __contains__(self, key: object) -> bool:
        rkey = self._rkey(key)
        with remote(self.url, False):
            return bool(self._live().exists(rkey))

    def __len__(self) -> int:
        client = self._live()
        with remote(self.url, False):
            if not self._u.cluster:
                return int(client.get(self._base + b"n") or 0)
            return sum(self._count_on(node) for node in client.get_primaries())

    def _count_on(self, node: Any) -> int:
        client = self._client
        slots = [s for s, nodes in client.nodes_manager.slots_cache.items()
                 if nodes and nodes[0].name == node.name]
        keys = [self._base + b"n:{" + _TAGS[s] + b"}" for s in slots]
        conn = client.get_redis_connection(node)
        return int(conn.eval(lua.COUNT_SUM, 0, *keys)) if keys else 0

    def get_many(self, keys: Iterable[Key], default: Any = None) -> list[Any]:
        """The values of keys, in order (default for each one absent).  One server: one
        MGET, a consistent snapshot.  A cluster: one MGET per slot, not one snapshot."""
        rkeys = [self._rkey(k) for k in keys]
        if not rkeys:
            self._live()
            return []
        client = self._live()
        with remote(self.url, False):
            values: list[bytes | None] = (client.mget_nonatomic(rkeys) if self._u.cluster
                                          else client.mget(rkeys))
        return [default if v is None else v for v in values]

    # ---- writes ----

    def __setitem__(self, key: Key, value: Key) -> None:
        rkey = self._rkey(key)
        self._run("PUT", [rkey], [self._value(value)])

    def __delitem__(self, key: Key) -> None:
        if not self._run("DELETE", [self._rkey(key)], []):
            raise KeyError(key)

    @overload
    def pop(self, key: Key) -> bytes: ...
    @overload
    def pop(self, key: Key, default: bytes | _T) -> bytes | _T: ...
    def pop(self, key: Key, default: object = _MISSING) -> object:
        """Remove key and return its value, atomically; default (or KeyError) if absent."""
        if self._flag == "r" and key not in self:   # nothing to remove: no write, as dbm
            if default is _MISSING:
                raise KeyError(key)
            return default
        got: list[bytes] | None = self._run("POP", [self._rkey(key)], [])
        if got is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return got[0]

    def popitem(self) -> tuple[bytes, bytes]:
        """Remove some (key, value) pair and return it, atomically; KeyError when empty."""
        self._writable()
        for key in self._iterate(False):
            got: list[bytes] | None = self._run("POP", [self._kp + key], [])
            if got is not None:
                return key, got[0]
        raise KeyError("popitem(): mmkv store is empty")

    def setdefault(self, key: Key, default: Key | None = None) -> bytes:
        """Return D[key], inserting default first if key is absent, atomically.  As for a
        local store, default=None for an absent key is a TypeError, nothing inserted."""
        rkey = self._rkey(key)
        if default is None:
            value = self.get(key)
            if value is None:
                raise none_default()
            return value
        if self._flag == "r":                        # a present key needs no write, as dbm
            present = self.get(key)
            if present is not None:
                return present
        got: list[bytes] = self._run("SETDEFAULT", [rkey], [self._value(default)])
        return got[0]

    def set_many(self, items: Mapping[Key, Any] | Iterable[tuple[Key, Any]]) -> None:
        """Write every (key, value) of items (a mapping or pairs).  One server: one script,
        all or nothing.  A cluster: one script per key (each atomic, the batch is not)."""
        pairs: Iterable[tuple[Key, Any]] = (items.items() if isinstance(items, Mapping)
                                            or hasattr(items, "items") else items)
        batch = [(self._rkey(k), self._value(v)) for k, v in pairs]
        self._writable()
        if not batch:
            return
        if self._u.cluster:
            for rkey, value in batch:
                self._run("PUT", [rkey], [value])
            return
        self._run("SET_MANY", [k for k, _ in batch], [v for _, v in batch])

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """As dict.update, in one set_many call."""
        if hasattr(other, "keys") and not hasattr(other, "items"):
            other = [(k, other[k]) for k in other.keys()]  # noqa: SIM118 - not a dict
        self.set_many(list(other.items() if hasattr(other, "items") else other)
                      + list(kwargs.items()))

    def delete_many(self, keys: Iterable[Key]) -> int:
        """Delete keys; return how many were present.  Atomic on one server (one script);
        on a cluster, one script per key."""
        rkeys = [self._rkey(k) for k in keys]
        self._writable()
        if not rkeys:
            return 0
        if self._u.cluster:
            return sum(int(self._run("DELETE", [k], [])) for k in rkeys)
        return int(self._run("DELETE_MANY", rkeys, []))

    def clear(self) -> None:
        """Remove every key of the namespace, in batches of deletes (not one atomic step)."""
        self._writable()
        batch = []
        for key in self._iterate(False):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                self.delete_many(batch)
                batch = []
        self.delete_many(batch)

    # ---- iteration ----

    def __iter__(self) -> Iterator[bytes]:
        return self._iterate(False)

    def _iterate(self, with_values: bool) -> Iterator[Any]:
        seen: set[bytes] = set()
        for client in self._primaries():
            cursor = 0
            while True:
                with remote(self.url, False):
                    cursor, rkeys = client.scan(cursor, match=self._kp + b"*",
                                                count=_SCAN_BATCH)
                yield from self._entries(client, unseen(rkeys, seen), with_values)
                if cursor == 0:
                    break

    def _entries(self, client: Any, rkeys: list[bytes], with_values: bool) -> list[Any]:
        cut = len(self._kp)
        if not with_values:
            return [k[cut:] for k in rkeys]
        with remote(self.url, False):
            pipe = client.pipeline(transaction=False)
            for k in rkeys:
                pipe.get(k)
            values: list[bytes | None] = pipe.execute()
        return [(k[cut:], v) for k, v in zip(rkeys, values, strict=True) if v is not None]

    def keys(self) -> list[bytes]:  # type: ignore[override]  # a list, as every dbm returns
        """A list of the keys, as every dbm module returns."""
        return list(self)

    def items(self) -> ItemsView[bytes, bytes]:
        return Items(self)

    def values(self) -> ValuesView[bytes]:
        return Values(self)

    # ---- atomic read-modify-write and the lock ----

    def incr(self, key: Key, delta: int = 1) -> int:
        """Add delta to the decimal integer at key (absent counts as 0), atomically on the
        server, and return the new value; ValueError, value unchanged, if it is not one."""
        rkey = self._rkey(key)
        check_delta(delta)
        return int(self._run("INCR", [rkey], [delta]))

    def compare_and_set(self, key: Key, expected: Key | None, new: Key | None) -> bool:
        """Set key to new if its value is expected, atomically; return whether it swapped.
        expected=None means "key absent"; new=None means "delete key"."""
        rkey = self._rkey(key)
        e = b"" if expected is None else self._value(expected)
        v = b"" if new is None else self._value(new)
        return bool(self._run("CAS", [rkey], [int(expected is not None), e,
                                              int(new is not None), v]))

    def lock(self, timeout: float | None = None) -> Lease:
        """A lease on the namespace's lock, with a fencing token (`.fence` of the returned
        object, growing with every grant), renewed by a background thread while held and
        released on exit, on close(), or by expiry if the holder vanishes.  It excludes other
        lock() holders; plain writes from others do not wait for it.  Past timeout seconds,
        mmkv.LockTimeout, holding nothing."""
        from ._redis_lease import Lease
        return Lease(self, timeout)

    # ---- watching ----

    @property
    def seq(self) -> int:
        """The change counter: the id of the last change, as an int.  A cluster: the
        primaries' clock (every change made later has a greater seq)."""
        from ._redis_watch import current_seq
        return current_seq(self)

    def watch(self, since: int | None = None,
              timeout: float | None = None) -> Iterator[tuple[int, bytes, bytes | None]]:
        """Yield (seq, key, value) for every change after since (default: now), value None
        for a delete; stop after timeout seconds without a change.  One server: commit
        order.  A cluster: commit order within each slot; see mmkv/_redis_watch.py."""
        from ._redis_watch import watch
        return watch(self, since, timeout)

    # ---- handle ----

    def compact(self) -> None:
        """Nothing to do: the server manages its own memory.  Checks the handle is open."""
        self._live()

    reorganize = compact

    def sync(self) -> None:
        """Nothing to wait for on the client: durability is the server's AOF policy
        (appendfsync).  Checks the handle is open."""
        self._live()

    def stats(self) -> dict[str, Any]:
        """count; file_size: the server's used_memory (summed over primaries), the whole
        server's, not this namespace's; reclaimable_bytes: 0; seq."""
        used = 0
        for client in self._primaries():
            with remote(self.url, False):
                used += int(client.info("memory").get("used_memory", 0))
        return {"count": len(self), "file_size": used, "reclaimable_bytes": 0,
                "seq": self.seq, "url": self.url, "namespace": self._u.namespace}

    def close(self) -> None:
        """Release the lease if this handle holds it, and the connections; closing twice is
        harmless.  Any later operation: mmkv.error."""
        if self._closed:
            return
        from ._redis_lease import release_all
        try:
            release_all(self)
        finally:
            self._closed = True
            try:
                self._client.close()
            except Exception:   # a dead server must not make close() fail
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _codec_of(self) -> Codec | None:
        """The codec of the values: None (bytes); RedisCodecStore has one."""
        return None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle by URL, flag, options and codec: unpickling opens the same namespace (flag
        "n" reopens with "c", never emptying it)."""
        return (_reopen, (self._raw_url, self._flag, codec_ref(self._codec_of()),
                          self._options))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"       # as a local Store's
        return f"<mmkv.RedisStore {self.url!r} flag={self._flag!r} {state}>"

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a dict


class RedisCodecStore(CodecLayer, RedisStore):
    """A RedisStore whose values go through a codec: the same codec layer as a local
    CodecStore (mmkv/_codec.py), over this backend's bytes methods."""

    def _codec_of(self) -> Codec | None:
        return self._codec


def _reopen(url: str, flag: str, ref: tuple[str, Any], options: dict[str, Any]) -> RedisStore:
    return open_url(url, "c" if flag == "n" else flag, codec=codec_from_ref(ref), **options)


def open_url(url: str, flag: str = "c", mode: int = 0o666, *, codec: Codec | None = None,
             **options: Any) -> RedisStore:
    """mmkv.open() for a Redis URL: mode has no meaning there and is ignored."""
    if codec is None:
        return RedisStore(url, flag, **options)
    return RedisCodecStore(url, flag, codec=codec, **options)


def redis_stat(url: str, **options: Any) -> dict[str, Any]:
    """What the CLI's `stat` prints for a URL: the store's stats(), and what the servers
    report: used_memory (bytes, summed over the primaries, every namespace's; None when a
    server does not report it) and primaries (how many servers hold the data)."""
    with RedisStore(url, "r", **options) as store:
        st = store.stats()
        reported: list[int | None] = []
        for client in store._primaries():
            with remote(store.url, False):
                used = client.info("memory").get("used_memory")
            reported.append(None if used is None else int(used))
    sizes = [n for n in reported if n is not None]
    st["used_memory"] = sum(sizes) if len(sizes) == len(reported) else None
    st["primaries"] = len(reported)
    return st
