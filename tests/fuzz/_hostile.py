"""Damaged and hostile store files: building the variants, and the child that exercises them.

The parent (test_hostile.py) builds a few valid base stores, describes each damaged variant
as a list of byte operations on a base (so a variant is a few hundred bytes of JSON and can
be rebuilt anywhere), and runs batches of variants in child interpreters (`python
_hostile.py JOB.json`).  The child applies the operations, then opens, reads, checks, writes
and salvages each variant, and records per variant whether every answer was either
mmkv.error or valid data (a value that was written for that key).  It writes a progress line
before every step, so when a variant kills the child with a signal the parent knows which
variant and which step did it.  Nothing here imports mmkv at module level.
"""

import json
import os
import random
import shutil
import struct
import sys
import traceback

# ---- the file format (native/format.h) ----

PAGE = 4096
ARENA = 8192
REC_HDR = 40
SLOTS_OFF = 64
TIB = 1 << 40
U64 = (1 << 64) - 1

HDR = {  # the mutable header words, by byte offset
    "table_desc": 128, "tail": 136, "file_size": 144, "state": 152, "count": 160,
    "garbage": 168, "seq": 176, "epoch": 184, "table_used": 192, "synced_tail": 200,
    "dirty": 208, "compact_tag": 232, "intent": 256, "i_reserve_off": 264,
    "i_reserve_len": 272, "i_slot_off": 280, "i_new_w": 288, "i_new_tail": 296,
    "i_new_count": 304, "i_new_garbage": 312, "i_new_seq": 320, "i_new_used": 328,
    "i_new_desc": 336,
}
BOOT_ID_OFF = 216
HDR_LEN = 344
PUT, DEL, TABLE, PAD, CLEAR = 1, 2, 3, 4, 5


def crc32c(data, crc=0):
    """CRC32C (Castagnoli), as format.c computes it: a hostile file can carry valid CRCs."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


IMMUTABLE = {"version": (8, "<I"), "page_size": (12, "<I"), "sipkey": (32, "16s"),
             "max_key_len": (56, "<I"), "flags": (60, "<I"), "max_value_len": (64, "<Q")}
HDR_CRC_OFF = 124


def u64(data, off):
    return struct.unpack_from("<Q", data, off)[0]


def rec_len(typ, klen, vlen):
    body = klen + vlen if typ in (PUT, DEL) else vlen
    return (REC_HDR + body + 7) & ~7


class Layout:
    """Where things are in a valid store file: header words, the table, the records."""

    def __init__(self, data):
        self.size = len(data)
        self.words = {name: u64(data, off) for name, off in HDR.items()}
        desc = self.words["table_desc"]
        self.table_off = desc & ~(PAGE - 1)
        self.table_lg = desc & 63
        self.cap = 1 << self.table_lg
        self.slots_off = self.table_off + SLOTS_OFF
        self.tail = self.words["tail"]
        self.file_size = self.words["file_size"]
        self.records = []          # (off, type, klen, vlen, len)
        off = ARENA
        while off < self.tail:
            _crc, typ, _fl, _rsv, klen, vlen = struct.unpack_from("<IBBHII", data, off)
            length = rec_len(typ, klen, vlen)
            self.records.append((off, typ, klen, vlen, length))
            off += length
        self.live = [(i, u64(data, self.slots_off + 8 * i)) for i in range(self.cap)
                     if u64(data, self.slots_off + 8 * i) > 1]
        self.puts = [r for r in self.records if r[1] == PUT]


# ---- the base stores ----

def _value(i, version):
    return (b"value-%d-%d-" % (i, version)) * (i % 9) + bytes([i % 256])


def build_base(path, kind):
    """Write a valid store of one `kind` at path; return its history {key: [values]}: every
    value ever written for every key, which is what a damaged file may still return."""
    import mmkv
    history = {}

    def put(d, key, value):
        d[key] = value
        history.setdefault(key, [])
        if value not in history[key]:
            history[key].append(value)

    with mmkv.open(path, "n", initial_capacity=16, auto_compact=False) as d:
        for i in range(160):
            put(d, b"key-%03d" % i, _value(i, 0))
        for i in range(0, 160, 3):
            put(d, b"key-%03d" % i, _value(i, 1))
        for i in range(0, 160, 5):
            del d[b"key-%03d" % i]
        put(d, b"", b"the empty key")
        put(d, b"\x00\xff binary \x01", b"")
        put(d, b"L" * 600, b"long key")
        put(d, b"big", bytes(range(256)) * 80)           # a record over several pages
        if kind == "cleared":
            d.clear()
            for i in range(40):
                put(d, b"after-clear-%d" % i, _value(i, 2))
        if kind == "compacted":
            d.compact()
            for i in range(20):
                put(d, b"key-%03d" % i, _value(i, 3))
    return history


BASE_KINDS = ("grown", "compacted", "cleared")


def build_bases(folder):
    """{kind: (path, history, bytes)} for every base kind, built in folder."""
    bases = {}
    for kind in BASE_KINDS:
        path = os.path.join(folder, "base-%s.mmkv" % kind)
        history = build_base(path, kind)
        with open(path, "rb") as f:
            bases[kind] = (path, history, f.read())
    return bases


# ---- variants: byte operations on a base ----

def apply_ops(data, ops):
    """Apply in-memory ops to a copy of data; return (bytes, size to truncate the written
    file to afterwards or None).  Ops (JSON lists):
      ["xor", off, mask]   ["u64", off, value]   ["u32", off, value]   ["bytes", off, hex]
      ["zero", off, len]   ["fill64", off, count, value]   ["trunc", n]
      ["append", hex]      ["append_rand", seed, n]   ["append_fill", byte, n]
      ["sparse", size]     (after writing: os.truncate to size; a hole, never written)
      ["recrc"]            recompute the immutable header's CRC (a forged header)"""
    buf = bytearray(data)
    sparse = None
    for op in ops:
        kind = op[0]
        if kind == "xor":
            if op[1] < len(buf):
                buf[op[1]] ^= op[2]
        elif kind in ("u64", "u32"):
            fmt, width = ("<Q", 8) if kind == "u64" else ("<I", 4)
            if op[1] + width <= len(buf):
                struct.pack_into(fmt, buf, op[1], op[2] & ((1 << (8 * width)) - 1))
        elif kind == "bytes":
            raw = bytes.fromhex(op[2])
            buf[op[1]:op[1] + len(raw)] = raw
        elif kind == "zero":
            end = min(len(buf), op[1] + op[2])
            if op[1] < end:
                buf[op[1]:end] = bytes(end - op[1])
        elif kind == "fill64":
            for i in range(op[2]):
                if op[1] + 8 * i + 8 <= len(buf):
                    struct.pack_into("<Q", buf, op[1] + 8 * i, op[3] & U64)
        elif kind == "trunc":
            del buf[op[1]:]
        elif kind == "append":
            buf += bytes.fromhex(op[1])
        elif kind == "append_rand":
            buf += random.Random(op[1]).randbytes(op[2])
        elif kind == "append_fill":
            buf += bytes([op[1]]) * op[2]
        elif kind == "sparse":
            sparse = op[1]
        elif kind == "recrc":
            struct.pack_into("<I", buf, HDR_CRC_OFF, crc32c(bytes(buf[:HDR_CRC_OFF])))
        else:
            raise ValueError("unknown op %r" % (op,))
    return bytes(buf), sparse


