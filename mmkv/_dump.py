"""The dump format of `mmkv dump` and `mmkv restore`: writing it sorted and streamed,
reading it back with every check, and salvaging the records of a damaged store.

Nothing here holds a whole store in memory: keys are sorted by an external merge sort
(sorted runs spilled to temporary files) and a dump is read one line at a time.  This module
never touches a store's file except through mmkv.open() and the core's read-only salvage walk.

The dump format, version 1
==========================

A dump is a text file of UTF-8 lines, each one JSON object (RFC 8259) terminated by a single
line feed (0x0A), the last line included.  The object starts at the line's first byte and its
closing brace is the byte before the line feed: no blank lines, no carriage returns, no byte
order mark.  Between tokens JSON whitespace is allowed, but writers emit none.  Three kinds of
line, in this order:

1. The header, exactly one, first::

       {"mmkv-dump":1,"max_key_len":65535,"max_value_len":67108864}

   "mmkv-dump" is the format version, the integer 1.  "max_key_len" and "max_value_len"
   (optional integers, at most 16777216 and 1073741824) are the limits of the store that was
   dumped; restore creates the new store with them, so the largest record fits.  Readers
   ignore header fields they do not know.

2. Zero or more records, one per key::

       {"k":"user:42","v":"{\\"name\\": \\"Ada\\"}"}
       {"k64":"AP8=","v":"binary key, text value"}

   The key is in exactly one of "k" (the key's bytes are UTF-8: the JSON string is that
   text) or "k64" (any bytes: standard base64 with padding, RFC 4648 section 4, no line
   breaks); the value likewise in exactly one of "v" or "v64".  No other field; the two
   fields in either order.  Writers use "k"/"v" whenever the bytes decode as strict UTF-8
   (no surrogates), else "k64"/"v64", and write text as UTF-8, escaping only what JSON
   requires (quote, backslash, U+0000-U+001F); readers accept any JSON escape and either
   form for any bytes.  Empty keys and values are ordinary ("k":"").
   Records are in strictly increasing order of their key bytes, compared as unsigned bytes
   with a shorter key first when it is a prefix of the other (memcmp order, Python's bytes
   order); so no key appears twice.

3. The trailer, exactly one, last::

       {"mmkv-dump-end":1,"records":2,"sha256":"9f86d0...(64 lowercase hex digits)"}

   "records" is the number of record lines.  "sha256" is the SHA-256 of every byte of the
   file before the trailer line: the header line and all record lines, each with its line
   feed, exactly as written.  Readers ignore trailer fields they do not know.  Nothing may
   follow the trailer's line feed.

A reader refuses the whole dump if any of this fails: first line not a version-1 header, a
line that is not one JSON object with the fields above (duplicate JSON names included),
invalid base64, a "k"/"v" string with a lone surrogate, keys not strictly increasing, no
trailer (a truncated dump), a record count or checksum that disagrees (a line removed or
altered), or bytes after the trailer.  `mmkv restore` builds the new store beside the target
and renames it into place only after the trailer checks, so a refused dump changes nothing.

Example: the store {b"a": b"1", b"\\xff": b""} dumps as (checksum elided)::

    {"mmkv-dump":1,"max_key_len":65535,"max_value_len":67108864}
    {"k":"a","v":"1"}
    {"k64":"/w==","v":""}
    {"mmkv-dump-end":1,"records":2,"sha256":"..."}
"""
import base64
import binascii
import hashlib
import heapq
import json
import marshal
import os
import tempfile

from ._core import ffi, lib
from ._errors import exception_for

VERSION = 1
MAX_KEY_LEN = 16 * 1024 * 1024       # the core's ceilings for a store's limits
MAX_VALUE_LEN = 1024 * 1024 * 1024
RUN_BYTES = 8 * 1024 * 1024           # memory budget of one sorted run (keys + overhead)
KEY_OVERHEAD = 64                     # what a bytes object and its list slot cost beyond len
FAN_IN = 64                           # runs merged at once
_WRITE_CHUNK = 256 * 1024
_BLOCK_KEYS = 1024                    # keys per block of a run file

_json_string = json.encoder.encode_basestring   # str -> JSON string literal, non-ASCII kept
_b64encode = base64.b64encode


class DumpError(ValueError):
    """A dump that fails its checks; the message names the line."""


# ---- writing ----

