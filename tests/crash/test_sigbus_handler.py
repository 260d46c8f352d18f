"""A Python SIGBUS handler installed after the first open, then the file truncated under the
mapping: calls fail with mmkv.error (or work) instead of looping for ever.

API.md "Crashes and damage": "A damaged or hostile file never crashes the interpreter:
opening or reading it gives `mmkv.error` ..., or the valid data only."  Issue 9 (item 8): a
handler installed by someone else after the first open must not turn a truncated file into a
hang.  Reads of a value may remain a documented limitation (README), so this covers writes,
the start of an iteration, stats() and the next open.  Each case runs in its own interpreter
with a deadline (tests/_script.py): a hang is a failure.
"""
import json

import pytest

import _script

pytestmark = pytest.mark.crash

BODY = """
import json, os, signal, sys
import mmkv

path, op = sys.argv[1:3]
d = mmkv.open(path, "n", durable=(op == "durable-write"))
for i in range(300):
    d[b"k%d" % i] = bytes([i % 256]) * 10000
calls = []
signal.signal(signal.SIGBUS, lambda signum, frame: calls.append(signum))   # after the open
os.truncate(path, 64 << 10)              # the header and lock page stay; the log is gone

def attempt(fn):
    try:
        return ["returned", repr(fn())[:200]]
    except mmkv.error as e:
        return ["mmkv.error", str(e)]

if op in ("write", "durable-write"):
    first = attempt(lambda: d.__setitem__(b"new", b"x" * 5000))
elif op == "iterate":
    first = attempt(lambda: [k for k, _ in zip(d, range(10))])
elif op == "stats":
    first = attempt(lambda: d.stats())
elif op == "delete":
    first = attempt(lambda: d.__delitem__(b"k7"))
second = attempt(lambda: mmkv.open(path, "w").close())
print(json.dumps({"first": first, "next_open": second}))
"""


@pytest.mark.parametrize("op", ["write", "durable-write", "delete", "iterate", "stats"])
def test_sigbus_handler_installed_after_open_truncated_file_gives_error_not_hang(db_path, op):
    """"A damaged or hostile file never crashes the interpreter: opening or reading it gives
    `mmkv.error` ..., or the valid data only" - with a Python SIGBUS handler in place."""
    r = json.loads(_script.run(BODY, db_path, op, timeout=30))
    if op in ("write", "durable-write", "delete"):
        # the log it would append to is gone: the write cannot have been applied
        assert r["first"][0] == "mmkv.error", r
    else:
        assert r["first"][0] in ("mmkv.error", "returned"), r
    assert r["next_open"][0] in ("mmkv.error", "returned"), r