def write_variant(path, data, ops):
    """Write base `data` with `ops` applied to path (replacing whatever is there)."""
    out, sparse = apply_ops(data, ops)
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(out)
    if sparse is not None:
        os.truncate(path, sparse)
    return out


def power_loss_ops():
    """Mark the file dirty, written under another boot: a read-write opener that finds
    itself alone runs the recovery scan over the log (recover.c) instead of trusting it."""
    return [["u64", HDR["dirty"], 1], ["bytes", BOOT_ID_OFF, "00" * 16]]


# ---- the child: exercise every variant, report what happened ----

MAX_KEYS = 200000       # a hostile table may hold up to 2^28 slots; never list more than this


class Variant:
    """One variant being exercised: its allowed values and what went wrong."""

    def __init__(self, spec, history, step=None):
        self.spec = spec
        self.step = step or (lambda what: None)
        self.allowed = {k: set(vs) for k, vs in history.items()} if history is not None else None
        self.violations = []
        self.outcomes = []

    def allow(self, key, value):
        if self.allowed is not None:
            self.allowed.setdefault(key, set()).add(value)

    def bad(self, what):
        self.violations.append(what)

    def key_ok(self, key, where):
        if self.allowed is not None and key not in self.allowed:
            self.bad("%s: key %r was never written" % (where, key[:80]))

    def value_ok(self, key, value, where):
        if self.allowed is None:
            return
        if not isinstance(value, bytes):
            self.bad("%s: %r returned %r, not bytes" % (where, key[:80], type(value)))
        elif key not in self.allowed:
            self.bad("%s: key %r was never written (value %r)" % (where, key[:80], value[:40]))
        elif value not in self.allowed[key]:
            self.bad("%s: %r gave %r, never written for that key" % (where, key[:80], value[:60]))

    def attempt(self, where, fn, *args, allowed=(), mark=True):
        """Call fn(*args): (True, result), or (False, exc) for mmkv.error and the exception
        types in `allowed`; any other exception is a violation.  `mark`: record the step
        first, so that a signal or a hang inside fn is pinned on it."""
        import mmkv
        if mark:
            self.step(where)
        try:
            return True, fn(*args)
        except (mmkv.error, *allowed) as exc:
            self.outcomes.append("%s: %s" % (where, type(exc).__name__))
            return False, exc
        except Exception:   # noqa: BLE001 - anything else breaks the contract
            self.bad("%s raised a non-mmkv exception:\n%s" % (where, traceback.format_exc()))
            return False, None


