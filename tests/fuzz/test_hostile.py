"""Hostile files: damaged variants of valid stores, each opened, read, checked, written and
salvaged in a child interpreter that must exit normally.

API.md: "A damaged or hostile file never crashes the interpreter: opening or reading it gives
`mmkv.error` (`mmkv.CorruptError` for damage found), or the valid data only."  Valid data
means: every key yielded was written to the original store, and every value returned is one
that was written for that key (the history of the base store is passed to the child).
Variants run in batches (one child per batch, two children at a time); a child killed by a
signal or hung names the variant and the step, and the rest of its batch runs in a new child,
so one run reports every crashing variant.  The bytes of each are saved for the report.

Each base store gets a random SipHash key, so where records and slots land differs from run
to run; the variants are defined relative to the layout parsed from each base (seeded choices
of region and value), and a failing variant's exact bytes are saved beside its JSON spec.
MMKV_HOSTILE_REPORT=FILE appends every crash and violation found, as JSON lines.
"""
import concurrent.futures
import json
import os
import random
import stat
import struct
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _hostile as H  # noqa: E402

pytestmark = pytest.mark.crash

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "_hostile.py")
CORPUS = os.path.join(HERE, "corpus")
PER_CHILD = 40
CHILD_TIMEOUT = 30          # a batch takes 1-3 s; longer is a hang


# ---- fixtures: the base stores, and the runner ----

@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """{kind: (path, history, bytes, Layout)} for every base kind."""
    folder = tmp_path_factory.mktemp("bases")
    return {kind: (path, history, data, H.Layout(data))
            for kind, (path, history, data) in H.build_bases(str(folder)).items()}


def _history_json(history):
    if history is None:
        return None
    return {k.hex(): [v.hex() for v in vs] for k, vs in history.items()}


class Runner:
    """Runs variants in child interpreters and gathers violations and crashes."""

    def __init__(self, bases, folder, timeout=CHILD_TIMEOUT):
        self.bases = bases
        self.folder = folder
        self.timeout = timeout

    def _child(self, batch, tag):
        job = {
            "bases": {kind: [b[0], _history_json(b[1])] for kind, b in self.bases.items()},
            "variants": batch,
            "workdir": os.path.join(self.folder, "work-" + tag),
            "progress": os.path.join(self.folder, "progress-" + tag),
            "result": os.path.join(self.folder, "result-%s.jsonl" % tag),
        }
        for name in ("progress", "result"):
            if os.path.exists(job[name]):
                os.unlink(job[name])
        job_path = os.path.join(self.folder, "job-%s.json" % tag)
        with open(job_path, "w") as f:
            json.dump(job, f)
        try:
            proc = subprocess.run([sys.executable, CHILD, job_path], capture_output=True,
                                  timeout=self.timeout, cwd=self.folder)
            rc, err = proc.returncode, proc.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            rc = "hung (killed after %ds)" % self.timeout
            err = (exc.stderr or b"").decode(errors="replace")
        started, done = {}, set()
        if os.path.exists(job["progress"]):
            with open(job["progress"]) as f:
                for line in f:
                    if line.startswith("S "):
                        name, _, what = line[2:].rstrip("\n").partition("\t")
                        started[name] = what
                    elif line.startswith("D "):
                        done.add(line[2:].strip())
        results = {}
        if os.path.exists(job["result"]):
            with open(job["result"]) as f:
                for line in f:
                    res = json.loads(line)
                    results[res["name"]] = res
        return rc, err, started, done, results

    def _run_chunk(self, chunk, tag):
        violations, crashes = {}, []
        pending, round_ = list(chunk), 0
        while pending:
            batch, pending = pending[:PER_CHILD], pending[PER_CHILD:]
            round_ += 1
            rc, err, started, done, results = self._child(batch, "%s-%d" % (tag, round_))
            for name, res in results.items():
                if res["violations"]:
                    violations[name] = res["violations"]
            if rc == 0 and len(results) == len(batch):
                continue
            culprit = next((s for s in batch if s["name"] in started and s["name"] not in done),
                           None)
            if culprit is None:
                crashes.append(("<harness>", "", rc, err[-3000:], None))
                continue
            at = batch.index(culprit)
            saved = self._save(culprit)
            crashes.append((culprit["name"], started[culprit["name"]], rc, err[-3000:], saved))
            pending = batch[at + 1:] + pending
        return violations, crashes

    def _save(self, spec):
        path = os.path.join(self.folder, "crash-%s.mmkv" % spec["name"].replace("/", "_"))
        ops = [op for op in spec["ops"] if op[0] != "sparse"]      # the JSON says how big
        H.write_variant(path, self.bases[spec["base"]][2], ops)
        with open(path + ".json", "w") as f:
            json.dump(spec, f)
        return path

    def run(self, variants):
        """Run every variant; fail the test with every crash and violation found."""
        names = [v["name"] for v in variants]
        assert len(set(names)) == len(names), "variant names must be unique"
        chunks = [variants[i::2] for i in range(2)]
        violations, crashes = {}, []
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for v, c in pool.map(self._run_chunk, chunks, ["a", "b"]):
                violations.update(v)
                crashes += c
        print("%d hostile variants exercised, %d crashed, %d with violations"
              % (len(variants), len(crashes), len(violations)))
        dump = os.environ.get("MMKV_HOSTILE_REPORT")
        if dump and (crashes or violations):     # every finding, for whoever fixes them
            with open(dump, "a") as f:
                f.write(json.dumps({"crashes": crashes, "violations": violations}) + "\n")
        lines = []
        for name, step, rc, err, saved in crashes:
            lines.append("CRASH %s at step %r: returncode %s (saved %s)\n%s"
                         % (name, step, rc, saved, err[-1500:]))
        for name, what in sorted(violations.items())[:25]:
            lines.append("VIOLATION %s:\n  %s" % (name, "\n  ".join(w[:600] for w in what[:4])))
        assert not crashes and not violations, (
            "%d of %d variants crashed or hung, %d broke the contract:\n%s"
            % (len(crashes), len(variants), len(violations), "\n".join(lines)))


