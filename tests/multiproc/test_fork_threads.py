"""os.fork() while other threads are inside calls: every child can use and close every
inherited handle.

API.md "Threads, signals and fork": "A child created by `os.fork()` can use and close every
inherited handle, whatever other threads of the parent were doing at that instant."  The
parent runs reader, writer, iterating and lock-holding threads on two handles of a file store
and one of a shared-memory store, and forks 20 children at scattered instants; each child
reads, writes, iterates and closes every handle under an alarm.  The body runs in its own
interpreter with a deadline (tests/_script.py); a child that hangs is SIGKILLed and counted.
"""
import json
import uuid

import pytest

import _script

pytestmark = pytest.mark.multiproc

BODY = r"""
import json, os, random, signal, sys, threading, time, warnings
import mmkv

warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: fork() with threads running
path, shm, children = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = mmkv.open(path, "n")
d2 = mmkv.open(path, "w")
s = mmkv.open_shm(shm, "n")
handles = {"d": d, "d2": d2, "shm": s}
for h in handles.values():
    for i in range(2000):
        h[b"k%d" % i] = b"v%d" % i
stop = False

def reader(h):
    while not stop:
        h.get(b"k%d" % random.randrange(2000))
        b"k1" in h

def writer(h, name):
    i = 0
    while not stop:
        h[b"w-" + name] = b"%d" % i
        h.incr(b"n-" + name)
        if i % 50 == 0:
            h.pop(b"p-" + name, None)
            h[b"p-" + name] = b"x" * 5000
        i += 1

def locker(h):
    while not stop:
        with h.lock():
            h[b"locked"] = b"1"
            time.sleep(0.0005)

def iterator(h):
    while not stop:
        for _ in h:
            if stop:
                break

threads = []
for name, h in handles.items():
    threads += [threading.Thread(target=reader, args=(h,)),
                threading.Thread(target=writer, args=(h, name.encode())),
                threading.Thread(target=locker, args=(h,)),
                threading.Thread(target=iterator, args=(h,))]
for t in threads:
    t.start()

def child():
    import faulthandler
    faulthandler.dump_traceback_later(15)   # where a hung child is, on stderr
    signal.alarm(20)       # a hang in the child becomes its death by SIGALRM
    for name, h in handles.items():
        assert h[b"k7"] == b"v7"
        mine = b"child-%d" % os.getpid()    # other children run at the same time
        h[mine] = b"%d" % os.getpid()
        assert h[mine] == b"%d" % os.getpid()
        assert h.incr(b"child-n") >= 1
        with h.lock():
            h[b"child-locked"] = b"1"
        seen = set(h)   # others write meanwhile: the keys present throughout are all there
        assert all(b"k%d" % i in seen for i in range(2000))
        h.close()

pids = []
rng = random.Random(9)
for _ in range(children):
    time.sleep(rng.uniform(0, 0.01))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    pids.append(pid)

results = {}
deadline = time.monotonic() + 60
for pid in pids:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            results[pid] = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            results[pid] = "hung"
            break
        time.sleep(0.01)
stop = True
for t in threads:
    t.join(30)
assert not any(t.is_alive() for t in threads)
bad = {pid: code for pid, code in results.items() if code != 0}
for h in handles.values():
    h._check()
    h.close()
with mmkv.open(path, "w") as e:
    e._check()
mmkv.unlink_shm(shm)
print(json.dumps({"children": len(results), "bad": list(bad.values())}))
sys.exit(1 if bad else 0)
"""


def test_fork_while_threads_inside_calls_children_use_and_close_every_handle(db_path):
    """"A child created by `os.fork()` can use and close every inherited handle, whatever
    other threads of the parent were doing at that instant.\""""
    shm = f"mmkv-test-{uuid.uuid4().hex}"
    try:
        # exit 1 (with the hung children's tracebacks on stderr) when a child failed
        out = _script.run(BODY, db_path, shm, 20, timeout=180)
    finally:
        try:
            import mmkv
            mmkv.unlink_shm(shm)
        except mmkv.NotFoundError:
            pass
    r = json.loads(out)
    assert r["children"] == 20
    assert not r["bad"], (f"{len(r['bad'])} of 20 children failed (exit code, negative for "
                          f"a signal; SIGALRM -14 = hung): {r['bad']}")
