"""The mmkv command line (also `python -m mmkv`): look into a store, back it up, move it
and repair it without writing Python.

    mmkv dump STORE [-o FILE]          every record, sorted by key, as a dump (stdout or FILE)
    mmkv restore DUMP STORE [--force]  build STORE from a dump (DUMP "-": stdin), atomically
    mmkv check STORE                   the structural check: exit 0 sound, 1 with a report
    mmkv stat STORE [--json]           counts, sizes, reclaimable space, table load, version
    mmkv compact STORE                 reclaim the space of deleted and overwritten data
    mmkv get STORE KEY                 write the value's raw bytes to stdout
    mmkv set STORE KEY VALUE           store VALUE ("-": read the bytes from stdin)
    mmkv del STORE KEY                 remove KEY
    mmkv demo                          two processes share a store: one counts, the other watches

Keys and values on the command line are text, passed on as the bytes the shell gave (UTF-8
in practice); with --hex (-x) KEY and VALUE are hexadecimal, with --base64 (-b) base64, so
any bytes can be named.  A VALUE of "-" is read raw from stdin; `get` always writes raw bytes.

The dump format is specified in mmkv/_dump.py.  `dump` and `restore` stream: memory does not
grow with the store (keys are sorted in runs spilled under $TMPDIR).  `restore` builds the
store beside STORE, syncs it, and renames it into place only when the whole dump checked,
so STORE appears whole or not at all.  `dump` of a damaged store salvages every valid record.

Exit status: 0 success; 1 an error, reported in one line on stderr (missing or foreign store,
missing key, refused dump) or a store that `check` finds damaged; 2 a usage error (one line);
3 `dump` wrote a salvaged dump of a damaged store, skipping what was lost; 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM): both remove their temporary files.
Long runs draw a progress bar on stderr when it is a terminal and the run has lasted
MMKV_PROGRESS_DELAY seconds (default 1); otherwise they are quiet.
"""
import argparse
import base64
import binascii
import contextlib
import json
import multiprocessing
import os
import secrets
import signal
import stat
import sys
import tempfile
import threading
import time

import mmkv

from . import _dump, _snapshot

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SALVAGED = 0, 1, 2, 3
_DEFAULT_LIMITS = (65535, 64 * 1024 * 1024)     # mmkv.open()'s max_key_len, max_value_len


class Failure(Exception):
    """A one-line error for stderr; exit status 1."""


class UsageError(Exception):
    """Bad input found after parsing (a KEY that is not hexadecimal ...); exit status 2."""


def _demo_worker(path, rounds):
    import mmkv
    with mmkv.open(path) as d:
        for _ in range(rounds):
            d.incr("counter")
            d[f"worker-{os.getpid()}"] = str(time.time())


def _demo(args):
    import mmkv
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.mmkv")
        with mmkv.open(path, "n") as d:
            print(f"store: {path}")
            procs = [ctx.Process(target=_demo_worker, args=(path, args.rounds)) for _ in range(2)]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                print(f"  parent sees counter = {int(d.get('counter', b'0'))}", flush=True)
                time.sleep(0.2)
            for p in procs:
                p.join()
            total = int(d["counter"])
            print(f"two processes incremented the shared counter {total} times "
                  f"(expected {2 * args.rounds}); keys: {sorted(k.decode() for k in d)}")
            d._check()
            print("structural check: sound")
            return 0 if total == 2 * args.rounds else 1


# ---- progress ----

