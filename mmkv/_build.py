"""The cffi builder: compiles native/*.c into mmkv._core (out-of-line API mode).

The cdef is the part of native/mmkv.h between its cdef markers, so the C header stays the
one description of the API.  setup.py names this file in cffi_modules; nothing is compiled
at import time.
"""
import os
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NATIVE = os.path.join(ROOT, "native")
# bottom up: each file calls only files before it (tools/layers checks it)
SOURCES = ["format.c", "wait.c", "os.c", "guard.c", "names.c", "map.c", "sparse.c", "commit.c",
           "lock.c", "table.c", "walk.c", "check.c", "recover.c", "salvage.c", "compact.c",
           "open.c", "call.c", "log.c", "batch.c", "snapshot.c", "store.c", "iter.c"]


def _cdef():
    with open(os.path.join(NATIVE, "mmkv.h"), encoding="utf-8") as f:
        text = f.read()
    return text.split("/* cdef-begin */", 1)[1].split("/* cdef-end */", 1)[0]


def _preamble():
    """mmkv/_binding.c: the only C that sees Python.h (the GIL, the wait hooks, the hot
    operations as plain CPython functions)."""
    with open(os.path.join(HERE, "_binding.c"), encoding="utf-8") as f:
        return f.read()


def _flags():
    flags = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-pthread"]
    extra = os.environ.get("MMKV_CFLAGS")
    if extra:
        flags += extra.split()
    return flags


ffibuilder = FFI()
ffibuilder.cdef(_cdef() + "\nint mmkv_py_install(void);\n")
ffibuilder.set_source(
    "mmkv._core",
    _preamble(),
    sources=[os.path.relpath(os.path.join(NATIVE, s), ROOT) for s in SOURCES],
    include_dirs=[os.path.relpath(NATIVE, ROOT)],
    extra_compile_args=_flags(),
    extra_link_args=["-pthread", *os.environ.get("MMKV_LDFLAGS", "").split()],
    py_limited_api=not sysconfig.get_config_var("Py_GIL_DISABLED"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
