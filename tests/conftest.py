"""Shared pytest setup: hypothesis profiles, store paths, handle bookkeeping, structural checks.

Fixtures here serve every test directory (unit, property, multiproc, crash, fuzz, cli);
they never import mmkv at module level, so collection works before the package is built.
Every handle opened through `open_store` is closed at teardown, whatever the test did.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # tests/_checks.py

# Profiles are registered once, here, and chosen with HYPOTHESIS_PROFILE (default "ci").
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def store_path(tmp_path):
    """Path of a store file that does not exist yet, in a fresh per-test directory."""
    return tmp_path / "s.mmkv"


@pytest.fixture
def open_store(store_path):
    """Factory `open_store(path=store_path, flag="c", **kw)`: mmkv.open, closed at teardown."""
    import mmkv

    handles = []

    def _open(path=None, flag="c", *args, **kwargs):
        handle = mmkv.open(store_path if path is None else path, flag, *args, **kwargs)
        handles.append(handle)
        return handle

    yield _open
    for handle in reversed(handles):
        handle.close()


def assert_sound(handle):
    """Run the C structural checker on an open handle and compare its count to len()."""
    report = handle._check()
    assert isinstance(report, dict), f"_check() returned {report!r}, not a dict"
    assert report["live"] == len(handle), f"_check() {report!r} disagrees with len()"
    return report


@pytest.fixture
def check_store():
    """`check_store(path_or_handle)`: `_check()` passes on it (a path is opened afresh)."""
    import mmkv

    def _check(target):
        if isinstance(target, mmkv.Store):
            return assert_sound(target)
        with mmkv.open(target, "w") as handle:
            return assert_sound(handle)

    return _check


@pytest.fixture
def db(open_store, store_path, check_store):
    """An open read-write store at `store_path`; `_check()` must pass on it at teardown."""
    handle = open_store(store_path)
    yield handle
    if os.path.exists(store_path):
        check_store(store_path)
