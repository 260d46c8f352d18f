"""A consistent dump through a read-only handle whose mapping is older than the file, after
a writer died holding the lock with its write decided (a COMMIT intent stored, not yet
applied).  API.md, "The command line": "`dump` of a store that other processes are writing
is a consistent snapshot"; the write a dead holder decided counts, because the next locker
finishes it, so the snapshot must contain it even though the record lies past what this
handle has mapped.

The writer grows the file well past the reader's mapping, then SIGKILLs itself just after
the COMMIT intent of its last write (MMKV_TEST_WRITE_KILL=N:commit), so the case is hit on
every run, not by timing.
"""
import io
import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest

import mmkv

pytestmark = pytest.mark.crash

INTENT_OFF, COMMIT = 256, 2
BIG = 4
WRITER = textwrap.dedent(f"""
    import sys, mmkv
    d = mmkv.open(sys.argv[1])
    for i in range({BIG}):
        d[b"big%d" % i] = bytes([i]) * (1 << 20)
    d[b"last"] = b"decided"
""")


def _intent(path):
    with open(path, "rb") as f:
        f.seek(INTENT_OFF)
        return struct.unpack("<Q", f.read(8))[0]


def _dumped_keys(store):
    out = io.BytesIO()
    mmkv.dump(store, out)
    keys = set()
    for line in out.getvalue().splitlines()[1:-1]:
        keys.add(json.loads(line)["k"])
    return keys


def test_dump_through_old_read_only_mapping_includes_dead_holders_decided_write(tmp_path):
    """The dead writer's decided write lies past the reader's mapping; the dump has it, and
    the next writer finishes it (the store then holds exactly what the dump said)."""
    path = tmp_path / "s.mmkv"
    with mmkv.open(path, "n") as d:
        d[b"first"] = b"1"
    reader = mmkv.open(path, "r")                 # maps the small file as it is now
    assert reader[b"first"] == b"1"
    small = os.path.getsize(path)
    env = dict(os.environ, MMKV_TEST_WRITE_KILL=f"{BIG + 1}:commit")
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path)], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert _intent(path) == COMMIT, "the writer did not die inside its last write"
    assert os.path.getsize(path) > 4 * small      # the record lies past the reader's mapping
    keys = _dumped_keys(reader)
    assert "last" in keys and {"first", "big0", f"big{BIG - 1}"} <= keys, sorted(keys)
    reader.close()
    with mmkv.open(path) as d:                    # the next locker finishes the write
        assert d[b"last"] == b"decided"
        assert set(d.keys()) == {k.encode() for k in keys}
        d._check()
