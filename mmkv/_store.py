"""Store: the MutableMapping over one handle of the C core.

Each mapping operation is one call into C.  The call keeps the GIL (the core releases it
only while it waits: for the lock, the disk, a compaction), so a read never waits for a busy
thread.  Values come back through a buffer taken out of a shared pool for the duration of
the call, so a signal handler (or another thread) that uses the store meanwhile gets a buffer
of its own and no result is ever overwritten before it is copied out.  Keys and values are
bytes; str is encoded as UTF-8; anything else is a TypeError.

Waiting for the lock
--------------------
The core waits for a contended writer lock one slice at a time (about 10 ms) and then
returns MMKV_EWAIT with nothing done.  `_wait` calls again until the lock comes, the
deadline (`lock(timeout)`, the handle's `lock_timeout`) passes (LockTimeout), or a signal
handler raises: the interpreter runs handlers between two calls, so Ctrl-C arrives within a
slice, and an interrupted write or lock() holds nothing and applied nothing.

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
import errno as _errno
import sys as _sys
from collections.abc import ItemsView, Mapping, MutableMapping, ValuesView
from itertools import chain as _chain
from time import monotonic as _monotonic

from ._core import ffi, lib
from ._errors import LockTimeout, exception_for

if lib.mmkv_py_install() < 0:
    raise ImportError("mmkv: cannot create mmkv._fast")
_fast = _sys.modules["mmkv._fast"]
# get, contains and set are plain CPython functions of the binding (mmkv/_binding.c): one
# call each, the value copied straight into the bytes object returned
_fget, _fcontains, _fput, _fdel, _fscan, _fmany, _fset_many = (
    _fast.get, _fast.contains, _fast.put, _fast.delete, _fast.scan, _fast.get_many,
    _fast.set_many)

_BUF_LEN = 64 * 1024
_BATCH = 1024
_MISSING = object()
_EWAIT = lib.MMKV_EWAIT
_ECLOSED = lib.MMKV_ECLOSED
_ERDONLY = lib.MMKV_ERDONLY
# Value buffers: a call pops one and pushes it back once the result is copied out (list
# pop and append are atomic), so a re-entrant call never shares a buffer with the call it
# interrupted.  The pool holds as many buffers as calls were ever in flight at once.
_pool = []
_pool_pop = _pool.pop
_pool_push = _pool.append


_flatten = _chain.from_iterable
_raw_alloc = ffi.new_allocator(should_clear_after_alloc=False)


def _new_buffer():
    return ffi.new("char[]", _BUF_LEN)


def _pairs(items):
    """Keys and values, as two lists, from an iterable of pairs, with dict.update's errors."""
    keys, values = [], []
    add_key, add_value = keys.append, values.append
    try:
        for key, value in items:
            add_key(key)
            add_value(value)
    except (TypeError, ValueError):
        _bad_pair(len(keys), items)
        raise
    return keys, values


def _bad_pair(i, items):
    """Raise dict.update's error for element i of items (when it is a sequence)."""
    try:
        pair = items[i]
        n = len(pair)
    except Exception:   # an iterator, or no len(): the original error stands
        return
    if n != 2:
        raise ValueError(f"update sequence element #{i} has length {n}; 2 is required") from None


def _mapping_lists(items):
    """Keys and values of a mapping (or of anything with keys()), in its order."""
    if type(items) is dict:
        return list(items), list(items.values())
    keys = list(items.keys())
    return keys, [items[k] for k in keys]


def _buffer():
    try:
        return _pool_pop()
    except IndexError:
        return _new_buffer()


