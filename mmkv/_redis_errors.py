"""The one place where redis-py's exceptions become mmkv's (see mmkv/_errors.py for the tree).

    connecting failed (refused, unreachable, timed out)   mmkv.error, errno ECONNREFUSED
    a read lost its server mid-call or timed out           mmkv.error, errno EIO / ETIMEDOUT
    a write lost its server after sending or timed out     mmkv.OutcomeUnknown: maybe applied
    authentication refused                                 mmkv.error, errno EACCES
    our scripts' "not an integer" reply                    ValueError, value unchanged
    anything else from the server                          mmkv.error, errno EIO

Every message names the store's URL (password removed).  Retries are off in the clients
(mmkv/_redis.py), so a lost reply is never silently re-sent: an incr is applied once or
reported as unknown.
"""
import errno
from contextlib import contextmanager

from redis import exceptions as rx

from ._errors import OutcomeUnknown, error

NOT_INTEGER = "mmkv-not-an-integer"
_LOST = (rx.ConnectionError, rx.TimeoutError, rx.ClusterDownError, rx.MasterDownError,
         rx.BusyLoadingError, rx.TryAgainError, rx.RedisClusterException)


def _never_sent(exc):
    """Whether exc happened while connecting, before any byte of the command left."""
    text = str(exc)
    return "connecting to" in text or "Connection refused" in text


def translate(exc, url, write):
    """The mmkv exception for redis-py exception exc, raised by an operation on url;
    write says whether the operation could have changed the store."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, rx.ResponseError) and NOT_INTEGER in text:
        detail = text.split(NOT_INTEGER)[-1].strip(": ")
        return ValueError(f"value is not a decimal integer in range: {detail}")
    if isinstance(exc, rx.AuthenticationError):
        return error(errno.EACCES, f"Redis refused the credentials: {text}", url)
    if isinstance(exc, _LOST) or isinstance(exc, OSError):
        if _never_sent(exc):
            return error(errno.ECONNREFUSED, f"Redis server unreachable: {text}", url)
        if write:
            return OutcomeUnknown(errno.EIO, f"write outcome unknown (reply lost: {text}); "
                                             "it may or may not have been applied", url)
        code = errno.ETIMEDOUT if isinstance(exc, rx.TimeoutError) else errno.EIO
        return error(code, f"Redis server lost mid-call: {text}", url)
    return error(errno.EIO, f"Redis error: {text}", url)


@contextmanager
def remote(url, write):
    """Run the body, turning any redis-py exception into its mmkv exception."""
    try:
        yield
    except (rx.RedisError, rx.RedisClusterException) as exc:   # the latter is no RedisError
        raise translate(exc, url, write) from exc
    except OSError as exc:
        if isinstance(exc, error):
            raise
        raise translate(exc, url, write) from exc
