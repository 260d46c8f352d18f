"""A signal handler that uses the store while the interrupted code is inside a call.

API.md "Threads, signals and fork": "A signal handler may use the store (read, write, `pop`,
`lock()`), including while the interrupted code is inside a call: every call returns its own
result, never bytes of another call."  SIGALRM fires every 0.1 ms (setitimer) while the main
loop reads and writes; the body runs in its own interpreter with a deadline (tests/_script.py).
"""
import json

import pytest

import _script

REENTRANT = """
import json, signal, sys
import mmkv

path, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = mmkv.open(path, "n")
A, B, C = b"a" * 50, b"B" * 70 + b"!", b"c" * 9000      # lengths and bytes all differ
d[b"a"], d[b"b"] = A, B
state = {"calls": 0, "c": None, "bad": [], "incr": 0}

def handler(signum, frame):
    # Python runs a handler again inside itself when the signal comes back meanwhile; the
    # model below (state["c"] follows the key) needs one handler at a time, so a nested one
    # only counts itself
    if state.get("inside"):
        state["nested"] = state.get("nested", 0) + 1
        return
    state["inside"] = True
    try:
        _handle()
    finally:
        state["inside"] = False

def _handle():
    state["calls"] += 1
    if mode == "get":
        v = d.get(b"b")
        if v != B:
            state["bad"].append(("handler get", v[:80] if v else v))
        return
    with d.lock() if state["calls"] % 7 == 0 else _nothing():
        if state["c"] is None:
            d[b"c"] = C
            state["c"] = C
        else:
            v = d.pop(b"c", None)
            if v != C:
                state["bad"].append(("handler pop", v[:80] if v else v))
            state["c"] = None
        v = d.get(b"b")
        if v != B:
            state["bad"].append(("handler get", v[:80] if v else v))

class _nothing:
    def __enter__(self): pass
    def __exit__(self, *exc): pass

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
bad_main = 0
sample = []
for i in range(rounds):
    v = d[b"a"]
    if v != A:
        bad_main += 1
        if len(sample) < 5:
            sample.append(repr(v[:80]))
    if mode != "get" and i % 500 == 0:
        d[b"m"] = b"%d" % i
        if d[b"m"] != b"%d" % i:
            bad_main += 1
        state["incr"] += 1
        if d.incr(b"n") != state["incr"]:
            bad_main += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_DFL)
final = dict(d.items())
want = {b"a": A, b"b": B}
if mode != "get":
    want[b"m"] = b"%d" % (500 * ((rounds - 1) // 500))
    want[b"n"] = b"%d" % state["incr"]
    if state["c"] is not None:
        want[b"c"] = C
lost = sorted(repr(k) for k in set(want) - set(final))
wrong = sorted(repr(k) for k in want if k in final and final[k] != want[k])
extra = sorted(repr(k) for k in set(final) - set(want))
d.close()
with mmkv.open(path, "w") as e:
    e._check()
print(json.dumps({"calls": state["calls"], "bad_main": bad_main, "sample": sample,
                  "bad_handler": [repr(x) for x in state["bad"][:5]],
                  "bad_handler_count": len(state["bad"]), "lost": lost, "wrong": wrong,
                  "extra": extra}))
"""


@pytest.mark.parametrize("mode", ["get", "write"])
def test_signal_handler_using_store_mid_call_every_call_returns_its_own_result(tmp_path, mode):
    """"every call returns its own result, never bytes of another call" (handler: get; or
    set, pop, get and lock(); main loop: 300,000 reads of one key, writes and incr)."""
    out = _script.run(REENTRANT, tmp_path / "s.mmkv", mode, 300_000, timeout=300)
    r = json.loads(out)
    assert r["calls"] >= 100, f"too few signals arrived to test anything: {r}"
    assert r["bad_main"] == 0, f"main loop got another call's bytes: {r}"
    assert r["bad_handler_count"] == 0, f"handler got another call's bytes: {r}"
    assert not r["lost"] and not r["wrong"] and not r["extra"], f"store content wrong: {r}"
