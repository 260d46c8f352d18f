"""SIGKILL at random instants: no returned write lost, nothing half-applied, no one blocked.

Victims are real spawned interpreters killed with SIGKILL (Process.kill). The test process
never holds the store while victims run; the final state is read by a fresh child
(verify_store) under a timeout, so a lock that is never recovered fails the test instead of
hanging it.

How kills land inside the write lock: the "big" writer stores 256 KiB - 1 MiB values, built
outside the lock with a memcpy, so almost all of its time is spent in the store call copying
and checksumming the record under the writer mutex. A victim whose ack log ends with "B"
(operation begun) and no "A" was killed inside the call; the test counts those kills and
requires a minimum number of them for the big writer, so a run where kills never hit a write
in progress fails rather than passing vacuously.
"""

import os
import random
import time
from dataclasses import dataclass

import pytest

import mmkv

import _kill_workers as workers
from _harness import CTX
from _selfcheck import make

pytestmark = pytest.mark.crash

TARGET_KILLS = 150  # the storm goes on until this many kills and MIN_SECONDS ...
MIN_SECONDS = 10.0
MAX_SECONDS = 120.0  # ... or until this long (a loaded machine respawns slowly) ...
MIN_KILLS = 100  # ... and then must have made at least this many
MAX_KILL_DELAY = 0.020  # seconds between choosing a storm victim and killing it
# Seconds between a victim's "opening" and its kill: open + 20 puts take about 1 ms here,
# so half the kills aim at open itself and the others anywhere in the run.
OPEN_KILL_DELAYS = (0.0003, 0.002)
STARTUP_TIMEOUT = 60.0  # a respawned writer must have opened the store by then
# Kills every few milliseconds can starve progress without any fault: a write that ends
# with an automatic compaction (a copy and two fsyncs) may take longer than any writer is
# let live. After QUIET_SECONDS without an acknowledged operation the storm pauses its
# kills; then some writer must complete an operation within STALL_TIMEOUT, or it is hung.
QUIET_SECONDS = 2.0
STALL_TIMEOUT = 20.0
MIN_BIG_KILLS_MID_WRITE = 10
N_STABLE = 100
KINDS = ["big", "overwrite", "insert"]  # writer id = index


def run_seed():
    """The run's random seed: MMKV_TEST_SEED if set, else fresh (and printed on failure)."""
    return int(os.environ.get("MMKV_TEST_SEED") or time.time_ns() % 1_000_000_007)


@dataclass
class Incarnation:
    proc: object
    wid: int
    inc: int
    log: str
    started: float


@dataclass
class LogOps:
    ready: bool
    ops: list  # (key, tag or None for a delete, acknowledged?) in order
    mid_op: bool  # the log ends inside an operation


