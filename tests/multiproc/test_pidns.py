"""Processes in different PID namespaces (containers sharing a volume, each with its own
PID 1) share one store: exact counters, mutual exclusion under lock(), recovery after a
SIGKILL of a writer in either namespace.

Each namespace is a real one, made by `unshare -p -f --mount-proc` (CI runs as root); the
worker in it is that namespace's PID 1 and spawns more workers there, so thread ids collide
across namespaces exactly as in two containers.  Workers run with hard timeouts.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import mmkv

WORKER = textwrap.dedent(r"""
    import os, sys, time, multiprocessing as mp
    import mmkv

    def work(path, n, tag):
        d = mmkv.open(path)
        for i in range(n):
            d.incr(b"n")
            if i % 50 == 0:
                with d.lock():
                    # nobody else may be inside: the marker we set must survive the block
                    d[b"inside"] = tag
                    a = int(d.get(b"a", b"0"))
                    d[b"a"] = b"%d" % (a + 1)
                    d[b"b"] = b"%d" % (-(a + 1))
                    if d[b"inside"] != tag:
                        raise SystemExit("another writer entered lock() meanwhile")
        d.close()

    if __name__ == "__main__":
        path, n, procs, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print("pid", os.getpid(), flush=True)
        ctx = mp.get_context("fork")
        ps = [ctx.Process(target=work, args=(path, n, b"%s-%d" % (name.encode(), j)))
              for j in range(procs - 1)]
        for p in ps:
            p.start()
        work(path, n, name.encode() + b"-main")
        for p in ps:
            p.join()
            if p.exitcode != 0:
                sys.exit(1)
""")

KILLED = textwrap.dedent(r"""
    import os, sys, mmkv
    d = mmkv.open(sys.argv[1])
    print("pid", os.getpid(), flush=True)
    while True:
        with d.lock():
            d.incr(b"n")
            sys.stdout.write("ack\n")
            sys.stdout.flush()
""")


def _unshare(tmp_path, script, *args):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        raise AssertionError("these tests need root and util-linux unshare (CI runs as root)")
    path = tmp_path / f"worker-{len(list(tmp_path.iterdir()))}.py"
    path.write_text(script)
    return subprocess.Popen(["unshare", "-p", "-f", "--mount-proc", sys.executable, str(path),
                             *map(str, args)], stdout=subprocess.PIPE, text=True)


def test_counter_and_lock_across_pid_namespaces_exact(tmp_path):
    """API.md: processes in different PID namespaces share a store with every guarantee."""
    store = tmp_path / "s.mmkv"
    mmkv.open(store).close()
    n, procs = 20000, 3
    ns = [_unshare(tmp_path, WORKER, store, n, procs, f"ns{i}") for i in range(2)]
    first = [p.stdout.readline().split() for p in ns]
    assert first == [["pid", "1"], ["pid", "1"]], "each namespace's worker is its PID 1"
    for p in ns:
        assert p.wait(timeout=240) == 0
        p.stdout.close()
    with mmkv.open(store) as d:
        assert d[b"n"] == b"%d" % (2 * n * procs)
        lock_blocks = 2 * procs * len(range(0, n, 50))
        assert int(d[b"a"]) == lock_blocks and int(d[b"b"]) == -lock_blocks
        d._check()


def test_sigkill_of_lock_holder_in_a_namespace_recovers(tmp_path):
    """API.md: a process killed while holding the lock blocks no one, in any namespace."""
    store = tmp_path / "s.mmkv"
    mmkv.open(store).close()
    survivors = _unshare(tmp_path, WORKER, store, 20000, 2, "survivor")
    victim = _unshare(tmp_path, KILLED, store)
    assert victim.stdout.readline().split() == ["pid", "1"]
    assert survivors.stdout.readline().split() == ["pid", "1"]
    acked = 0
    deadline = time.monotonic() + 60
    while acked < 200 and time.monotonic() < deadline:
        assert victim.stdout.readline() == "ack\n"
        acked += 1
    # the victim's PID 1 is the unshare child; killing it ends the namespace
    with open(f"/proc/{victim.pid}/task/{victim.pid}/children") as f:
        child = int(f.read().split()[0])
    os.kill(child, signal.SIGKILL)
    victim.wait(timeout=30)
    acked += victim.stdout.read().count("ack\n")
    victim.stdout.close()
    assert survivors.wait(timeout=240) == 0, "the other namespace's writers went on"
    survivors.stdout.close()
    with mmkv.open(store) as d:
        d.incr(b"n")
        n = int(d[b"n"])
        assert n >= acked + 2 * 20000 + 1, "no acknowledged increment was lost"
        assert n <= acked + 1 + 2 * 20000 + 1, "at most the unacknowledged one in flight"
        d._check()
