"""mmkv: a persistent dict that many processes share through one memory-mapped file.

    import mmkv
    with mmkv.open("state.mmkv") as d:     # flag "c": create if missing ("r", "w", "n")
        d["hits"] = b"0"                    # keys and values are bytes (str is UTF-8)
        d.incr("hits")                      # atomic across processes
        for key in d: ...                   # never raises because the store changes

Reads take no lock; writes are serialised across processes by a robust mutex; a process
killed at any instant loses no returned write.  open_shm() gives the same store in POSIX
shared memory.  Errors derive from mmkv.error (an OSError), as in dbm.
"""
import os as _os

from ._core import lib as _lib
from ._errors import CorruptError, NotFoundError, error
from ._open import open, open_shm, unlink_shm
from ._store import Store

__all__ = ["open", "open_shm", "unlink_shm", "Store", "error", "CorruptError", "NotFoundError"]
__version__ = "0.1.0"

_os.register_at_fork(after_in_child=_lib.mmkv_after_fork_child)
