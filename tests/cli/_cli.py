"""Helpers of the command-line tests: run `python -m mmkv` (or the `mmkv` script) as a real
subprocess, build stores, read them back through the structural check.

Every command runs with MMKV_PROGRESS_DELAY removed from its environment (progress bars only
appear where a test asks for them) and under a timeout, so a hung command fails its test
instead of the run.  Imported by the tests as `_cli` (a name no other test directory uses).
"""

import os
import random
import shutil
import subprocess
import sys
import sysconfig

TIMEOUT = 120


def mmkv_script():
    """Path of the installed `mmkv` console script (beside this interpreter)."""
    path = os.path.join(sysconfig.get_path("scripts"), "mmkv")
    if os.path.exists(path):
        return path
    found = shutil.which("mmkv")
    assert found, "the mmkv console script is not installed (pip install -e .)"
    return found


def cli_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "MMKV_PROGRESS_DELAY"}
    env.update(extra)
    return env


def run(*args, input=None, script=False, env=None, cwd=None):
    """Run the command line with args (str or bytes); returns CompletedProcess (bytes)."""
    argv = [mmkv_script()] if script else [sys.executable, "-m", "mmkv"]
    argv += [os.fspath(a) for a in args]
    return subprocess.run(argv, input=input, capture_output=True, timeout=TIMEOUT,
                          env=cli_env() if env is None else env, cwd=cwd)


def ok(*args, **kw):
    """run() that must exit 0 with nothing on stderr; returns stdout."""
    r = run(*args, **kw)
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))
    assert r.stderr == b"", r.stderr.decode(errors="replace")
    return r.stdout


def assert_one_line_error(r, rc=1):
    """Exit status rc, exactly one line on stderr starting "mmkv: ", no traceback."""
    text = r.stderr.decode("utf-8", "replace")
    assert r.returncode == rc, (r.returncode, text)
    assert "Traceback" not in text, text
    assert text.startswith("mmkv: ") and text.endswith("\n") and text.count("\n") == 1, text
    return text


def make_store(path, items, **options):
    """A store at path holding the dict items (bytes or str)."""
    import mmkv

    with mmkv.open(path, "n", **options) as d:
        for k, v in items.items():
            d[k] = v
    return path


def read_store(path):
    """The contents of the store at path as a dict, after `_check()` passes on it."""
    import mmkv

    with mmkv.open(path, "r") as d:
        d._check()
        return {k: d[k] for k in d}


SAMPLE = {
    b"": b"",
    b"empty-value": b"",
    "ascii": "plain text",
    "héllo wörld ✓": "ünïcödé 值 🙂",
    b"\xff\xfe binary key": b"\x00\x01\x02\xff",
    b"\x00": b"nul key",
    "quotes \" and \\ and\nnewline\ttab": "json {\"a\": [1, 2]}\r\n",
    "\u2028line separator": "\x7f\x1b[0m",
    b"utf8-key": bytes(range(256)),
    b"surrogate-ish \xed\xa0\x80": b"\xed\xa0\x80 is not UTF-8",
    "a" * 600: "long key",
    b"big": random.Random(6).randbytes(200_000),
}
