# Types of the compiled core, mmkv._core (built by cffi from native/mmkv.h, mmkv/_build.py).
# cffi generates `ffi` and `lib` at build time; their members mirror the C API in
# native/mmkv.h and are typed loosely here.
from typing import Any

ffi: Any
lib: Any
