"""Command-line test fixtures: sample keys and values of every shape, a store holding them,
and its dump.  The helpers that run the command line live in _cli.py."""

import pytest

from _cli import SAMPLE, make_store, ok


@pytest.fixture
def sample_items():
    """Keys and values of every shape: empty, UTF-8 text, binary, control bytes, large."""
    return {(k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
            for k, v in SAMPLE.items()}


@pytest.fixture
def sample_store(tmp_path, sample_items):
    """A store at tmp_path/src.mmkv holding sample_items."""
    return make_store(tmp_path / "src.mmkv", sample_items)


@pytest.fixture
def sample_dump(tmp_path, sample_store):
    """The bytes of `mmkv dump` of sample_store."""
    return ok("dump", sample_store)
