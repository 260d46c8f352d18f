"""Progress bars: "Long runs show a progress bar on stderr when it is a terminal", and runs
stay quiet otherwise.  MMKV_PROGRESS_DELAY=0 makes a small run count as long."""

import os
import subprocess
import sys

import pytest

from _cli import TIMEOUT, cli_env, make_store


def _run_on_pty(args, env, stdout):
    """Run `python -m mmkv args` with stderr on a pseudo-terminal; (exit status, stderr)."""
    master, slave = os.openpty()
    try:
        with subprocess.Popen([sys.executable, "-m", "mmkv", *map(os.fspath, args)],
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave,
                              env=env) as proc:
            os.close(slave)
            slave = None
            chunks = []
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:            # EIO: every writer of the terminal has exited
                    break
                if not data:
                    break
                chunks.append(data)
            return proc.wait(timeout=TIMEOUT), b"".join(chunks)
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.mmkv", {b"key-%06d" % i: b"v" * 20 for i in range(20000)})


def test_dump_stderr_terminal_progress_bar_shown(tmp_path, store):
    """Under a pseudo-terminal, dump draws a bar and ends it at 100% on its own line."""
    with open(tmp_path / "out", "wb") as out:
        rc, err = _run_on_pty(["dump", store], cli_env(MMKV_PROGRESS_DELAY="0"), out)
    assert rc == 0, err
    assert b"mmkv dump: writing [" in err and b"100.0%" in err and b"20,000" in err
    assert err.endswith(b"\n")
    assert (tmp_path / "out").read_bytes().count(b"\n") == 20002     # stdout untouched


def test_restore_stderr_terminal_progress_bar_shown(tmp_path, store):
    """restore draws its bar too (by bytes of the dump, with the record count)."""
    dump = subprocess.run([sys.executable, "-m", "mmkv", "dump", store], check=True,
                          capture_output=True, env=cli_env()).stdout
    (tmp_path / "d.jsonl").write_bytes(dump)
    rc, err = _run_on_pty(["restore", tmp_path / "d.jsonl", tmp_path / "r.mmkv"],
                          cli_env(MMKV_PROGRESS_DELAY="0"), subprocess.DEVNULL)
    assert rc == 0, err
    assert b"mmkv restore: [" in err and b"100.0%" in err and b"20,000 records" in err


def test_dump_stderr_pipe_no_progress(store):
    """With stderr a pipe there is no bar, even when every run counts as long."""
    r = subprocess.run([sys.executable, "-m", "mmkv", "dump", store], capture_output=True,
                       env=cli_env(MMKV_PROGRESS_DELAY="0"), timeout=TIMEOUT)
    assert r.returncode == 0 and r.stderr == b""


def test_dump_short_run_terminal_quiet(tmp_path):
    """A run shorter than the default delay (1 s) draws nothing, even on a terminal."""
    small = make_store(tmp_path / "small.mmkv", {b"k": b"v"})
    rc, err = _run_on_pty(["dump", small], cli_env(), subprocess.DEVNULL)
    assert rc == 0 and err == b""
