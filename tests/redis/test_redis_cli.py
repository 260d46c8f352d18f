"""The command line on Redis URLs (issue 14, item 4): "every STORE argument accepts a Redis
URL; `mmkv dump redis://... | mmkv restore - local.mmkv` and `mmkv dump local.mmkv | mmkv
restore - redis://...` round trip any bytes, with the dump format unchanged; `mmkv stat` on
a URL reports what Redis knows (keys in the namespace, memory if the server reports it)".

Every command runs as a real `python -m mmkv` process against the session's real servers
(one redis-server, a three-primary cluster; tests/redis/conftest.py), each test in a
namespace of its own.
"""
import io
import json
import random
import subprocess
import sys
import uuid

import pytest

import mmkv
from mmkv import _backup

TIMEOUT = 120


def _items():
    """Keys and values of every shape: empty, UTF-8, JSON's specials, binary, 64 KiB, and
    enough small ones that SCAN and get_many take several batches."""
    rng = random.Random(14)
    items = {
        b"": b"",
        b"empty-value": b"",
        "héllo wörld ✓".encode(): "ünïcödé 值 🙂".encode(),
        b"\xff\xfe binary key": b"\x00\x01\x02\xff",
        b"\x00": b"nul key",
        b'quotes " and \\ and\nnewline\ttab': b'json {"a": [1, 2]}\r\n',
        b"surrogate-ish \xed\xa0\x80": b"\xed\xa0\x80 is not UTF-8",
        b"all bytes": bytes(range(256)),
        b"a" * 600: b"long key",
        b"big text": b"x" * 65536,
        b"big binary": rng.randbytes(65536),
    }
    for i in range(2500):
        items[rng.randbytes(rng.randrange(1, 24)) + b"%d" % i] = rng.randbytes(rng.randrange(40))
    return items


ITEMS = _items()


def run(*args, input=None):
    return subprocess.run([sys.executable, "-m", "mmkv", *map(str, args)], input=input,
                          capture_output=True, timeout=TIMEOUT)


def ok(*args, input=None):
    r = run(*args, input=input)
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))
    assert r.stderr == b"", r.stderr.decode(errors="replace")
    return r.stdout


def one_line_error(r):
    text = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 1, (r.returncode, text)
    assert "Traceback" not in text, text
    assert text.startswith("mmkv: ") and text.count("\n") == 1 and text.endswith("\n"), text
    return text


def local_store(path, items):
    with mmkv.open(path, "n") as d:
        d.update(items)
    return path


def contents(spec):
    with mmkv.open(spec, "r") as d:
        return dict(d.items())


@pytest.fixture(params=["redis", "cluster"])
def servers(request):
    return request.getfixturevalue("redis_server" if request.param == "redis"
                                   else "redis_cluster")


@pytest.fixture
def url(servers):
    """A fresh namespace on the server (then the cluster)."""
    return servers.url(f"cli{uuid.uuid4().hex[:12]}")


# ---- the round trips ----

def test_dump_local_restore_redis_dump_again_byte_identical(tmp_path, url):
    """Issue 14: "`mmkv dump local.mmkv | mmkv restore - redis://...` round trip any bytes,
    with the dump format unchanged": the Redis namespace's dump is the local dump, byte
    for byte."""
    first = ok("dump", local_store(tmp_path / "a.mmkv", ITEMS))
    assert ok("restore", "-", url, input=first) == b""
    assert contents(url) == ITEMS
    assert ok("dump", url) == first


def test_dump_redis_restore_local_dump_again_byte_identical(tmp_path, url):
    """Issue 14: "`mmkv dump redis://... | mmkv restore - local.mmkv` round trip any
    bytes": the local store holds exactly the namespace, and dumps to the same bytes."""
    with mmkv.open(url) as d:
        d.update(ITEMS)
    first = ok("dump", url)
    ok("restore", "-", tmp_path / "b.mmkv", input=first)
    assert contents(tmp_path / "b.mmkv") == ITEMS
    assert ok("dump", tmp_path / "b.mmkv") == first
    assert first == ok("dump", local_store(tmp_path / "c.mmkv", ITEMS))