def read_log(path):
    """Parse a storm writer's ack log; a torn last line (the kill hit the log write) is
    dropped, which only ever turns an acknowledged operation into an in-flight one."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    ready, ops, pending = False, [], None
    for line in lines:
        word = line.split(b" ")
        if word == [b"R"]:
            ready = True
        elif word[0] == b"B" and len(word) == 4 and pending is None:
            pending = (int(word[1]), word[2], None if word[3] == b"-" else word[3].decode())
        elif word[0] == b"A" and len(word) == 2 and pending and int(word[1]) == pending[0]:
            ops.append((pending[1], pending[2], True))
            pending = None
        else:
            raise AssertionError(f"{path}: unexpected log line {line!r}")
    if pending:
        ops.append((pending[1], pending[2], False))
    return LogOps(ready, ops, pending is not None)


def expected_states(logs_by_writer):
    """{key: set of tags the key may hold now (None = absent)} from the ack logs.

    An acknowledged operation fixes the key's state; the one unacknowledged operation of a
    killed incarnation may or may not have been applied, so it adds its outcome to the set."""
    allowed = {}
    for logs in logs_by_writer.values():
        for log in logs:
            for key, tag, acked in log.ops:
                allowed[key] = {tag} if acked else allowed.get(key, {None}) | {tag}
    return allowed


def compare(tags, allowed, n_stable):
    """Every discrepancy between the store (key -> tag) and the allowed states, as text."""
    problems = []
    stable = {workers.stable_key(i) for i in range(n_stable)}
    for key, tag in tags.items():
        if tag.startswith("INVALID"):
            problems.append(f"{key!r}: {tag}")
        elif key in stable:
            if tag != "seed":
                problems.append(f"stable {key!r} holds {tag}")
        elif key not in allowed:
            problems.append(f"{key!r} ({tag}) was never written")
        elif tag not in allowed[key]:
            problems.append(f"{key!r} holds {tag}, expected one of {sorted(allowed[key], key=str)}")
    for key, states in allowed.items():
        if key not in tags and None not in states:
            problems.append(f"{key!r} lost: expected {sorted(states, key=str)}")
    problems += [f"stable {key!r} lost" for key in stable - tags.keys()]
    return problems


def _read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return f"({path} does not exist)"


def seed_store(path, n_stable):
    with mmkv.open(path, "n") as d:
        for i in range(n_stable):
            key = workers.stable_key(i)
            d[key] = make(key, "seed", 64)


def verify(children, path):
    """Run verify_store in a fresh child; return its report after checking the structure."""
    report = children.run(workers.verify_store, path, timeout=180)
    assert report["corrupt"] is None, f"_check() after the kills:\n{report['corrupt']}"
    keys = report["keys"]
    assert len(keys) == len(set(keys)), "iteration yielded a key twice"
    assert report["len"] == len(keys) == report["counts"]["live"], (
        report["len"], len(keys), report["counts"])
    assert report["counts_after"]["live"] == len(keys)
    return report


class Storm:
    """The writers of one storm: spawning, choosing victims, killing, reading their logs."""

    def __init__(self, children, path, log_dir, rng):
        self.children, self.path, self.log_dir, self.rng = children, path, log_dir, rng
        self.live = {}
        self.logs = {wid: [] for wid in range(len(KINDS))}
        self.next_inc = {wid: 0 for wid in range(len(KINDS))}
        self.kills = 0
        self.mid_op = {kind: 0 for kind in KINDS}
        self.acks = 0
        self.last_progress = time.monotonic()
        self.pauses = 0
        self.longest_pause = 0.0

    def spawn(self, wid):
        inc = self.next_inc[wid]
        self.next_inc[wid] += 1
        log = os.path.join(self.log_dir, f"w{wid}-{inc:05d}.log")
        proc = self.children.start(workers.storm_writer, self.path, wid, inc, KINDS[wid], log,
                                   self.rng.getrandbits(64))
        self.live[wid] = Incarnation(proc, wid, inc, log, time.monotonic())

    def ready_writers(self):
        """Writer ids whose current incarnation has opened the store; fails on a writer that
        died by itself or could not open the store in time."""
        ready = []
        for wid, incarnation in self.live.items():
            if incarnation.proc.exitcode is not None:
                pytest.fail(f"writer {wid} ({KINDS[wid]}) incarnation {incarnation.inc} exited "
                            f"with {incarnation.proc.exitcode} without being killed, after "
                            f"{self.kills} kills:\n{_read_text(incarnation.log + '.err')}")
            if os.path.exists(incarnation.log) and os.path.getsize(incarnation.log) > 0:
                ready.append(wid)
            elif time.monotonic() - incarnation.started > STARTUP_TIMEOUT:
                pytest.fail(f"writer {wid} did not open the store within {STARTUP_TIMEOUT} s "
                            f"after {self.kills} kills (blocked by a dead process?)")
        return ready

    def kill(self, wid):
        incarnation = self.live.pop(wid)
        incarnation.proc.kill()
        incarnation.proc.join(10)
        assert incarnation.proc.exitcode is not None, f"writer {wid} survived SIGKILL for 10 s"
        self.kills += 1
        log = read_log(incarnation.log) if os.path.exists(incarnation.log) else LogOps(
            False, [], False)
        self.logs[wid].append(log)
        self.mid_op[KINDS[wid]] += log.mid_op
        acked = sum(1 for op in log.ops if op[2])
        self.acks += acked
        if acked:
            self.last_progress = time.monotonic()

    def pause_until_progress(self, context):
        """Stop killing until a live writer acknowledges an operation; fail after
        STALL_TIMEOUT seconds without one (nobody is being killed: that is a hang)."""
        self.pauses += 1
        before = self.live_acks()
        start = time.monotonic()
        deadline = start + STALL_TIMEOUT
        while self.live_acks() == before:
            self.ready_writers()  # fails on a death or an open that never finishes
            if time.monotonic() > deadline:
                pytest.fail(f"no writer completed an operation in {STALL_TIMEOUT} s without "
                            f"kills, after {self.kills} kills: the lock of a killed process "
                            f"was not recovered? {context}")
            time.sleep(0.05)
        self.last_progress = time.monotonic()
        self.longest_pause = max(self.longest_pause, self.last_progress - start)

    def live_acks(self):
        """Operations acknowledged so far by the writers alive now."""
        total = 0
        for incarnation in self.live.values():
            if os.path.exists(incarnation.log):
                with open(incarnation.log, "rb") as f:
                    total += f.read().count(b"\nA ")
        return total

    def kill_all(self):
        for wid in list(self.live):
            self.kill(wid)


@pytest.mark.slow
def test_sigkill_storm_loses_no_returned_write_and_leaves_the_store_sound(
        children, db_path, tmp_path):
    """API.md: "A process killed at any instant (SIGKILL), even while writing or holding the
    lock, loses no write that had returned, corrupts nothing, and blocks no one"."""
    seed = run_seed()
    rng = random.Random(seed)
    context = f"(seed {seed}; rerun with MMKV_TEST_SEED={seed})"
    seed_store(db_path, N_STABLE)
    log_dir = tmp_path / "acks"
    log_dir.mkdir()
    stop = CTX.Event()
    watched = [workers.owned_key(wid, i) for wid in (0, 1) for i in range(6)]
    reader = children.start_reporting(workers.storm_reader, "reader", db_path, N_STABLE,
                                      watched, stop, rng.getrandbits(64))
    storm = Storm(children, db_path, str(log_dir), rng)
    for wid in range(len(KINDS)):
        storm.spawn(wid)
    start = time.monotonic()
    try:
        while ((storm.kills < TARGET_KILLS or time.monotonic() - start < MIN_SECONDS)
               and time.monotonic() - start < MAX_SECONDS):
            if time.monotonic() - storm.last_progress > QUIET_SECONDS:
                storm.pause_until_progress(context)
            ready = storm.ready_writers()
            if not ready:
                time.sleep(0.002)
                continue
            wid = rng.choice(ready)
            time.sleep(rng.uniform(0, MAX_KILL_DELAY))
            storm.kill(wid)
            storm.spawn(wid)
    finally:
        storm.kill_all()
        stop.set()
    seconds = time.monotonic() - start
    reader_report = children.collect(["reader"], timeout=60)["reader"]
    children.join([reader], timeout=30)

    print(f"\nstorm {context}: {storm.kills} kills in {seconds:.1f} s, {storm.acks} acked ops, "
          f"kills inside a store call: {storm.mid_op}, pauses for progress: {storm.pauses} "
          f"(longest {storm.longest_pause:.2f} s), "
          f"reader: {reader_report['reads']} reads")
    assert storm.kills >= MIN_KILLS, f"only {storm.kills} kills in {seconds:.0f} s"
    assert reader_report["reads"] > 0
    assert reader_report["errors"] == 0, "\n".join(reader_report["first_errors"]) + context
    assert storm.mid_op["big"] >= MIN_BIG_KILLS_MID_WRITE, (
        f"only {storm.mid_op['big']} kills inside a big write {context}")
    report = verify(children, db_path)
    print(f"final stats: {report['stats']}")
    problems = compare(report["tags"], expected_states(storm.logs), N_STABLE)
    assert not problems, f"{len(problems)} problems {context}:\n" + "\n".join(problems[:40])


