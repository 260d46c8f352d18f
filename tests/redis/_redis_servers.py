"""Real Redis servers for the tests: one redis-server, or a three-primary Redis Cluster, on
free loopback ports in a temporary directory, started here and always stopped.

No test skips when redis-server is missing: require_redis() fails with the command to run.
Nothing waits without a deadline.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

START_TIMEOUT = 20.0


def require_redis():
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: the Redis backend's tests need a "
                    "real server (apt-get update && apt-get install -y redis-server)",
                    pytrace=False)


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster=False):
    """A loopback port nobody listens on; for a cluster node, one whose bus port (+10000,
    Redis's rule) is free too."""
    if not cluster:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port, *args, timeout=10.0):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout)


def _wait_ping(port, proc):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        try:
            if _cli(port, "ping", timeout=2).stdout.strip() == "PONG":
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not answer within {START_TIMEOUT} s")


class Server:
    """One redis-server process; `stop`, `kill`, `pause`/`resume` (SIGSTOP/SIGCONT) and
    `restart` (same port, same directory) for the fault tests."""

    def __init__(self, workdir, port=None, cluster=False):
        self.dir, self.port, self.cluster = str(workdir), port or free_port(cluster), cluster
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file",
                     os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout", "5000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(self.port, self.proc)
        return self

    def url(self, namespace, **options):
        query = "".join(f"&{k}={v}" for k, v in options.items())
        scheme = "redis+cluster" if self.cluster else "redis"
        db = "" if self.cluster else "/0"
        return f"{scheme}://127.0.0.1:{self.port}{db}?namespace={namespace}{query}"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        self.kill()
        return self.start()

    def stop(self):
        self.kill()


class Cluster:
    """Three cluster-enabled redis-servers joined by `redis-cli --cluster create`."""

    def __init__(self, workdir):
        self.nodes = [Server(os.path.join(str(workdir), f"node{i}"), cluster=True)
                      for i in range(3)]
        self.cluster = True

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()                 # no node outlives a failed start
            raise

    def _start(self):
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(["redis-cli", "--cluster", "create", *addrs,
                               "--cluster-replicas", "0", "--cluster-yes"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        self._wait_ok()
        return self

    def _wait_ok(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            states = [_cli(n.port, "cluster", "info").stdout for n in self.nodes]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    @property
    def port(self):
        return self.nodes[0].port

    def url(self, namespace, **options):
        return self.nodes[0].url(namespace, **options)

    def stop(self):
        for node in self.nodes:
            node.kill()
