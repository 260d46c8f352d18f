"""A full disk: growth uses fallocate, so a write that cannot get space is mmkv.error
(ENOSPC, or EFBIG past RLIMIT_FSIZE), never SIGBUS; nothing changes; the store stays
usable and intact and takes writes again once space returns.

API.md: "A full disk gives mmkv.error (never SIGBUS), and the store stays usable with its
contents intact."
"""
import errno
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.crash

FILL = textwrap.dedent("""
    import errno, json, os, sys
    import mmkv

    def fill(d, prefix, size):
        written = {}
        i = 0
        while True:
            key = b"%s%d" % (prefix, i)
            value = bytes([i % 251]) * size
            before = d.stats()
            try:
                d[key] = value
            except mmkv.error as e:
                after = d.stats()
                assert after == before, (before, after)      # nothing changed
                assert key not in d
                return written, e.errno
            written[key] = value
            i += 1

    def verify(d, written):
        assert {k: d[k] for k in d} == written
        d._check()
""")


def _run(code, env=None, timeout=120):
    proc = subprocess.run([sys.executable, "-c", FILL + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_enospc_rlimit_fsize_write_fails_with_efbig_then_resumes(tmp_path):
    """Past RLIMIT_FSIZE the grow fails with EFBIG; the store is intact and usable after."""
    out = _run(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = {str(tmp_path / "s.mmkv")!r}
        d = mmkv.open(path, "n")
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, resource.RLIM_INFINITY))
        written, err = fill(d, b"k", 20000)
        assert err == errno.EFBIG, err
        assert os.path.getsize(path) <= 3 << 20
        verify(d, written)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        d[b"after"] = b"x" * 100000
        written[b"after"] = b"x" * 100000
        verify(d, written)
        d.close()
        with mmkv.open(path) as d:
            verify(d, written)
        print(len(written))
    """)
    assert int(out) > 50


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_small_tmpfs_file_store_fills_then_resumes_after_space_returns(small_tmpfs):
    """On a full filesystem writes fail with ENOSPC, and succeed again once space is freed."""
    _run(f"""
        mnt = {str(small_tmpfs)!r}
        with open(os.path.join(mnt, "ballast"), "wb") as f:
            f.write(b"b" * (1 << 20))
        d = mmkv.open(os.path.join(mnt, "s.mmkv"), "n")
        written, err = fill(d, b"k", 7000)
        assert err == errno.ENOSPC, err
        verify(d, written)
        try:
            d[b"huge"] = b"h" * (16 << 20)     # far more than the filesystem holds
            raise AssertionError("a 16 MiB write fit in 4 MiB")
        except mmkv.error as e:
            assert e.errno == errno.ENOSPC
        verify(d, written)
        os.unlink(os.path.join(mnt, "ballast"))
        d[b"after"] = b"a" * 200000
        written[b"after"] = b"a" * 200000
        verify(d, written)
        d.close()
        with mmkv.open(os.path.join(mnt, "s.mmkv")) as d:
            verify(d, written)
    """)


def test_enospc_small_tmpfs_shm_store_fills_then_resumes(small_tmpfs):
    """The same for a shared-memory store (its directory pointed at the small tmpfs)."""
    name = "mmkv-test-" + uuid.uuid4().hex
    _run(f"""
        mnt = {str(small_tmpfs)!r}
        with open(os.path.join(mnt, "ballast"), "wb") as f:
            f.write(b"b" * (1 << 20))
        d = mmkv.open_shm({name!r})
        written, err = fill(d, b"k", 5000)
        assert err == errno.ENOSPC, err
        verify(d, written)
        os.unlink(os.path.join(mnt, "ballast"))
        d[b"after"] = b"a" * 100000
        written[b"after"] = b"a" * 100000
        verify(d, written)
        d.close()
        mmkv.unlink_shm({name!r})
    """, env={"MMKV_TEST_SHM_DIR": str(small_tmpfs)})
    assert not os.path.exists(f"/dev/shm/{name}")


def test_enospc_failed_grow_leaves_file_size_unchanged(tmp_path):
    """A grow that fails is undone: the file is not left partially grown."""
    _run(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = {str(tmp_path / "s.mmkv")!r}
        d = mmkv.open(path, "n")
        d[b"a"] = b"1"
        size = os.path.getsize(path)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, resource.RLIM_INFINITY))
        try:
            d[b"big"] = b"x" * (1 << 20)
            raise AssertionError("write past the limit succeeded")
        except mmkv.error as e:
            assert e.errno == errno.EFBIG, e
        assert os.path.getsize(path) == size, (os.path.getsize(path), size)
        assert d.stats()["file_size"] == size
        verify(d, {{b"a": b"1"}})
    """)
