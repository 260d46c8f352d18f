"""Process plumbing shared by tests/multiproc and tests/crash.

Children are real interpreters started with the "spawn" context; they inherit this process's
sys.path, which holds this folder (see conftest.py), so they can import the worker modules.
Nothing here waits without a deadline, and the `children` fixture kills (SIGKILL) and reaps
every child a test leaves behind, so a hang or a failure never blocks the run.
"""

import functools
import multiprocessing
import queue
import time
import traceback

import pytest

CTX = multiprocessing.get_context("spawn")


def reporting(fn):
    """Turn worker `fn(*args) -> dict` into a target `(results, who, *args)` that puts its
    result, tagged with `who`, on `results`, or its traceback if it raised."""

    @functools.wraps(fn)
    def run(results, who, *args):
        try:
            out = fn(*args)
        except BaseException:
            results.put({"who": who, "exception": traceback.format_exc()})
            raise
        out["who"] = who
        results.put(out)

    return run


class Children:
    """The child processes of one test, and the queue their reports arrive on."""

    def __init__(self):
        self.procs = []
        self.results = CTX.Queue()
        self.reports = {}
        self.reporters = {}  # who -> Process

    def start(self, target, *args):
        """Start `target(*args)` in a new spawned process and return the Process."""
        proc = CTX.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def start_reporting(self, target, who, *args):
        """Start a `reporting` worker; its report is collected by `collect(who, ...)`."""
        proc = self.start(target, self.results, who, *args)
        self.reporters[who] = proc
        return proc

    def collect(self, whos, timeout):
        """Return {who: report} for every name in `whos`, failing the test if a report is
        missing after `timeout` seconds, if a worker died without one (a crash: its exit code
        is negative signal number), or if a worker raised."""
        deadline = time.monotonic() + timeout
        while set(whos) - set(self.reports):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no report from {sorted(set(whos) - set(self.reports))} "
                            f"within {timeout} s (hung or died: {self.exitcodes()})")
            try:
                report = self.results.get(timeout=min(left, 0.5))
            except queue.Empty:
                self._fail_if_died_silently(set(whos) - set(self.reports))
                continue
            self.reports[report["who"]] = report
        reports = {who: self.reports[who] for who in whos}
        raised = {w: r["exception"] for w, r in reports.items() if "exception" in r}
        if raised:
            text = "\n".join(f"--- {who}\n{tb}" for who, tb in raised.items())
            pytest.fail("worker raised:\n" + text)
        return reports

    def _fail_if_died_silently(self, pending):
        """Fail if a pending reporter has exited and its report has not come in a second later
        (a report is sent before the process exits, so it would be in the queue by then)."""
        dead = {who: self.reporters[who].exitcode for who in pending
                if who in self.reporters and self.reporters[who].exitcode is not None}
        if not dead:
            return
        try:
            report = self.results.get(timeout=1.0)
        except queue.Empty:
            pytest.fail(f"workers exited without a report (exit codes): {dead}")
        self.reports[report["who"]] = report

    def run(self, target, *args, timeout):
        """Run `reporting` worker `target(*args)` in a fresh child and return its report."""
        who = f"{target.__name__}-{len(self.procs)}"
        proc = self.start_reporting(target, who, *args)
        report = self.collect([who], timeout)[who]
        self.join([proc], timeout=30)
        return report

    def join(self, procs, timeout):
        """Join `procs` within `timeout` seconds in all; fail if any is still running."""
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        hung = [p.name for p in procs if p.is_alive()]
        if hung:
            pytest.fail(f"processes still running after {timeout} s: {hung}")

    def exitcodes(self):
        return {p.name: p.exitcode for p in self.procs}

    def reap(self):
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
        for proc in self.procs:
            proc.join(10)
        self.results.cancel_join_thread()
        self.results.close()


@pytest.fixture
def children():
    """The test's child processes; any still alive at teardown are SIGKILLed."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.reap()


@pytest.fixture
def db_path(tmp_path):
    """Path (str) of a store file in the test's own temporary directory."""
    return str(tmp_path / "s.mmkv")
