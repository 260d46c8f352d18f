"""dump streams: its memory does not grow with the store.

The store is memory-mapped, so the dump's resident set includes the file's pages (shared
page cache, not the process's own memory).  What must stay bounded is the anonymous memory:
RssAnon in /proc/PID/status, sampled every few milliseconds while the dump runs.  Holding
the keys alone, as a sort in memory would, costs len(key) + 33 bytes per bytes object and
8 per list slot: about 87 MB for the 1,000,000 keys of 46 bytes here.

The dump's own share is bounded (sorted runs of 8 MiB, measured at ~8 MiB over the bare
interpreter); the core's structural check, which dump runs first to decide whether to
salvage, adds ~20 bytes per record of its own (~19 MiB here), hence the margin of half.
"""

import os
import subprocess
import sys
import time

import pytest

from _cli import TIMEOUT, cli_env

N = 1_000_000
KEY_LEN = 46


def _rss_anon_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _peak_rss_anon_kb(argv, stdout):
    """Run argv to completion; (exit status, peak RssAnon in KiB, seconds)."""
    start = time.monotonic()
    peak = 0
    with subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=cli_env()) as proc:
        while proc.poll() is None:
            peak = max(peak, _rss_anon_kb(proc.pid))
            time.sleep(0.005)
            assert time.monotonic() - start < TIMEOUT
        err = proc.stderr.read()
    assert proc.returncode == 0, err
    return peak, time.monotonic() - start


@pytest.mark.slow
def test_dump_million_keys_memory_bounded(tmp_path):
    """"writes every record, sorted by key, ..., streaming": 1,000,000 keys in bounded memory."""
    import mmkv

    path = tmp_path / "m.mmkv"
    with mmkv.open(path, "n") as d:
        for i in range(N):
            # hash order differs from key order, so the external sort is exercised
            d[b"%0*d" % (KEY_LEN, (i * 7919) % N)] = b"v%d" % i
    baseline, _ = _peak_rss_anon_kb(
        [sys.executable, "-c", "import mmkv.cli, time; time.sleep(0.3)"], subprocess.DEVNULL)
    with open(tmp_path / "m.jsonl", "wb") as out:
        peak, seconds = _peak_rss_anon_kb([sys.executable, "-m", "mmkv", "dump", path], out)
    holding_kb = N * (KEY_LEN + 33 + 8) // 1024
    print(f"dump of {N:,} keys: {seconds:.1f} s, peak RssAnon {peak // 1024} MiB "
          f"(baseline {baseline // 1024} MiB; holding the keys: {holding_kb // 1024} MiB)")
    assert peak - baseline < holding_kb // 2
    with open(tmp_path / "m.jsonl", "rb") as f:
        assert f.readline().startswith(b'{"mmkv-dump":1')
        previous = b""
        count = 0
        for line in f:
            if line.startswith(b'{"k":"'):
                key = line[6:6 + KEY_LEN]
                assert key > previous
                previous, count = key, count + 1
    assert count == N
    os.unlink(tmp_path / "m.jsonl")
