"""Growth across processes: one process grows the file past 200 MiB while processes that
opened it small go on reading old and new keys (each must extend its own mapping lazily);
processes open the store while another grows it."""

import random
import time

import pytest

import mmkv

import _mp_workers as workers
from _harness import CTX
from _selfcheck import make, parse

pytestmark = pytest.mark.multiproc

MIB = 1 << 20
RUN_SECONDS = 4.0


@pytest.mark.slow
def test_readers_opened_when_small_read_old_and_new_keys_as_the_file_grows_past_200_mib(
        children, db_path):
    """API.md: "The store grows as needed, up to the disk: there is no fixed capacity"."""
    n_new, new_size = 220, MIB
    rng = random.Random(7)
    old_keys = [b"o%03d" % i for i in range(50)]
    with mmkv.open(db_path, "n") as d:
        for key in old_keys:
            d[key] = make(key, "old", rng.randrange(0, 2048))
        small_size = d.stats()["file_size"]
    assert small_size < 64 * MIB, small_size

    announced = [CTX.Queue() for _ in range(2)]
    ready = [CTX.Event() for _ in range(2)]
    readers = [children.start_reporting(workers.growth_reader, f"reader-{i}", db_path,
                                        old_keys, announced[i], ready[i], 600 + i)
               for i in range(2)]
    for event in ready:
        assert event.wait(60), f"a reader did not open the store in 60 s: {children.exitcodes()}"
    writer = children.start_reporting(workers.growing_writer, "writer", db_path, announced,
                                      n_new, new_size)
    reports = children.collect(["writer", "reader-0", "reader-1"], timeout=150)
    children.join(readers + [writer], timeout=30)

    assert reports["writer"]["written"] == n_new
    for i in range(2):
        report = reports[f"reader-{i}"]
        assert report["first_file_size"] < 64 * MIB, report
        assert report["announced"] == n_new, report
        assert report["errors"] == 0, "\n".join(report["first_errors"])
    with mmkv.open(db_path, "r") as d:
        assert d.stats()["file_size"] > 200 * MIB, d.stats()
        counts = d._check()
        assert counts["live"] == len(d) == len(list(d)) == len(old_keys) + n_new
        for key in old_keys + [b"g%05d" % i for i in range(n_new)]:
            parse(key, d[key])


def test_processes_opening_the_store_while_another_grows_it_open_and_read_without_error(
        children, db_path):
    """API.md: "Any number of processes and threads may open the same store at once"."""
    old_keys = [b"o%03d" % i for i in range(50)]
    with mmkv.open(db_path, "n") as d:
        for key in old_keys:
            d[key] = make(key, "old", 100)
    stop = CTX.Event()
    writer = children.start_reporting(workers.appending_writer, "writer", db_path, stop,
                                      64 << 10)
    openers = [children.start_reporting(workers.reopening_reader, f"opener-{i}", db_path,
                                        old_keys, stop, 700 + i) for i in range(2)]
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline and all(p.exitcode is None for p in [writer] + openers):
        time.sleep(0.05)
    stop.set()
    reports = children.collect(["writer", "opener-0", "opener-1"], timeout=60)
    children.join([writer] + openers, timeout=30)

    assert reports["writer"]["written"] > 0
    for i in range(2):
        report = reports[f"opener-{i}"]
        assert report["opens"] > 0, report
        assert report["errors"] == 0, f"{report['errors']} errors:\n" + "\n".join(
            report["first_errors"])
    with mmkv.open(db_path, "r") as d:
        assert d._check()["live"] == len(d) == len(list(d))
