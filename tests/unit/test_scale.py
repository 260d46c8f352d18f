"""Many stores and many handles in one process, which can still allocate and start threads.

API.md "Handles": "A process can hold 10,000 open stores, and 20,000 handles on one store, at
once; a handle costs address space in proportion to the store's size, not a fixed large
range."  Each body runs in its own interpreter with a deadline (tests/_script.py), with the
soft limit on open files raised to the hard limit.
"""
import pytest

import _script

PRELUDE = """
import os, resource, sys, threading
import mmkv

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def process_still_works():
    big = bytearray(256 << 20)            # 256 MiB of new address space
    big[-1] = 1
    del big
    ran = []
    t = threading.Thread(target=ran.append, args=(1,))
    t.start()
    t.join(30)
    assert ran == [1], "could not start a thread"
"""

MANY_STORES = PRELUDE + """
folder, count = sys.argv[1], int(sys.argv[2])
stores = []
for i in range(count):
    d = mmkv.open(os.path.join(folder, "%05d.mmkv" % i), "c")
    d[b"i"] = b"%d" % i
    stores.append(d)
process_still_works()
for i, d in enumerate(stores):
    assert d[b"i"] == b"%d" % i
    d[b"again"] = b"x" * 1000
for d in stores:
    d.close()
print(len(stores))
"""


@pytest.mark.slow
def test_ten_thousand_open_stores_in_one_process_then_allocate_and_start_thread(tmp_path):
    """"A process can hold 10,000 open stores ... at once\""""
    folder = tmp_path / "many"
    folder.mkdir()
    out = _script.run(MANY_STORES, folder, 10_000, timeout=600)
    assert int(out) == 10_000
    for name in ("00000.mmkv", "09999.mmkv"):         # spot checks; all pass _check at teardown
        assert (folder / name).stat().st_size > 0


MANY_HANDLES = PRELUDE + """
path, count = sys.argv[1], int(sys.argv[2])
with mmkv.open(path, "n") as d:
    d[b"k"] = b"v"
handles = [mmkv.open(path, "w") for _ in range(count)]
process_still_works()
for i, h in enumerate(handles):
    assert h[b"k"] == b"v"
handles[-1][b"last"] = b"written through the last handle"
assert handles[0][b"last"] == b"written through the last handle"
handles[len(handles) // 2].compact()
assert all(h[b"k"] == b"v" for h in handles[::997])
for h in handles:
    h.close()
with mmkv.open(path, "w") as d:
    d._check()
print(len(handles))
"""


@pytest.mark.slow
def test_twenty_thousand_handles_on_one_store_then_allocate_and_start_thread(tmp_path):
    """"A process can hold ... 20,000 handles on one store, at once; a handle costs address
    space in proportion to the store's size, not a fixed large range.\""""
    out = _script.run(MANY_HANDLES, tmp_path / "s.mmkv", 20_000, timeout=600)
    assert int(out) == 20_000