def test_dump_redis_to_output_file_equals_stdout(tmp_path, url):
    """`mmkv dump URL -o FILE` writes the same dump as to stdout."""
    with mmkv.open(url) as d:
        d.update({b"k": b"v", b"\xff": b""})
    ok("dump", url, "-o", tmp_path / "out.dump")
    assert (tmp_path / "out.dump").read_bytes() == ok("dump", url)


def test_dump_empty_namespace_restores_empty_local_store(tmp_path, url):
    """An empty namespace dumps as a header and a trailer; restored, an empty store."""
    mmkv.open(url, "c").close()
    data = ok("dump", url)
    assert len(data.splitlines()) == 2
    ok("restore", "-", tmp_path / "e.mmkv", input=data)
    assert contents(tmp_path / "e.mmkv") == {}


def test_dump_never_created_namespace_is_a_missing_store(url):
    """A namespace no one created is a missing store, as a missing file: one line, exit 1."""
    r = run("dump", url)
    assert r.returncode == 1 and b"no mmkv store" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_dump_redis_codec_store_writes_the_stored_bytes(url):
    """As for a local store: "a store opened with a codec is dumped as its stored bytes"."""
    with mmkv.open(url, codec=json) as d:
        d["a"] = {"x": [1, 2]}
        out = io.BytesIO()
        assert mmkv.dump(d, out) == 1
    assert json.loads(out.getvalue().splitlines()[1]) == {"k": "a", "v": '{"x": [1, 2]}'}


def test_dump_redis_key_deleted_after_scan_skipped(tmp_path, url):
    """Redis has no snapshot: a key deleted after the keys were read is skipped, and the
    dump is still whole and valid."""
    with mmkv.open(url) as d:
        d.update({b"k%04d" % i: b"v%d" % i for i in range(50)})

    class Bar:
        def update(self, done, note=""):
            pass

        def finish(self, done=None, note=None):
            pass

    def progress(label, total=None, unit="records"):
        if label == "mmkv dump: writing":       # every key has been read: delete some
            with mmkv.open(url) as other:
                other.delete_many([b"k%04d" % i for i in range(0, 50, 5)])
        return Bar()

    out = io.BytesIO()
    report = _backup.dump_report(url, out, progress=progress)
    assert report.records == 40
    assert mmkv.restore(io.BytesIO(out.getvalue()), tmp_path / "r.mmkv") == 40
    assert contents(tmp_path / "r.mmkv") == {b"k%04d" % i: b"v%d" % i
                                             for i in range(50) if i % 5}


# ---- restore's refusals ----

def test_restore_into_nonempty_namespace_refused_without_force(tmp_path, url):
    """Issue 14 / API.md: "an existing STORE is refused without --force": a namespace
    holding keys is one; it is left as it was.  With --force it is replaced."""
    with mmkv.open(url) as d:
        d[b"old"] = b"1"
    data = ok("dump", local_store(tmp_path / "a.mmkv", {b"new": b"2"}))
    text = one_line_error(run("restore", "-", url, input=data))
    assert "exists; use --force" in text and url in text
    assert contents(url) == {b"old": b"1"}
    ok("restore", "--force", "-", url, input=data)
    assert contents(url) == {b"new": b"2"}


def test_restore_library_nonempty_namespace_eexist(url):
    """mmkv.restore(file, url): a namespace holding keys is mmkv.error with EEXIST."""
    import errno
    with mmkv.open(url) as d:
        d[b"old"] = b"1"
    data = io.BytesIO()
    mmkv.dump(url, data)
    with pytest.raises(mmkv.error) as info:
        mmkv.restore(io.BytesIO(data.getvalue()), url)
    assert info.value.errno == errno.EEXIST
    assert mmkv.restore(io.BytesIO(data.getvalue()), url, force=True) == 1


