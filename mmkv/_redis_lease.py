"""lock() on a Redis store: a lease key with a fencing token, renewed while held.

The lease key {mmkv:NS:lock} holds "HOLDER:FENCE" with an expiry of lock_lease seconds
(URL option, default 10).  FENCE comes from {mmkv:NS:lock}:fence, incremented at every
grant, so a later holder always has a greater token: a resource that remembers the
greatest token it saw can refuse a holder whose lease ran out (the fencing idea).  A daemon
thread renews the lease every third of its length; if the process dies the lease expires
by itself; if the owning thread ends, the renewer releases it.  In a process, the lock
belongs to a thread and is recursive across every handle of the same store.
What it does not do: make other processes' plain writes wait (only other lock() holders do).
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ._errors import error
from ._facade import check_timeout
from ._redis_errors import lease_lost, lock_timeout, remote

if TYPE_CHECKING:
    from ._redis import RedisStore

_Identity = tuple[bool, str, int, int, str, int]
_held: dict[_Identity, _Holding] = {}     # store identity -> _Holding, for this process
_held_lock = threading.Lock()


class _Holding:
    __slots__ = ("owner", "depth", "token", "fence", "stop", "renewer", "store", "lost")

    def __init__(self, owner: threading.Thread, token: str, fence: int,
                 store: RedisStore) -> None:
        self.owner, self.depth, self.token, self.fence = owner, 1, token, fence
        self.store, self.stop, self.lost = store, threading.Event(), False
        self.renewer: threading.Thread | None = None


def _identity(store: RedisStore) -> _Identity:
    u = store._u
    return (u.cluster, u.host, u.port, u.db, u.namespace, os.getpid())


def _keys(store: RedisStore) -> list[bytes]:
    name = b"{mmkv:" + store._u.namespace.encode() + b":lock}"
    return [name, name + b":fence"]


class Lease:
    """The context manager that lock() returns; `fence` is the token while held."""

    def __init__(self, store: RedisStore, timeout: float | None) -> None:
        self._store, self._timeout = store, check_timeout(timeout, "timeout")
        self.fence: int | None = None

    def __enter__(self) -> RedisStore:
        store = self._store
        store._writable()
        me = threading.current_thread()
        ident = _identity(store)
        with _held_lock:
            holding = _held.get(ident)
            if holding is not None and holding.owner is me:
                holding.depth += 1
                self.fence = holding.fence
                return store
        holding = _acquire(store, me, self._timeout)
        with _held_lock:
            _held[ident] = holding
        holding.renewer = threading.Thread(target=_renew, args=(holding, ident),
                                           name="mmkv-lease", daemon=True)
        holding.renewer.start()
        self.fence = holding.fence
        return store

    def __exit__(self, *exc: object) -> None:
        ident = _identity(self._store)
        with _held_lock:
            holding = _held.get(ident)
            if holding is None or holding.owner is not threading.current_thread():
                return
            holding.depth -= 1
            if holding.depth:
                return
            del _held[ident]
        _release(holding, raising=exc[0] is None)


def _acquire(store: RedisStore, me: threading.Thread, timeout: float | None) -> _Holding:
    deadline = None if timeout is None else time.monotonic() + timeout
    lease_ms = int(store._u.lock_lease * 1000)
    holder = uuid.uuid4().hex
    pause = 0.002
    while True:
        fence = run_lease(store, "LEASE_ACQUIRE", _keys(store), [holder, lease_ms])
        if fence:
            return _Holding(me, f"{holder}:{fence}", int(fence), store)
        if deadline is not None and time.monotonic() >= deadline:
            raise lock_timeout(store.url, timeout)
        wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)
        pause = min(pause * 2, 0.05)


def _renew(holding: _Holding, ident: _Identity) -> None:
    store = holding.store
    period = store._u.lock_lease / 3
    lease_ms = int(store._u.lock_lease * 1000)
    while not holding.stop.wait(period):
        if not holding.owner.is_alive():
            with _held_lock:
                if _held.get(ident) is holding:
                    del _held[ident]
            _release(holding, raising=False)
            return
        try:
            ok = run_lease(store, "LEASE_RENEW", _keys(store), [holding.token, lease_ms])
        except (error, OSError):
            ok = None               # the server is away: try again; the lease may lapse
        if ok == 0:
            holding.lost = True
            return


def _release(holding: _Holding, raising: bool) -> None:
    holding.stop.set()
    if holding.renewer is not None and holding.renewer is not threading.current_thread():
        holding.renewer.join()
    store = holding.store
    if store._closed:
        return
    try:
        run_lease(store, "LEASE_RELEASE", _keys(store), [holding.token])
    except error:
        if raising:
            raise
    if holding.lost and raising:
        raise lease_lost(store.url)


def release_all(store: RedisStore) -> None:
    """close(): release the lease if a thread of this process holds it through store."""
    ident = _identity(store)
    with _held_lock:
        holding = _held.get(ident)
        if holding is None or holding.store is not store:
            return
        del _held[ident]
    _release(holding, raising=False)


def run_lease(store: RedisStore, name: str, keys: list[bytes], args: list[Any]) -> Any:
    with remote(store.url, True):
        return store._scripts[name](keys, args, store._live())
