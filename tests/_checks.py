"""Checks and fixtures-as-functions shared by test folders (tests/ is put on sys.path by
tests/conftest.py)."""


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


def fill(d, n, size, prefix=b"k"):
    """Put n keys `prefix%06d` with distinct `size`-byte values; return them as a dict."""
    items = {}
    for i in range(n):
        key = b"%s%06d" % (prefix, i)
        value = (b"%06d:" % i) * (size // 7 + 1)
        items[key] = value[:size]
        d[key] = items[key]
    return items


def delete_most(d, items, keep_every=10):
    """Delete all but every `keep_every`-th key of items from d and from items."""
    for i, key in enumerate(sorted(items)):
        if i % keep_every:
            del d[key]
            del items[key]
