"""A file made immutable under an open store, and a large initial capacity (API.md, bad
input and failure: "Every refusal is a clear mmkv.error, and changes nothing"; issue 10:
"EPERM/EACCES from an immutable or read-only file is said as such; initial_capacity
allocates disk lazily")."""

import errno
import os
import subprocess

import pytest

import mmkv


@pytest.fixture
def chattr_dir(tmp_path):
    """A directory on a file system where `chattr +i` works: tmp_path if it does, else a
    small ext4 image mounted with -o loop (root only)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0:
        subprocess.run(["chattr", "-i", str(probe)], check=True)
        probe.unlink()
        yield tmp_path
        return
    image, mnt = tmp_path / "ext4.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    proc = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"chattr unsupported and no loop mount: {proc.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _chattr(flag, path):
    subprocess.run(["chattr", flag, str(path)], check=True)


def test_immutable_file_write_raises_eperm_and_changes_nothing(chattr_dir):
    """A write to a store whose file was made immutable (chattr +i) after it was opened
    raises mmkv.error with EPERM, saying "not permitted", not a truncation; reads
    go on; once the flag is removed writes work and the store is sound."""
    path = chattr_dir / "frozen.mmkv"
    with mmkv.open(path, "n") as d:
        d[b"a"] = b"1"
        _chattr("+i", path)
        try:
            for op in (lambda: d.__setitem__(b"b", b"2"), lambda: d.incr(b"n"),
                       lambda: d.__delitem__(b"a")):
                with pytest.raises(mmkv.error) as info:
                    op()
                assert info.value.errno == errno.EPERM, info.value
                assert "not permitted" in str(info.value).lower()
                assert "truncated" not in str(info.value)
            assert d[b"a"] == b"1" and b"b" not in d and len(d) == 1
        finally:
            _chattr("-i", path)
        d[b"b"] = b"2"
        assert dict(d.items()) == {b"a": b"1", b"b": b"2"}
        d._check()


def test_large_initial_capacity_allocates_disk_lazily(tmp_path):
    """initial_capacity=150_000_000 on an empty store: the file is sized for the table
    (over 2 GiB) but takes only a few MiB of disk, and stays small as keys arrive."""
    path = tmp_path / "big.mmkv"
    with mmkv.open(path, "n", initial_capacity=150_000_000) as d:
        st = os.stat(path)
        assert st.st_size > 2 << 30
        assert st.st_blocks * 512 < 8 << 20, st.st_blocks * 512
        assert d.stats()["table_capacity"] >= 150_000_000
        for i in range(2000):
            d[b"key%d" % i] = b"v%d" % i
        del d[b"key7"]
        assert os.stat(path).st_blocks * 512 < 64 << 20
        d._check()
    with mmkv.open(path, "r") as d:
        assert len(d) == 1999 and d[b"key1999"] == b"v1999"
        d._check()
