"""Growth across processes: one process grows the file past 200 MiB while processes that
opened it small go on reading old and new keys (each must extend its own mapping lazily)."""

import random

import pytest

import mmkv

import _mp_workers as workers
from _harness import CTX
from _selfcheck import make, parse

pytestmark = pytest.mark.multiproc

MIB = 1 << 20


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
        assert event.wait(60), f"a reader did not open the store within 60 s: {children.exitcodes()}"
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
