#!/usr/bin/env python3
"""stress_check.py - run the read-only structural check beside a busy writer in another
process, many times, and print every false alarm it raises (issue 10: "check is never a
false alarm").

    .venv/bin/python tools/stress_check.py [--writer KIND] [--checks N] [--seconds S]
                                           [--hog] [--stop] [--one-cpu]

KIND is one of: busy (the writer of tests/multiproc/test_check_dump_busy.py), overwrite
(the same few keys again and again), batch (set_many and delete_many), grow (new keys
only, so the table keeps growing), compact (overwrites big enough for compactions), mix
(all of them).  --hog adds a process spinning on the CPU, so the writer is preempted more
often in the middle of a write; --stop freezes the writer with SIGSTOP at random moments
during the checks (a writer paused between two steps of a write); --one-cpu runs every
process on CPU 0, so the checker runs exactly while the writer is preempted.  Exit 1 if any
check failed.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import mmkv

WRITERS = {
    "busy": """
        k = b"k%d" % rng.randrange(3000)
        r = rng.random()
        if r < 0.6:
            d[k] = b"v" * rng.randrange(200)
        elif r < 0.8:
            d.pop(k, None)
        elif r < 0.95:
            d.incr(b"counter")
        else:
            d[b"fresh%d" % i] = b"x"
    """,
    "overwrite": """
        k = b"o%d" % rng.randrange(8)
        if rng.random() < 0.8:
            d[k] = b"v" * rng.randrange(300)
        else:
            d.pop(k, None)
    """,
    "batch": """
        ks = [b"b%d" % rng.randrange(2000) for _ in range(rng.randrange(1, 40))]
        if rng.random() < 0.7:
            d.set_many([(k, b"w" * rng.randrange(100)) for k in ks])
        else:
            d.delete_many(ks)
    """,
    "grow": """
        d[b"g%d" % i] = b"x" * rng.randrange(50)
        if i % 20000 == 0:
            d.clear()
    """,
    "compact": """
        d[b"c%d" % rng.randrange(200)] = b"z" * rng.randrange(4000, 20000)
        if i % 5000 == 0:
            d.compact()
    """,
}
WRITERS["mix"] = "\n".join(
    f"if i % 5 == {n}:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    for n, body in enumerate(WRITERS.values()))

WRITER = """
import random, sys, mmkv
d = mmkv.open(sys.argv[1])
d[b"ready"] = b"1"
rng = random.Random(int(sys.argv[2]))
i = 0
while True:
    i += 1
%s
"""

CHECKER = """
import sys, mmkv
bad = 0
for i in range(int(sys.argv[2])):
    with mmkv.open(sys.argv[1], "r") as d:
        try:
            d._check()
        except mmkv.CorruptError as e:
            bad += 1
            print("check %d: %s" % (i, str(e).replace("\\n", " | ")), flush=True)
print("done %d" % bad, flush=True)
"""

HOG = "while True: pass"


def writer_code(kind):
    body = textwrap.indent(textwrap.dedent(WRITERS[kind]), "    ")
    return WRITER % body


def wait_ready(proc, path):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("the writer died: " + proc.stderr.read().decode())
        if os.path.exists(path):
            with mmkv.open(path, "r") as d:
                if b"ready" in d:
                    return
        time.sleep(0.01)
    sys.exit("the writer did not start")


def run(kind, checks, hog, stop, seed):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "busy.mmkv")
        procs = []
        writer = subprocess.Popen([sys.executable, "-c", writer_code(kind), path, str(seed)],
                                  stderr=subprocess.PIPE)
        procs.append(writer)
        try:
            wait_ready(writer, path)
            if hog:
                procs.append(subprocess.Popen([sys.executable, "-c", HOG]))
            checker = subprocess.Popen([sys.executable, "-c", CHECKER, path, str(checks)],
                                       stdout=subprocess.PIPE, text=True)
            procs.append(checker)
            rng = random.Random(seed)
            while stop and checker.poll() is None:
                time.sleep(rng.random() * 0.003)
                writer.send_signal(signal.SIGSTOP)
                time.sleep(rng.random() * 0.01)
                writer.send_signal(signal.SIGCONT)
            out, _ = checker.communicate()
            if writer.poll() is not None:
                sys.exit("the writer died: " + writer.stderr.read().decode())
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)
                    p.kill()
                    p.wait()
        lines = out.splitlines()
        for line in lines[:-1]:
            print(kind, line, flush=True)
        return int(lines[-1].split()[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writer", default="busy", choices=sorted(WRITERS))
    ap.add_argument("--checks", type=int, default=2000, help="checks per round")
    ap.add_argument("--seconds", type=float, default=60, help="stop after this long")
    ap.add_argument("--hog", action="store_true")
    ap.add_argument("--stop", action="store_true")
    ap.add_argument("--one-cpu", action="store_true")
    a = ap.parse_args()
    if a.one_cpu:
        os.sched_setaffinity(0, {0})     # inherited by every process started below
    start, total, bad, rnd = time.monotonic(), 0, 0, 0
    while time.monotonic() - start < a.seconds:
        bad += run(a.writer, a.checks, a.hog, a.stop, rnd)
        total += a.checks
        rnd += 1
        print(f"{a.writer}: {bad} false alarms in {total} checks"
              f" ({time.monotonic() - start:.0f} s)", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
