"""The exception tree, and the one function that turns a core return code into an exception.

    OSError
     +-- mmkv.error                  every failure of the store itself
          +-- mmkv.CorruptError      damage found in a file (bad checksum, impossible offsets)
          +-- mmkv.NotFoundError     the store does not exist ("r"/"w"); also FileNotFoundError
          +-- mmkv.LockTimeout       the lock was not acquired in time; also TimeoutError
          +-- mmkv.WatchLagged       a watcher fell behind a compaction that dropped changes

Bad arguments raise the built-ins a Python user expects: TypeError for a key or value of the
wrong type, ValueError for one over the store's limit or for a bad flag or option, KeyError
for a missing key.
"""
from __future__ import annotations

import errno as _errno
import os

from ._core import ffi, lib


class error(OSError):  # noqa: N801 - the dbm name
    """Base class of mmkv's errors; an OSError, as dbm.error is for the file-based dbms."""


class CorruptError(error):
    """The store's file is damaged: a checksum, offset or count that cannot be right."""


class NotFoundError(error, FileNotFoundError):
    """The store does not exist (flag "r" or "w")."""


class LockTimeout(error, TimeoutError):
    """The store's write lock was not acquired within the timeout; nothing is held and the
    write that waited was not applied."""


class WatchLagged(error):
    """A watcher fell behind a compaction that discarded changes it had not seen yet;
    resume from a fresh read and `Store.seq`."""


_VALUE_ERRORS = {lib.MMKV_ETOOBIG, lib.MMKV_EVALUE, lib.MMKV_ERANGE, lib.MMKV_EINVAL}
_OWN_ERRNO = {
    lib.MMKV_ECORRUPT: _errno.EIO,
    lib.MMKV_ENOTSTORE: _errno.EINVAL,
    lib.MMKV_ERDONLY: _errno.EBADF,
    lib.MMKV_ECLOSED: _errno.EBADF,
    lib.MMKV_EFAULT: _errno.EIO,
    lib.MMKV_EBUSY: _errno.EBUSY,
    lib.MMKV_EFULL: _errno.ENOSPC,
    lib.MMKV_ENOTLOCKED: _errno.EPERM,
    lib.MMKV_ELINKED: _errno.EMLINK,
}


def strerror(rc: int) -> str:
    """The core's message for return code rc."""
    text: bytes = ffi.string(lib.mmkv_strerror(rc))
    return text.decode("utf-8", "replace")


def exception_for(rc: int, path: str | bytes | None = None) -> OSError | ValueError:
    """The exception for a negative core return code `rc`, naming `path` when given."""
    if rc in _VALUE_ERRORS:
        return ValueError(strerror(rc))
    if path is not None and not isinstance(path, str):
        path = os.fsdecode(path)
    if rc == lib.MMKV_ECORRUPT:
        return CorruptError(_errno.EIO, strerror(rc), path)
    if rc in _OWN_ERRNO:
        return error(_OWN_ERRNO[rc], strerror(rc), path)
    if rc == -_errno.ENOENT:
        return NotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT), path)
    if -4096 < rc < 0:
        return error(-rc, os.strerror(-rc), path)
    return error(_errno.EIO, strerror(rc), path)


# ---- remote stores (mmkv/_redis.py); raised only by the Redis backend ----

class OutcomeUnknown(error):
    """A write was sent to a remote store but its reply was lost (the server went away or
    the socket timed out): it may or may not have been applied.  Read the key to find out."""
