"""Threads: reads keep the GIL, the lock belongs to a thread, a thread that ends releases it.

API.md "Threads, signals and fork" and "Many processes, one store" (the lock clauses).  Each
test runs its body in a fresh interpreter with a hard deadline (tests/_script.py), so a lock
that is never released is a failure, not a stuck run.  No test asserts a speed: the GIL test
checks who ran, not how long it took.
"""
import pytest

import _script

PRELUDE = """
import os, sys, threading, time
import mmkv
path = sys.argv[1]
"""

# A busy thread notes every read index it sees while a burst of reads runs.  A read that keeps
# the GIL never lets it run mid-burst, except when the interpreter forces a switch (once per
# switch interval, set to 1 s here); a read that releases the GIL hands it over on every call.
BUSY_READS = PRELUDE + """
sys.setswitchinterval(1.0)
d = mmkv.open(path, "n")
d[b"a"] = b"A" * 100
d[b"big"] = b"B" * (1 << 20)     # a read long enough for a released GIL to change hands
state = {"i": -1, "stop": False, "ready": False}
seen = set()

def busy():
    state["ready"] = True
    while not state["stop"]:
        i = state["i"]
        if i >= 0:
            seen.add(i)

threads = [threading.Thread(target=busy) for _ in range(int(sys.argv[2]))]
for t in threads:
    t.start()
while not state["ready"]:
    time.sleep(0.001)
time.sleep(0.01)              # the busy threads own the GIL; take it back, then read at once
ops = [(d.get, b"a", b"A" * 100), (d.__getitem__, b"a", b"A" * 100), (d.get, b"miss", None),
       (d.__getitem__, b"big", b"B" * (1 << 20))]
for i in range(3200):                  # 1000 each of the small reads, then 200 large ones
    op, key, want = ops[min(i // 1000, 3)]
    state["i"] = i
    assert op(key) == want
    if len(seen) > 5:         # fail fast: each such read costs a whole switch interval
        break
state["i"] = -1
state["stop"] = True
for t in threads:
    t.join()
d.close()
print(len(seen))
"""


@pytest.mark.parametrize("busy_threads", [1, 3])
def test_get_beside_busy_threads_keeps_gil_busy_threads_never_run_mid_burst(tmp_path,
                                                                             busy_threads):
    """"A read keeps the GIL for its duration ... so a busy Python thread does not make it
    wait for a switch interval"."""
    out = _script.run(BUSY_READS, tmp_path / "s.mmkv", busy_threads, timeout=120)
    handoffs = int(out)
    # 3200 reads; a forced switch (every 1 s of a waiting thread) may land in the burst a few
    # times on a loaded machine, a GIL release per read lands on (nearly) every read
    assert handoffs <= 5, f"busy threads ran during {handoffs} of the reads"


THREAD_DIES_HOLDING = PRELUDE + """
d = mmkv.open(path, "n")
d[b"k"] = b"v"

def take_and_leave():
    d.lock().__enter__()      # never exits: the thread ends holding the lock
    d[b"inside"] = b"1"

t = threading.Thread(target=take_and_leave)
t.start()
t.join()
# another process can write now (it would wait for ever if the lock were still held)
import subprocess
subprocess.run([sys.executable, "-c",
                "import sys, mmkv; d = mmkv.open(sys.argv[1], 'w'); d[b'other'] = b'2'; "
                "d.close()", path], check=True, timeout=30)
with d.lock():                # this thread can take it
    d[b"main"] = b"3"
d[b"garbage"] = b"x" * 100000
del d[b"garbage"]
d.compact()                   # not EBUSY: the dead thread holds nothing
assert dict(d.items()) == {b"k": b"v", b"inside": b"1", b"other": b"2", b"main": b"3"}
d.close()                     # nor is close()
with mmkv.open(path, "w") as e:
    e._check()
print("ok")
"""


def test_thread_ending_inside_lock_releases_it_compact_and_close_work(tmp_path):
    """"A thread that ends while holding the lock releases it, as a killed process does.\""""
    assert _script.run(THREAD_DIES_HOLDING, tmp_path / "s.mmkv").strip() == "ok"


OTHER_THREADS_WAIT = PRELUDE + """
d = mmkv.open(path, "n")
d2 = mmkv.open(path, "w")
held = threading.Event()
release = threading.Event()
log = []

def holder():
    with d.lock():
        held.set()
        release.wait(30)
        log.append(("holder reads", d2.get(b"w")))
        d2[b"h"] = b"from holder, second handle"

def writer(handle, key):
    handle[key] = b"from writer"
    log.append(("writer done", key))

h = threading.Thread(target=holder)
h.start()
assert held.wait(30)
writers = [threading.Thread(target=writer, args=(d, b"w")),
           threading.Thread(target=writer, args=(d2, b"w2"))]
for w in writers:
    w.start()
# the main thread keeps running while the writers wait (they let other threads run)
ticks = 0
deadline = time.monotonic() + 0.5
while time.monotonic() < deadline:
    ticks += 1
assert ticks > 1000, ticks
assert all(w.is_alive() for w in writers), log
assert d.get(b"w") is None and d.get(b"w2") is None     # reads never wait for the lock
release.set()
h.join(30)
for w in writers:
    w.join(30)
assert not h.is_alive() and not any(w.is_alive() for w in writers)
assert log[0] == ("holder reads", None), log
assert d[b"w"] == d[b"w2"] == b"from writer"
assert d[b"h"] == b"from holder, second handle"
d2.close()
d.close()
print("ok")
"""


def test_lock_held_by_one_thread_other_threads_writes_wait_then_proceed(tmp_path):
    """"The lock belongs to the calling thread: that thread's operations inside, through any
    handle of this store, still work; other threads and processes that write wait.\""""
    assert _script.run(OTHER_THREADS_WAIT, tmp_path / "s.mmkv").strip() == "ok"


WAITER_LETS_THREADS_RUN = PRELUDE + """
import subprocess
d = mmkv.open(path, "n")
holder = subprocess.Popen([sys.executable, "-c", '''
import sys, time, mmkv
d = mmkv.open(sys.argv[1], "w")
with d.lock():
    print("held", flush=True)
    time.sleep(2)
d.close()
''', path], stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "held"
done = []
w = threading.Thread(target=lambda: (d.__setitem__(b"k", b"v"), done.append(1)))
w.start()
ticks = 0
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:
    ticks += 1
assert not done                    # the write waits for the other process
assert ticks > 1000, ticks         # ... and lets this thread run meanwhile
w.join(30)
assert done and d[b"k"] == b"v"
holder.wait(30)
d.close()
print("ok")
"""


def test_write_waiting_for_other_process_lock_lets_other_threads_run(tmp_path):
    """"A write lets other threads run while it waits (for the lock, for the disk)".\""""
    assert _script.run(WAITER_LETS_THREADS_RUN, tmp_path / "s.mmkv").strip() == "ok"
