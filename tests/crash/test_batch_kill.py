"""set_many and delete_many under SIGKILL at random instants: all of a batch or none of it.

API.md, "Batches": "set_many ... and delete_many ... are each one write: after any crash
all of it or none of it is there".  Victims are real spawned interpreters killed with
SIGKILL at a random instant while they write batches on two groups of keys (one of 65 small
values, one of 24 values of 16 KiB, where most of the time goes into the writer lock).
After each kill the test opens the store and checks every group: all keys absent, or all
present with values of one single batch, and that batch is the last one that returned or
the one in progress.  Then the structural check.  A run where too few kills land inside a
batch fails rather than passing vacuously.
"""
import os
import random
import time

import pytest

import mmkv

import _batch_kill_workers as workers
from _harness import CTX

pytestmark = pytest.mark.crash

KILLS = 60
MIN_KILLS_MID_BATCH = 15


def group_state(d, group):
    """None (every key absent) or the tag of the one batch all of the group's values
    come from; fails when the group mixes batches or is partly deleted."""
    values = d.get_many(workers.GROUPS[group])
    assert values == [d[k] if k in d else None for k in workers.GROUPS[group]]
    if all(v is None for v in values):
        return None
    assert None not in values, f"group {group} partly deleted: {values.count(None)} missing"
    assert len(set(values)) == 1, f"group {group} mixes {len(set(values))} batches"
    return values[0]


def read_log(path):
    with open(path, "rb") as f:
        return f.read().decode().split("\n")[:-1]


def wait_opened(log_path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(log_path) and read_log(log_path)[:1] == ["R"]:
            return
        assert proc.is_alive(), f"victim died on its own: exit code {proc.exitcode}"
        time.sleep(0.002)
    pytest.fail("victim did not open the store")


def test_batches_are_all_or_nothing_under_sigkill_at_random_instants(tmp_path):
    """After any crash all of a batch or none of it is there; nothing else is lost."""
    seed = int(os.environ.get("MMKV_TEST_SEED") or time.time_ns() % 1_000_000_007)
    rng = random.Random(seed)
    path = str(tmp_path / "s.mmkv")
    mmkv.open(path, "c").close()
    model = {g: None for g in workers.GROUPS}    # what each group holds: None or a value
    mid_batch = 0
    for run in range(KILLS):
        log_path = str(tmp_path / f"victim-{run}.log")
        proc = CTX.Process(target=workers.batch_victim, args=(path, seed * 1000 + run, log_path),
                           daemon=True)
        proc.start()
        try:
            wait_opened(log_path, proc)
            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            proc.kill()
            proc.join(30)
        assert proc.exitcode == -9, f"victim ended with {proc.exitcode} (seed {seed})"
        lines = read_log(log_path)
        pending = None
        for line in lines[1:]:
            if line.startswith("B "):
                _, group, op, tag = line.split()
                pending = (group, None if op == "del" else workers.value(group, tag.encode()))
            elif line == "A":
                model[pending[0]] = pending[1]
                pending = None
        with mmkv.open(path, "w") as d:
            for group in workers.GROUPS:
                state = group_state(d, group)
                allowed = {model[group]}
                if pending and pending[0] == group:
                    allowed.add(pending[1])
                assert state in allowed, (f"run {run}, seed {seed}: group {group} holds a "
                                          f"batch that is neither the last returned nor the "
                                          f"one in progress")
                model[group] = state
            d._check()
        mid_batch += pending is not None
    assert mid_batch >= MIN_KILLS_MID_BATCH, f"only {mid_batch} kills landed inside a batch"
    with mmkv.open(path, "w") as d:
        d._check()