@pytest.fixture
def runner(bases, tmp_path):
    return Runner(bases, str(tmp_path))


def variant(name, base, ops, seed=0, **extra):
    """A variant spec: alternating "w"/"c", and sometimes compact and clear after the writes."""
    spec = {"name": name, "base": base, "ops": ops, "flag": "c" if seed % 2 else "w",
            "compact": seed % 7 == 3, "clear": seed % 5 == 1}
    spec.update(extra)
    return spec


def _with_power_loss(spec):
    """The same damage, found by a read-write opener after a (simulated) reboot: the
    recovery scan walks the damaged log."""
    out = dict(spec, name=spec["name"] + "+powerloss", ops=spec["ops"] + H.power_loss_ops())
    return out


# ---- the variants ----

def _flip_variants(bases, count):
    out = []
    for seed in range(count):
        rng = random.Random(seed)
        kind = H.BASE_KINDS[seed % 3]
        lay = bases[kind][3]
        region = seed % 5
        ops = []
        for _ in range(rng.choice([1, 1, 2, 3, 6])):
            if region == 0:                               # mutable header words
                off = rng.randrange(128, H.HDR_LEN)
            elif region == 1:                             # a live slot
                idx, _w = rng.choice(lay.live)
                off = lay.slots_off + 8 * idx + rng.randrange(8)
            elif region == 2:                             # a record header
                off = rng.choice(lay.records)[0] + rng.randrange(H.REC_HDR)
            elif region == 3:                             # a key or value
                r = rng.choice([r for r in lay.puts if r[2] + r[3] > 0])
                off = r[0] + H.REC_HDR + rng.randrange(r[2] + r[3])
            else:                                         # anywhere, immutable header included
                off = rng.randrange(lay.size)
            ops.append(["xor", off, rng.choice([1 << rng.randrange(8), rng.randrange(1, 256)])])
        spec = variant("flip-%s-r%d-%d" % (kind, region, seed), kind, ops, seed)
        out.append(_with_power_loss(spec) if seed % 4 == 3 else spec)
    return out


