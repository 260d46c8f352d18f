"""Many processes on one store at once: atomic values, stable keys, visibility, iteration.

Workers live in _mp_workers.py and are real spawned interpreters; every test ends with the
structural check of the store.
"""

import time

import pytest

import mmkv

import _mp_workers as workers
from _harness import CTX
from _selfcheck import parse

pytestmark = pytest.mark.multiproc

RUN_SECONDS = 4.0


def run_until_stopped(procs, stop, seconds):
    """Let `procs` run for `seconds` (less if one dies), then set `stop`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and all(p.exitcode is None for p in procs):
        time.sleep(0.05)
    stop.set()


def assert_clean(report, what):
    assert report["errors"] == 0, f"{report['who']}: {report['errors']} {what}:\n" + "\n".join(
        report["first_errors"])


def _names(n_writers, n_readers):
    return [f"writer-{w}" for w in range(n_writers)] + [f"reader-{r}" for r in range(n_readers)]


def _summary(reports):
    return {who: {k: v for k, v in r.items() if k not in ("who", "first_errors")}
            for who, r in reports.items()}


def assert_store_sound(path, n_stable=0):
    """The store passes _check(), its length matches its iteration, stable keys are all there,
    and every value validates."""
    with mmkv.open(path, "r") as d:
        counts = d._check()
        keys = list(d)
        present = set(keys)
        assert len(present) == len(keys), "iteration yielded a key twice"
        assert len(d) == len(keys), (len(d), len(keys))
        assert counts["live"] == len(keys), (counts, len(keys))
        missing = [key for key in map(workers.stable_key, range(n_stable)) if key not in present]
        assert not missing, f"stable keys missing: {missing[:10]}"
        for key in keys:
            parse(key, d[key])


def test_concurrent_writers_never_show_readers_a_torn_value_or_a_missing_stable_key(
        children, db_path):
    """API.md: "no reader ever sees a torn or half-written value"."""
    n_stable, n_volatile = 200, 2000
    workers.seed_stable(db_path, n_stable)
    stop = CTX.Event()
    procs = [children.start_reporting(workers.churn_writer, f"writer-{w}", db_path, w,
                                      n_stable, n_volatile, stop, 100 + w) for w in range(4)]
    procs += [children.start_reporting(workers.checking_reader, f"reader-{r}", db_path, flag,
                                       n_stable, n_volatile, stop, 200 + r)
              for r, flag in enumerate(["r", "w"])]
    run_until_stopped(procs, stop, RUN_SECONDS)
    reports = children.collect(_names(4, 2), timeout=60)
    children.join(procs, timeout=30)
    print("\n", _summary(reports))

    for w in range(4):
        assert reports[f"writer-{w}"]["ops"] > 0
    for r in range(2):
        report = reports[f"reader-{r}"]
        assert report["reads"] > 0, report
        assert_clean(report, "read errors")
    assert_store_sound(db_path, n_stable)


def test_write_returned_in_one_process_is_seen_by_a_read_that_starts_later_in_another(
        children, db_path):
    """API.md: "once a write has returned, every read that starts later, in any process, sees
    it or a newer value (never an older one)"."""
    rounds = 4000
    mmkv.open(db_path, "n").close()
    end_a, end_b = CTX.Pipe()
    stop = CTX.Event()
    pairs = [children.start_reporting(workers.pingpong, f"side-{role}", db_path, role, end,
                                      rounds, 300 + role)
             for role, end in enumerate([end_a, end_b])]
    noise = children.start_reporting(workers.noise_writer, "noise", db_path, 0, 0, stop, 400)
    try:
        reports = children.collect(["side-0", "side-1"], timeout=150)
    finally:
        stop.set()
    reports.update(children.collect(["noise"], timeout=30))
    children.join(pairs + [noise], timeout=30)

    for role in range(2):
        report = reports[f"side-{role}"]
        assert report["writes"] == report["checks"] == rounds // 2, report
        assert_clean(report, "stale or wrong reads")
    assert reports["noise"]["ops"] > 0
    assert_store_sound(db_path)


def test_iteration_while_others_insert_and_delete_yields_each_stable_key_exactly_once(
        children, db_path):
    """API.md: "every key present for the whole iteration is yielded exactly once, and every
    yielded key was present at some moment of the iteration"."""
    n_stable = 500
    workers.seed_stable(db_path, n_stable)
    with mmkv.open(db_path, "w") as d:  # absent for every iteration: never to be yielded
        dead = [b"d%05d" % i for i in range(500)]
        d.update((key, b"dead") for key in dead)
        for key in dead:
            del d[key]
    stop = CTX.Event()
    procs = [children.start_reporting(workers.noise_writer, f"mutator-{w}", db_path, w,
                                      n_stable, stop, 500 + w) for w in range(2)]
    procs += [children.start_reporting(workers.iterating_reader, f"iterator-{i}", db_path,
                                       n_stable, stop) for i in range(2)]
    run_until_stopped(procs, stop, RUN_SECONDS)
    names = ["mutator-0", "mutator-1", "iterator-0", "iterator-1"]
    reports = children.collect(names, timeout=90)
    children.join(procs, timeout=30)
    print("\n", _summary(reports))

    for w in range(2):
        assert reports[f"mutator-{w}"]["ops"] > 0
    for i in range(2):
        report = reports[f"iterator-{i}"]
        assert report["passes"] >= 2, report
        assert_clean(report, "iteration errors")
    assert_store_sound(db_path, n_stable)
