"""Store: the MutableMapping over one handle of the C core.

Each mapping operation is one call into C (cffi releases the GIL for it); values come back
through a per-thread reusable buffer, so the hot path allocates nothing but the result.
Keys and values are bytes; str is encoded as UTF-8; anything else is a TypeError.

Iteration
---------
The core hands out keys in batches by scanning the slots of the current hash table.  Keys
never move within a table, so a key present for the whole iteration is met exactly once
while the table stays the same.  A rebuild (the table grew) publishes a new table and
freezes the old one, which stays readable.  When a batch shows the table changed, the
iterator collects the keys of the old table's slots it already passed (from the frozen
table: exactly the keys present throughout that it has yielded), continues on the new table
from its start, and skips those keys.  Keys present throughout are thus yielded exactly
once, every yielded key was present at some moment, and `for k in d: del d[k]` works
(deletes never rebuild).  The skip set exists only after a rebuild.  A compaction is the
same case: the iterator pins the file it started on (which stays mapped, its tables frozen,
until the iterator ends), collects what it passed there and continues in the new file.
"""
import threading
from collections.abc import ItemsView, MutableMapping, ValuesView
from struct import unpack_from as _unpack_from

from ._core import ffi, lib
from ._errors import exception_for

_BUF_LEN = 64 * 1024
_BATCH = 1024
_MISSING = object()
_tls = threading.local()


def _buffer():
    try:
        return _tls.buf
    except AttributeError:
        buf = _tls.buf = ffi.new("char[]", _BUF_LEN)
        return buf


def _bytes(x, what="key"):
    if type(x) is bytes:
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"mmkv {what}s must be bytes, bytearray, memoryview or str, "
                    f"not {type(x).__name__}")


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self):
        return self._mapping._iterate(True)


class _Values(ValuesView):
    __slots__ = ()

    def __iter__(self):
        for _, value in self._mapping._iterate(True):
            yield value


