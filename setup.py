# setuptools reads everything from pyproject.toml; only cffi_modules has no table there.
from setuptools import setup

setup(cffi_modules=["mmkv/_build.py:ffibuilder"])