def _truncation_offsets(lay, rng):
    fixed = [0, 1, 8, 123, 124, 127, 128, 136, 200, 343, 344, 1000, 4095, 4096, 4097, 8191,
             8192, 8193, 8232, 8256, lay.slots_off + 8, lay.slots_off + 8 * lay.cap - 1,
             lay.slots_off + 8 * lay.cap, lay.tail - 1, lay.tail, lay.tail + 8,
             lay.size - 4096, lay.size - 1]
    pages = list(range(3 * H.PAGE, lay.size, H.PAGE))
    mids = []
    for off, _t, _k, _v, length in rng.sample(lay.records, 8):
        mids += [off + 1, off + H.REC_HDR - 1, off + H.REC_HDR, off + length - 8]
    return sorted(set(x for x in fixed + pages + mids if 0 <= x < lay.size))


def _zero_variants(bases, seeds):
    out = []
    lay = bases["grown"][3]
    for page in range(0, lay.size, H.PAGE):             # every page of the grown base
        out.append(variant("zero-page-%d" % page, "grown", [["zero", page, H.PAGE]],
                           page // H.PAGE))
    for seed in range(seeds):
        rng = random.Random(1000 + seed)
        kind = H.BASE_KINDS[seed % 3]
        lay = bases[kind][3]
        start = rng.choice([rng.randrange(H.HDR_LEN), rng.randrange(lay.table_off, lay.tail),
                            rng.choice(lay.records)[0], rng.randrange(lay.size)])
        length = rng.choice([1, 8, 40, 64, 512, 4096, 9000, 30000])
        spec = variant("zero-%s-%d-%d+%d" % (kind, seed, start, length), kind,
                       [["zero", start, length]], seed)
        out.append(_with_power_loss(spec) if seed % 3 == 2 else spec)
    return out


def _geometry_values(lay):
    return sorted(set([0, 1, 7, 8, 4095, 4096, 8191, 8192, 8193, lay.tail - 8, lay.tail - 1,
                       lay.tail + 8, lay.size - 8, lay.size, lay.size + 4096, 1 << 31, 1 << 32,
                       1 << 40, 1 << 62, 1 << 63, H.U64, H.U64 - 4095, H.U64 - 7]))


def _desc_values(lay):
    offs = [0, 4096, 8192, lay.table_off, lay.table_off + 4096, lay.tail & ~4095,
            lay.size - 4096, lay.size, 1 << 47, (1 << 64) - 4096, (1 << 64) - (1 << 20),
            (1 << 64) - (1 << 31)]
    lgs = [0, 4, lay.table_lg, 28, 29, 63]
    # offsets whose table end wraps past 2^64 to a small number
    wraps = [((1 << 64) - 4096) | 10, ((1 << 64) - 8192) | 12, ((1 << 64) - (1 << 28)) | 25]
    return [(o | g) & H.U64 for o in offs for g in lgs] + wraps


def _no_empty_variants(bases, kind):
    lay = bases[kind][3]
    data = bases[kind][2]
    live = [w for _i, w in lay.live]
    cycle = [live[i % len(live)] for i in range(lay.cap)]
    table_word = ((lay.table_off >> 3) << 20)
    dels = [r for r in lay.records if r[1] == H.DEL]
    del_word = (dels[0][0] >> 3) << 20 | (live[0] & 0xFFFFF) if dels else 2
    fills = {"tomb": [1] * lay.cap, "one-live": [live[0]] * lay.cap, "cycle-live": cycle,
             "all-ones": [H.U64] * lay.cap, "table-record": [table_word] * lay.cap,
             "del-record": [del_word] * lay.cap,
             "live-then-tomb": [w if w > 1 else 1 for w in
                                struct.unpack_from("<%dQ" % lay.cap, data, lay.slots_off)]}
    out = []
    for n, (name, words) in enumerate(sorted(fills.items())):
        raw = struct.pack("<%dQ" % lay.cap, *[w & H.U64 for w in words]).hex()
        for counts in ("orig", "low", "full"):
            ops = [["bytes", lay.slots_off, raw]]
            if counts == "low":
                ops += [["u64", H.HDR["count"], 1], ["u64", H.HDR["table_used"], 1]]
            elif counts == "full":
                ops += [["u64", H.HDR["count"], lay.cap], ["u64", H.HDR["table_used"], lay.cap]]
            out.append(variant("noempty-%s-%s-%s" % (kind, name, counts), kind, ops, n, clear=True))
    return out


def _slot_variants(bases, kind):
    lay = bases[kind][3]
    rec_by_type = {}
    for r in lay.records:
        rec_by_type.setdefault(r[1], []).append(r)
    bad_offs = {"zero": 0, "eight": 8, "header": 128, "lockpage": 4096, "below-arena": 8184,
                "table": lay.table_off, "slots": lay.slots_off, "tail": lay.tail,
                "tail-8": lay.tail - 8, "size-8": lay.size - 8, "size": lay.size,
                "size+8": lay.size + 8, "1tib": 1 << 40, "max": ((1 << 44) - 1) << 3,
                "mid-record": lay.puts[3][0] + 8, "last-byte": lay.size - 40}
    for typ, name in ((H.DEL, "del"), (H.TABLE, "old-table"), (H.PAD, "pad"), (H.CLEAR, "clear")):
        if rec_by_type.get(typ):
            bad_offs[name + "-record"] = rec_by_type[typ][0][0]
    out = []
    for n, (name, off) in enumerate(sorted(bad_offs.items())):
        ops = [["u64", lay.slots_off + 8 * i, ((off >> 3) << 20) | (w & 0xFFFFF)]
               for i, w in lay.live]
        out.append(variant("slots-%s-%s" % (kind, name), kind, ops, n))
    for seed in range(8):
        rng = random.Random(seed)
        ops = [["u64", lay.slots_off + 8 * i, (rng.getrandbits(44) << 20) | (w & 0xFFFFF)]
               for i, w in lay.live]
        ops += [["u64", lay.slots_off + 8 * rng.randrange(lay.cap), rng.getrandbits(64)]
                for _ in range(20)]
        out.append(variant("slots-%s-random-%d" % (kind, seed), kind, ops, seed))
    return out


def _intent_variants(bases, count):
    out = []
    for seed in range(count):
        rng = random.Random(5000 + seed)
        kind = H.BASE_KINDS[seed % 3]
        lay = bases[kind][3]
        slot = lay.slots_off + 8 * rng.randrange(lay.cap)
        pool = [0, 8, 4096, 8192, slot, slot + 4, lay.slots_off + 8 * lay.cap, lay.tail,
                lay.tail + 4096, lay.size, lay.size + 8, 1 << 40, H.U64, H.U64 - 4095,
                ((1 << 64) - 4096) | 10, lay.words["table_desc"], (lay.tail & ~4095) | 4,
                ((lay.size - 4096) << 17) | 77]
        ops = [["u64", H.HDR["intent"], rng.choice([1, 2, 3, 3, 2, 4, 1 << 63])]]
        for field in ("i_reserve_off", "i_reserve_len", "i_slot_off", "i_new_w", "i_new_tail",
                      "i_new_count", "i_new_garbage", "i_new_seq", "i_new_used", "i_new_desc"):
            ops.append(["u64", H.HDR[field], rng.choice(pool)])
        spec = variant("intent-%s-%d" % (kind, seed), kind, ops, seed)
        out.append(_with_power_loss(spec) if seed % 5 == 4 else spec)
    return out


def _aimed_intent_variants(bases, kind):
    """A consistent intent of each kind (as a writer that died would leave it) with one
    field made absurd at a time."""
    lay = bases[kind][3]
    w = lay.words
    free = next(i for i in range(lay.cap) if i not in dict(lay.live))
    live_idx, live_word = lay.live[0]
    sane = {"i_reserve_off": lay.tail, "i_reserve_len": 64, "i_slot_off": lay.slots_off + 8 * free,
            "i_new_w": live_word, "i_new_tail": lay.tail, "i_new_count": w["count"],
            "i_new_garbage": w["garbage"], "i_new_seq": w["seq"], "i_new_used": w["table_used"],
            "i_new_desc": w["table_desc"]}
    absurd = [0, 8, 4096, 8191, lay.tail + 4, lay.size - 8, lay.size, lay.size + 8, 1 << 40,
              1 << 63, H.U64, H.U64 - 4095, ((1 << 64) - 4096) | 10, ((1 << 64) - 8192) | 12,
              ((1 << 64) - (1 << 28)) | 25]
    words = [((off >> 3) << 20) | (live_word & 0xFFFFF)
             for off in (0, 4096, lay.table_off, lay.size, lay.size - 8, 1 << 40)]
    fields = {1: ("i_reserve_off", "i_reserve_len"),
              2: ("i_slot_off", "i_new_w", "i_new_tail", "i_new_count"),
              3: ("i_new_desc", "i_new_tail", "i_new_count")}
    out, n = [], 0
    for intent, names in fields.items():
        for field in names:
            for value in (words if field == "i_new_w" else absurd):
                n += 1
                ops = [["u64", H.HDR["intent"], intent]]
                ops += [["u64", H.HDR[f], v] for f, v in sane.items()]
                ops.append(["u64", H.HDR[field], value])
                out.append(variant("aimed-intent%d-%s-%s-%#x" % (intent, kind, field, value),
                                   kind, ops, n))
    return out


def _forged_header_variants(bases):
    """The immutable first 128 bytes changed and their CRC recomputed, as a hostile file
    would: limits, hash key, flags, version and page size."""
    values = {"version": [0, 2, 0xFFFFFFFF], "page_size": [0, 8192, 4095],
              "max_key_len": [0, 1, 5, 599, 16 << 20, (16 << 20) + 1, 0xFFFFFFFF],
              "max_value_len": [0, 1, 10, 1 << 30, (1 << 30) + 1, 1 << 63, H.U64],
              "flags": [1, 0xFFFFFFFF], "sipkey": [bytes(16), b"\xff" * 16]}
    out, n = [], 0
    for kind in ("grown", "compacted"):
        for field, vals in values.items():
            off, fmt = H.IMMUTABLE[field]
            for value in vals:
                n += 1
                raw = struct.pack(fmt, value).hex()
                out.append(variant("forged-%s-%s-%s" % (kind, field, raw), kind,
                                   [["bytes", off, raw], ["recrc"]], n))
    return out


# ---- the tests ----

def test_hostile_random_byte_flips_give_valid_data_or_error(runner, bases):
    """Byte flips in the header, the table, record headers and bodies, anywhere: each
    variant opens with valid data only or raises mmkv.error, and no child dies of a signal."""
    runner.run(_flip_variants(bases, 240))


def test_hostile_truncations_at_every_boundary_give_valid_data_or_error(runner, bases):
    """Truncation inside the header, at page boundaries, mid-record, around the tail."""
    out = []
    for kind in H.BASE_KINDS:
        lay = bases[kind][3]
        offsets = _truncation_offsets(lay, random.Random(kind))
        if kind != "grown":
            offsets = offsets[::2]
        for n, off in enumerate(offsets):
            spec = variant("trunc-%s-%d" % (kind, off), kind, [["trunc", off]], n,
                           flag="c" if off == 0 else ("w" if n % 2 else "c"))
            out.append(spec)
            if kind == "grown" and off >= H.ARENA + H.PAGE:
                out.append(_with_power_loss(spec))
    runner.run(out)


def test_hostile_zeroed_ranges_give_valid_data_or_error(runner, bases):
    """Every page of a store zeroed in turn, and random zeroed ranges in every region."""
    runner.run(_zero_variants(bases, 60))


def test_hostile_appended_garbage_gives_valid_data_or_error(runner, bases):
    """Bytes after the end of the file, also inside file_size and below the tail."""
    out = []
    for kind in H.BASE_KINDS:
        lay = bases[kind][3]
        data = bases[kind][2]
        tails = [["append", data[H.ARENA:H.ARENA + 20000].hex()],           # a copy of records
                 ["append", data[lay.puts[5][0]:lay.puts[5][0] + lay.puts[5][4]].hex() * 3]]
        for n, extra in enumerate([["append_rand", 1, 1], ["append_rand", 2, 7],
                                   ["append_rand", 3, 4096], ["append_rand", 4, 65539],
                                   ["append_fill", 0, 8192], ["append_fill", 255, 8192],
                                   ["append_rand", 5, 1 << 20]] + tails):
            tail = min(lay.size + 8 + n * 4096, lay.size + 4096) & ~7
            out.append(variant("append-%s-%d" % (kind, n), kind, [extra], n))
            # the header claims the garbage: file_size covers it, and the tail too
            claim = [extra, ["u64", H.HDR["file_size"], (lay.size + 4096) & ~4095]]
            out.append(variant("append-claimed-%s-%d" % (kind, n), kind, claim, n + 1))
            out.append(variant("append-tail-%s-%d" % (kind, n), kind,
                               claim + [["u64", H.HDR["tail"], tail]], n))
    runner.run(out)


def test_hostile_absurd_header_geometry_gives_valid_data_or_error(runner, bases):
    """file_size, tail, table_desc, count and every other mutable header word set to zero,
    huge, unaligned and off-by-one values (the immutable part has a CRC; these do not)."""
    out = []
    lay = bases["grown"][3]
    fields = ["tail", "file_size", "state", "count", "garbage", "seq", "epoch", "table_used",
              "synced_tail", "dirty", "compact_tag"]
    n = 0
    for field in fields:
        extra = [2, 3] if field == "state" else []     # RETIRED, and past the last state
        for value in _geometry_values(lay) + extra:
            n += 1
            out.append(variant("geom-%s-%#x" % (field, value), "grown",
                               [["u64", H.HDR[field], value]], n))
    for value in _desc_values(lay):
        n += 1
        out.append(variant("geom-table_desc-%#x" % value, "grown",
                           [["u64", H.HDR["table_desc"], value]], n))
    for value in _geometry_values(lay):
        n += 1
        out.append(variant("geom-tail=size-%#x" % value, "grown",
                           [["u64", H.HDR["tail"], value], ["u64", H.HDR["file_size"], value]], n))
    for field in ("file_size", "synced_tail", "epoch", "seq", "tail", "count"):
        for value in _geometry_values(lay)[::2]:
            n += 1
            out.append(_with_power_loss(variant("geom-%s-%#x" % (field, value), "grown",
                                                [["u64", H.HDR[field], value]], n)))
    runner.run(out)


def test_hostile_pending_intents_with_absurd_fields_give_valid_data_or_error(runner, bases):
    """A writer's intent left in the header (as if it died holding the lock) with offsets,
    slot words and descriptors pointing anywhere: the next opener's roll-forward or
    roll-back must check each before use."""
    runner.run(_intent_variants(bases, 60) + _aimed_intent_variants(bases, "grown")
               + _aimed_intent_variants(bases, "cleared"))


def test_hostile_forged_immutable_header_gives_valid_data_or_error(runner, bases):
    """A header whose CRC is right but whose limits, hash key or version are not ours."""
    runner.run(_forged_header_variants(bases))


def test_hostile_table_without_empty_slot_gives_valid_data_or_error(runner, bases):
    """Every slot TOMB, or live-looking: probe loops are bounded and inserts fail cleanly."""
    runner.run(_no_empty_variants(bases, "grown") + _no_empty_variants(bases, "compacted"))


def test_hostile_slot_descriptors_outside_the_file_give_valid_data_or_error(runner, bases):
    """Slot words (with the key's tag, so lookups follow them) pointing at the header, the
    lock page, the table, mid-record, past the end of the file and far beyond."""
    runner.run(_slot_variants(bases, "grown") + _slot_variants(bases, "cleared"))


def test_hostile_huge_sparse_file_is_not_read_whole(runner, bases):
    """A valid store extended to 1 TiB (a hole), with the header claiming it or not:
    opening, reading, checking and writing take bounded time (the child's timeout) and never
    read the hole whole; a recovery scan after a reboot does not write over it."""
    lay = bases["grown"][3]
    tib = H.TIB
    out = [
        variant("sparse-1tib", "grown", [["sparse", tib]], 0, salvage=False),
        variant("sparse-1tib-file_size", "grown",
                [["u64", H.HDR["file_size"], tib], ["sparse", tib]], 1, salvage=False),
        variant("sparse-1tib-tail", "grown",
                [["u64", H.HDR["file_size"], tib], ["u64", H.HDR["tail"], tib - 8],
                 ["sparse", tib]], 2, salvage=False),
        variant("sparse-1tib-table-at-end", "grown",
                [["u64", H.HDR["file_size"], tib], ["u64", H.HDR["tail"], tib],
                 ["u64", H.HDR["table_desc"], (tib - (1 << 20)) | 10], ["sparse", tib]], 3,
                salvage=False),
        # the power-loss path rewrites the file after the recovered log: a smaller hole, so
        # that a core which zeroes the whole of it fills 256 MiB, not the disk
        variant("sparse-256mib-file_size+powerloss", "grown",
                [["u64", H.HDR["file_size"], 256 << 20], ["sparse", 256 << 20]]
                + H.power_loss_ops(), 4, check_blocks=32 << 20, salvage=False),
        variant("sparse-256mib-file_size-tail+powerloss", "grown",
                [["u64", H.HDR["file_size"], 256 << 20], ["u64", H.HDR["tail"], (256 << 20) - 8],
                 ["sparse", 256 << 20]] + H.power_loss_ops(), 5, check_blocks=32 << 20,
                salvage=False),
    ]
    assert lay.file_size < (256 << 20)
    runner.run(out)


def test_hostile_salvage_of_a_huge_sparse_file_takes_bounded_time(runner, bases):
    """mmkv_salvage_* over a valid store extended to 1 TiB: the walk must not read the hole
    byte by byte (that takes hours); here it must finish within the child's timeout."""
    runner.timeout = 20
    runner.run([variant("salvage-sparse-1tib", "grown", [["sparse", H.TIB]], 0)])


def test_hostile_directory_as_path_is_error(tmp_path):
    """A directory at the path: every flag gives mmkv.error and the directory stays."""
    script = r"""
import os, sys, mmkv
from mmkv._core import ffi, lib
path = sys.argv[1]
out = []
for flag in "rwcn":
    try:
        mmkv.open(path, flag).close()
        out.append(flag + ": opened")
    except mmkv.error as exc:
        out.append(flag + ": error")
hp = ffi.new("mmkv_salvage **")
rc = lib.mmkv_salvage_open(path.encode(), hp)
out.append("salvage: %d" % rc)
if rc == 0:
    lib.mmkv_salvage_close(hp[0])
print(";".join(out))
"""
    folder = tmp_path / "adir"
    folder.mkdir()
    (folder / "inside").write_bytes(b"x")
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "r: error;w: error;c: error;n: error;salvage: %d" % -21
    assert folder.is_dir() and (folder / "inside").read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def _unprivileged():
    """The uid the child switches to: nobody when running as root, else ourselves."""
    return 65534 if os.geteuid() == 0 else None


def test_hostile_path_without_permission_is_error(bases):
    """A store the process may not read, a store it may only read, a directory it may not
    write: "r" works where reading is allowed (valid data only), everything else is
    mmkv.error, in a child running without root."""
    if os.geteuid() != 0 and os.access("/", os.W_OK):
        pytest.skip("cannot drop to a user without permission here")
    folder = tempfile.mkdtemp(prefix="mmkv-perm-", dir="/tmp")
    try:
        os.chmod(folder, 0o755)
        data = bases["grown"][2]
        paths = {}
        for name, mode in (("noread", 0o000 if os.geteuid() else 0o600), ("readonly", 0o444)):
            paths[name] = os.path.join(folder, name + ".mmkv")
            with open(paths[name], "wb") as f:
                f.write(data)
            os.chmod(paths[name], mode)
        locked = os.path.join(folder, "locked")
        os.mkdir(locked)
        os.chmod(locked, 0o555)
        script = os.path.join(folder, "perm_child.py")
        with open(script, "w") as f:
            f.write(_PERM_CHILD)
        history = {k.hex(): [v.hex() for v in vs] for k, vs in bases["grown"][1].items()}
        job = os.path.join(folder, "job.json")
        with open(job, "w") as f:
            json.dump({"paths": paths, "locked": locked, "history": history,
                       "uid": _unprivileged(), "fuzz": HERE}, f)
        os.chmod(job, 0o644)
        proc = subprocess.run([sys.executable, script, job], capture_output=True, timeout=60,
                              cwd=folder)
        assert proc.returncode == 0, proc.stderr.decode()
        report = json.loads(proc.stdout.decode())
        assert report["violations"] == [], report
        assert report["uid"] != 0
        assert report["noread"] == {"r": "error", "w": "error", "c": "error", "salvage": "error"}
        assert report["readonly"]["r"] == "ok"
        assert report["readonly"]["salvage"] == "ok"
        assert {report["readonly"][f] for f in "wcn"} == {"error"}
        assert report["locked"] == {"c": "error", "n": "error", "r": "error"}
        assert sorted(os.listdir(locked)) == []
        with open(paths["readonly"], "rb") as f:
            assert f.read() == data
    finally:
        for root, dirs, _files in os.walk(folder):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


_PERM_CHILD = r"""
import json, os, sys
job = json.load(open(sys.argv[1]))
sys.path.insert(0, job["fuzz"])
import mmkv, mmkv._core
import _hostile as H
from mmkv._core import ffi, lib
if job["uid"] is not None:
    os.setgroups([])
    os.setgid(job["uid"])
    os.setuid(job["uid"])
history = {bytes.fromhex(k): [bytes.fromhex(v) for v in vs] for k, vs in job["history"].items()}
var = H.Variant({"name": "perm"}, history)
report = {"uid": os.geteuid()}

def salvage_outcome(path):
    hp = ffi.new("mmkv_salvage **")
    rc = lib.mmkv_salvage_open(path.encode(), hp)
    if rc < 0:
        return "error"
    lib.mmkv_salvage_close(hp[0])
    H.salvage(var, path, "salvage " + path)
    return "ok"

def outcome(path, flag):
    ok, d = var.attempt("open %s %s" % (flag, path), mmkv.open, path, flag)
    if not ok:
        return "error"
    H.exercise_reads(var, d, "%s %s" % (flag, path))
    d.close()
    return "ok"

for name in ("noread", "readonly"):
    path = job["paths"][name]
    report[name] = {f: outcome(path, f) for f in ("rwc" if name == "noread" else "rwcn")}
    report[name]["salvage"] = salvage_outcome(path)
new = os.path.join(job["locked"], "new.mmkv")
report["locked"] = {f: outcome(new, f) for f in "rcn"}
report["violations"] = var.violations
print(json.dumps(report))
"""


def test_hostile_corpus_files_open_without_crashing(runner, bases):
    """Every reproducer kept in tests/fuzz/corpus (found by these tests or by fuzz_open.c)
    opens, reads, checks, writes and salvages without a signal or a hang, giving mmkv.error
    or valid data.  A file named KIND--*.mmkv was made from the base store KIND, whose
    history says what valid data is; other files are checked for crashes only."""
    files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".mmkv")) \
        if os.path.isdir(CORPUS) else []
    if not files:
        pytest.skip("no corpus files")
    runner.bases = dict(bases)
    out = []
    for n, name in enumerate(files):
        with open(os.path.join(CORPUS, name), "rb") as f:
            data = f.read()
        kind = name.split("--")[0]
        history = bases[kind][1] if kind in bases else None
        key = "corpus:" + name
        runner.bases[key] = (os.path.join(CORPUS, name), history, data, None)
        out.append(variant("corpus-" + name, key, [], n))
    runner.run(out)


