"""A file truncated underneath: the SIGBUS guard turns the fault into mmkv.error, the
process survives, and a writer that faulted leaves the lock free and the store recoverable.

API.md: "A damaged or hostile file never crashes the interpreter."
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = [pytest.mark.crash, pytest.mark.multiproc]

WORKER = textwrap.dedent("""
    import json, sys, time
    import mmkv
    path, role, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    # no auto-compaction: a compaction racing the truncation would move everyone to an
    # intact new file, which is right but not what this test is about
    d = mmkv.open(path, "r" if role == "reader" else "w", auto_compact=False)
    ops = errors = 0
    kinds = set()
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        i += 1
        try:
            if role == "reader":
                d.get(b"k%d" % (i % 3000))
                if i % 500 == 0:
                    sum(1 for _ in d)
            else:
                d[b"w%d" % (i % 3000)] = b"x" * 3000
            ops += 1
        except mmkv.error as e:
            errors += 1
            kinds.add(type(e).__name__)
    print(json.dumps({"ops": ops, "errors": errors, "kinds": sorted(kinds)}))
""")


def _start(path, role, seconds):
    return subprocess.Popen([sys.executable, "-c", WORKER, str(path), role, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_truncate_underneath_readers_and_writers_get_mmkv_error_and_survive(tmp_path):
    """Truncating the file while 2 readers and 2 writers run: every process exits normally
    (no SIGBUS), and each saw mmkv.error after the truncation."""
    import mmkv
    path = tmp_path / "s.mmkv"
    with mmkv.open(path, "n") as d:
        for i in range(3000):
            d[b"k%d" % i] = b"v" * 2000
    procs = [_start(path, role, 4.0) for role in ("reader", "reader", "writer", "writer")]
    try:
        time.sleep(1.5)
        os.truncate(path, 8192)
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, f"worker died: {p.returncode}\n{err}"
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r in results:
        assert r["ops"] > 0
        assert r["errors"] > 0, results
        assert set(r["kinds"]) <= {"error", "CorruptError"}


def test_truncate_writer_that_faulted_leaves_the_lock_free(tmp_path):
    """After a writer faulted on a truncated file and the file got its size back, another
    process's write completes within seconds: the fault released the lock."""
    import mmkv
    path = tmp_path / "s.mmkv"
    with mmkv.open(path, "n") as d:
        for i in range(1000):
            d[b"k%d" % i] = b"v" * 1000
    size = os.path.getsize(path)
    d = mmkv.open(path)
    tail = d.stats()["tail"]
    os.truncate(path, (tail // 4096) * 4096 - 8192)
    with pytest.raises(mmkv.error):
        d[b"new"] = b"n" * 1000          # the record lands beyond the new end of file
    os.truncate(path, size)                # space is back (zeros where data was)
    code = textwrap.dedent(f"""
        import mmkv
        d = mmkv.open({str(path)!r})
        d[b"other"] = b"o"
        assert d[b"other"] == b"o"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    d[b"again"] = b"a"
    assert d[b"again"] == b"a"
    assert d[b"k0"] == b"v" * 1000
    d.close()


def test_truncate_below_header_every_operation_is_error_not_crash(tmp_path):
    """With the header page gone, every operation on an open handle is mmkv.error."""
    import mmkv
    path = tmp_path / "s.mmkv"
    d = mmkv.open(path, "n")
    d[b"a"] = b"1"
    os.truncate(path, 0)
    for op in (lambda: d[b"a"], lambda: d.get(b"a"), lambda: len(d), lambda: list(d),
               lambda: d.__setitem__(b"b", b"2"), lambda: d.stats(), lambda: d.sync(),
               lambda: d.incr(b"c"), lambda: d._check()):
        with pytest.raises(mmkv.error):
            op()
    d.close()
