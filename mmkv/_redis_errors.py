"""The one place where redis-py's exceptions become mmkv's (see mmkv/_errors.py for the tree).

    connecting failed (refused, unreachable, timed out)   mmkv.error, errno ECONNREFUSED
    a read lost its server mid-call or timed out           mmkv.error, errno EIO / ETIMEDOUT
    a write lost its server after sending or timed out     mmkv.OutcomeUnknown: maybe applied
    authentication refused                                 mmkv.error, errno EACCES
    our scripts' "not an integer" reply                    ValueError, value unchanged
    anything else from the server                          mmkv.error, errno EIO

and the backend's own refusals, built here too: a closed handle, a read-only handle (EBADF),
lock() timing out (mmkv.LockTimeout), a lease lost while held, a watcher behind the trim
(mmkv.WatchLagged).

Every message names the store's URL (password removed).  Retries are off in the clients
(mmkv/_redis.py), so a lost reply is never silently re-sent: an incr is applied once or
reported as unknown.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rx

from ._errors import LockTimeout, NotFoundError, OutcomeUnknown, WatchLagged, error

NOT_INTEGER = "mmkv-not-an-integer"
_LOST = (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.MasterDownError,
         rx.BusyLoadingError, rx.TryAgainError, rx.RedisClusterException)


def _never_sent(exc: BaseException) -> bool:
    """Whether exc happened while connecting, before any byte of the command left."""
    text = str(exc)
    return "connecting to" in text or "Connection refused" in text


def translate(exc: BaseException, url: str, write: bool) -> OSError | ValueError:
    """The mmkv exception for redis-py exception exc, raised by an operation on url;
    write says whether the operation could have changed the store."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, rx.ResponseError) and NOT_INTEGER in text:
        detail = text.split(NOT_INTEGER)[-1].strip(": ")
        return ValueError(f"value is not a decimal integer in range: {detail}")
    if isinstance(exc, rx.AuthenticationError):
        return error(errno.EACCES, f"Redis refused the credentials: {text}", url)
    if isinstance(exc, (*_LOST, OSError)):
        if _never_sent(exc):
            return error(errno.ECONNREFUSED, f"Redis server unreachable: {text}", url)
        if write:
            return OutcomeUnknown(errno.EIO, f"write outcome unknown (reply lost: {text}); "
                                             "it may or may not have been applied", url)
        code = errno.ETIMEDOUT if isinstance(exc, rx.TimeoutError) else errno.EIO
        return error(code, f"Redis server lost mid-call: {text}", url)
    return error(errno.EIO, f"Redis error: {text}", url)


@contextmanager
def remote(url: str, write: bool) -> Iterator[None]:
    """Run the body, turning any redis-py exception into its mmkv exception."""
    try:
        yield
    except (rx.RedisError, rx.RedisClusterException) as exc:   # the latter is no RedisError
        raise translate(exc, url, write) from exc
    except OSError as exc:
        if isinstance(exc, error):
            raise
        raise translate(exc, url, write) from exc


# ---- refusals of the backend itself (no redis-py exception behind them) ----

def closed(url: str) -> error:
    """An operation on a closed handle."""
    return error(errno.EBADF, "operation on a closed mmkv store", url)


def not_found(url: str) -> NotFoundError:
    """Flag "r" or "w" on a namespace that was never created (no store marker)."""
    return NotFoundError(errno.ENOENT, "no mmkv store in this namespace (open it with flag "
                                       "'c' or 'n' to create one)", url)


def read_only(url: str) -> error:
    """A write through a handle opened with flag "r"."""
    return error(errno.EBADF, "store opened read-only (flag 'r')", url)


def lock_timeout(url: str, timeout: float | None) -> LockTimeout:
    """lock(timeout) gave up: nothing is held."""
    return LockTimeout(errno.ETIMEDOUT, f"lock not acquired within {timeout} s", url)


def lease_lost(url: str) -> error:
    """The lease ran out while its holder still held lock() (renewal failed)."""
    return error(errno.ETIME, "the lock's lease expired while held (renewal failed): another "
                              "holder may have run meanwhile", url)


def watch_lagged(url: str, cursor: int) -> WatchLagged:
    """A watcher asked for changes after seq cursor, which the stream's trim discarded."""
    return WatchLagged(errno.EBADMSG, f"watcher fell behind the change stream's trim (seq "
                                      f"{cursor} was discarded): re-read and resume from "
                                      "d.seq", url)