def _progress_delay():
    try:
        return max(0.0, float(os.environ.get("MMKV_PROGRESS_DELAY", "1")))
    except ValueError:
        return 1.0


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal, first after
    MMKV_PROGRESS_DELAY seconds, then at most ten times a second; finish() ends the line."""

    _WIDTH = 28

    def __init__(self, label, total=None, unit="records"):
        self._label, self._total, self._unit = label, total, unit
        try:
            self._on = sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):
            self._on = False
        self._start = time.monotonic()
        self._next = self._start + _progress_delay()
        self._shown = False
        self._done = 0
        self._note = ""

    def update(self, done, note=""):
        self._done, self._note = done, note
        if self._on:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + 0.1
                self._draw(now)

    def _draw(self, now):
        rate = self._done / max(now - self._start, 1e-9)
        if self._total:
            frac = min(self._done / self._total, 1.0)
            fill = int(frac * self._WIDTH)
            bar = "[" + "#" * fill + "-" * (self._WIDTH - fill) + f"] {100 * frac:5.1f}%  "
            count = f"{self._done:,}/{self._total:,} {self._unit}"
        else:
            bar, count = "", f"{self._done:,} {self._unit}"
        note = f"  {self._note}" if self._note else ""
        line = f"{self._label} {bar}{count}  {rate:,.0f} {self._unit}/s{note}"
        sys.stderr.write(f"\r{line}\x1b[K")      # \x1b[K: erase what a longer line left
        sys.stderr.flush()
        self._shown = True

    def finish(self, done=None, note=None):
        if done is not None:
            self._done = done
        if note is not None:
            self._note = note
        if self._shown:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- helpers ----

def _first_line(e):
    """One line describing exception e: "file: reason" for an OSError."""
    if isinstance(e, OSError) and e.strerror:
        lines = [ln.strip() for ln in str(e.strerror).splitlines() if ln.strip()]
        text = lines[0] if lines else str(e)
        if len(lines) > 1 and text.endswith(":"):     # a report: its first finding
            more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
            text = f"{text} {lines[1]}{more}"
        return f"{os.fsdecode(e.filename)}: {text}" if e.filename is not None else text
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _show(key):
    """A key for a message: its text when it is UTF-8, else hexadecimal."""
    try:
        return repr(key.decode("utf-8"))
    except UnicodeDecodeError:
        return "0x" + key.hex()


def _arg_bytes(text, args, what):
    """The bytes a KEY or VALUE argument names, per --hex / --base64."""
    if args.hex:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"{what} is not hexadecimal: {text!r}") from None
    if args.base64:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise UsageError(f"{what} is not base64: {text!r}") from None
    return os.fsencode(text)


def _temp_beside(path, what):
    """A fresh hidden name in path's directory (same file system, so rename is atomic)."""
    head = os.path.dirname(os.path.abspath(path))   # short, never the target's name: NAME_MAX
    return os.path.join(head, f".mmkv-{secrets.token_hex(8)}.{what}")


def _unlink_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(path):
    """Make a rename or link in directory path durable (else a power loss may undo it)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- dump ----

@contextlib.contextmanager
def _output(path):
    """Stdout, or a temporary file beside path that replaces it, synced, on success."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    tmp = _temp_beside(path, "dump")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())    # the data is durable before the name points at it
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path)


def _open_for_dump(path):
    """(store, None) for a sound store, or (None, reason) for a damaged one."""
    try:
        store = mmkv.open(path, "r")
    except mmkv.CorruptError as e:
        return None, _first_line(e)
    try:
        store._check(full=False)     # every record verified, in constant memory
    except mmkv.CorruptError as e:
        store.close()
        return None, _first_line(e)
    except BaseException:
        store.close()
        raise
    return store, None


def _write_sorted(store, out, max_key_len, max_value_len):
    """Dump store to out in key order, a snapshot of one moment (mmkv/_snapshot.py);
    returns the number of records written."""
    total = len(store)
    bar = _Progress("mmkv dump: reading keys", total=total)
    items = _snapshot.snapshot_items(store, sort=True, on_key=bar.update)
    writer = _dump.DumpWriter(out, max_key_len, max_value_len)
    for i, (key, value) in enumerate(items, 1):
        if i == 1:
            bar.finish(total)
            bar = _Progress("mmkv dump: writing", total=total)
        writer.write(key, value)
        if not i & 1023:
            bar.update(i)
    bar.finish(writer.count)
    return writer.finish()


def _salvage_into(path, scratch):
    """Replay the valid records of the damaged store at path into scratch: (limits,
    valid, skipped)."""
    salvage = _dump.Salvage(path)
    try:
        bar = _Progress("mmkv dump: salvaging")
        max_k, max_v = _dump.replay(salvage, scratch, bar.update)
        valid, skipped = salvage.counts()
        bar.finish(valid)
    finally:
        salvage.close()
    limits = (max(max_k, _DEFAULT_LIMITS[0]), max(max_v, _DEFAULT_LIMITS[1]))
    return limits, valid, skipped


def _dump_salvaged(path, out, reason):
    with tempfile.TemporaryDirectory(prefix="mmkv-salvage-") as tmp:
        with mmkv.open(os.path.join(tmp, "salvaged.mmkv"), "n",
                       max_key_len=_dump.MAX_KEY_LEN,
                       max_value_len=_dump.MAX_VALUE_LEN) as scratch:
            limits, valid, skipped = _salvage_into(path, scratch)
            count = _write_sorted(scratch, out, *limits)
    print(f"mmkv: {reason}; salvaged {count:,} records, skipped {skipped:,} damaged "
          f"({valid:,} valid records in the log)", file=sys.stderr)
    return EXIT_SALVAGED


