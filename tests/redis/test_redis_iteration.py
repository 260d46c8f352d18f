"""Iteration on Redis: SCAN of every primary, repeats removed, while another process writes."""
import multiprocessing

import pytest

import _redis_workers as workers

CTX = multiprocessing.get_context("spawn")


@pytest.mark.multiproc
def test_iteration_under_churn_yields_stable_keys_exactly_once(backend):
    """API.md: "every key present for the whole iteration is yielded exactly once, and
    every yielded key was present at some moment of the iteration"."""
    d = backend.open()
    stable = {b"s%d" % i for i in range(3000)}
    d.set_many({k: b"v" for k in stable})
    results = CTX.Queue()
    rounds = 3000
    proc = CTX.Process(target=workers.churn, args=(backend.spec, b"c", rounds, results))
    proc.start()
    passes = []
    try:
        while proc.is_alive() and len(passes) < 20:
            passes.append(list(d))       # every pass but perhaps the last overlaps the churn
        assert results.get(timeout=120)[0] == "churned"
    finally:
        proc.join(30)
    assert passes
    for seen in passes:
        counts = {}
        for k in seen:
            counts[k] = counts.get(k, 0) + 1
        assert all(n == 1 for n in counts.values()), "a key was yielded twice"
        assert stable <= set(counts), "a key present throughout was not yielded"
        assert set(counts) <= stable | {b"c%d" % r for r in range(rounds)}

def test_iteration_items_skips_keys_deleted_meanwhile(backend):
    """API.md: "Iteration never raises because the store changes meanwhile"."""
    d = backend.open()
    d.set_many({b"k%d" % i: b"%d" % i for i in range(2500)})
    got = {}
    for i, (k, v) in enumerate(d.items()):
        got[k] = v
        if i == 10:
            d.delete_many([b"k%d" % j for j in range(0, 2500, 2)])
    assert all(v == k[1:] for k, v in got.items())
    assert {b"k%d" % j for j in range(1, 2500, 2)} <= set(got)


def test_iteration_covers_every_primary(redis_cluster):
    """Issue 14: "iteration ... across SCAN of every primary"."""
    import mmkv
    with mmkv.open(redis_cluster.url("itall"), "n") as d:
        d.set_many({b"k%d" % i: b"v" for i in range(1000)})
        assert sorted(d) == sorted(b"k%d" % i for i in range(1000))
        assert len(d) == 1000
