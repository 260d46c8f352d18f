"""Unit-test setup: every store a unit test leaves behind must pass the structural check.

After each test (and after its handles are closed), every non-empty `*.mmkv` file in the
test's tmp_path is reopened and `_check()` must pass. Foreign files use other suffixes.
"""

import pytest


@pytest.fixture(autouse=True)
def stores_left_behind_are_sound(tmp_path, check_store):
    """`_check()` passes after every test that writes (run on a fresh handle at teardown)."""
    yield
    for path in sorted(tmp_path.rglob("*.mmkv")):
        if path.is_file() and path.stat().st_size > 0:
            check_store(path)
