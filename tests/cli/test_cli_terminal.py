"""The command line on a terminal: the progress bar fits the terminal's width (issue 13: "at
80 columns every redraw leaves a line behind"), and every subcommand's -h describes its
arguments.  Pseudo-terminals are given a size with TIOCSWINSZ before the command starts."""

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

from _cli import TIMEOUT, cli_env, make_store

ESCAPE = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def _run_on_sized_pty(args, columns, stdout=subprocess.DEVNULL):
    """Run `python -m mmkv args` with stderr on a pseudo-terminal of 24 rows and columns
    columns; (exit status, bytes written to the terminal)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        with subprocess.Popen([sys.executable, "-m", "mmkv", *map(os.fspath, args)],
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave,
                              env=cli_env(MMKV_PROGRESS_DELAY="0")) as proc:
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


def _drawn_lines(output):
    """What each redraw put on the screen: the text between carriage returns and line
    feeds, escape sequences removed."""
    text = ESCAPE.sub(b"", output.replace(b"\r\n", b"\n"))
    return [part for line in text.split(b"\n") for part in line.split(b"\r") if part]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress") / "s.mmkv"
    return make_store(path, {b"key-%06d" % i: b"v" * 20 for i in range(20000)})


@pytest.mark.parametrize("columns", [40, 80])
def test_dump_progress_bar_on_terminal_of_width_never_wraps(store, columns):
    """Every redraw of dump's bar is shorter than the terminal (no wrap, so no line is left
    behind), and the bar still shows its progress."""
    rc, out = _run_on_sized_pty(["dump", store], columns)
    assert rc == 0, out
    lines = _drawn_lines(out)
    assert lines and any(b"100.0%" in line for line in lines), out
    assert max(len(line.decode()) for line in lines) <= columns - 1, lines
    if columns >= 80:
        assert any(b"[" in line and b"#" in line for line in lines), lines


@pytest.mark.parametrize("columns", [40, 80])
def test_restore_progress_bar_on_terminal_of_width_never_wraps(tmp_path, store, columns):
    """restore's bar, which also names the record count, fits too."""
    dump = subprocess.run([sys.executable, "-m", "mmkv", "dump", store], check=True,
                          capture_output=True, env=cli_env(), timeout=TIMEOUT).stdout
    (tmp_path / "d.jsonl").write_bytes(dump)
    rc, out = _run_on_sized_pty(["restore", tmp_path / "d.jsonl", tmp_path / "r.mmkv"],
                                columns)
    assert rc == 0, out
    lines = _drawn_lines(out)
    assert any(b"100.0%" in line for line in lines), out
    assert max(len(line.decode()) for line in lines) <= columns - 1, lines


COMMANDS = {"dump": ["STORE"], "restore": ["DUMP", "STORE"], "check": ["STORE"],
            "stat": ["STORE"], "compact": ["STORE"], "get": ["STORE", "KEY"],
            "set": ["STORE", "KEY", "VALUE"], "del": ["STORE", "KEY"], "demo": []}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_describes_every_argument(command):
    """Issue 13: "every subcommand's -h describes its arguments": each positional argument
    and option of `mmkv COMMAND -h` has a description."""
    r = subprocess.run([sys.executable, "-m", "mmkv", command, "-h"], capture_output=True,
                       env=cli_env(COLUMNS="100"), timeout=TIMEOUT, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    described = {}
    lines = r.stdout.splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        entry = re.match(r"^  (\S.*?)(?:  +(\S.*))?$", line)
        if entry:                   # a description on the line, or on the next, indented
            name = entry.group(1).split(",")[0].split()[0]
            described[name] = bool(entry.group(2)) or after.startswith(" " * 6)
    for metavar in COMMANDS[command]:
        assert described.get(metavar), (metavar, r.stdout)
    assert all(described.values()), r.stdout