def record_line(key, value):
    """The record line (bytes, with its line feed) for key and value."""
    try:
        k = '{"k":' + _json_string(key.decode("utf-8"))
    except UnicodeDecodeError:
        k = '{"k64":"' + _b64encode(key).decode("ascii") + '"'
    try:
        v = ',"v":' + _json_string(value.decode("utf-8")) + "}\n"
    except UnicodeDecodeError:
        v = ',"v64":"' + _b64encode(value).decode("ascii") + '"}\n'
    return (k + v).encode("utf-8")


class DumpWriter:
    """Writes a dump to a binary file object: the header at construction, records in
    strictly increasing key order with write(), the trailer with finish().  Output is
    buffered in chunks of about 256 KiB; the checksum covers exactly the bytes written."""

    def __init__(self, out, max_key_len=None, max_value_len=None):
        header = {"mmkv-dump": VERSION}
        if max_key_len is not None:
            header["max_key_len"] = int(max_key_len)
        if max_value_len is not None:
            header["max_value_len"] = int(max_value_len)
        self._out = out
        self._hash = hashlib.sha256()
        self._chunk = []
        self._chunk_len = 0
        self._last = None
        self.count = 0
        self._emit((json.dumps(header, separators=(",", ":")) + "\n").encode("ascii"))

    def _emit(self, line):
        self._chunk.append(line)
        self._chunk_len += len(line)
        if self._chunk_len >= _WRITE_CHUNK:
            self._flush()

    def _flush(self):
        data = b"".join(self._chunk)
        self._hash.update(data)
        self._out.write(data)
        self._chunk, self._chunk_len = [], 0

    def write(self, key, value):
        """Append one record; keys must come in strictly increasing order."""
        if self._last is not None and key <= self._last:
            raise ValueError("dump records must be written in strictly increasing key order")
        self._last = key
        line = record_line(key, value)
        self._chunk.append(line)
        self._chunk_len += len(line)
        if self._chunk_len >= _WRITE_CHUNK:
            self._flush()
        self.count += 1

    def finish(self):
        """Write the trailer and flush; returns the number of records."""
        self._flush()
        trailer = {"mmkv-dump-end": VERSION, "records": self.count,
                   "sha256": self._hash.hexdigest()}
        self._out.write((json.dumps(trailer, separators=(",", ":")) + "\n").encode("ascii"))
        self._out.flush()
        return self.count


# ---- sorting keys in bounded memory ----

class KeySorter:
    """External merge sort of keys: add() them in any order, then iterate sorted() for the
    distinct keys in bytewise order.

    Keys are held in memory up to run_bytes (counting KEY_OVERHEAD per key), then sorted and
    spilled as a run to a temporary file (marshal'd lists of up to 1024 keys; the files live
    in a private directory of this process and are only ever read by it).
    Runs are merged FAN_IN at a time into runs of the next level, so open files and memory
    stay bounded whatever the number of keys; the final merge streams with heapq.merge.
    Memory: O(run_bytes + FAN_IN * levels * (64 KiB + a block of keys)); disk: about twice
    the keys' size.
    Use as a context manager: the temporary directory goes away on exit.
    """

    def __init__(self, run_bytes=RUN_BYTES, tmpdir=None):
        self._run_bytes = run_bytes
        self._tmpdir = tmpdir
        self._dir = None
        self._batch = []
        self._batch_bytes = 0
        self._levels = []        # self._levels[i]: paths of runs at level i
        self._runs = 0
        self.count = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def add(self, key):
        self._batch.append(key)
        self.count += 1
        self._batch_bytes += len(key) + KEY_OVERHEAD
        if self._batch_bytes >= self._run_bytes:
            self._spill()

    def _new_run_path(self):
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="mmkv-sort-", dir=self._tmpdir)
        self._runs += 1
        return os.path.join(self._dir.name, f"run-{self._runs}")

    def _write_run(self, keys):
        path = self._new_run_path()
        with open(path, "wb", buffering=1 << 16) as f:
            block = []
            for key in keys:
                block.append(key)
                if len(block) == _BLOCK_KEYS:
                    marshal.dump(block, f)
                    block = []
            if block:
                marshal.dump(block, f)
        return path

    def _add_run(self, path, level):
        while len(self._levels) <= level:
            self._levels.append([])
        self._levels[level].append(path)
        if len(self._levels[level]) >= FAN_IN:
            paths, self._levels[level] = self._levels[level], []
            merged = self._write_run(_unique(heapq.merge(*map(_read_run, paths))))
            for p in paths:
                os.unlink(p)
            self._add_run(merged, level + 1)

    def _spill(self):
        self._batch.sort()
        path = self._write_run(_unique(self._batch))
        self._batch, self._batch_bytes = [], 0
        self._add_run(path, 0)

    def sorted(self):
        """Iterate the distinct keys added, in increasing bytewise order (call once)."""
        self._batch.sort()
        batch, self._batch = self._batch, []
        paths = [p for level in self._levels for p in level]
        if not paths:
            return _unique(batch)
        return _unique(heapq.merge(iter(batch), *map(_read_run, paths)))


