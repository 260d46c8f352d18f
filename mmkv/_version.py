"""The package version, written once: pyproject.toml reads it (setuptools dynamic metadata)
and mmkv.__version__ re-exports it."""

__version__ = "0.1.0"
