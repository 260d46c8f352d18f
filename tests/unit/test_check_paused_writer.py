"""The read-only structural check of a store whose writer is paused between two steps of a
write (API.md, "The command line"):

"check is never a false alarm: a sound store gives exit 0 while other processes write or
hold the lock ... It reports damage only where data is damaged."

A writer publishes a write in steps (native/commit.c): the tail and seq, then the slot (or
every slot of a batch's plan), then the counters, then it clears the intent.  A writer that
the scheduler (or SIGSTOP) pauses between two steps leaves exactly the file these tests
build: the write done but for the steps not yet taken, its intent still pending.  The file
is made by real writes, then the steps not yet taken are undone in it through pwrite, as
they stood before the write.  Each test also clears the intent (the same bytes are then
damage, and the check must say so), and finally takes the remaining steps, as the writer
does when it resumes.
"""

import os
import struct
import subprocess
import sys

import mmkv
import pytest

HDR = {"table_desc": 128, "tail": 136, "file_size": 144, "count": 160, "garbage": 168,
       "table_used": 192, "intent": 256, "i_slot_off": 280, "i_new_w": 288,
       "i_new_count": 304, "i_new_garbage": 312, "i_new_used": 328, "snap": 344,
       "i_plan_off": 384, "i_plan_count": 392}
INTENT_NONE, INTENT_COMMIT, INTENT_BATCH = 0, 2, 4
RECORD_HEADER = 40
SLOTS_OFF = 64


class File:
    """The store's bytes, read and written beside the mappings (pread, pwrite)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR)

    def word(self, off):
        return struct.unpack("<Q", os.pread(self.fd, 8, off))[0]

    def set_word(self, off, value):
        os.pwrite(self.fd, struct.pack("<Q", value), off)

    def __getitem__(self, name):
        return self.word(HDR[name])

    def __setitem__(self, name, value):
        self.set_word(HDR[name], value)

    def close(self):
        os.close(self.fd)


def _cli_check(path):
    return subprocess.run([sys.executable, "-m", "mmkv", "check", str(path)],
                          capture_output=True, timeout=120)


def test_check_of_writer_paused_after_tail_past_readers_mapping_is_sound(tmp_path):
    """A read-only handle mapped before the writer grew the file checks a store whose writer
    published a record's tail but not yet its slot nor its counters: sound (exit 0 on the
    command line too); the same bytes without the pending intent are reported as damage."""
    path = tmp_path / "paused.mmkv"
    with mmkv.open(path) as w, mmkv.open(path, "r") as r:
        w[b"key"] = b"0"
        r._check()                        # r maps the file as it is now
        f = File(path)
        mapped = f["file_size"]
        i = 0
        while f["tail"] <= mapped:        # grow the file past r's mapping
            w[b"fill%d" % i] = b"x" * 1000
            i += 1
        w[b"key"] = b"1"                  # an overwrite: the key's slot stays where it is
        slot = f["i_slot_off"]
        before = f.word(slot), f["garbage"]   # an overwrite changes no count
        w[b"key"] = b"2"                  # the write the writer is paused in
        assert f["i_slot_off"] == slot and f.word(slot) != before[0]
        new_word, new_garbage = f["i_new_w"], f["i_new_garbage"]
        assert f["tail"] > mapped
        # paused after publishing the tail and seq: slot, counters and intent as before
        f.set_word(slot, before[0])
        f["garbage"] = before[1]
        f["intent"] = INTENT_COMMIT
        r._check()
        out = _cli_check(path)
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
        assert r[b"key"] == b"1"          # readers see the write not yet published
        f["intent"] = INTENT_NONE         # no pending write explains the stale slot now
        with pytest.raises(mmkv.CorruptError):
            r._check()
        f["intent"] = INTENT_COMMIT
        f.set_word(slot, new_word)        # the writer resumes: slot, counters, intent
        f["garbage"] = new_garbage
        f["intent"] = INTENT_NONE
        f.close()
        r._check()
        w._check()
        assert r[b"key"] == b"2" and w[b"key"] == b"2"


def test_check_of_batch_paused_in_its_plan_is_sound(tmp_path):
    """A read-only handle checks a store whose writer published half of a set_many's slots
    (its tail and seq published, the snapshot word odd, the counters not yet): sound (exit 0
    on the command line too); the same bytes without the pending intent are damage."""
    path = tmp_path / "batch.mmkv"
    with mmkv.open(path, initial_capacity=4000) as w, mmkv.open(path, "r") as r:
        w.set_many([(b"old%d" % i, b"o") for i in range(300)])
        f = File(path)
        desc = f["table_desc"]
        table = desc & ~4095
        slots = [f.word(table + SLOTS_OFF + 8 * i) for i in range(1 << (desc & 63))]
        before = {n: f[n] for n in ("count", "garbage", "table_used", "snap")}
        items = [(b"new%d" % i, b"n" * 30) for i in range(400)]
        items += [(b"old%d" % i, b"p" * 20) for i in range(0, 300, 3)]
        w.set_many(items)                 # the batch the writer is paused in
        assert f["table_desc"] == desc, "the batch rebuilt the table: make the store larger"
        plan = f["i_plan_off"] + RECORD_HEADER
        pairs = [(f.word(plan + 16 * k), f.word(plan + 16 * k + 8))
                 for k in range(f["i_plan_count"])]
        assert len(pairs) == len(items)
        after = {n: f[n] for n in ("count", "garbage", "table_used", "snap")}
        # paused in the middle of the plan: the later half of its slots still as before
        for off, _ in pairs[len(pairs) // 2:]:
            f.set_word(off, slots[(off - table - SLOTS_OFF) // 8])
        for n in ("count", "garbage", "table_used"):
            f[n] = before[n]
        f["snap"] = before["snap"] + 1
        f["intent"] = INTENT_BATCH
        r._check()
        out = _cli_check(path)
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
        f["intent"] = INTENT_NONE         # half a batch, and nothing to finish it: damage
        with pytest.raises(mmkv.CorruptError):
            r._check()
        f["intent"] = INTENT_BATCH
        for off, word in pairs:           # the writer resumes: the rest of the plan
            f.set_word(off, word)
        for n in after:
            f[n] = after[n]
        f["intent"] = INTENT_NONE
        f.close()
        r._check()
        w._check()
        assert r.get_many([k for k, _ in items]) == [v for _, v in items]