def _timeout(value, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if value != value or value < 0:
        raise ValueError(f"{what} must be >= 0, not {value!r}")
    return float(value)


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


class Store(_fast.Handle, MutableMapping):
    """A persistent mapping of bytes to bytes in one memory-mapped file (or shared memory).

    Every operation is atomic and linearizable across processes; reads take no lock and
    make no system call; writes are serialised by the store's robust cross-process mutex.
    `len()` is O(1).  Open one with mmkv.open() or mmkv.open_shm().
    """

    __slots__ = ("_h", "_path", "_flag", "_shm", "_lock_timeout", "_closed",
                 "_batches", "_reopen", "__weakref__")

    def __init__(self, handle, path, flag, shm=False, lock_timeout=None, *, reopen=None):
        self._h = ffi.gc(handle, lib.mmkv_free)
        self._addr = int(ffi.cast("uintptr_t", handle))
        self._path = path
        self._flag = flag
        self._shm = shm
        self._lock_timeout = _timeout(lock_timeout, "lock_timeout")
        self._closed = False
        self._batches = {}            # id -> list: iteration batches being yielded
        self._reopen = reopen       # (function, args) that reopen this store: __reduce__

    def _fail(self, rc, key=_MISSING):
        if rc == lib.MMKV_ENOTFOUND and key is not _MISSING:
            raise KeyError(key)
        if rc == _EWAIT:
            raise LockTimeout(_errno.ETIMEDOUT, "timed out waiting for the store's lock",
                              self._path)
        raise exception_for(rc, self._path)

    def _wait(self, fn, args, timeout=_MISSING):
        """Call fn(handle, *args) again until it stops answering MMKV_EWAIT (see the module
        docstring); LockTimeout past the timeout (default: the handle's lock_timeout)."""
        if timeout is _MISSING:
            timeout = self._lock_timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            if deadline is not None and _monotonic() >= deadline:
                self._fail(_EWAIT)
            rc = fn(self._h, *args)
            if rc != _EWAIT:
                return rc

    def _write(self, fn, *args):
        """One write call into the core, waiting for the lock as the handle says."""
        rc = fn(self._h, *args)
        if rc == _EWAIT:
            rc = self._wait(fn, args)
        return rc

    def _coerce(self, obj, what):
        """The binding's fallback for a key or value that is not bytes, str, bytearray or
        memoryview: the TypeError (or the bytes of a bytes-like subclass)."""
        return _bytes(obj, what)

    # ---- reads ----
    # d[k], d.get(k), `k in d`, len(d), d[k] = v and del d[k] are the C base class's
    # (mmkv._fast.Handle, mmkv/_binding.c): the type slots call the core directly.

    # ---- writes ----

    def _put_failed(self, rc, key, value):
        if rc == _EWAIT:
            k, v = _bytes(key), _bytes(value, "value")
            rc = self._wait(lib.mmkv_put, (k, len(k), v, len(v)))
        if rc < 0:
            self._fail(rc)

    def _del_failed(self, rc, key):
        if rc == _EWAIT:
            k = _bytes(key)
            rc = self._wait(lib.mmkv_delete, (k, len(k)))
        if rc < 0:
            self._fail(rc, key)

    def clear(self):
        """Remove every key, atomically (one record, one table swap)."""
        rc = self._write(lib.mmkv_clear)
        if rc < 0:
            self._fail(rc)

    def pop(self, key, default=_MISSING):
        """Remove key and return its value, atomically; default (or KeyError) if absent."""
        k = _bytes(key)
        buf = _buffer()
        try:
            return self._pop(k, key, default, buf)
        finally:
            _pool_push(buf)

    def _pop(self, k, key, default, buf):
        cap = _BUF_LEN
        while True:
            n = self._write(lib.mmkv_pop, k, len(k), buf, cap)
            if 0 <= n <= cap:
                return ffi.unpack(buf, n)
            if n == lib.MMKV_ENOTFOUND and default is not _MISSING:
                return default
            if n == _ERDONLY and k not in self:
                n = lib.MMKV_ENOTFOUND     # nothing to remove: as dbm, no write is needed
                if default is not _MISSING:
                    return default
            if n < 0:
                self._fail(n, key)
            buf, cap = ffi.new("char[]", n), n

    def popitem(self):
        """Remove some (key, value) pair and return it, atomically; KeyError when empty."""
        buf = _buffer()
        try:
            return self._popitem(buf)
        finally:
            _pool_push(buf)

    def _popitem(self, buf):
        cap = _BUF_LEN
        klen = ffi.new("size_t *")
        while True:
            n = self._write(lib.mmkv_popitem, buf, cap, klen)
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
        buf = _buffer()
        try:
            return self._setdefault(k, key, d, buf)
        finally:
            _pool_push(buf)

    def _setdefault(self, k, key, d, buf):
        cap = _BUF_LEN
        while True:
            n = self._write(lib.mmkv_setdefault, k, len(k), d, len(d), buf, cap)
            if 0 <= n <= cap:
                return ffi.unpack(buf, n)
            if n == _ERDONLY:              # a present key needs no write: as dbm, its value
                value = self.get(k, _MISSING)
                if value is not _MISSING:
                    return value
            if n < 0:
                self._fail(n, key)
            buf, cap = ffi.new("char[]", n), n

    # ---- iteration ----

    def _scan(self, it, desc, pos, end, state, with_values=False):
        """One batch from table desc of the pinned file, from slot pos[0] (advanced): (entries,
        done, current), entries a list of keys or (key, value) pairs built by the binding;
        current is 0 once the handle has moved to a compacted file.  `state` is unused (kept
        for callers of the buffer-based scan)."""
        addr = int(ffi.cast("uintptr_t", it))
        entries, done, current, pos[0] = _fscan(addr, desc, pos[0], end, with_values, _BATCH,
                                                 self)
        return entries, done, current

    def __iter__(self):
        return self._iterate(False)

    def _iterate(self, with_values):
        # chain pulls each key from the current batch at C speed; the generator runs once
        # per batch
        return _flatten(self._batches_of(with_values))

    def _batches_of(self, with_values):
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
        state = None
        desc = descp[0]
        pos = ffi.new("uint64_t *")
        skip = None
        while True:
            entries, done, current = self._scan(it, desc, pos, 0, state, with_values)
            if entries:
                if skip is not None:
                    entries = [e for e in entries if (e[0] if with_values else e) not in skip]
                # close() empties the batches in flight, so nothing more of this one is
                # yielded after it; the check below then raises
                self._batches[id(entries)] = entries
                try:
                    yield entries
                finally:
                    self._batches.pop(id(entries), None)
            if self._closed:
                self._fail(_ECLOSED)
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
        rc = self._write(lib.mmkv_incr, k, len(k), delta, out)
        if rc < 0:
            self._fail(rc)
        return out[0]

    def compare_and_set(self, key, expected, new):
        """Set key to new if its value is expected, atomically; return whether it swapped.
        expected=None means "key absent"; new=None means "delete key"."""
        k = _bytes(key)
        e = b"" if expected is None else _bytes(expected, "value")
        v = b"" if new is None else _bytes(new, "value")
        rc = self._write(lib.mmkv_cas, k, len(k), expected is None, e, len(e), new is None, v,
                         len(v))
        if rc < 0:
            self._fail(rc)
        return rc == 1

    def lock(self, timeout=None):
        """A context manager holding the store's write lock across processes.

        The lock belongs to the calling thread: its operations inside, through any handle
        of this store, still work (it is recursive); other threads and processes that write
        wait; readers never do.  timeout (seconds) bounds the wait: past it, LockTimeout,
        holding nothing.  Waiting is interruptible (Ctrl-C arrives within about 10 ms).
        compact() inside it raises mmkv.error.  A thread that ends holding it releases it."""
        return _Lock(self, _timeout(timeout, "timeout"))

    # ---- handle ----

    def compact(self):
        """Reclaim the space of deleted and overwritten data: copy the live records into a
        new file, rename it over the store and retire the old one.  Contents are unchanged;
        other handles and processes move to the new file on their next operation, and the
        old file's disk space is released when the last of them has moved."""
        rc = self._write(lib.mmkv_compact)
        if rc == lib.MMKV_EBUSY:
            raise exception_for(rc, self._path).__class__(
                _errno.EBUSY, "compact() is not allowed inside lock()", self._path)
        if rc < 0:
            self._fail(rc)

    reorganize = compact

    def sync(self):
        """Return when every write made so far, by any handle, is on stable storage.
        For a shared-memory store there is no stable storage: this does nothing."""
        rc = self._write(lib.mmkv_sync)
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
        rc = self._write(lib.mmkv_check if full else lib.mmkv_verify, report, cap, out)
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
        if rc == lib.MMKV_EBUSY:
            raise exception_for(rc, self._path).__class__(
                _errno.EBUSY, "close() is not allowed while this thread holds lock() through "
                "this handle", self._path)
        if rc < 0:
            self._fail(rc)
        self._closed = True
        for batch in list(self._batches.values()):
            batch.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    __hash__ = None

    # ---- repr and pickling (issue 13) ----

    def __repr__(self):
        letters = {lib.MMKV_OPEN_READ: "r", lib.MMKV_OPEN_WRITE: "w",
                   lib.MMKV_OPEN_CREATE: "c", lib.MMKV_OPEN_NEW: "n"}
        flag = letters.get(self._flag & ~lib.MMKV_OPEN_SHM, self._flag)
        state = "closed" if self._closed else "open"
        return f"<mmkv.Store {self._path!r} flag={flag!r} {state}>"

    def __reduce__(self):
        """Pickle by path, flag and options: unpickling reopens the same store (flag "n"
        reopens with "w", never emptying it), so a Store can go to a multiprocessing pool
        under every start method.  A closed handle does not pickle (mmkv.error)."""
        if self._reopen is None:
            raise TypeError("this mmkv.Store was not opened by mmkv.open() or open_shm()")
        if self._closed:
            raise exception_for(lib.MMKV_ECLOSED, self._path)
        return self._reopen

    # ---- batches ----
    # (issue 11: one call into the core per batch; issue 12: seq, range and watch.  Kept
    # together at the end of the class so the call-boundary work can merge around them.)

    def get_many(self, keys, default=None, _fmany=_fmany):
        """The values of keys, in order (default for a missing key), all as of one moment:
        never part of another process's write.  One call into the core."""
        if type(keys) is not list and type(keys) is not tuple:
            keys = list(keys)
        out = _fmany(self._addr, keys, default, self)
        if type(out) is list:
            return out
        if out != _EWAIT:
            self._fail(out)
        return self._get_many_waiting(keys, default)

    def _get_many_waiting(self, keys, default):
        """get_many through cffi, waiting for the lock (a read-only pass found batches being
        published over and over, so this pass takes the lock)."""
        ks = [k if type(k) is bytes else _bytes(k) for k in keys]
        n = len(ks)
        klens = ffi.new("uint32_t[]", [len(k) for k in ks])
        vlens = ffi.new("int64_t[]", n)
        need = ffi.new("size_t *")
        cap = _BUF_LEN
        data = b"".join(ks)
        while True:
            buf = _raw_alloc("char[]", cap)
            rc = self._write(lib.mmkv_get_many, data, klens, n, buf, cap, vlens, need)
            if rc != lib.MMKV_EBUFSIZE:
                break
            cap = max(need[0], 2 * cap)
        if rc < 0:
            self._fail(rc)
        lens = ffi.unpack(vlens, n)
        blob = ffi.buffer(buf, cap)
        out, at = [], 0
        for size in lens:
            if size < 0:
                out.append(default)
            else:
                out.append(blob[at:at + size])
                at += size
        return out

    def set_many(self, items):
        """Store every (key, value) of items (a mapping or an iterable of pairs) as one
        write: after any crash all of it or none of it is there, and get_many never sees
        part of it.  A key given twice takes its last value, as dict.update.  A bad key or
        value raises TypeError/ValueError before anything is written."""
        if isinstance(items, Mapping) or hasattr(items, "keys"):
            self._set_lists(*_mapping_lists(items))
        else:
            self._set_lists(*_pairs(items))

    def _set_lists(self, keys, values):
        if keys:                  # the binding converts and writes in one call
            rc = _fset_many(self._addr, keys, values, self)
            if rc is None:
                return
            if rc != _EWAIT:
                self._fail(rc)
        # nothing to write, or the lock is busy (nothing was written): wait on this path
        ks = [k if type(k) is bytes else _bytes(k) for k in keys]
        vs = [v if type(v) is bytes else _bytes(v, "value") for v in values]
        if not ks:   # nothing to write; a closed handle still raises
            n = lib.mmkv_count(self._h)
            if n < 0:
                self._fail(n)
            return
        try:
            kl = ffi.new("uint32_t[]", list(map(len, ks)))
            vl = ffi.new("uint32_t[]", list(map(len, vs)))
        except OverflowError:
            raise ValueError("key or value too large for this store") from None
        data = b"".join(_flatten(zip(ks, vs, strict=True)))
        rc = self._write(lib.mmkv_set_many, data, kl, vl, len(ks))
        if rc < 0:
            self._fail(rc)

    def update(self, other=(), /, **kwds):
        """D.update([E, ]**F): as dict.update, as one set_many (one write)."""
        if isinstance(other, Mapping) or hasattr(other, "keys"):
            keys, values = _mapping_lists(other)
        else:
            keys, values = _pairs(other)
        if kwds:
            keys.extend(kwds)
            values.extend(kwds.values())
        if type(self).set_many is Store.set_many:
            self._set_lists(keys, values)
        else:                      # a subclass (codecs) encodes in its own set_many
            self.set_many(zip(keys, values, strict=True))

    def delete_many(self, keys):
        """Remove every present key of keys as one write (all or none after any crash);
        return how many were removed (a key given twice counts once)."""
        ks = [k if type(k) is bytes else _bytes(k) for k in keys]
        if not ks:
            n = lib.mmkv_count(self._h)
            if n < 0:
                self._fail(n)
            return 0
        try:
            kl = ffi.new("uint32_t[]", [len(k) for k in ks])
        except OverflowError:
            return self.delete_many([k for k in ks if len(k) < (1 << 32)])
        n = self._write(lib.mmkv_delete_many, b"".join(ks), kl, len(ks))
        if n < 0:
            self._fail(n)
        return n

    @property
    def seq(self):
        """The store's change counter: it grows with every write, in any process (see
        watch(since=...))."""
        n = lib.mmkv_log_seq(self._h)
        if n < 0:
            self._fail(n)
        return n

    def range(self, start=None, stop=None, *, prefix=None, reverse=False, values=False):
        """Keys (or (key, value) pairs with values=True) in bytewise order with
        start <= key < stop, beginning with prefix when given; descending with reverse.
        The iteration guarantee of iter() holds.  After the first call on a handle each call
        costs O(log n + keys yielded) plus the changes made since, by any process; the
        handles of one process on one file share one index (see mmkv/_ordered.py)."""
        from ._ordered import range_of
        return range_of(self, start, stop, prefix, reverse, values)

    def watch(self, since=None, timeout=None):
        """Yield (seq, key, value) for every change committed after seq `since` (default:
        now), in commit order, by any process; value is None for a delete.  Blocks until
        the next change without polling; ends after `timeout` seconds without one.  Raises
        mmkv.WatchLagged when a compaction dropped changes it had not seen (see
        mmkv/_watch.py)."""
        from ._watch import watch_of
        return watch_of(self, since, timeout)


class _Lock:
    __slots__ = ("_store", "_timeout")

    def __init__(self, store, timeout=None):
        self._store = store
        self._timeout = timeout

    def __enter__(self):
        store = self._store
        h = store._h
        before = lib.mmkv_lock_depth(h)
        try:
            rc = lib.mmkv_lock(h)
            if rc == _EWAIT:
                rc = store._wait(lib.mmkv_lock, (), self._timeout)
        except BaseException:
            # a signal handler raised just after the lock was taken: do not keep it
            if lib.mmkv_lock_depth(h) > before:
                lib.mmkv_unlock(h)
            raise
        if rc < 0:
            store._fail(rc)
        return store

    def __exit__(self, *exc):
        rc = lib.mmkv_unlock(self._store._h)
        if rc < 0:
            self._store._fail(rc)
