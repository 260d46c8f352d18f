"""Unit tests for compaction (issue 5): compact()/reorganize(), auto_compact, reclaimable_bytes.

One process, one or more handles: contents survive, the file shrinks, other handles of the
process follow the switch, iteration keeps API.md's guarantee across a compaction. The
multi-process and SIGKILL cases live in tests/multiproc/test_compact_mp.py and
tests/crash/test_compact_kill.py.
"""

import glob
import os
import uuid

import pytest

import mmkv
from _checks import assert_iteration_ok, delete_most, fill

MIB = 1 << 20


def leftovers(path):
    return glob.glob(os.path.join(glob.escape(os.path.dirname(str(path))), ".mmkv-*.compact"))


def contents(d):
    """The dict d holds, built by iterating d (a plain for loop, as users write it)."""
    return {key: d[key] for key in d}


def assert_point_reads(d, items):
    """len(d) and d[k] for every expected key agree with items (no iteration involved)."""
    assert len(d) == len(items)
    for key, value in items.items():
        assert d[key] == value, key


# --- compact() and reorganize() ---------------------------------------------------------------


def test_compact_after_deleting_most_keys_keeps_contents_and_shrinks_file(open_store, store_path):
    """API.md: compact() reclaims the space of deleted and overwritten data; the file shrinks
    accordingly. Contents are unchanged."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 5000, 1000)
    delete_most(d, items)
    before = d.stats()
    size_before = os.path.getsize(store_path)
    assert before["file_size"] == size_before
    assert before["reclaimable_bytes"] > 0

    d.compact()

    after = d.stats()
    size_after = os.path.getsize(store_path)
    assert contents(d) == items
    assert len(d) == after["count"] == len(items)
    assert after["file_size"] == size_after
    # 90 % of ~5 MiB of live data is gone: the file must lose most of its size
    assert size_after < size_before / 3, (size_before, size_after)
    assert after["reclaimable_bytes"] == 0
    assert not leftovers(store_path)
    d._check()


def test_compact_after_overwrites_keeps_newest_values_and_shrinks_file(open_store, store_path):
    """API.md: compact() reclaims the space of ... overwritten data. Contents are unchanged."""
    d = open_store(store_path, auto_compact=False)
    for round_ in range(5):
        items = {b"k%05d" % i: b"%d-%05d-" % (round_, i) * 100 for i in range(1000)}
        d.update(items)
    assert d.stats()["reclaimable_bytes"] > 0
    size_before = os.path.getsize(store_path)

    d.compact()

    assert contents(d) == items
    assert os.path.getsize(store_path) < size_before / 2
    assert d.stats()["reclaimable_bytes"] == 0


def test_reorganize_is_compact_and_shrinks_file(open_store, store_path):
    """API.md: compact() (alias reorganize(), the dbm name)."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 3000, 500)
    delete_most(d, items)
    assert d.stats()["reclaimable_bytes"] > 0
    size_before = os.path.getsize(store_path)

    d.reorganize()

    assert contents(d) == items
    assert os.path.getsize(store_path) < size_before / 2
    assert d.stats()["file_size"] == os.path.getsize(store_path)
    assert d.stats()["reclaimable_bytes"] == 0


