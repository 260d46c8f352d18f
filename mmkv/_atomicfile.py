"""Atomic files: a new file appears whole under its name or not at all.

Each file is written under a hidden temporary name beside its target (the same directory,
so the same file system and an atomic rename), synced, then renamed or linked into place,
and the directory is synced so the new name survives a power loss.  On any failure the
temporary file is removed and the target is as it was.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from typing import IO

from ._errors import error


def temp_beside(path: str, what: str) -> str:
    """A fresh hidden name in path's directory (same file system, so rename is atomic)."""
    head = os.path.dirname(os.path.abspath(path))   # short, never the target's name: NAME_MAX
    return os.path.join(head, f".mmkv-{secrets.token_hex(8)}.{what}")


def naming_target(e: BaseException, tmp: str, target: str) -> BaseException:
    """e, if it is an OSError about the temporary file tmp, as the same error about target
    (the name the caller gave: tmp is an internal name); any other exception as it is."""
    if isinstance(e, OSError) and e.filename == tmp and isinstance(e.errno, int):
        return type(e)(e.errno, e.strerror, target)
    return e


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fsync_dir(path: str) -> None:
    """Make a rename or link in path's directory durable (else a power loss may undo it)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str, what: str = "new") -> Iterator[IO[bytes]]:
    """A binary file that replaces path, synced, when the block ends without an exception;
    on an exception the temporary file is removed and path is untouched."""
    tmp = temp_beside(path, what)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())    # the data is durable before the name points at it
        os.replace(tmp, path)
    except BaseException as e:
        unlink_quietly(tmp)
        named = naming_target(e, tmp, path)
        if named is not e:
            raise named from None
        raise
    fsync_dir(path)


def exists_error(target: str) -> error:
    import errno

    return error(errno.EEXIST, "exists; use force=True (--force) to replace it", target)


def install(tmp: str, target: str, force: bool) -> None:
    """Move the finished file at tmp to target: replace it when force (keeping target's
    permission bits), else refuse one that exists (os.link is the atomic "create, never
    clobber"; mmkv.error with errno EEXIST)."""
    if force:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise exists_error(target) from None
        except OSError:                 # no hard links here: check, then rename
            if os.path.lexists(target):
                raise exists_error(target) from None
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
    fsync_dir(target)                   # the new name survives a power loss