def _iterate(d):
    keys = []
    for key in d:
        keys.append(key)
        if len(keys) >= MAX_KEYS:
            break
    return keys


def _items(d):
    out = []
    for kv in d.items():
        out.append(kv)
        if len(out) >= MAX_KEYS:
            break
    return out


def exercise_reads(var, d, where):
    """len, iterate, get every key ever written (and absent ones), items, stats, check."""
    ok, n = var.attempt(where + " len", len, d)
    if ok and (not isinstance(n, int) or n < 0):
        var.bad("%s len: %r" % (where, n))
    ok_it, keys = var.attempt(where + " iterate", _iterate, d)
    if ok_it:
        for key in keys:
            var.key_ok(key, where + " iterate")
        if len(set(keys)) != len(keys):
            var.bad("%s iterate: a key was yielded twice" % where)
    probes = list(var.allowed or ()) + [b"absent-key", b"key-999", b"x" * 70000]
    if ok_it:
        probes += keys[:1000]
    var.step(where + " get and contains, every key")
    for key in probes:
        ok, value = var.attempt(where + " get", d.get, key, mark=False)
        if ok and value is not None:
            var.value_ok(key, value, where + " get")
        ok, present = var.attempt(where + " contains", d.__contains__, key, mark=False)
        if ok and not isinstance(present, bool):
            var.bad("%s contains: %r" % (where, present))
    ok, items = var.attempt(where + " items", _items, d)
    if ok:
        for key, value in items:
            var.value_ok(key, value, where + " items")
    ok, stats = var.attempt(where + " stats", d.stats)
    if ok and not isinstance(stats, dict):
        var.bad("%s stats: %r" % (where, stats))
    ok, report = var.attempt(where + " _check", d._check)
    if ok and ok_it:
        # the check passed: the structure is sound, so the count must be what iteration saw
        ok_n, n = var.attempt(where + " len", len, d)
        if ok_n and n != len(keys) and len(keys) < MAX_KEYS:
            var.bad("%s: _check() passed (%r) but len() %d != %d keys iterated"
                    % (where, report, n, len(keys)))
    return ok_it and keys or []


LIMIT = (ValueError,)    # a key or value over the store's limits (a forged header may set them)


def exercise_writes(var, d, keys, where):
    """A few writes of every kind; a write that returned must be read back."""
    probe, pval = b"__probe__", b"P" * 37
    ok, _ = var.attempt(where + " put", d.__setitem__, probe, pval, allowed=LIMIT)
    if ok:
        var.allow(probe, pval)
        ok, got = var.attempt(where + " get-back", d.get, probe)
        if ok and got != pval:
            var.bad("%s: put returned but get gives %r" % (where, got))
    if keys:
        var.allow(keys[0], b"overwritten")
        var.attempt(where + " overwrite", d.__setitem__, keys[0], b"overwritten", allowed=LIMIT)
    if len(keys) > 1:
        var.attempt(where + " delete", d.__delitem__, keys[1], allowed=(KeyError,))
    if len(keys) > 2:
        ok, value = var.attempt(where + " pop", d.pop, keys[2], None)
        if ok and value is not None:
            var.value_ok(keys[2], value, where + " pop")
    var.allow(b"__default__", b"D")
    ok, value = var.attempt(where + " setdefault", d.setdefault, b"__default__", b"D",
                            allowed=LIMIT)
    if ok:
        var.value_ok(b"__default__", value, where + " setdefault")
    ok, n = var.attempt(where + " incr", d.incr, b"__counter__", 5, allowed=(ValueError,))
    var.allow(b"__counter__", b"5")
    var.allow(probe, b"swapped")
    var.attempt(where + " cas", d.compare_and_set, probe, pval, b"swapped", allowed=LIMIT)
    ok, kv = var.attempt(where + " popitem", d.popitem, allowed=(KeyError,))
    if ok:
        var.value_ok(kv[0], kv[1], where + " popitem")
    var.attempt(where + " sync", d.sync)


