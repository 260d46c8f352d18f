"""The command line on stores reached through symbolic links and with the longest names
(API.md, "Containers, links and names": "A store opened through a symbolic link is the
file the link names: compaction replaces that file and leaves the link a link ... Every
name the filesystem accepts works, up to its longest (NAME_MAX), for creating, compacting
and restoring.")."""

import os

import mmkv

from _cli import make_store, ok, run


def _contents(path):
    with mmkv.open(path, "r") as d:
        d._check()
        return {k: d[k] for k in d}


def _long(tmp_path, suffix=".mmkv"):
    return tmp_path / ("L" * (255 - len(suffix)) + suffix)


def test_cli_compact_through_symlink_keeps_link(tmp_path):
    """`mmkv compact LINK` compacts the file the link names; the link stays a link and the
    file opens with the same contents."""
    real = tmp_path / "real.mmkv"
    link = tmp_path / "link.mmkv"
    with mmkv.open(real) as d:
        for i in range(200):
            d[b"k%d" % (i % 10)] = b"%d" % i
        expected = {k: d[k] for k in d}
    link.symlink_to("real.mmkv")
    ino = os.stat(real).st_ino
    ok("compact", link)
    assert link.is_symlink()
    assert os.stat(real).st_ino != ino
    assert _contents(real) == expected
    ok("check", link)
    ok("check", real)


def test_cli_restore_force_through_symlink_replaces_target(tmp_path, sample_items,
                                                           sample_dump):
    """`mmkv restore --force DUMP LINK` replaces the file the link names and leaves the
    link a link."""
    real = tmp_path / "real.mmkv"
    link = tmp_path / "link.mmkv"
    make_store(real, {b"old": b"1"})
    link.symlink_to(real)
    dump = tmp_path / "d.jsonl"
    dump.write_bytes(sample_dump)
    ok("restore", dump, link, "--force")
    assert link.is_symlink()
    assert _contents(real) == sample_items
    r = run("restore", dump, link)            # without --force: refused, nothing changes
    assert r.returncode != 0
    assert link.is_symlink() and _contents(real) == sample_items


def test_cli_restore_compact_dump_255_byte_name(tmp_path, sample_items, sample_dump):
    """restore into, compact, check and dump a store whose name is 255 bytes long; no
    temporary file is left beside it."""
    target = _long(tmp_path)
    dump = tmp_path / "d.jsonl"
    dump.write_bytes(sample_dump)
    ok("restore", dump, target)
    ok("compact", target)
    ok("restore", dump, target, "--force")
    assert ok("dump", target) == sample_dump
    ok("check", target)
    assert _contents(target) == sample_items
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, dump.name, "src.mmkv"])