def test_compact_keeps_the_contents_for_a_fresh_handle(open_store, store_path):
    """Contents are unchanged: a handle opened after the compaction reads the same dict."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 2000, 300)
    delete_most(d, items, keep_every=3)
    d[b""] = b""
    items[b""] = b""
    d.compact()
    d.close()
    with mmkv.open(store_path, "r") as r:
        assert contents(r) == items
        assert r.stats()["reclaimable_bytes"] == 0


def test_compact_of_empty_store_leaves_it_empty_usable_and_no_larger(open_store, store_path):
    """compact() of a store that never held a key: still empty, writable, not larger."""
    d = open_store(store_path, auto_compact=False)
    size_before = os.path.getsize(store_path)

    d.compact()

    assert len(d) == 0 and list(d) == []
    assert os.path.getsize(store_path) <= size_before
    assert d.stats()["reclaimable_bytes"] == 0
    d[b"k"] = b"v"
    assert dict(d.items()) == {b"k": b"v"}
    d._check()


def test_compact_of_cleared_store_shrinks_it_to_empty(open_store, store_path):
    """compact() after clear(): nothing live is left, so the file shrinks and stays empty."""
    d = open_store(store_path, auto_compact=False)
    fill(d, 2000, 1000)
    d.clear()
    size_before = os.path.getsize(store_path)
    assert d.stats()["reclaimable_bytes"] > 0

    d.compact()

    assert len(d) == 0 and list(d) == []
    assert os.path.getsize(store_path) < size_before / 4
    assert d.stats()["reclaimable_bytes"] == 0


def test_compact_twice_in_a_row_is_harmless(open_store, store_path):
    """A second compact() with nothing to reclaim keeps the contents and does not grow."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 1000, 200)
    delete_most(d, items, keep_every=2)
    d.compact()
    size = os.path.getsize(store_path)
    d.compact()
    assert contents(d) == items
    assert os.path.getsize(store_path) <= size
    assert d.stats()["reclaimable_bytes"] == 0


def test_compact_with_16_mib_values_keeps_them_and_shrinks_file(open_store, store_path):
    """API.md: values of at least 16 MiB work with default options; compaction carries them."""
    d = open_store(store_path, auto_compact=False)
    big = {b"big%d" % i: bytes([65 + i]) * (16 * MIB) for i in range(3)}
    d.update(big)
    d[b"big0"] = b"Z" * (16 * MIB)          # overwrite: 16 MiB of garbage
    big[b"big0"] = b"Z" * (16 * MIB)
    del d[b"big2"]                          # delete: 16 MiB more
    del big[b"big2"]
    d[b"small"] = b"s"
    big[b"small"] = b"s"
    size_before = os.path.getsize(store_path)
    assert d.stats()["reclaimable_bytes"] >= 32 * MIB

    d.compact()

    assert contents(d) == big
    size_after = os.path.getsize(store_path)
    assert 32 * MIB < size_after <= size_before - 32 * MIB, (size_before, size_after)
    assert d.stats()["file_size"] == size_after
    assert d.stats()["reclaimable_bytes"] == 0
    d._check()


def test_compact_then_writes_and_deletes_work(open_store, store_path):
    """After compact() the handle goes on writing on the new file: put, delete, incr, CAS."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 1000, 100)
    delete_most(d, items)
    d.compact()
    d[b"new"] = b"value"
    del d[b"k000000"]
    assert d.incr(b"counter", 5) == 5
    assert d.compare_and_set(b"new", b"value", b"other")
    items.pop(b"k000000")
    items.update({b"new": b"other", b"counter": b"5"})
    assert contents(d) == items
    d._check()


def test_compact_on_read_only_handle_raises_error_and_leaves_file_alone(open_store, store_path):
    """API.md: "r" handles raise mmkv.error on every write and never modify the file."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 1000, 100)
    delete_most(d, items)
    r = open_store(store_path, "r")
    st = os.stat(store_path)

    with pytest.raises(mmkv.error):
        r.compact()

    assert (os.stat(store_path).st_ino, os.path.getsize(store_path)) == (st.st_ino, st.st_size)
    assert contents(r) == items
    assert not leftovers(store_path)


def test_compact_on_closed_handle_raises_error(store_path):
    """API.md: any other operation on a closed handle: mmkv.error."""
    d = mmkv.open(store_path)
    d.close()
    with pytest.raises(mmkv.error):
        d.compact()


