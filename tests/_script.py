"""Run a small Python script in its own interpreter and session, with a hard deadline.

Tests of behaviour that can hang (a lock that is never released, a SIGBUS loop, a child that
spins in close()) run their body here, so a hang is a test failure after `timeout` seconds
and never a stuck run: on the deadline the whole process group is SIGKILLed.  tests/ is on
sys.path (tests/conftest.py), so test modules import this as `_script`.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn(code, *args, env=None):
    """Start `code` (dedented) in a new interpreter and session; stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **(env or {})}, cwd=ROOT)


def kill_group(proc):
    """SIGKILL proc and everything it started (its session), then reap proc."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run(code, *args, timeout=60, env=None, returncode=0):
    """Run `code` with argv `args`; fail the test if it runs past `timeout` seconds (hung) or
    exits with another code than `returncode`.  Returns its stdout."""
    proc = spawn(code, *args, env=env)
    hung = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        kill_group(proc)      # on a hang, and any grandchildren it left behind
    if hung:
        out, err = proc.communicate()
        pytest.fail(f"script still running after {timeout} s (hung):\n--- stdout\n{out}\n"
                    f"--- stderr\n{err[-4000:]}")
    if proc.returncode != returncode:
        pytest.fail(f"script exited {proc.returncode} (want {returncode}):\n--- stdout\n{out}\n"
                    f"--- stderr\n{err[-6000:]}")
    return out
