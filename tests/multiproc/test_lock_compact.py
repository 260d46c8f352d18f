"""Inside `lock()`: a second handle of the same thread works, compaction never runs, and no
other process's write lands.

API.md "Many processes, one store": "The lock belongs to the calling thread: that thread's
operations inside, through any handle of this store, still work; other threads and processes
that write wait. ... `compact()` inside `lock()` raises `mmkv.error`, and no compaction
(automatic or from another process) runs while any thread holds it."  A real writer process
writes in a loop the whole time; the body runs with a deadline (tests/_script.py).
"""
import pytest

import _script

pytestmark = pytest.mark.multiproc

BODY = r"""
import os, subprocess, sys, time
import mmkv

path, how = sys.argv[1:3]
WRITER = '''
import select, sys, mmkv
d = mmkv.open(sys.argv[1], "w")
i = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    d[b"other"] = b"%d" % i
    if i == 0:
        print("writing", flush=True)
    i += 1
d.close()
print(i)
'''
d = mmkv.open(path, "n")
d2 = mmkv.open(path, "w")
d[b"base"] = b"1"
writer = subprocess.Popen([sys.executable, "-c", WRITER, path], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
assert writer.stdout.readline().strip() == "writing"
big = 256 << 10
with d.lock():
    ino = os.stat(path).st_ino
    before = d[b"other"]
    if how == "compact":
        for h in (d2, d):
            try:
                h.compact()
                raise AssertionError("compact() inside lock() returned")
            except mmkv.error:
                pass
    else:   # 15 MiB of garbage through the second handle: past the auto-compaction threshold
        for i in range(60):
            d2[b"big"] = bytes([i]) * big
    d2[b"x"] = b"from d2"
    d[b"x2"] = b"from d"
    time.sleep(0.5)                      # the writer keeps trying meanwhile
    assert os.stat(path).st_ino == ino, "a compaction replaced the file inside lock()"
    assert d[b"other"] == d2[b"other"] == before, "another process wrote inside lock()"
    assert d[b"x"] == b"from d2" and d2[b"x2"] == b"from d"
deadline = time.monotonic() + 30
while d[b"other"] == before:             # the writer goes on once the lock is free
    assert time.monotonic() < deadline, "the writer never got the lock back"
    time.sleep(0.01)
writer.stdin.close()
count = int(writer.stdout.read())
writer.stdout.close()
assert writer.wait(30) == 0 and count > 1
d.compact()                              # outside the lock it works
want = {b"base": b"1", b"x": b"from d2", b"x2": b"from d", b"other": b"%d" % (count - 1)}
if how != "compact":
    want[b"big"] = bytes([59]) * big
assert dict(d.items()) == want == dict(d2.items())
d2.close()
d.close()
with mmkv.open(path, "w") as e:
    e._check()
print("ok")
"""


@pytest.mark.parametrize("how", ["compact", "auto"])
def test_lock_second_handle_compaction_refused_and_no_other_process_write_lands(db_path, how):
    """"`compact()` inside `lock()` raises `mmkv.error`, and no compaction (automatic or from
    another process) runs while any thread holds it" (how=compact: d2.compact() and
    d.compact(); how=auto: writes through d2 past the auto-compaction threshold)."""
    assert _script.run(BODY, db_path, how, timeout=120).strip() == "ok"