def test_compact_inside_lock_is_refused_with_error_and_changes_nothing(open_store, store_path):
    """compact() while this handle holds `with d.lock():` is refused with mmkv.error."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 1000, 100)
    delete_most(d, items)
    st = os.stat(store_path)
    with d.lock():
        with pytest.raises(mmkv.error):
            d.compact()
        d[b"inside"] = b"lock"          # the lock still works after the refusal
        items[b"inside"] = b"lock"
    assert os.stat(store_path).st_ino == st.st_ino
    assert contents(d) == items
    assert not leftovers(store_path)
    d.compact()                         # and outside the lock it works
    assert contents(d) == items
    assert os.path.getsize(store_path) < st.st_size


# --- other handles of the same process ------------------------------------------------------


def test_second_handle_sees_same_contents_after_first_compacts_and_can_write(open_store,
                                                                             store_path):
    """API.md: compact() ... Contents are unchanged. It is safe while others use the store."""
    first = open_store(store_path, auto_compact=False)
    second = open_store(store_path, auto_compact=False)
    items = fill(first, 3000, 300)
    delete_most(first, items)
    assert contents(second) == items

    first.compact()

    assert_point_reads(second, items)
    assert contents(second) == items
    second[b"from-second"] = b"2"
    del second[b"k000000"]
    assert first[b"from-second"] == b"2"
    assert b"k000000" not in first
    first[b"from-first"] = b"1"
    assert second[b"from-first"] == b"1"
    items.pop(b"k000000")
    items.update({b"from-second": b"2", b"from-first": b"1"})
    assert contents(first) == contents(second) == items
    assert second.stats()["file_size"] == os.path.getsize(store_path)
    second._check()


def test_second_handle_compacts_again_after_first_compacted(open_store, store_path):
    """Both handles can compact in turn; contents stay the same."""
    first = open_store(store_path, auto_compact=False)
    second = open_store(store_path, auto_compact=False)
    items = fill(first, 2000, 200)
    delete_most(first, items, keep_every=2)
    first.compact()
    delete_most(second, items, keep_every=2)
    size = os.path.getsize(store_path)
    second.compact()
    assert os.path.getsize(store_path) < size
    assert contents(first) == contents(second) == items


def test_read_only_handle_follows_compaction_by_another_handle(open_store, store_path):
    """An "r" handle moves to the compacted file and sees later writes."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 3000, 300)
    r = open_store(store_path, "r")
    assert contents(r) == items
    delete_most(d, items)

    d.compact()

    assert_point_reads(r, items)
    assert contents(r) == items
    d[b"after"] = b"compaction"
    assert r[b"after"] == b"compaction"
    assert r.stats()["file_size"] == os.path.getsize(store_path)
    assert r.stats()["reclaimable_bytes"] == 0