def test_restore_altered_dump_into_redis_leaves_namespace_empty(tmp_path, url):
    """A restore into Redis is not atomic, so a dump whose checksum fails at the end has
    had its records written: they are removed again, and the message says so."""
    with mmkv.open(url) as d:
        d[b"old"] = b"1"
    data = ok("dump", local_store(tmp_path / "a.mmkv", ITEMS))
    altered = data.replace(b'"v":"long key"', b'"v":"long kez"')
    assert altered != data
    text = one_line_error(run("restore", "--force", "-", url, input=altered))
    assert "checksum" in text and "left empty" in text
    assert contents(url) == {}


def test_restore_truncated_dump_into_empty_namespace_leaves_it_empty(tmp_path, url):
    """A dump cut short in its trailer, after its 2,500 records were sent in batches:
    refused at its end, the namespace empty as it was before."""
    data = ok("dump", local_store(tmp_path / "a.mmkv", ITEMS))
    text = one_line_error(run("restore", "-", url, input=data[:-40]))
    assert "truncated" in text
    assert contents(url) == {}


# ---- stat, check, compact, get, set, del ----

def test_stat_json_on_url_reports_count_and_memory(url):
    """Issue 14: "`mmkv stat` on a URL reports what Redis knows (keys in the namespace,
    memory if the server reports it)"."""
    with mmkv.open(url) as d:
        d.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    st = json.loads(ok("stat", "--json", url))
    assert st["count"] == 3 and st["namespace"] == url.split("namespace=")[1]
    assert st["used_memory"] > 0 and st["primaries"] >= 1
    text = ok("stat", url).decode()
    assert "keys" in text and " 3\n" in text and "server memory" in text


def test_check_on_url_reports_reachable_and_count(url):
    """check on a URL reports what can be checked: the server answers, the count; exit 0."""
    with mmkv.open(url) as d:
        d.update({b"a": b"1", b"b": b"2"})
    text = ok("check", url).decode()
    assert "reachable" in text and "2 keys" in text


def test_compact_on_url_is_a_noop_that_says_so(url):
    """compact on a URL does nothing, says so, and exits 0; the keys are untouched."""
    with mmkv.open(url) as d:
        d[b"a"] = b"1"
    assert b"nothing to compact" in ok("compact", url)
    assert contents(url) == {b"a": b"1"}


def test_get_set_del_on_url_with_binary_keys(url):
    """get/set/del take a URL like a path; --hex names any bytes; set VALUE - reads stdin."""
    ok("set", "--hex", url, "ff00", "0001")
    ok("set", url, "text", "-", input=b"\x00raw\xff")
    assert ok("get", "--hex", url, "ff00") == b"\x00\x01"
    assert ok("get", url, "text") == b"\x00raw\xff"
    ok("del", "--hex", url, "ff00")
    assert "no such key" in one_line_error(run("get", "--hex", url, "ff00"))
    assert contents(url) == {b"text": b"\x00raw\xff"}


# ---- a server that is down ----

@pytest.mark.parametrize("command", [
    ["stat", "URL"], ["stat", "--json", "URL"], ["check", "URL"], ["compact", "URL"],
    ["dump", "URL"], ["restore", "-", "URL"], ["get", "URL", "k"], ["set", "URL", "k", "v"],
    ["del", "URL", "k"]], ids=" ".join)
def test_server_down_one_line_error_exit_1(own_server, tmp_path, command):
    """Issue 14: a server that is down is mmkv.error naming the URL: on the command line,
    one line on stderr and exit 1, never a traceback."""
    url = own_server.url("down")
    data = ok("dump", local_store(tmp_path / "a.mmkv", {b"k": b"v"}))
    own_server.kill()
    r = run(*[url if a == "URL" else a for a in command], input=data)
    text = one_line_error(r)
    assert url in text and "unreachable" in text