def _cmd_dump(args):
    if args.output not in (None, "-") and os.path.exists(args.output) \
            and os.path.exists(args.store) and os.path.samefile(args.output, args.store):
        raise Failure(f"{args.output}: is the store itself; dump elsewhere")
    store, reason = _open_for_dump(args.store)
    with store if store is not None else contextlib.nullcontext(), _output(args.output) as out:
        if store is None:
            return _dump_salvaged(args.store, out, reason)
        st = store.stats()
        _write_sorted(store, out, st["max_key_len"], st["max_value_len"])
    return EXIT_OK


# ---- restore ----

@contextlib.contextmanager
def _input(name):
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(name, "rb")
    except OSError as e:
        raise Failure(_first_line(e)) from None
    with f:
        yield f


def _input_size(f):
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _fill(store, reader, total):
    """Put every record of the dump into store (DumpError if the dump fails a check)."""
    bar = _Progress("mmkv restore:", total=total, unit="bytes" if total else "records")
    for key, value in reader:
        try:
            store[key] = value
        except ValueError as e:         # over the limits the header declared
            raise _dump.DumpError(f"line {reader.lineno}: {e}") from None
        if not reader.count & 1023:
            bar.update(reader.bytes_read if total else reader.count,
                       f"{reader.count:,} records" if total else "")
    bar.finish(reader.bytes_read if total else reader.count,
               f"{reader.count:,} records" if total else "")


def _install(tmp, target, force):
    """Move the finished store at tmp to target: replace it with --force, else refuse one
    that exists (os.link is the atomic "create, never clobber")."""
    if force:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise Failure(f"{target}: exists; use --force to replace it") from None
        except OSError:                 # no hard links here: check, then rename
            if os.path.lexists(target):
                raise Failure(f"{target}: exists; use --force to replace it") from None
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
    _fsync_dir(target)                  # the new name survives a power loss


def _build(reader, target, force, total):
    """Build the store beside target from reader, then install it; on any failure the
    partial build is removed and target is as it was."""
    options = {}
    if reader.max_key_len is not None:
        options["max_key_len"] = reader.max_key_len
    if reader.max_value_len is not None:
        options["max_value_len"] = reader.max_value_len
    target = os.path.realpath(target)   # through a symlink: replace the file, keep the link
    tmp = _temp_beside(target, "restore")
    try:
        with mmkv.open(tmp, "n", **options) as store:
            _fill(store, reader, total)
            store.sync()                # every record is durable before the rename
        _install(tmp, target, force)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return reader.count


def _cmd_restore(args):
    target = args.store
    if os.path.isdir(target):
        raise Failure(f"{target}: is a directory")
    if not args.force and os.path.lexists(target):
        raise Failure(f"{target}: exists; use --force to replace it")
    name = "<stdin>" if args.dump == "-" else args.dump
    with _input(args.dump) as infile:
        try:
            reader = _dump.DumpReader(infile)
            _build(reader, target, args.force, _input_size(infile))
        except _dump.DumpError as e:
            raise Failure(f"{name}: {e}; nothing restored, {target} untouched") from None
    return EXIT_OK


# ---- check, stat, compact ----

def _cmd_check(args):
    try:
        store = mmkv.open(args.store, "r")
    except mmkv.CorruptError as e:
        print(f"{args.store}: damaged; opening it failed: {_first_line(e).split(': ', 1)[-1]}")
        return EXIT_ERROR
    with store:
        try:
            counts = store._check()
        except mmkv.CorruptError as e:
            lines = [ln.strip() for ln in str(e.strerror).splitlines() if ln.strip()]
            head = lines[0].rstrip(":") if lines else "structural check failed"
            print(f"{args.store}: damaged; {head}" + (":" if lines[1:] else ""))
            for line in lines[1:]:
                print(f"  {line}")
            return EXIT_ERROR
    print(f"{args.store}: sound ({counts['records']:,} records in the log, "
          f"{counts['live']:,} live keys)")
    return EXIT_OK


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024


def _stats(path):
    with mmkv.open(path, "r") as store:
        st = store.stats()
    cap = st.get("table_capacity") or 0
    st["table_load"] = round(st.get("table_used", 0) / cap, 4) if cap else 0.0
    return st