def test_read_only_handle_follows_two_compactions(open_store, store_path):
    """An "r" handle that skipped a whole generation still reaches the newest file."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 2000, 300)
    r = open_store(store_path, "r")
    assert len(r) == len(items)
    delete_most(d, items, keep_every=2)
    d.compact()
    delete_most(d, items, keep_every=2)
    d.compact()
    assert_point_reads(r, items)
    assert contents(r) == items


# --- automatic compaction -------------------------------------------------------------------


def churn(d, n_keys=600, size=10_000, keep=10):
    """About n_keys * size bytes written, then all but `keep` keys deleted: garbage dominates."""
    items = fill(d, n_keys, size)
    for key in sorted(items)[keep:]:
        del d[key]
        del items[key]
    return items


def test_auto_compaction_shrinks_file_when_garbage_dominates(open_store, store_path):
    """auto_compact (default True): after a write, garbage > half the log and > 4 MiB compacts."""
    d = open_store(store_path)
    inode = os.stat(store_path).st_ino
    items = churn(d)                     # ~6 MiB written, then ~99 % of it deleted

    assert contents(d) == items
    st = d.stats()
    assert st["epoch"] > 1, st
    assert os.stat(store_path).st_ino != inode
    assert os.path.getsize(store_path) < 2 * MIB, st
    assert st["reclaimable_bytes"] < 4 * MIB, st
    assert not leftovers(store_path)


def test_no_auto_compaction_with_auto_compact_false(open_store, store_path):
    """open(path, auto_compact=False): the file never shrinks on its own."""
    d = open_store(store_path, auto_compact=False)
    inode = os.stat(store_path).st_ino
    items = churn(d)

    assert contents(d) == items
    st = d.stats()
    assert st["epoch"] == 1, st
    assert os.stat(store_path).st_ino == inode
    assert os.path.getsize(store_path) > 5 * MIB
    assert st["reclaimable_bytes"] > 5 * MIB


def test_no_auto_compaction_below_4_mib_of_garbage(open_store, store_path):
    """Garbage dominating a small log (< 4 MiB) is not compacted automatically."""
    d = open_store(store_path)
    inode = os.stat(store_path).st_ino
    items = churn(d, n_keys=300, size=10_000)    # ~3 MiB of garbage
    assert contents(d) == items
    assert d.stats()["epoch"] == 1
    assert os.stat(store_path).st_ino == inode


def test_auto_compaction_keeps_other_handles_in_step(open_store, store_path):
    """An auto-compaction is a compaction: another handle of the process follows it."""
    d = open_store(store_path)
    other = open_store(store_path, auto_compact=False)
    items = churn(d)
    assert d.stats()["epoch"] > 1
    assert_point_reads(other, items)
    assert contents(other) == items
    other[b"x"] = b"y"
    assert d[b"x"] == b"y"


# --- shared memory --------------------------------------------------------------------------


def test_compact_of_shm_store_shrinks_its_dev_shm_file():
    """DESIGN.md: open_shm stores compact the same way; the /dev/shm file shrinks."""
    name = "mmkv-test-compact-" + uuid.uuid4().hex[:12]
    shm_path = os.path.join("/dev/shm", name)
    d = other = None
    try:
        d = mmkv.open_shm(name, "n", auto_compact=False)
        other = mmkv.open_shm(name, "w", auto_compact=False)
        items = fill(d, 3000, 500)
        delete_most(d, items)
        size_before = os.path.getsize(shm_path)
        assert d.stats()["reclaimable_bytes"] > 0

        d.compact()

        assert contents(d) == items
        assert os.path.getsize(shm_path) < size_before / 2
        assert d.stats()["file_size"] == os.path.getsize(shm_path)
        assert d.stats()["reclaimable_bytes"] == 0
        assert contents(other) == items
        other[b"o"] = b"1"
        assert d[b"o"] == b"1"
        assert not leftovers(shm_path)
        d._check()
    finally:
        for handle in (other, d):
            if handle is not None:
                handle.close()
        if os.path.exists(shm_path):
            mmkv.unlink_shm(name)
        for leftover in leftovers(shm_path):
            os.unlink(leftover)


# --- iteration across compactions -----------------------------------------------------------


def iterate_with(d, at, action):
    """Iterate d; after `at` keys, call action() once. Return the keys yielded, in order."""
    seen = []
    for key in d:
        seen.append(key)
        if len(seen) == at:
            action()
    return seen


def test_iteration_across_compaction_by_same_handle_yields_each_key_once(open_store, store_path):
    """API.md: iteration never raises because the store changes; keys present throughout are
    yielded exactly once, every yielded key was present at some moment."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 6000, 50)
    delete_most(d, items, keep_every=2)      # 3000 live keys, garbage to reclaim
    seen = iterate_with(d, 1000, d.compact)
    assert d.stats()["epoch"] == 2
    assert_iteration_ok(seen, set(items), set(items))
    assert len(seen) == len(items)


@pytest.mark.parametrize("at", [1, 1023, 1024, 1025, 2999])
def test_iteration_across_compaction_at_batch_edges_yields_each_key_once(open_store, store_path,
                                                                         at):
    """The same guarantee whichever batch the compaction lands in (batches are 1024 keys)."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 6000, 20)
    delete_most(d, items, keep_every=2)
    seen = iterate_with(d, at, d.compact)
    assert_iteration_ok(seen, set(items), set(items))
    assert len(seen) == len(items)


def test_iteration_across_compaction_by_other_handle_yields_each_key_once(open_store,
                                                                          store_path):
    """API.md: the guarantee holds whether this handle or another handle changes the store."""
    d = open_store(store_path, auto_compact=False)
    other = open_store(store_path, auto_compact=False)
    items = fill(d, 6000, 50)
    delete_most(d, items, keep_every=2)
    seen = iterate_with(d, 1500, other.compact)
    assert_iteration_ok(seen, set(items), set(items))
    assert len(seen) == len(items)


def test_iteration_of_read_only_handle_across_compaction_yields_each_key_once(open_store,
                                                                              store_path):
    """An "r" handle iterating while a writer compacts: each key present throughout, once."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, 5000, 50)
    delete_most(d, items, keep_every=2)
    r = open_store(store_path, "r")
    seen = iterate_with(r, 700, d.compact)
    assert_iteration_ok(seen, set(items), set(items))


