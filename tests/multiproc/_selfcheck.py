"""Self-validating values for the multi-process and crash tests.

A value names its key and a tag (who wrote it, and when), then carries a body derived from
both and the digest of its head: a value that is torn, mixed from two records or stored under
another key fails `parse`. Building one is a memcpy, so a writer of 1 MiB values spends its time
inside the store's write, not in Python. Keys and tags must not contain b"|".
"""

import hashlib

MAGIC = b"MKV1"


class Invalid(Exception):
    """A value that is not exactly what `make` built for this key."""


def make(key: bytes, tag: str, size: int) -> bytes:
    """Return a value for `key` naming `tag`, with a `size`-byte body."""
    head = b"%s|%s|%s|%d|" % (MAGIC, key, tag.encode("ascii"), size)
    seed = hashlib.sha256(head).digest()
    return head + _body(seed, size) + seed


def parse(key: bytes, value: bytes) -> str:
    """Return the tag of `value` read under `key`; raise Invalid unless it is whole and its own."""
    parts = value[:200].split(b"|", 4)
    if len(parts) != 5 or parts[0] != MAGIC:
        raise Invalid(f"{key!r}: bad head {value[:60]!r} (len {len(value)})")
    _, vkey, tag, size_text, _ = parts
    if vkey != key:
        raise Invalid(f"{key!r}: holds the value of {vkey!r}")
    try:
        size = int(size_text)
    except ValueError:
        raise Invalid(f"{key!r}: bad size {size_text!r}") from None
    head_len = len(MAGIC) + len(vkey) + len(tag) + len(size_text) + 4
    head = value[:head_len]
    seed = hashlib.sha256(head).digest()
    if len(value) != head_len + size + len(seed):
        raise Invalid(f"{key!r} tag {tag!r}: length {len(value)}, expected {head_len + size + 32}")
    if value[head_len:] != _body(seed, size) + seed:
        raise Invalid(f"{key!r} tag {tag!r}: body or digest differs (torn or mixed value)")
    return tag.decode("ascii")


def _body(seed: bytes, size: int) -> bytes:
    return (seed * (size // len(seed) + 1))[:size]