def test_writer_waiting_for_the_lock_goes_on_when_the_holder_is_sigkilled(children, db_path):
    """API.md: a process killed "even while writing or holding the lock ... blocks no one: the
    next operation in any process goes on without manual repair"."""
    huge = 12 << 20
    min_blocked_rounds, max_rounds = 5, 60
    mmkv.open(db_path, "n").close()
    to_waiter, waiter_end = CTX.Pipe()
    waiter = children.start_reporting(workers.lock_waiter, "waiter", db_path, waiter_end)
    assert to_waiter.poll(60) and to_waiter.recv() == "ready", children.exitcodes()
    rounds, blocked_rounds, latencies = 0, 0, []
    while rounds < max_rounds and blocked_rounds < min_blocked_rounds:
        r = rounds
        holder_conn, holder_end = CTX.Pipe(duplex=False)
        holder = children.start(workers.lock_holder, db_path, holder_end, huge)
        assert holder_conn.poll(60) and holder_conn.recv() == "ready", f"round {r}: holder"
        to_waiter.send(r)
        assert to_waiter.poll(30), f"round {r}: the waiter did not start"
        _, _, t_start = to_waiter.recv()
        time.sleep(0.001)
        t_kill = time.monotonic()
        holder.kill()
        assert to_waiter.poll(10), (
            f"round {r}: the waiter's write did not complete within 10 s of the lock holder's "
            f"SIGKILL")
        _, _, t_done = to_waiter.recv()
        holder.join(10)
        # The waiter was inside its write (waiting for the lock) when the holder died.
        if t_start < t_kill < t_done:
            blocked_rounds += 1
            latencies.append(t_done - t_kill)
        rounds += 1
    to_waiter.send(None)
    assert children.collect(["waiter"], timeout=30)["waiter"]["rounds"] == rounds
    children.join([waiter], timeout=30)

    print(f"\nlock waiter: {blocked_rounds} of {rounds} rounds blocked across the kill, "
          f"longest wait after the kill {max(latencies, default=0):.3f} s")
    assert blocked_rounds >= min_blocked_rounds, (
        f"the waiter was blocked at the kill in only {blocked_rounds} of {rounds} rounds")
    report = verify(children, db_path)
    assert report["tags"][b"waiter"] == f"r{rounds - 1}"
    assert report["tags"][b"holder"].startswith("h."), report["tags"]


