"""Faults: a Redis server killed, hung (SIGSTOP) or restarted under an open store.

Each is mmkv.error naming the URL, within the connect and socket timeouts (bounds checked
with a wide margin: the contract is "never a hang", not a speed); a write whose reply was
lost is mmkv.OutcomeUnknown, never reported as done.
"""
import time

import pytest

import mmkv

from _redis_servers import Cluster

TIMEOUTS = {"connect_timeout": 1, "socket_timeout": 1}
BOUND = 15.0            # seconds: far above the 1 s timeouts, far below a hang


def _timed(fn):
    t0 = time.monotonic()
    with pytest.raises(mmkv.error) as info:
        fn()
    elapsed = time.monotonic() - t0
    assert elapsed < BOUND, f"took {elapsed:.1f} s"
    return info.value


def test_server_killed_read_and_write_raise_error_naming_url(own_server):
    """Issue 14: "a server that is down ... is mmkv.error naming the URL within a bounded
    time ... never a hang"."""
    url = own_server.url("faults", **TIMEOUTS)
    d = mmkv.open(url)
    d[b"k"] = b"1"
    own_server.kill()
    for op in (lambda: d[b"k"], lambda: d.__setitem__(b"k", b"2"), lambda: d.incr(b"n"),
               lambda: list(d), lambda: len(d)):
        exc = _timed(op)
        assert "namespace=faults" in str(exc)
    d.close()


def test_server_hung_write_is_outcome_unknown(own_server):
    """Issue 14: "a write whose reply was lost is reported as unknown, never as done"."""
    d = mmkv.open(own_server.url("faults", **TIMEOUTS))
    d[b"k"] = b"1"
    own_server.pause()
    try:
        exc = _timed(lambda: d.incr(b"k"))
        assert isinstance(exc, mmkv.OutcomeUnknown)
        assert "unknown" in str(exc)
        exc = _timed(lambda: d[b"k"])
        assert not isinstance(exc, mmkv.OutcomeUnknown)
    finally:
        own_server.resume()
    # once the server is back, the handle works again on a fresh connection
    before = int(d[b"k"])
    assert d.incr(b"k") == before + 1
    d.close()


def test_server_restarted_store_works_again(own_server):
    """A server restarted mid-test: the failed call is mmkv.error, the next ones work."""
    d = mmkv.open(own_server.url("faults", **TIMEOUTS))
    d[b"k"] = b"1"
    own_server.kill()
    _timed(lambda: d[b"k"])
    own_server.start()
    d[b"k"] = b"2"                     # no persistence configured: the data went with it
    assert d[b"k"] == b"2" and len(d) == 1
    d.close()


def test_server_down_at_open_raises_error(own_server):
    url = own_server.url("faults", **TIMEOUTS)
    own_server.kill()
    exc = _timed(lambda: mmkv.open(url))
    assert url in str(exc)


def test_cluster_primary_killed_ops_on_its_keys_raise_error(tmp_path):
    """The same on a cluster: a dead primary's keys give mmkv.error, never a hang."""
    from _redis_servers import require_redis
    require_redis()
    cluster = Cluster(tmp_path / "c").start()
    try:
        d = mmkv.open(cluster.url("faults", **TIMEOUTS))
        d.set_many({b"k%d" % i: b"v" for i in range(60)})
        cluster.nodes[1].kill()
        failures = 0
        for i in range(60):
            t0 = time.monotonic()
            try:
                d[b"k%d" % i]
            except mmkv.error as exc:
                failures += 1
                assert "redis+cluster://" in str(exc)
            assert time.monotonic() - t0 < BOUND
        assert failures > 0
        d.close()
    finally:
        cluster.stop()
