"""Child-process entry points for the compaction tests (tests/multiproc and tests/crash).

`serve` keeps a store open and runs one command at a time sent over a Pipe, so a test can
place each operation of another process exactly (open before a compaction, act after it);
`Remote` is the test's side of it. `counter_worker` and `compactor` are the
`_harness.reporting` workers of the concurrent compaction test. Values are `_selfcheck` values.
"""

import random
import time
import traceback

import mmkv

from _harness import CTX, reporting
from _selfcheck import Invalid, make, parse

MAX_ERRORS = 30
COUNTER = b"counter"
TIMEOUT = 60.0  # seconds a Remote waits for an answer before failing the test


# --- a store held open in another process, driven command by command ------------------------


def _iterate(d):
    """The keys of d from a plain for loop (no len() first), in the order yielded."""
    return [key for key in d]


def _contents(d):
    """{key: value} built by iterating d, then reading each key."""
    out = {}
    for key in d:
        value = d.get(key)
        if value is not None:
            out[key] = value
    return out


def _set_many(d, items):
    for key, value in items.items():
        d[key] = value


def _delete_many(d, keys):
    for key in keys:
        d.pop(key, None)


def _check(d):
    report = d._check()
    if report["live"] != len(d):
        raise AssertionError(f"_check() {report!r} disagrees with len() {len(d)}")
    return report


COMMANDS = {
    "get": lambda d, key: d.get(key),
    "set": lambda d, key, value: d.__setitem__(key, value),
    "delete": lambda d, key: d.pop(key, None),
    "len": lambda d: len(d),
    "contains": lambda d, key: key in d,
    "incr": lambda d, key: d.incr(key),
    "iterate": _iterate,
    "contents": _contents,
    "set_many": _set_many,
    "delete_many": _delete_many,
    "compact": lambda d: d.compact(),
    "stats": lambda d: d.stats(),
    "check": _check,
}


def serve(path, flag, options, conn):
    """Open `path` with `flag` and `options`, send ("ready", None), then answer each
    (name, *args) received with ("ok", result) or ("error", traceback) until ("close",)."""
    try:
        d = mmkv.open(path, flag, **options)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        command = conn.recv()
        if command[0] == "close":
            d.close()
            conn.send(("ok", None))
            return
        try:
            result = COMMANDS[command[0]](d, *command[1:])
        except BaseException:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", result))


class Remote:
    """A store held open by another process (`serve`), driven command by command from the
    test: `remote("get", key)` runs there and returns the result, or fails the test with the
    child's traceback, or after TIMEOUT seconds without an answer (a hang never blocks)."""

    def __init__(self, children, path, flag="w", **options):
        self.conn, child_conn = CTX.Pipe()
        self.proc = children.start(serve, path, flag, options, child_conn)
        child_conn.close()
        status, detail = self._receive("open")
        assert status == "ready", f"serve could not open {path}:\n{detail}"

    @property
    def pid(self):
        return self.proc.pid

    def _receive(self, what):
        if not self.conn.poll(TIMEOUT):
            import pytest
            pytest.fail(f"no answer to {what!r} within {TIMEOUT} s (exit code "
                        f"{self.proc.exitcode})")
        return self.conn.recv()

    def __call__(self, name, *args):
        self.conn.send((name, *args))
        status, result = self._receive(name)
        if status != "ok":
            import pytest
            pytest.fail(f"{name} in the other process raised:\n{result}")
        return result

    def close(self):
        self("close")
        self.proc.join(TIMEOUT)


# --- concurrent readers and writers beside a compactor --------------------------------------


class Errors:
    """A capped list of error descriptions with an exact total."""

    def __init__(self):
        self.count = 0
        self.first = []

    def add(self, text):
        self.count += 1
        if len(self.first) < MAX_ERRORS:
            self.first.append(text)


def own_key(wid, i):
    return b"w%d-%04d" % (wid, i)


