"""mmkv: a persistent dict that many processes share through one memory-mapped file.

    import mmkv
    with mmkv.open("state.mmkv") as d:     # flag "c": create if missing ("r", "w", "n")
        d["hits"] = b"0"                    # keys and values are bytes (str is UTF-8)
        d.incr("hits")                      # atomic across processes
        for key in d: ...                   # never raises because the store changes

Reads take no lock; writes are serialised across processes by a robust mutex; a process
killed at any instant loses no returned write.  open_shm() gives the same store in POSIX
shared memory; codec=json (any dumps/loads object) stores objects, open_shelf() is a shelve
over a store; a Store pickles by path, so it can go to a multiprocessing pool; dump() and
restore() are the command line's backup format.  Errors derive from mmkv.error (an OSError).
"""
import os as _os
import sys as _sys


def _load_core() -> None:
    """Import the compiled core.  Run from a source checkout after a plain `pip install .`
    (the current directory first on sys.path), this package is the checkout, which holds no
    build; then the installed build of the same package is used."""
    try:
        from . import _core  # noqa: F401
        return
    except ImportError:
        pass
    import glob
    import importlib.util
    here = _os.path.dirname(_os.path.abspath(__file__))
    for entry in _sys.path:
        where = _os.path.join(_os.path.abspath(entry or "."), "mmkv")
        if where == here:
            continue
        for path in sorted(glob.glob(_os.path.join(where, "_core*.so"))):
            spec = importlib.util.spec_from_file_location(__name__ + "._core", path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _sys.modules[__name__ + "._core"] = module
            return
    raise ImportError("mmkv's C core is not built: run `pip install .` "
                      "(or `pip install -e .` in a checkout)")


_load_core()

# The imports follow the core's loading on purpose (E402).
from ._backup import dump, restore  # noqa: E402
from ._codec import Codec, open_shelf  # noqa: E402
from ._core import lib as _lib  # noqa: E402
from ._dump import DumpError  # noqa: E402
from ._errors import (  # noqa: E402
    CorruptError,
    LockTimeout,
    NotFoundError,
    OutcomeUnknown,  # remote stores: a write whose reply was lost
    WatchLagged,
    error,
)
from ._open import open, open_shm, unlink_shm  # noqa: E402 - open: the dbm name
from ._store import Store  # noqa: E402
from ._version import __version__  # noqa: E402

__all__ = ["open", "open_shm", "unlink_shm", "open_shelf", "dump", "restore", "Store", "Codec",
           "error", "CorruptError", "NotFoundError", "LockTimeout", "WatchLagged", "DumpError",
           "OutcomeUnknown", "__version__"]

_os.register_at_fork(after_in_child=_lib.mmkv_after_fork_child)
