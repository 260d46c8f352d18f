"""A large initial capacity on a disk that fills up (issue 10: "initial_capacity allocates
disk lazily (or is bounded with a clear error)"; API.md: every refusal is a clear
mmkv.error and changes nothing).

On a disk file system a store created with initial_capacity=150_000_000 has a 2 GiB table
that is a hole in the file; its pages are allocated as keys land in them.  On a small ext4
image the inserts must end with ENOSPC, never with SIGBUS (the writer runs in a child
process, so a SIGBUS shows as its exit status), and every write that returned must still be
there.  On tmpfs (where even reading a hole allocates) the table is allocated whole, so the
same store on a small tmpfs is a clear ENOSPC at open."""

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

import mmkv

CHILD = textwrap.dedent("""
    import json, sys, mmkv
    path = sys.argv[1]
    try:
        d = mmkv.open(path, "n", initial_capacity=150_000_000)
    except mmkv.error as e:
        print(json.dumps({"open_errno": e.errno}))
        sys.exit(0)
    written, err = 0, None
    for i in range(200000):
        try:
            d[b"key%d" % i] = b"v%d" % i
        except mmkv.error as e:
            err = e.errno
            break
        written = i + 1
    d._check()
    print(json.dumps({"written": written, "errno": err}))
""")


def _mount(tmp_path, name, args):
    mnt = tmp_path / name
    mnt.mkdir()
    proc = subprocess.run(["mount", *args, str(mnt)], capture_output=True, text=True)
    assert proc.returncode == 0, f"cannot mount (CI runs as root): {proc.stderr}"
    return mnt


@pytest.fixture
def small_ext4(tmp_path):
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(24 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True,
                   capture_output=True)
    mnt = _mount(tmp_path, "ext4", ["-o", "loop", str(image)])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = _mount(tmp_path, "tmpfs", ["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _run(path):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode} (-7 is SIGBUS)\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_sparse_table_full_disk_is_enospc_never_sigbus(small_ext4):
    """Inserting into a sparse 2 GiB table on a 24 MiB ext4 ends with ENOSPC from a write
    (not SIGBUS); the returned writes are all there and the store is sound."""
    path = small_ext4 / "sparse.mmkv"
    out = _run(path)
    assert out.get("errno") == errno.ENOSPC, out
    assert out["written"] > 1000, out
    with mmkv.open(path, "r") as d:
        assert len(d) == out["written"]
        for i in range(0, out["written"], 97):
            assert d[b"key%d" % i] == b"v%d" % i
        d._check()
    with mmkv.open(path) as d:       # the disk is still full: a clear refusal, no change
        with pytest.raises(mmkv.error) as info:
            for i in range(1000):
                d[b"more%d" % i] = b"x" * 1000
        assert info.value.errno == errno.ENOSPC
        assert d[b"key0"] == b"v0"
        d._check()


def test_large_capacity_on_small_tmpfs_is_enospc_at_open(small_tmpfs):
    """On tmpfs the table cannot be a hole (a read would allocate), so a 2 GiB table on an
    8 MiB tmpfs is refused at open with ENOSPC, leaving no file behind."""
    out = _run(small_tmpfs / "big.mmkv")
    assert out == {"open_errno": errno.ENOSPC}, out
    assert [p for p in os.listdir(small_tmpfs) if not p.startswith("lost")] == []
