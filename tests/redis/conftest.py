"""Fixtures for the Redis backend's tests: real servers, started once per session and stopped
at its end (mmkv/_redis.py is under test; tests/redis/_redis_servers.py starts the servers).

`backend` runs a contract test against a Redis server and a three-primary Redis Cluster
(and, where the test asks for it with `any_backend`, against a local store as well); each
test gets its own namespace, so tests never see each other's keys.
"""
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _redis_servers import Cluster, Server, require_redis  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    require_redis()
    server = Server(tmp_path_factory.mktemp("redis-one")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    require_redis()
    cluster = Cluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def own_server(tmp_path):
    """A redis-server of this test alone, for killing and restarting."""
    require_redis()
    server = Server(tmp_path / "own").start()
    yield server
    server.stop()


class Target:
    """Where a test's store lives: `open(**kw)` opens a new handle (closed at teardown);
    `spec` is what a child process passes to mmkv.open."""

    def __init__(self, kind, spec, handles):
        self.kind, self.spec, self._handles = kind, spec, handles

    def open(self, flag="c", **kwargs):
        import mmkv
        handle = mmkv.open(self.spec, flag, **kwargs)
        self._handles.append(handle)
        return handle


def _target(kind, request, tmp_path, handles):
    if kind == "local":
        return Target(kind, str(tmp_path / "s.mmkv"), handles)
    servers = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster")
    return Target(kind, servers.url(f"t{uuid.uuid4().hex[:12]}", lock_lease=1), handles)


@pytest.fixture
def _handles():
    handles = []
    yield handles
    for handle in handles:
        try:
            handle.close()
        except OSError:
            pass


@pytest.fixture(params=["redis", "cluster"])
def backend(request, tmp_path, _handles):
    """A fresh store on a Redis server, then on a Redis Cluster."""
    return _target(request.param, request, tmp_path, _handles)


@pytest.fixture(params=["local", "redis", "cluster"])
def any_backend(request, tmp_path, _handles):
    """A fresh store on a local file, a Redis server and a Redis Cluster."""
    return _target(request.param, request, tmp_path, _handles)
