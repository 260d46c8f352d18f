"""A store opened before os.fork(): both sides keep working, and a child forked inside lock()
does not hold the lock.

Children are real os.fork() children of the test process. A child runs one function and
leaves with os._exit (0 if the function returned, 1 if it raised), sending its result or its
traceback on a pipe; the parent waits with a deadline and SIGKILLs a child it gives up on.
Each test ends with the structural check, on a file store and on a shared-memory store.
"""

import os
import signal
import subprocess
import sys
import time
import traceback
import uuid

import pytest

import mmkv

import _atomic_workers as workers

pytestmark = pytest.mark.multiproc

MSG_MAX = 16 * 1024  # well under the pipe buffer: a child never blocks writing its report


class Forked:
    """A forked child running one function; see `fork_child`."""

    def __init__(self, pid, rfd):
        self.pid = pid
        self.rfd = rfd
        self.exitcode = None

    def running(self):
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode is None

    def wait(self, timeout):
        """(exit code, report text); fails the test if the child runs past `timeout` s."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                pytest.fail(f"forked child {self.pid} still running after {timeout} s")
            time.sleep(0.005)
        chunks = []
        while chunk := os.read(self.rfd, 65536):
            chunks.append(chunk)
        return self.exitcode, b"".join(chunks).decode("utf-8", "replace")

    def reap(self):
        if self.exitcode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.exitcode = -signal.SIGKILL
        os.close(self.rfd)


def fork_child(body):
    """Fork; the child runs body() -> str and leaves with os._exit. Returns a Forked for the
    parent, which must reap() it in a finally block."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        text = "?"
        try:
            os.close(rfd)
            text = str(body())
            code = 0
        except BaseException:
            text = traceback.format_exc()
        finally:
            try:
                os.write(wfd, text.encode("utf-8", "replace")[-MSG_MAX:])
            finally:
                os._exit(code)
    os.close(wfd)
    return Forked(pid, rfd)


@pytest.fixture(params=["file", "shm"])
def target(request, tmp_path):
    """A new store, ("file", path) or ("shm", unique name); a shm store is unlinked after."""
    if request.param == "file":
        yield ("file", str(tmp_path / "s.mmkv"))
        return
    name = f"mmkv-test-{uuid.uuid4().hex}"
    try:
        yield ("shm", name)
    finally:
        try:
            mmkv.unlink_shm(name)
        except mmkv.NotFoundError:
            pass


def check_sound(target):
    with workers.open_target(target, "r") as d:
        report = d._check()
        assert report["live"] == len(d) == len(list(d)), report


WRITER = """
import sys, mmkv
kind, where, key = sys.argv[1:]
d = mmkv.open(where, "w") if kind == "file" else mmkv.open_shm(where, "w")
d[key] = b"from another process"
d.close()
"""


def write_in_another_process(target, key, timeout=30):
    """Write key in a fresh interpreter (killed, and TimeoutExpired raised, after timeout)."""
    subprocess.run([sys.executable, "-c", WRITER, target[0], target[1], key], check=True,
                   timeout=timeout)


def test_store_opened_before_fork_keeps_working_in_parent_and_child(target):
    """API.md: "A store opened before os.fork() keeps working in parent and child"."""
    n = 2000
    d = workers.open_target(target, "n")
    try:
        d[b"before"] = b"fork"

        def child():
            assert d[b"before"] == b"fork"
            for i in range(n):
                d.incr(b"n")
                d[b"child-%d" % (i % 50)] = b"%d" % i
            assert d.setdefault(b"child-sd", b"c") == b"c"
            workers.wait_value(d, b"parent-done", b"1", timeout=30)
            assert all(d[b"parent-%d" % i] == b"p" for i in range(50))
            assert len(list(d)) == len(d)
            d.close()
            return "ok"

        kid = fork_child(child)
        try:
            for i in range(n):
                d.incr(b"n")
            for i in range(50):
                d[b"parent-%d" % i] = b"p"
            d[b"parent-done"] = b"1"
            code, text = kid.wait(timeout=60)
        finally:
            kid.reap()
        assert code == 0, f"child failed:\n{text}"

        assert d[b"n"] == b"%d" % (2 * n), "an incr of the parent or the child was lost"
        assert all(d[b"child-%d" % i] == b"%d" % (n - 50 + i) for i in range(50))
        assert d[b"child-sd"] == b"c"
        d[b"after"] = b"parent"  # the child's close() did not close the parent's handle
        assert d.incr(b"n") == 2 * n + 1
        d._check()
    finally:
        d.close()
    check_sound(target)


@pytest.mark.parametrize("how", ["write", "incr", "lock"])
def test_child_forked_inside_lock_does_not_hold_it_and_writes_after_the_parent_leaves(
        target, how):
    """Issue 4: "a child forked inside d.lock() does not believe it holds the lock"."""
    d = workers.open_target(target, "n")
    kid = None
    try:
        with d.lock():
            d[b"p"] = b"1"

            def child():
                assert d[b"p"] == b"1"  # reads never wait
                if how == "write":
                    d[b"c"] = b"child"
                elif how == "incr":
                    assert d.incr(b"c") == 1
                else:
                    with d.lock():
                        d[b"c"] = b"child"
                done = time.monotonic()
                d.close()  # refused if the child believed it held the lock
                return repr(done)

            kid = fork_child(child)
            time.sleep(1.0)
            assert kid.running(), f"the child ended while the parent held the lock: {kid.wait(1)}"
            assert b"c" not in d, "the child wrote while the parent held the lock"
            d[b"p"] = b"2"  # the parent still holds and uses the lock
            with d.lock():
                d[b"p"] = b"3"
            released_at = time.monotonic()
        code, text = kid.wait(timeout=30)
        assert code == 0, f"child failed:\n{text}"
        assert float(text) >= released_at, "the child's write returned before the lock was left"
        assert d[b"c"] == (b"1" if how == "incr" else b"child")
        assert d[b"p"] == b"3"
        with d.lock():  # the parent can take the lock again, and then nobody holds it
            d[b"after"] = b"1"
        write_in_another_process(target, "other")
        assert d[b"other"] == b"from another process"
        d._check()
    finally:
        if kid is not None:
            kid.reap()
        d.close()
    check_sound(target)


@pytest.mark.crash
def test_child_forked_inside_lock_that_exits_leaves_the_parent_holding_it(target):
    """A child that inherited a held lock and exits (even by SIGKILL) releases nothing of
    the parent's: other writers still wait until the parent leaves the block."""
    d = workers.open_target(target, "n")
    kid = other = None
    try:
        with d.lock():
            d[b"p"] = b"1"
            kid = fork_child(lambda: time.sleep(60))
            time.sleep(0.2)
            os.kill(kid.pid, signal.SIGKILL)
            assert kid.wait(timeout=10)[0] == -signal.SIGKILL
            other = subprocess.Popen([sys.executable, "-c", WRITER, target[0], target[1], "o"])
            time.sleep(1.0)
            assert other.poll() is None and b"o" not in d, \
                "a writer went past the parent's lock once the forked child died"
            d[b"p"] = b"2"
        assert other.wait(timeout=30) == 0
        assert d[b"o"] == b"from another process" and d[b"p"] == b"2"
        d._check()
    finally:
        if kid is not None:
            kid.reap()
        if other is not None and other.poll() is None:
            other.kill()
            other.wait(10)
        d.close()
    check_sound(target)
