# setuptools reads everything from pyproject.toml; only cffi_modules and the wheel's abi3 tag
# have no table there.  The core uses the limited API (mmkv/_build.py), so one cp310-abi3
# wheel serves every CPython from 3.10 on; free-threaded builds have no limited API.
import sysconfig

from setuptools import setup

options = {}
if not sysconfig.get_config_var("Py_GIL_DISABLED"):
    options["bdist_wheel"] = {"py_limited_api": "cp310"}

setup(cffi_modules=["mmkv/_build.py:ffibuilder"], options=options)