def test_sigkill_while_opening_or_writing_leaves_the_store_openable_and_sound(
        children, db_path):
    """API.md: "the next operation in any process goes on without manual repair" (kills
    during open, with and without another process holding the store)."""
    seed = run_seed()
    rng = random.Random(seed)
    rounds, n_keys = 40, 20
    seed_store(db_path, N_STABLE)
    stop = CTX.Event()
    bystander = children.start_reporting(workers.bystander, "bystander", db_path, stop)
    stages = {"opening": 0, "open": 0, "done": 0}  # the last word of each victim
    for rnd in range(rounds):
        if rnd == rounds // 2:  # from now on, each victim is the store's only user
            stop.set()
            children.collect(["bystander"], timeout=60)
            children.join([bystander], timeout=30)
        conn, victim_end = CTX.Pipe(duplex=False)
        victim = children.start(workers.open_victim, db_path, victim_end, rnd, n_keys)
        assert conn.poll(60) and conn.recv() == "opening", f"round {rnd}: victim did not start"
        time.sleep(rng.uniform(0, OPEN_KILL_DELAYS[rnd % 2]))
        victim.kill()
        victim.join(10)
        assert victim.exitcode is not None, f"round {rnd}: victim survived SIGKILL"
        stages[_last_word(conn, "opening")] += 1
        conn.close()

    print(f"\nopen kills (seed {seed}): victims killed while opening {stages['opening']}, "
          f"while writing {stages['open']}, after finishing {stages['done']}")
    assert stages["opening"] + stages["open"] >= rounds // 4, stages
    report = verify(children, db_path)
    tags = report["tags"]
    problems = [f"{k!r}: {t}" for k, t in tags.items() if t.startswith("INVALID")]
    problems += compare({k: t for k, t in tags.items() if k.startswith(b"stable")}, {}, N_STABLE)
    assert not problems, f"(seed {seed})\n" + "\n".join(problems)
    assert set(tags) <= {workers.stable_key(i) for i in range(N_STABLE)} | {
        b"o%02d" % i for i in range(n_keys)}


def _last_word(conn, word):
    """The last whole message a killed victim sent after `word`."""
    try:
        while conn.poll(0):
            word = conn.recv()
    except Exception:  # the kill tore the last message: the previous one stands
        pass
    return word
