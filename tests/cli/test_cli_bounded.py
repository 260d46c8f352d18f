"""API.md "The command line": "Every command's memory stays bounded whatever its input: an
oversized dump line or value on stdin is refused as soon as it passes the store's limits",
"no command prints a traceback for bad input", and a closed pipe on stdout ends `dump`
quietly, as it ends other Unix tools.

Endless inputs are fed by a writer thread that counts what the command consumed before it
refused; the commands run under an address-space limit (`ulimit -v`) far below what reading
the whole input would take.
"""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

from _cli import TIMEOUT, assert_one_line_error, cli_env, make_store, read_store

AS_LIMIT = 1 << 30              # ulimit -v 1 GiB: the input below is up to 2 GiB
CHUNK = 1 << 20


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _feed_until_refused(args, head=b"", fill=b"\0", most=2 << 30):
    """Run `python -m mmkv args` under `ulimit -v`, writing head then fill bytes (up to
    most) to its stdin until it exits; (CompletedProcess-like result, bytes it consumed)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "mmkv", *map(os.fspath, args)],
                            stdin=subprocess.PIPE, stdout=out, stderr=err, env=cli_env(),
                            preexec_fn=_limit_address_space)
    sent = [0]

    def feed():
        block = fill * (CHUNK // len(fill))
        try:
            proc.stdin.write(head)
            sent[0] += len(head)
            while sent[0] < most:
                proc.stdin.write(block)
                sent[0] += len(block)
        except BrokenPipeError:        # the command refused and exited
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    rc = proc.wait(timeout=TIMEOUT)
    writer.join(TIMEOUT)
    with out, err:
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, rc, out.read(), err.read()), sent[0]


def test_restore_endless_zeros_on_stdin_refused_at_once_store_absent(tmp_path):
    """`head -c 1G /dev/zero | mmkv restore - X`: refused as soon as the first line passes
    the longest header, with one line on stderr; X does not appear."""
    r, sent = _feed_until_refused(["restore", "-", tmp_path / "x.mmkv"])
    text = assert_one_line_error(r)
    assert "line 1" in text and "too long" in text, text
    assert sent < 64 * CHUNK, sent           # not read whole: a few pipe buffers past 64 KiB
    assert not (tmp_path / "x.mmkv").exists()
    assert os.listdir(tmp_path) == []        # no temporary store left behind


def test_restore_endless_record_line_refused_past_the_header_limits(tmp_path):
    """A header declaring small limits, then one endless record line: refused once the line
    passes what those limits allow, not after reading the input."""
    head = b'{"mmkv-dump":1,"max_key_len":16,"max_value_len":1024}\n{"k":"a","v":"'
    r, sent = _feed_until_refused(["restore", "-", tmp_path / "x.mmkv"], head, fill=b"x")
    text = assert_one_line_error(r)
    assert "line 2" in text and "too long" in text, text
    assert sent < 64 * CHUNK, sent
    assert not (tmp_path / "x.mmkv").exists()


def test_restore_record_over_the_header_value_limit_refused(tmp_path):
    """A record whose value passes the header's max_value_len: refused, naming the line."""
    dump = (b'{"mmkv-dump":1,"max_key_len":16,"max_value_len":8}\n'
            b'{"k":"a","v":"0123456789"}\n')
    r, _ = _feed_until_refused(["restore", "-", tmp_path / "x.mmkv"], dump, most=0)
    text = assert_one_line_error(r)
    assert "line 2" in text, text
    assert not (tmp_path / "x.mmkv").exists()


def test_set_value_from_endless_stdin_refused_past_the_store_limit(tmp_path):
    """`mmkv set S k -` with an endless stdin: refused once it passes the store's
    max_value_len (here 1 MiB), the key absent and the store sound."""
    store = make_store(tmp_path / "s.mmkv", {b"old": b"1"}, max_value_len=1 << 20)
    r, sent = _feed_until_refused(["set", store, "k", "-"])
    text = assert_one_line_error(r)
    assert "limit" in text, text
    assert sent < 64 * CHUNK, sent
    assert read_store(store) == {b"old": b"1"}