def salvage(var, path, where):
    """Walk the file with the core's salvage API; every record it yields must be valid."""
    from mmkv._core import ffi, lib
    hp = ffi.new("mmkv_salvage **")
    rc = lib.mmkv_salvage_open(os.fsencode(path), hp)
    if rc < 0:
        var.outcomes.append("%s open: %d" % (where, rc))
        return
    h = hp[0]
    cap = 1 << 20
    buf = ffi.new("char[]", cap)
    items = ffi.new("struct mmkv_salvage_item[]", 256)
    n, need = ffi.new("size_t *"), ffi.new("size_t *")
    try:
        for _ in range(1000000):
            rc = lib.mmkv_salvage_next(h, buf, cap, items, 256, n, need)
            if rc == lib.MMKV_EBUFSIZE:
                if need[0] <= cap or need[0] > (1 << 31):
                    var.bad("%s: EBUFSIZE with need %d (cap %d)" % (where, need[0], cap))
                    return
                cap = need[0]
                buf = ffi.new("char[]", cap)
                continue
            if rc < 0:
                var.outcomes.append("%s next: %d" % (where, rc))
                return
            for i in range(n[0]):
                it = items[i]
                if it.type not in (PUT, DEL, CLEAR):
                    var.bad("%s: item of type %d" % (where, it.type))
                    continue
                if it.data_off + it.klen + it.vlen > cap:
                    var.bad("%s: item outside the buffer" % where)
                    continue
                raw = ffi.unpack(buf + it.data_off, it.klen + it.vlen)
                key, value = raw[:it.klen], raw[it.klen:]
                if it.type == PUT:
                    var.value_ok(key, value, where)
                elif it.type == DEL:
                    var.key_ok(key, where)
            if rc == 1:
                break
        valid, skipped = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.mmkv_salvage_counts(h, valid, skipped)
    finally:
        lib.mmkv_salvage_close(h)


def _open(var, path, flag, where):
    import mmkv
    return var.attempt(where + " open", mmkv.open, path, flag)


def _close(var, d, where):
    var.attempt(where + " close", d.close)


def run_variant(spec, base, history, workdir, step):
    """Exercise one variant; `step(name)` records progress before each step."""
    var = Variant(spec, history, step)
    path = os.path.join(workdir, "v.mmkv")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    ops = spec["ops"]
    step("write")
    image = write_variant(path, base, ops)
    sparse = any(op[0] == "sparse" for op in ops)
    if spec.get("salvage", True):
        step("salvage")
        salvage(var, path, "salvage")
    step("open r")
    ok, d = _open(var, path, "r", "r")
    if ok:
        exercise_reads(var, d, "r")
        step("write on r")
        ok_w, _ = var.attempt("r write", d.__setitem__, b"__probe__", b"no", allowed=LIMIT)
        if ok_w:
            var.bad("r: a write on a read-only handle succeeded")
        _close(var, d, "r")
    if not sparse:
        with open(path, "rb") as f:
            if f.read() != image:
                var.bad("r: the read-only handle modified the file")
    flag = spec.get("flag", "w")
    step("open " + flag)
    ok, d = _open(var, path, flag, flag)
    if ok:
        keys = exercise_reads(var, d, flag)
        step("writes")
        exercise_writes(var, d, keys, flag)
        if spec.get("compact"):
            step("compact")
            var.attempt(flag + " compact", d.compact)
        step("check after writes")
        var.attempt(flag + " _check after writes", d._check)
        _close(var, d, flag)
        step("reopen r")
        ok, d = _open(var, path, "r", "reopen r")
        if ok:
            exercise_reads(var, d, "reopen r")
            _close(var, d, "reopen r")
        if spec.get("clear"):
            step("clear")
            ok, d = _open(var, path, "w", "clear")
            if ok:
                ok_c, _ = var.attempt("clear", d.clear)
                ok_n, n = var.attempt("clear len", len, d)
                if ok_c and ok_n and n != 0:
                    var.bad("clear returned but len() is %d" % n)
                _close(var, d, "clear")
    if spec.get("check_blocks"):
        blocks = os.stat(path).st_blocks * 512 if os.path.exists(path) else 0
        if blocks > spec["check_blocks"]:
            var.bad("the core allocated %d bytes of a sparse file (limit %d): it wrote over "
                    "the hole" % (blocks, spec["check_blocks"]))
    shutil.rmtree(workdir, ignore_errors=True)
    return var


def child_main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    bases = {}
    for kind, (path, history) in job["bases"].items():
        with open(path, "rb") as f:
            data = f.read()
        hist = None if history is None else {bytes.fromhex(k): [bytes.fromhex(v) for v in vs]
                                               for k, vs in history.items()}
        bases[kind] = (data, hist)
    progress = os.open(job["progress"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    results = os.open(job["result"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for spec in job["variants"]:
        name = spec["name"]

        def step(what, name=name):
            os.write(progress, ("S %s\t%s\n" % (name, what)).encode())

        data, history = bases[spec["base"]]
        var = run_variant(spec, data, history, job["workdir"], step)
        # one line per variant as soon as it is done: a later crash loses nothing
        line = {"name": name, "violations": var.violations, "outcomes": var.outcomes[:20]}
        os.write(results, (json.dumps(line) + "\n").encode())
        os.write(progress, ("D %s\n" % name).encode())
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
