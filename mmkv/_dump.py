"""The dump format of `mmkv dump` and `mmkv restore` (and mmkv.dump / mmkv.restore): writing
it, records given in key order, and reading it back with every check.

Nothing here holds a whole dump in memory: it is written in chunks and read one line at a
time, each line bounded by what the header's limits allow (a longer line is refused before
it is read whole).  Sorting the keys is mmkv/_sort.py's; salvaging a damaged store is
mmkv/_salvage.py's; only documented json APIs are used (JSONEncoder.encode, raw_decode).

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
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from typing import IO, Any

VERSION = 1
MAX_KEY_LEN = 16 * 1024 * 1024       # the core's ceilings for a store's limits
MAX_VALUE_LEN = 1024 * 1024 * 1024
DEFAULT_LIMITS = (65535, 64 * 1024 * 1024)     # mmkv.open()'s max_key_len, max_value_len
HEADER_MAX_LEN = 64 * 1024            # the longest header or trailer line read
ESCAPE_FACTOR = 6                     # the longest JSON spelling of one byte: \u00XX
_WRITE_CHUNK = 256 * 1024

_text_encoder = json.JSONEncoder(ensure_ascii=False)   # str -> JSON string, non-ASCII kept
_json_string = _text_encoder.encode
_b64encode = base64.b64encode


class DumpError(ValueError):
    """A dump that fails its checks; the message names the line."""


# ---- writing ----

def record_line(key: bytes, value: bytes) -> bytes:
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

    def __init__(self, out: IO[bytes], max_key_len: int | None = None,
                 max_value_len: int | None = None) -> None:
        header = {"mmkv-dump": VERSION}
        if max_key_len is not None:
            header["max_key_len"] = int(max_key_len)
        if max_value_len is not None:
            header["max_value_len"] = int(max_value_len)
        self._out = out
        self._hash = hashlib.sha256()
        self._chunk: list[bytes] = []
        self._chunk_len = 0
        self._last: bytes | None = None
        self.count = 0
        self._emit((json.dumps(header, separators=(",", ":")) + "\n").encode("ascii"))

    def _emit(self, line: bytes) -> None:
        self._chunk.append(line)
        self._chunk_len += len(line)
        if self._chunk_len >= _WRITE_CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self._chunk)
        self._hash.update(data)
        self._out.write(data)
        self._chunk, self._chunk_len = [], 0

    def write(self, key: bytes, value: bytes) -> None:
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

    def finish(self) -> int:
        """Write the trailer and flush; returns the number of records."""
        self._flush()
        trailer = {"mmkv-dump-end": VERSION, "records": self.count,
                   "sha256": self._hash.hexdigest()}
        self._out.write((json.dumps(trailer, separators=(",", ":")) + "\n").encode("ascii"))
        self._out.flush()
        return self.count


# ---- reading ----

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DumpError("a JSON name appears twice")
    return obj


_decode_json = json.JSONDecoder(object_pairs_hook=_no_duplicates).raw_decode


def _is_int(x: object) -> bool:
    return type(x) is int


def _data(obj: dict[str, Any], name: str, what: str) -> bytes:
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


def _limit(header: dict[str, Any], name: str, ceiling: int) -> int | None:
    value = header.get(name)
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= ceiling:
        raise DumpError(f"header: {name} must be an integer from 1 to {ceiling}")
    limit: int = value
    return limit


class DumpReader:
    """Reads and checks a dump from a binary file object.

    The header is read and checked at construction (DumpError if it is wrong).  Iterating
    yields (key, value) pairs in order, checking each line as it comes; the iteration ends
    normally only after the trailer has been read and its count and checksum agree and
    nothing follows it.  Any failure raises DumpError naming the line: a caller that must not
    act on a bad dump keeps its writes provisional until the iteration has ended.
    Attributes: header (dict), lineno (last line read), bytes_read, count.

    Memory stays bounded: no line is read past the longest that the limits allow
    (HEADER_MAX_LEN for the header; for a record, ESCAPE_FACTOR times the key and value
    limits the header declares, or mmkv.open()'s defaults), so an endless line is refused
    as soon as it passes that length.
    """

    def __init__(self, infile: IO[bytes]) -> None:
        self._in = infile
        self._max_line = HEADER_MAX_LEN
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
        limits = (self.max_key_len or DEFAULT_LIMITS[0], self.max_value_len or DEFAULT_LIMITS[1])
        self._max_line = max(HEADER_MAX_LEN, ESCAPE_FACTOR * sum(limits) + 64)

    def _line(self) -> bytes | None:
        """The next line (bytes, with its line feed) or None at the end of input."""
        line = self._in.readline(self._max_line + 1)
        if not line:
            return None
        self.lineno += 1
        self.bytes_read += len(line)
        if not line.endswith(b"\n"):
            if len(line) > self._max_line:
                what = ("header" if self.lineno == 1
                        else "record: longer than the store's key and value limits allow")
                raise DumpError(f"line {self.lineno}: over {self._max_line:,} bytes, too long "
                                f"for a dump {what}")
            raise DumpError(f"line {self.lineno}: truncated (no line feed at the end)")
        return line

    def _parse(self, line: bytes) -> dict[str, Any]:
        """The JSON object a line holds: it starts at the first byte and ends right before
        the line feed."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise DumpError(f"line {self.lineno}: not UTF-8") from None
        try:
            obj, end = _decode_json(text)
        except DumpError as e:
            raise DumpError(f"line {self.lineno}: {e}") from None
        except json.JSONDecodeError as e:
            raise DumpError(f"line {self.lineno}: not JSON ({e.msg} at column {e.colno})"
                            ) from None
        except RecursionError:
            raise DumpError(f"line {self.lineno}: not a dump line (nested too deep)") from None
        if type(obj) is not dict:
            raise DumpError(f"line {self.lineno}: not a JSON object")
        if end != len(text) - 1:
            raise DumpError(f"line {self.lineno}: unexpected {text[end:-1][:16]!r} "
                            f"after the JSON object")
        parsed: dict[str, Any] = obj
        return parsed

    def _record(self, obj: dict[str, Any]) -> tuple[bytes, bytes]:
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

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
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

    def _trailer(self, obj: dict[str, Any]) -> None:
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