def _cmd_stat(args):
    st = _stats(args.store)
    if args.json:
        print(json.dumps({"path": args.store, **st}, indent=2))
        return EXIT_OK
    share = st["reclaimable_bytes"] / st["file_size"] if st["file_size"] else 0.0
    rows = [
        ("store", args.store),
        ("format version", f"{st['format_version']}"),
        ("keys", f"{st['count']:,}"),
        ("file size", f"{_size(st['file_size'])} ({st['file_size']:,} bytes)"),
        ("log end", f"{_size(st['tail'])} (synced up to {_size(st['synced_tail'])})"),
        ("reclaimable", f"{_size(st['reclaimable_bytes'])} ({100 * share:.1f}% of the file, "
                        f"what `mmkv compact` frees)"),
        ("table", f"{st['table_used']:,} of {st['table_capacity']:,} slots used "
                  f"(load {st['table_load']:.2f})"),
        ("limits", f"keys up to {st['max_key_len']:,} bytes, values up to "
                   f"{_size(st['max_value_len'])}"),
        ("last sequence", f"{st['seq']:,} (epoch {st['epoch']})"),
    ]
    for name, value in rows:
        print(f"{name:<15} {value}")
    return EXIT_OK


def _cmd_compact(args):
    with mmkv.open(args.store, "w") as store:
        compact = getattr(store, "compact", None)
        if compact is None:
            raise Failure("this build of mmkv has no Store.compact()")
        before = store.stats()
        compact()
        after = store.stats()
    print(f"{args.store}: {_size(before['file_size'])} -> {_size(after['file_size'])} "
          f"({before['reclaimable_bytes']:,} bytes were reclaimable)")
    return EXIT_OK


# ---- get, set, del ----

def _cmd_get(args):
    key = _arg_bytes(args.key, args, "KEY")
    with mmkv.open(args.store, "r") as store:
        value = store.get(key)
    if value is None:
        raise Failure(f"{args.store}: no such key: {_show(key)}")
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _cmd_set(args):
    key = _arg_bytes(args.key, args, "KEY")
    if args.value == "-":
        value = sys.stdin.buffer.read()
    else:
        value = _arg_bytes(args.value, args, "VALUE")
    with mmkv.open(args.store, "c" if args.create else "w") as store:
        store[key] = value
    return EXIT_OK


def _cmd_del(args):
    key = _arg_bytes(args.key, args, "KEY")
    with mmkv.open(args.store, "w") as store:
        try:
            del store[key]
        except KeyError:
            raise Failure(f"{args.store}: no such key: {_show(key)}") from None
    return EXIT_OK


# ---- parser and main ----

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"mmkv: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _encoding_flags(p):
    group = p.add_mutually_exclusive_group()
    group.add_argument("-x", "--hex", action="store_true",
                       help="KEY and VALUE are hexadecimal (any bytes)")
    group.add_argument("-b", "--base64", action="store_true",
                       help="KEY and VALUE are base64 (any bytes)")


def _add_commands(sub):
    p = sub.add_parser("dump", help="write every record, sorted by key, as a dump")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default stdout)")
    p.set_defaults(func=_cmd_dump)
    p = sub.add_parser("restore", help="build STORE from a dump, atomically")
    p.add_argument("dump", metavar="DUMP", help='a dump file, or "-" for stdin')
    p.add_argument("store", metavar="STORE")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing STORE")
    p.set_defaults(func=_cmd_restore)
    p = sub.add_parser("check", help="verify the store: exit 0 sound, 1 with a report")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("stat", help="counts, sizes, reclaimable space, table load")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_cmd_stat)
    p = sub.add_parser("compact", help="reclaim the space of deleted and overwritten data")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func=_cmd_compact)
    p = sub.add_parser("get", help="write the value of KEY to stdout (raw bytes)")
    p.add_argument("store", metavar="STORE")
    p.add_argument("key", metavar="KEY")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_get)
    p = sub.add_parser("set", help='set KEY to VALUE ("-": read it from stdin)')
    p.add_argument("store", metavar="STORE")
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.add_argument("-c", "--create", action="store_true", help="create STORE if missing")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_set)
    p = sub.add_parser("del", help="remove KEY")
    p.add_argument("store", metavar="STORE")
    p.add_argument("key", metavar="KEY")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_del)


def _parser():
    p = _Parser(prog="mmkv", description="mmkv store tools",
                epilog="exit status: 0 ok, 1 error, 2 usage, 3 salvaged dump of a damaged "
                       "store; binary keys: --hex or --base64")
    p.add_argument("--version", action="version", version=f"mmkv {mmkv.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_commands(sub)
    demo = sub.add_parser("demo", help="show two processes sharing one store")
    demo.add_argument("--rounds", type=int, default=20000)
    demo.set_defaults(func=_demo)
    return p


def _quiet_stdout():
    """After a broken pipe: point stdout at /dev/null so the exit flush cannot fail."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)      # unwinds like Ctrl-C: temporary files are removed


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command != "demo" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_ERROR
    except UsageError as e:
        print(f"mmkv: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (Failure, _dump.DumpError) as e:
        print(f"mmkv: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError) as e:
        print(f"mmkv: {_first_line(e)}", file=sys.stderr)
        return EXIT_ERROR