def test_set_value_from_stdin_past_default_limit_refused_without_memoryerror(tmp_path):
    """With the default limits (64 MiB values) and 2 GiB on stdin under `ulimit -v 1G`:
    refused after the limit, no MemoryError traceback."""
    store = make_store(tmp_path / "s.mmkv", {})
    r, sent = _feed_until_refused(["set", store, "k", "-"])
    text = assert_one_line_error(r)
    assert "limit" in text and "MemoryError" not in text, text
    assert sent < 256 * CHUNK, sent
    assert read_store(store) == {}


def test_set_new_store_value_from_endless_stdin_refused_store_not_created(tmp_path):
    """`mmkv set NEW k -` with an endless stdin: refused once it passes the default
    64 MiB limit of a new store, and NEW does not appear (nothing was changed)."""
    new = tmp_path / "new.mmkv"
    r, sent = _feed_until_refused(["set", new, "k", "-"])
    text = assert_one_line_error(r)
    assert "limit" in text and "MemoryError" not in text, text
    assert sent < 256 * CHUNK, sent
    assert os.listdir(tmp_path) == []


def test_set_new_store_value_from_stdin_creates_the_store(tmp_path):
    """`mmkv set NEW k -` with a value within the limit: NEW is created holding it."""
    new = tmp_path / "new.mmkv"
    r, _ = _feed_until_refused(["set", new, "k", "-"], fill=b"z", most=1 << 20)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert read_store(new) == {b"k": b"z" * (1 << 20)}


def test_set_value_from_stdin_within_the_limit_stored(tmp_path):
    """A value on stdin of exactly the store's limit is stored whole."""
    store = make_store(tmp_path / "s.mmkv", {}, max_value_len=1 << 20)
    r, _ = _feed_until_refused(["set", store, "k", "-"], fill=b"z", most=1 << 20)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert read_store(store) == {b"k": b"z" * (1 << 20)}


@pytest.fixture
def big_store(tmp_path):
    return make_store(tmp_path / "big.mmkv", {b"key-%06d" % i: b"v" * 40 for i in range(20000)})


def test_dump_into_closed_pipe_ends_quietly_by_sigpipe(tmp_path, big_store):
    """`mmkv dump S | head -2`: dump ends as Unix tools do (killed by SIGPIPE), with nothing
    on stderr and no temporary files left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mmkv", "dump", big_store],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(TMPDIR=str(tmp)))
    with proc:
        first = proc.stdout.readline(), proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        rc = proc.wait(timeout=TIMEOUT)
    assert first[0].startswith(b'{"mmkv-dump":1') and first[1].startswith(b'{"k":')
    assert rc == -signal.SIGPIPE, (rc, err)
    assert err == b""
    assert os.listdir(tmp) == []


def test_dump_piped_into_head_shell_status_141_no_message(big_store):
    """In a shell pipeline with pipefail, `mmkv dump S | head -2` gives status 141 and prints
    nothing but head's two lines."""
    cmd = f"set -o pipefail; {sys.executable} -m mmkv dump {big_store} | head -2"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, env=cli_env(),
                       timeout=TIMEOUT)
    assert r.returncode == 141, r
    assert r.stderr == b"" and r.stdout.count(b"\n") == 2


@pytest.mark.parametrize("rounds", ["0", "-3", "x", "1e3"])
def test_demo_bad_rounds_usage_error_exit_2(rounds):
    """API.md: "Usage errors exit 2 with a one-line message" (`mmkv demo --rounds 0`)."""
    r = subprocess.run([sys.executable, "-m", "mmkv", "demo", "--rounds", rounds],
                       capture_output=True, env=cli_env(), timeout=TIMEOUT)
    assert_one_line_error(r, rc=2)
    assert "rounds" in r.stderr.decode()


def test_demo_one_round_runs_clean():
    """`mmkv demo --rounds 1`: both increments counted, exit 0, nothing on stderr."""
    r = subprocess.run([sys.executable, "-m", "mmkv", "demo", "--rounds", "1"],
                       capture_output=True, env=cli_env(), timeout=TIMEOUT)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert b"incremented the shared counter 2 times (expected 2)" in r.stdout