class Store(MutableMapping):
    """A persistent mapping of bytes to bytes in one memory-mapped file (or shared memory).

    Every operation is atomic and linearizable across processes; reads take no lock and
    make no system call; writes are serialised by the store's robust cross-process mutex.
    `len()` is O(1).  Open one with mmkv.open() or mmkv.open_shm().
    """

    __slots__ = ("_h", "_path", "_flag", "_shm", "__weakref__")

    def __init__(self, handle, path, flag, shm=False):
        self._h = ffi.gc(handle, lib.mmkv_free)
        self._path = path
        self._flag = flag
        self._shm = shm

    def _fail(self, rc, key=_MISSING):
        if rc == lib.MMKV_ENOTFOUND and key is not _MISSING:
            raise KeyError(key)
        raise exception_for(rc, self._path)

    # ---- reads ----

    # __getitem__ and get repeat their first lines on purpose: a shared helper costs a call
    # on the hottest path, and get() built on __getitem__ would raise KeyError per miss.
    def __getitem__(self, key, _get=lib.mmkv_get, _unpack=ffi.unpack, _tls=_tls):
        k = key if type(key) is bytes else _bytes(key)
        try:
            buf = _tls.buf
        except AttributeError:
            buf = _buffer()
        n = _get(self._h, k, len(k), buf, _BUF_LEN)
        if 0 <= n <= _BUF_LEN:
            return _unpack(buf, n)
        if n > _BUF_LEN:
            return self._get_large(k, n, key)
        self._fail(n, key)

    def _get_large(self, k, n, key):
        while True:
            buf = ffi.new("char[]", n)
            m = lib.mmkv_get(self._h, k, len(k), buf, n)
            if 0 <= m <= n:
                return ffi.unpack(buf, m)
            if m < 0:
                self._fail(m, key)
            n = m

    def get(self, key, default=None, _get=lib.mmkv_get, _unpack=ffi.unpack, _tls=_tls):
        """D.get(k[, d]) -> D[k] if k in D, else d (default None)."""
        k = key if type(key) is bytes else _bytes(key)
        try:
            buf = _tls.buf
        except AttributeError:
            buf = _buffer()
        n = _get(self._h, k, len(k), buf, _BUF_LEN)
        if 0 <= n <= _BUF_LEN:
            return _unpack(buf, n)
        if n == lib.MMKV_ENOTFOUND:
            return default
        if n > _BUF_LEN:
            try:
                return self._get_large(k, n, key)
            except KeyError:
                return default
        self._fail(n)

    def __contains__(self, key):
        k = _bytes(key)
        rc = lib.mmkv_contains(self._h, k, len(k))
        if rc < 0:
            self._fail(rc)
        return rc == 1

    def __len__(self):
        n = lib.mmkv_count(self._h)
        if n < 0:
            self._fail(n)
        return n

    # ---- writes ----

    def __setitem__(self, key, value, _put=lib.mmkv_put):
        k = key if type(key) is bytes else _bytes(key)
        v = value if type(value) is bytes else _bytes(value, "value")
        rc = _put(self._h, k, len(k), v, len(v))
        if rc < 0:
            self._fail(rc)

    def __delitem__(self, key):
        k = _bytes(key)
        rc = lib.mmkv_delete(self._h, k, len(k))
        if rc < 0:
            self._fail(rc, key)

    def clear(self):
        """Remove every key, atomically (one record, one table swap)."""
        rc = lib.mmkv_clear(self._h)
        if rc < 0:
            self._fail(rc)

    def pop(self, key, default=_MISSING):
        """Remove key and return its value, atomically; default (or KeyError) if absent."""
        k = _bytes(key)
        buf, cap = _buffer(), _BUF_LEN
        while True:
            n = lib.mmkv_pop(self._h, k, len(k), buf, cap)
            if 0 <= n <= cap:
                return ffi.unpack(buf, n)
            if n == lib.MMKV_ENOTFOUND and default is not _MISSING:
                return default
            if n < 0:
                self._fail(n, key)
            buf, cap = ffi.new("char[]", n), n

    def popitem(self):
        """Remove some (key, value) pair and return it, atomically; KeyError when empty."""
        buf, cap = _buffer(), _BUF_LEN
        klen = ffi.new("size_t *")
        while True:
            n = lib.mmkv_popitem(self._h, buf, cap, klen)
            if 0 <= n <= cap:
                data = ffi.unpack(buf, n)
                return data[:klen[0]], data[klen[0]:]
            if n == lib.MMKV_ENOTFOUND:
                raise KeyError("popitem(): mmkv store is empty")
            if n < 0:
                self._fail(n)
            buf, cap = ffi.new("char[]", n), n

    def setdefault(self, key, default=None):
        """Return D[key], inserting default first if key is absent, atomically.

        A store holds only bytes, so default=None can only be returned for a present key;
        for an absent one it is a TypeError, and nothing is inserted.
        """
        k = _bytes(key)
        if default is None:
            value = self.get(k, _MISSING)
            if value is _MISSING:
                raise TypeError("mmkv values must be bytes, bytearray, memoryview or str, "
                                "not NoneType")
            return value
        d = _bytes(default, "value")
        buf, cap = _buffer(), _BUF_LEN
        while True:
            n = lib.mmkv_setdefault(self._h, k, len(k), d, len(d), buf, cap)
            if 0 <= n <= cap:
                return ffi.unpack(buf, n)
            if n < 0:
                self._fail(n, key)
            buf, cap = ffi.new("char[]", n), n

    # ---- iteration ----

    def _scan(self, it, desc, pos, end, state, with_values=False):
        """One batch from table desc of the pinned file, from slot pos[0]: (entries, done,
        current), entries being keys or (key, value) pairs; current is 0 once the handle
        has moved to a compacted file."""
        buf, lens, vlens, n, cur, need = state
        while True:
            rc = lib.mmkv_iter_scan_items(it, desc, pos, end, buf[0], len(buf[0]), lens,
                                          vlens if with_values else ffi.NULL, _BATCH, n, cur,
                                          need)
            if rc != lib.MMKV_EBUFSIZE:
                break
            buf[0] = ffi.new("char[]", max(need[0], 2 * len(buf[0])))
        if rc < 0:
            self._fail(rc)
        count = n[0]
        if not count:
            return [], rc == 1, cur[0]
        sizes = ffi.unpack(lens, count)
        if with_values:
            sizes = [x for pair in zip(sizes, ffi.unpack(vlens, count)) for x in pair]
        # one struct call cuts the batch into bytes objects at C speed
        parts = _unpack_from("%ds" * len(sizes) % tuple(sizes), ffi.buffer(buf[0], sum(sizes)))
        if with_values:
            pairs = iter(parts)
            entries = list(zip(pairs, pairs))
        else:
            entries = parts
        return entries, rc == 1, cur[0]

    def __iter__(self):
        return self._iterate(False)

    def _iterate(self, with_values):
        itp = ffi.new("mmkv_iter **")
        descp = ffi.new("uint64_t *")
        rc = lib.mmkv_iter_begin(self._h, itp, descp)
        if rc < 0:
            self._fail(rc)
        it = itp[0]
        try:
            yield from self._walk(it, descp, with_values)
        finally:
            lib.mmkv_iter_end(it)

    def _walk(self, it, descp, with_values):
        state = ([ffi.new("char[]", _BUF_LEN)], ffi.new("uint32_t[]", _BATCH),
                 ffi.new("uint32_t[]", _BATCH), ffi.new("size_t *"), ffi.new("uint64_t *"),
                 ffi.new("size_t *"))
        desc = descp[0]
        pos = ffi.new("uint64_t *")
        skip = None
        while True:
            entries, done, current = self._scan(it, desc, pos, 0, state, with_values)
            if skip is None:
                yield from entries
            else:
                for entry in entries:
                    if (entry[0] if with_values else entry) not in skip:
                        yield entry
            if done:
                return
            if current != desc:
                # a rebuild or a compaction: remember what was passed, go on in the new table
                skip = self._passed(it, desc, pos[0], state, skip)
                if current == 0:
                    rc = lib.mmkv_iter_repin(it, descp)
                    if rc < 0:
                        self._fail(rc)
                    current = descp[0]
                desc, pos[0] = current, 0

    def _passed(self, it, desc, upto, state, skip):
        """The keys in slots [0, upto) of the frozen table desc, added to skip."""
        skip = set() if skip is None else skip
        pos = ffi.new("uint64_t *")
        while pos[0] < upto:
            keys, done, _ = self._scan(it, desc, pos, upto, state)
            skip.update(keys)
            if done:
                break
        return skip

    def keys(self):
        """A list of the keys, as every dbm module returns."""
        return list(self)

    def items(self):
        return _Items(self)

    def values(self):
        return _Values(self)

    # ---- atomic read-modify-write and the lock ----

    def incr(self, key, delta=1):
        """Add delta to the decimal integer stored at key (absent counts as 0), atomically
        across processes, and return the new value.  ValueError, with the value unchanged,
        if it is not a decimal integer or the result leaves the 64-bit signed range."""
        k = _bytes(key)
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise TypeError(f"delta must be an int, not {type(delta).__name__}")
        if not -(1 << 63) <= delta < (1 << 63):
            raise ValueError("delta outside the 64-bit signed range")
        out = ffi.new("int64_t *")
        rc = lib.mmkv_incr(self._h, k, len(k), delta, out)
        if rc < 0:
            self._fail(rc)
        return out[0]

    def compare_and_set(self, key, expected, new):
        """Set key to new if its value is expected, atomically; return whether it swapped.
        expected=None means "key absent"; new=None means "delete key"."""
        k = _bytes(key)
        e = b"" if expected is None else _bytes(expected, "value")
        v = b"" if new is None else _bytes(new, "value")
        rc = lib.mmkv_cas(self._h, k, len(k), expected is None, e, len(e), new is None, v, len(v))
        if rc < 0:
            self._fail(rc)
        return rc == 1

    def lock(self):
        """A context manager holding the store's write lock across processes.  Operations
        of this handle inside it work (the lock is recursive); other writers wait; readers
        never do.  It must be released by the thread that took it."""
        return _Lock(self)

    # ---- handle ----

    def compact(self):
        """Reclaim the space of deleted and overwritten data: copy the live records into a
        new file, rename it over the store and retire the old one.  Contents are unchanged;
        other handles and processes move to the new file on their next operation, and the
        old file's disk space is released when the last of them has moved."""
        rc = lib.mmkv_compact(self._h)
        if rc < 0:
            self._fail(rc)

    reorganize = compact

    def sync(self):
        """Return when every write made so far, by any handle, is on stable storage.
        For a shared-memory store there is no stable storage: this does nothing."""
        rc = lib.mmkv_sync(self._h)
        if rc < 0:
            self._fail(rc)

    def stats(self):
        """A dict of counts and sizes: count, file_size, reclaimable_bytes, tail, ...;
        compaction_error: why this handle's last automatic compaction failed, or None."""
        st = ffi.new("struct mmkv_stats *")
        rc = lib.mmkv_stats(self._h, st)
        if rc < 0:
            self._fail(rc)
        names = ("count", "file_size", "tail", "reclaimable_bytes", "table_capacity",
                 "table_used", "synced_tail", "seq", "epoch", "max_key_len",
                 "max_value_len", "format_version")
        out = {name: getattr(st, name) for name in names}
        # the last failure of automatic compaction through this handle, or None
        from ._errors import strerror
        err = st.compaction_error
        out["compaction_error"] = f"automatic compaction failed: {strerror(err)}" if err else None
        return out

    def _check(self, full=True):
        """The core's structural check: every record reachable from the table is valid,
        counts agree, and the table matches a replay of the log.  Raises CorruptError with
        the report when not; returns a dict of counts.  full=False skips the replay (its
        memory grows with the store): every record is still verified."""
        cap = 1 << 16
        report = ffi.new("char[]", cap)
        out = ffi.new("struct mmkv_check_report *")
        rc = (lib.mmkv_check if full else lib.mmkv_verify)(self._h, report, cap, out)
        if rc == lib.MMKV_ECORRUPT:
            from ._errors import CorruptError
            text = ffi.string(report).decode("utf-8", "replace").strip()
            raise CorruptError(5, f"structural check failed:\n{text}", self._path)
        if rc < 0:
            self._fail(rc)
        return {"records": out.records, "live": out.live, "problems": out.problems}

    def close(self):
        """Flush and release the handle; closing twice is harmless."""
        rc = lib.mmkv_close(self._h)
        if rc < 0:
            self._fail(rc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<mmkv.Store {self._path!r} flag={self._flag!r}>"

    __hash__ = None


class _Lock:
    __slots__ = ("_store",)

    def __init__(self, store):
        self._store = store

    def __enter__(self):
        rc = lib.mmkv_lock(self._store._h)
        if rc < 0:
            self._store._fail(rc)
        return self._store

    def __exit__(self, *exc):
        rc = lib.mmkv_unlock(self._store._h)
        if rc < 0:
            self._store._fail(rc)