@reporting
def counter_worker(path, wid, n_keys, published, stop, seed):
    """Read and write beside a compactor until `stop`, checking as it goes:

    - incr(COUNTER) and publish the value it returned in published[wid] (a shared int);
      then read the other worker's publication p and the counter c: c >= p, or a read that
      started after a write returned elsewhere saw an older value (a stale read);
    - put and delete keys only this worker writes, and read each back at once: the value
      just written (by tag), or absent after a delete; anything else is a lost write;
    - read the other worker's keys: any value present must parse (no torn value);
    - every 100 operations, iterate: each of its own keys (present for the whole iteration,
      since only this worker writes them) is yielded exactly once, nothing unknown appears.

    Reports the operation counts, the final expected {key: tag} of its keys and its errors.
    """
    rng = random.Random(seed)
    other = 1 - wid
    errors = Errors()
    expected = {}
    incrs = ops = iterations = 0
    with mmkv.open(path, "w") as d:
        while not stop.is_set():
            ops += 1
            value = d.incr(COUNTER)
            incrs += 1
            published[wid] = value
            seen_elsewhere = published[other]
            now = int(d[COUNTER])
            if now < value or now < seen_elsewhere:
                errors.add(f"stale counter: read {now} after own incr returned {value} and "
                           f"the other worker published {seen_elsewhere}")
            _write_own(d, wid, n_keys, expected, rng, errors, ops)
            _read_other(d, other, n_keys, rng, errors)
            if ops % 100 == 0:
                iterations += 1
                _iterate_own(d, wid, expected, errors)
    return {"ops": ops, "incrs": incrs, "iterations": iterations, "expected": expected,
            "errors": errors.count, "first_errors": errors.first}


def _write_own(d, wid, n_keys, expected, rng, errors, ops):
    key = own_key(wid, rng.randrange(n_keys))
    if rng.random() < 0.3:
        d.pop(key, None)
        expected.pop(key, None)
    else:
        tag = f"{wid}.{ops}"
        size = rng.randrange(0, 100) if rng.random() < 0.8 else rng.randrange(100, 4096)
        d[key] = make(key, tag, size)
        expected[key] = tag
    got = d.get(key)
    try:
        tag = None if got is None else parse(key, got)
    except Invalid as exc:
        errors.add(f"own key: {exc}")
        return
    if tag != expected.get(key):
        errors.add(f"lost write: {key!r} read back {tag!r}, wrote {expected.get(key)!r}")


def _read_other(d, other, n_keys, rng, errors):
    key = own_key(other, rng.randrange(n_keys))
    got = d.get(key)
    if got is not None:
        try:
            parse(key, got)
        except Invalid as exc:
            errors.add(f"other's key: {exc}")


def _iterate_own(d, wid, expected, errors):
    prefix = b"w%d-" % wid
    yielded = [key for key in d]
    if len(yielded) != len(set(yielded)):
        errors.add(f"iteration yielded {len(yielded) - len(set(yielded))} keys twice")
    mine = {key for key in yielded if key.startswith(prefix)}
    if mine != set(expected):
        errors.add(f"iteration of own keys: missing {sorted(set(expected) - mine)[:5]}, "
                   f"unexpected {sorted(mine - set(expected))[:5]}")
    strange = [key for key in yielded if not key.startswith((b"w0-", b"w1-", COUNTER))]
    if strange:
        errors.add(f"iteration yielded unknown keys {strange[:5]}")


@reporting
def counter_reader(path, n_keys, published, stop, seed):
    """A read-only handle beside the workers and the compactor, until `stop`: read both
    publications, then the counter, which must be at least the larger (no stale read); any
    worker key present must parse."""
    rng = random.Random(seed)
    errors = Errors()
    reads = 0
    with mmkv.open(path, "r") as d:
        while not stop.is_set():
            reads += 1
            seen = max(published[0], published[1])
            got = d.get(COUNTER)
            now = int(got) if got is not None else 0
            if now < seen:
                errors.add(f"stale counter: read {now} after a worker published {seen}")
            _read_other(d, rng.randrange(2), n_keys, rng, errors)
    return {"reads": reads, "errors": errors.count, "first_errors": errors.first}


@reporting
def compactor(path, stop, pause):
    """compact() over and over (sleeping `pause` s between) until `stop`; report the count."""
    count = 0
    with mmkv.open(path, "w") as d:
        while not stop.is_set():
            d.compact()
            count += 1
            time.sleep(pause)
        epoch = d.stats()["epoch"]
    return {"compactions": count, "epoch": epoch}
