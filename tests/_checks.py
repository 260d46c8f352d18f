"""Checks shared by test folders (tests/ is put on sys.path by tests/conftest.py)."""


def assert_iteration_ok(seen, throughout, ever):
    """API.md: every key present for the whole iteration is yielded exactly once, and every
    yielded key was present at some moment of the iteration."""
    dups = {k for k in seen if seen.count(k) > 1} if len(seen) != len(set(seen)) else set()
    assert not dups, f"yielded twice: {sorted(dups)[:10]}"
    missing = throughout - set(seen)
    assert not missing, (f"{len(missing)} keys present throughout never yielded: "
                         f"{sorted(missing)[:10]}")
    extra = set(seen) - ever
    assert not extra, f"yielded keys that never existed: {sorted(extra)[:10]}"