def test_iteration_across_compactions_with_writes_between_keeps_guarantee(open_store,
                                                                          store_path):
    """Deletes, inserts and several compactions mid-iteration: keys present throughout are
    yielded exactly once, and nothing yielded is a key that never existed."""
    d = open_store(store_path, auto_compact=False)
    other = open_store(store_path, auto_compact=False)
    items = fill(d, 8000, 30)
    delete_most(d, items, keep_every=2)
    ever = set(items)
    present = sorted(items)
    doomed = set(present[::7])               # deleted during the iteration
    throughout = set(items) - doomed
    step = [0]

    def mutate():
        step[0] += 1
        for key in sorted(doomed)[step[0]::4]:
            d.pop(key, None)
        new = [b"new%d-%05d" % (step[0], i) for i in range(300)]
        ever.update(new)
        other.update({key: b"n" for key in new})
        (d if step[0] % 2 else other).compact()

    seen = []
    for key in d:
        seen.append(key)
        if len(seen) % 700 == 0 and step[0] < 4:
            mutate()
    assert step[0] == 4
    assert d.stats()["epoch"] == 5
    assert_iteration_ok(seen, throughout, ever)


def test_iteration_across_auto_compaction_keeps_guarantee(open_store, store_path):
    """Deleting while iterating (`for k in d: del d[k]` is allowed) can trigger an automatic
    compaction; the loop still meets every key exactly once and empties the store."""
    d = open_store(store_path)
    items = fill(d, 1200, 8000)              # ~9.6 MiB; deleting most of it auto-compacts
    epoch = d.stats()["epoch"]
    seen = []
    for key in d:
        seen.append(key)
        del d[key]
    assert d.stats()["epoch"] > epoch, "no auto-compaction happened: the test proves nothing"
    assert_iteration_ok(seen, set(items), set(items))
    assert len(d) == 0


@pytest.mark.parametrize("flag", ["r", "w"])
@pytest.mark.parametrize("n_keys", [10, 3000])
def test_iteration_begun_after_other_handle_compacted_sees_later_writes(open_store, store_path,
                                                                        flag, n_keys):
    """API.md: once a write has returned, every read that starts later sees it; every key
    present for the whole iteration is yielded. The iterating handle's first operation after
    another handle's compaction is the iteration itself."""
    d = open_store(store_path, auto_compact=False)
    items = fill(d, n_keys, 20)
    doomed = fill(d, max(1, n_keys // 10), 20, prefix=b"doomed")
    other = open_store(store_path, flag)
    assert len(other) == len(items) + len(doomed)   # other is on the current file
    d.compact()
    for key in doomed:                              # these writes return before the loop
        del d[key]
    added = fill(d, max(1, n_keys // 10), 20, prefix=b"added")
    items.update(added)

    seen = [key for key in other]                   # a plain loop: no len() hint first

    stale = set(seen) & set(doomed)
    assert not stale, f"iteration yielded {len(stale)} keys deleted before it began"
    missing = set(added) - set(seen)
    assert not missing, f"iteration missed {len(missing)} keys added before it began"
    assert_iteration_ok(seen, set(items), set(items))


def test_items_begun_after_other_handle_compacted_sees_later_writes(open_store, store_path):
    """API.md: a read that starts after a write returned sees it; items() included."""
    d = open_store(store_path, auto_compact=False)
    d.update({b"a": b"1", b"b": b"2"})
    other = open_store(store_path, "w")
    assert other[b"a"] == b"1"
    d.compact()
    d[b"a"] = b"changed"
    del d[b"b"]
    assert dict(other.items()) == {b"a": b"changed"}
