"""Batches across processes (API.md, "Batches"): get_many is one snapshot, never half of
another process's set_many or delete_many."""
import pytest

import mmkv

import _watch_workers as workers

pytestmark = pytest.mark.multiproc

KEYS = [b"key-%03d" % i for i in range(64)]


def test_get_many_never_sees_half_of_another_processs_batch(children, db_path):
    """get_many: all as of one moment (never half of another process's batch)."""
    with mmkv.open(db_path, "c") as d:
        d.set_many({k: b"%08d" % 0 for k in KEYS})
        proc = children.start_reporting(workers.batch_writer, "writer", db_path, KEYS, 3000, 500)
        checks = torn = 0
        states = set()
        while proc.is_alive() or checks < 100:
            values = d.get_many(KEYS)
            checks += 1
            if len(set(values)) != 1:
                torn += 1
            states.add(values[0])
            if not proc.is_alive() and checks >= 100:
                break
        report = children.collect(["writer"], timeout=120)["writer"]
        children.join([proc], timeout=30)
        assert report["rounds"] == 3000
        assert torn == 0, f"{torn} of {checks} snapshots mixed two batches"
        assert len(states) > 10, "the reader never overlapped the writer"
        d._check()


def test_get_many_on_read_only_handle_is_a_snapshot_too(children, db_path):
    """A read-only handle's get_many is a consistent snapshot as well."""
    mmkv.open(db_path, "c").close()
    with mmkv.open(db_path, "r") as ro:
        proc = children.start_reporting(workers.batch_writer, "writer", db_path, KEYS, 1500, 0)
        torn = checks = 0
        while proc.is_alive():
            values = ro.get_many(KEYS)
            checks += 1
            torn += len(set(values)) != 1
        children.collect(["writer"], timeout=120)
        assert torn == 0, f"{torn} of {checks} snapshots mixed two batches"