def _read_run(path):
    """The keys of a run file, in file order."""
    with open(path, "rb", buffering=1 << 16) as f:
        while True:
            try:
                block = marshal.load(f)
            except EOFError:
                return
            yield from block


def _unique(keys):
    """Drop adjacent duplicates from a sorted iterable (iteration may meet a key twice)."""
    last = None
    for key in keys:
        if key != last:
            yield key
            last = key


# ---- reading ----

def _no_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DumpError("a JSON name appears twice")
    return obj


_scan_json = json.JSONDecoder(object_pairs_hook=_no_duplicates).scan_once


def _is_int(x):
    return type(x) is int


def _data(obj, name, what):
    """The bytes of field name ("k" or "v"), given as text or as name + "64" in base64."""
    text, b64 = obj.get(name), obj.get(name + "64")
    if (text is None) == (b64 is None):
        raise DumpError(f"want exactly one of \"{name}\" and \"{name}64\" for the {what}")
    if text is not None:
        if type(text) is not str:
            raise DumpError(f"\"{name}\" is not a string")
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise DumpError(f"\"{name}\" holds a lone surrogate, not text") from None
    if type(b64) is not str:
        raise DumpError(f"\"{name}64\" is not a string")
    try:
        return base64.b64decode(b64.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DumpError(f"\"{name}64\" is not valid base64") from None


def _limit(header, name, ceiling):
    value = header.get(name)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= ceiling:
        raise DumpError(f"header: {name} must be an integer from 1 to {ceiling}")
    return value


class DumpReader:
    """Reads and checks a dump from a binary file object.

    The header is read and checked at construction (DumpError if it is wrong).  Iterating
    yields (key, value) pairs in order, checking each line as it comes; the iteration ends
    normally only after the trailer has been read and its count and checksum agree and
    nothing follows it.  Any failure raises DumpError naming the line: a caller that must not
    act on a bad dump keeps its writes provisional until the iteration has ended.
    Attributes: header (dict), lineno (last line read), bytes_read, count.
    """

    def __init__(self, infile):
        self._in = infile
        self._hash = hashlib.sha256()
        self.lineno = 0
        self.bytes_read = 0
        self.count = 0
        first = self._line()
        if first is None:
            raise DumpError("empty input: not an mmkv dump")
        header = self._parse(first)
        if "mmkv-dump" not in header:
            raise DumpError("line 1: not an mmkv dump (no header line)")
        version = header["mmkv-dump"]
        if not _is_int(version) or version != VERSION:
            raise DumpError(f"line 1: unsupported dump format version {version!r}")
        self.header = header
        self.max_key_len = _limit(header, "max_key_len", MAX_KEY_LEN)
        self.max_value_len = _limit(header, "max_value_len", MAX_VALUE_LEN)
        self._hash.update(first)

    def _line(self):
        """The next line (bytes, with its line feed) or None at the end of input."""
        line = self._in.readline()
        if not line:
            return None
        self.lineno += 1
        self.bytes_read += len(line)
        if not line.endswith(b"\n"):
            raise DumpError(f"line {self.lineno}: truncated (no line feed at the end)")
        return line

    def _parse(self, line):
        """The JSON object a line holds: it starts at the first byte and ends right before
        the line feed."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise DumpError(f"line {self.lineno}: not UTF-8") from None
        try:
            obj, end = _scan_json(text, 0)
        except StopIteration as e:
            raise DumpError(f"line {self.lineno}: not JSON (at column {e.value + 1})") from None
        except DumpError as e:
            raise DumpError(f"line {self.lineno}: {e}") from None
        except ValueError as e:
            raise DumpError(f"line {self.lineno}: not JSON ({e.args[0]})") from None
        if type(obj) is not dict:
            raise DumpError(f"line {self.lineno}: not a JSON object")
        if end != len(text) - 1:
            raise DumpError(f"line {self.lineno}: unexpected {text[end:-1][:16]!r} "
                            f"after the JSON object")
        return obj

    def _record(self, obj):
        if len(obj) == 2:               # the common case: {"k": text, "v": text}
            key, value = obj.get("k"), obj.get("v")
            if type(key) is str and type(value) is str:
                try:
                    return key.encode("utf-8"), value.encode("utf-8")
                except UnicodeEncodeError:
                    pass                # a lone surrogate: let _data say which
        try:
            key = _data(obj, "k", "key")
            value = _data(obj, "v", "value")
        except DumpError as e:
            raise DumpError(f"line {self.lineno}: {e}") from None
        if len(obj) != 2:
            extra = sorted(set(obj) - {"k", "k64", "v", "v64"})
            raise DumpError(f"line {self.lineno}: unknown record field {extra[0]!r}")
        return key, value

    def __iter__(self):
        last = None
        while True:
            line = self._line()
            if line is None:
                raise DumpError(f"truncated: no trailer after line {self.lineno}")
            obj = self._parse(line)
            if "mmkv-dump-end" in obj:
                self._trailer(obj)
                return
            key, value = self._record(obj)
            if last is not None and key <= last:
                what = "repeats the previous key" if key == last else "is out of order"
                raise DumpError(f"line {self.lineno}: record {what} "
                                f"(keys must strictly increase)")
            self._hash.update(line)
            self.count += 1
            last = key
            yield key, value

    def _trailer(self, obj):
        where = f"line {self.lineno} (trailer)"
        if obj["mmkv-dump-end"] != VERSION or not _is_int(obj["mmkv-dump-end"]):
            raise DumpError(f"{where}: unsupported version {obj['mmkv-dump-end']!r}")
        records, digest = obj.get("records"), obj.get("sha256")
        if not _is_int(records) or type(digest) is not str:
            raise DumpError(f"{where}: want an integer \"records\" and a \"sha256\" string")
        if records != self.count:
            raise DumpError(f"{where}: says {records} records, the dump holds {self.count}")
        if digest != self._hash.hexdigest():
            raise DumpError(f"{where}: checksum mismatch, the dump was altered")
        if self._in.read(1):
            raise DumpError(f"{where}: data after the trailer")


# ---- salvage ----

class Salvage:
    """The core's read-only salvage walk over any file, replayed: items() yields
    (type, key, value) for every valid PUT, DEL and CLEAR record in log order; counts() gives
    (valid, skipped) as the core reports them.  Never writes the file."""

    PUT, DEL, CLEAR = 1, 2, 5
    _BATCH = 1024

    def __init__(self, path):
        self._path = path
        out = ffi.new("mmkv_salvage **")
        rc = lib.mmkv_salvage_open(os.fsencode(path), out)
        if rc < 0:
            raise exception_for(rc, path)
        self._h = ffi.gc(out[0], lib.mmkv_salvage_close)

    def items(self):
        cap = 1 << 20
        buf = ffi.new("char[]", cap)
        items = ffi.new("struct mmkv_salvage_item[]", self._BATCH)
        n, need = ffi.new("size_t *"), ffi.new("size_t *")
        while True:
            rc = lib.mmkv_salvage_next(self._h, buf, cap, items, self._BATCH, n, need)
            if rc == lib.MMKV_EBUFSIZE:
                cap = max(need[0], 2 * cap)
                buf = ffi.new("char[]", cap)
                continue
            if rc < 0:
                raise exception_for(rc, self._path)
            yield from self._batch(buf, items, n[0])
            if rc == 1:
                return

    @staticmethod
    def _batch(buf, items, n):
        batch = [items[i] for i in range(n)]
        end = max((it.data_off + it.klen + it.vlen for it in batch), default=0)
        data = ffi.unpack(buf, end)
        for it in batch:
            k_off = it.data_off
            v_off = k_off + it.klen
            yield it.type, data[k_off:v_off], data[v_off:v_off + it.vlen]

    def counts(self):
        valid, skipped = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.mmkv_salvage_counts(self._h, valid, skipped)
        return valid[0], skipped[0]

    def close(self):
        if self._h is not None:
            ffi.release(self._h)     # runs mmkv_salvage_close now
            self._h = None


def replay(salvage, store, progress=None):
    """Apply the salvaged records to store in log order (PUT sets, DEL removes, CLEAR
    empties), calling progress(records so far) every 1024 records.  Returns the longest key
    and value put, so a dump of the result can declare limits its records fit."""
    max_k = max_v = 0
    for i, (kind, key, value) in enumerate(salvage.items(), 1):
        if kind == Salvage.PUT:
            store[key] = value
            max_k, max_v = max(max_k, len(key)), max(max_v, len(value))
        elif kind == Salvage.DEL:
            store.pop(key, None)
        elif kind == Salvage.CLEAR:
            store.clear()
        if progress is not None and not i & 1023:
            progress(i)
    return max_k, max_v