_SPECIAL_CHILD = r"""
import os, sys, mmkv
from mmkv._core import ffi, lib
path, what = sys.argv[1], sys.argv[2]
if what == "salvage":
    hp = ffi.new("mmkv_salvage **")
    rc = lib.mmkv_salvage_open(path.encode(), hp)
    if rc == 0:
        lib.mmkv_salvage_close(hp[0])
    print("error" if rc < 0 else "ok")
else:
    try:
        mmkv.open(path, what).close()
        print("ok")
    except mmkv.error:
        print("error")
"""


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_hostile_special_file_as_path_is_error_without_blocking(tmp_path, kind):
    """A FIFO or a character device at the path: every flag and salvage give mmkv.error
    at once (opening a FIFO for reading must not wait for a writer)."""
    if kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
        flags = "rwc"
    else:
        path = "/dev/zero"
        if not stat.S_ISCHR(os.stat(path).st_mode):
            pytest.skip("/dev/zero is not a character device here")
        flags = "r"             # never open a device for writing
    outcomes = {}
    for what in list(flags) + ["salvage"]:
        try:
            proc = subprocess.run([sys.executable, "-c", _SPECIAL_CHILD, path, what],
                                  capture_output=True, timeout=5)
            outcomes[what] = (proc.stdout.decode().strip() if proc.returncode == 0 else
                              "returncode %d: %s" % (proc.returncode, proc.stderr.decode()[-500:]))
        except subprocess.TimeoutExpired:
            outcomes[what] = "blocked (killed after 5 s)"
    assert outcomes == {what: "error" for what in outcomes}, outcomes
