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

STORE is the path of a store file, or a Redis URL (redis://HOST:PORT/DB?namespace=NAME,
redis+cluster://HOST:PORT?namespace=NAME; the Redis backend, mmkv/_redis.py): every command
takes either, so `mmkv dump redis://... | mmkv restore - local.mmkv` and back move a store
between them.  On a URL, `stat` reports what the server knows (the namespace's keys, the
server's memory), `check` that it answers and how many keys the namespace holds, `compact`
nothing (the server manages its memory); a dump of a URL is no snapshot, and a restore into
one is not atomic (mmkv/_redis_backup.py says what they give instead).

Keys and values on the command line are text, passed on as the bytes the shell gave (UTF-8
in practice); with --hex (-x) KEY and VALUE are hexadecimal, with --base64 (-b) base64, so
any bytes can be named.  A VALUE of "-" is read raw from stdin; `get` always writes raw bytes.

The dump format is specified in mmkv/_dump.py; `dump` and `restore` are thin adapters over
mmkv.dump() and mmkv.restore() (mmkv/_backup.py): they stream in bounded memory, restore is
atomic, and `dump` of a damaged store salvages every valid record.  Every command's memory
stays bounded whatever its input: an oversized dump line, or a VALUE on stdin longer than
the store's limit, is refused as soon as it passes the limit.

Exit status: 0 success; 1 an error, reported in one line on stderr (missing or foreign store,
missing key, refused dump) or a store that `check` finds damaged; 2 a usage error (one line);
3 `dump` wrote a salvaged dump of a damaged store, skipping what was lost; 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM): both remove their temporary files.  A reader that closes
the pipe on stdout (`mmkv dump S | head`) ends the command quietly, by SIGPIPE, as it ends
other Unix tools (status 141 in the shell), after removing temporary files.
Long runs draw a progress bar on stderr when it is a terminal and the run has lasted
MMKV_PROGRESS_DELAY seconds (default 1); otherwise they are quiet.
"""
import argparse
import base64
import binascii
import contextlib
import errno
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any, NoReturn

import mmkv

from . import _atomicfile, _backup, _demo, _dump
from ._progress import Progress
from ._redis_url import is_redis_url

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SALVAGED = 0, 1, 2, 3
REDIS_VALUE_LIMIT = 512 * 1024 * 1024   # the longest string a Redis server stores
NEW_STORE_VALUE_LIMIT = 64 * 1024 * 1024   # max_value_len of a store `set` creates


class Failure(Exception):
    """A one-line error for stderr; exit status 1."""


class UsageError(Exception):
    """Bad input found after parsing (a KEY that is not hexadecimal ...); exit status 2."""


# ---- helpers ----

def _first_line(e: BaseException) -> str:
    """One line describing exception e: "file: reason" for an OSError."""
    if isinstance(e, OSError) and e.strerror:
        lines = [ln.strip() for ln in str(e.strerror).splitlines() if ln.strip()]
        text = lines[0] if lines else str(e)
        if len(lines) > 1 and text.endswith(":"):     # a report: its first finding
            more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
            text = f"{text} {lines[1]}{more}"
        return f"{os.fsdecode(e.filename)}: {text}" if e.filename is not None else text
    found = str(e).strip().splitlines()
    return found[0] if found else type(e).__name__


def _show(key: bytes) -> str:
    """A key for a message: its text when it is UTF-8, else hexadecimal."""
    try:
        return repr(key.decode("utf-8"))
    except UnicodeDecodeError:
        return "0x" + key.hex()


def _arg_bytes(text: str, args: argparse.Namespace, what: str) -> bytes:
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


def _display(store: str) -> str:
    """STORE as messages name it: a Redis URL without its password."""
    if not is_redis_url(store):
        return store
    from ._redis_url import parse

    return parse(store).url


def _refusing_existing(target: str) -> contextlib.AbstractContextManager[None]:
    """Turn mmkv's "exists" refusal into the command line's one-line message."""
    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except mmkv.error as e:
            if e.errno == errno.EEXIST:
                raise Failure(f"{target}: exists; use --force to replace it") from None
            raise
    return guard()


# ---- dump and restore: adapters over mmkv.dump and mmkv.restore ----

@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """Stdout, or a temporary file beside path that replaces it, synced, on success."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with _atomicfile.replacing(path, "dump") as f:
        yield f


def _cmd_dump(args: argparse.Namespace) -> int:
    if args.output not in (None, "-") and not is_redis_url(args.store) \
            and os.path.exists(args.output) \
            and os.path.exists(args.store) and os.path.samefile(args.output, args.store):
        raise Failure(f"{args.output}: is the store itself; dump elsewhere")
    with _output(args.output) as out:
        report = _backup.dump_report(args.store, out, salvage=True, progress=Progress,
                                     describe=_first_line)
    if report.reason is None:
        return EXIT_OK
    print(f"mmkv: {report.reason}; salvaged {report.records:,} records, skipped "
          f"{report.skipped:,} damaged ({report.valid:,} valid records in the log)",
          file=sys.stderr)
    return EXIT_SALVAGED


@contextlib.contextmanager
def _input(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise Failure(_first_line(e)) from None
    with f:
        yield f


def _restore_redis(args: argparse.Namespace) -> int:
    """restore into a Redis URL: not atomic; a refused dump leaves the namespace empty."""
    target = _display(args.store)
    name = "<stdin>" if args.dump == "-" else args.dump
    with _input(args.dump) as infile, _refusing_existing(target):
        try:
            _backup.restore(infile, args.store, force=args.force, progress=Progress)
        except _dump.DumpError as e:
            raise Failure(f"{name}: {e}; nothing restored, the namespace of {target} was "
                          f"left empty (a restore into Redis is not atomic: what it had "
                          f"written was removed)") from None
    return EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    if is_redis_url(args.store):
        return _restore_redis(args)
    target = args.store
    if os.path.isdir(target):
        raise Failure(f"{target}: is a directory")
    if not args.force and os.path.lexists(target):
        raise Failure(f"{target}: exists; use --force to replace it")
    name = "<stdin>" if args.dump == "-" else args.dump
    with _input(args.dump) as infile, _refusing_existing(target):
        try:
            _backup.restore(infile, target, force=args.force, progress=Progress)
        except _dump.DumpError as e:
            raise Failure(f"{name}: {e}; nothing restored, {target} untouched") from None
    return EXIT_OK


# ---- check, stat, compact ----

def _check_redis(url: str) -> int:
    """check on a Redis URL: what can be checked, that the server answers and the count."""
    with mmkv.open(url, "r") as store:
        count = len(store)
    print(f"{_display(url)}: reachable, {count:,} keys in the namespace (the server keeps "
          f"the data: no log or table here to verify)")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    if is_redis_url(args.store):
        return _check_redis(args.store)
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


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def _stats(path: str) -> dict[str, Any]:
    with mmkv.open(path, "r") as store:
        st = store.stats()
    cap = st.get("table_capacity") or 0
    st["table_load"] = round(st.get("table_used", 0) / cap, 4) if cap else 0.0
    return st


def _stat_redis(args: argparse.Namespace) -> int:
    """stat on a Redis URL: what the server knows (mmkv/_redis.py, redis_stat)."""
    from ._redis import redis_stat

    st = redis_stat(args.store)
    if args.json:
        print(json.dumps({"path": st["url"], **st}, indent=2))
        return EXIT_OK
    memory = st["used_memory"]
    primaries = st["primaries"]
    rows = [
        ("store", st["url"]),
        ("namespace", st["namespace"]),
        ("keys", f"{st['count']:,}"),
        ("server memory", "not reported by the server" if memory is None else
         f"{_size(memory)} ({memory:,} bytes, used_memory of "
         f"{'the server' if primaries == 1 else f'{primaries} primaries'}: every namespace)"),
        ("last sequence", f"{st['seq']:,}"),
    ]
    for name, value in rows:
        print(f"{name:<15} {value}")
    return EXIT_OK


def _cmd_stat(args: argparse.Namespace) -> int:
    if is_redis_url(args.store):
        return _stat_redis(args)
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


def _cmd_compact(args: argparse.Namespace) -> int:
    if is_redis_url(args.store):
        with mmkv.open(args.store, "w") as store:
            store.compact()             # checks that the server answers, does nothing
        print(f"{_display(args.store)}: nothing to compact (the Redis server manages its "
              f"own memory)")
        return EXIT_OK
    with mmkv.open(args.store, "w") as store:
        before = store.stats()
        store.compact()
        after = store.stats()
    print(f"{args.store}: {_size(before['file_size'])} -> {_size(after['file_size'])} "
          f"({before['reclaimable_bytes']:,} bytes were reclaimable)")
    return EXIT_OK


# ---- get, set, del ----

def _cmd_get(args: argparse.Namespace) -> int:
    key = _arg_bytes(args.key, args, "KEY")
    with mmkv.open(args.store, "r") as store:
        value = store.get(key)
    if value is None:
        raise Failure(f"{args.store}: no such key: {_show(key)}")
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _read_value(infile: IO[bytes], limit: int) -> bytes:
    """All of infile, refused (Failure) as soon as it passes limit bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = infile.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Failure(f"VALUE on stdin: longer than the store's limit of {limit:,} bytes; "
                          f"nothing stored")


def _cmd_set(args: argparse.Namespace) -> int:
    key = _arg_bytes(args.key, args, "KEY")
    value = None if args.value == "-" else _arg_bytes(args.value, args, "VALUE")
    if value is None and not is_redis_url(args.store) and not os.path.lexists(args.store):
        # read first: a value refused on stdin must not leave a new, empty store behind
        value = _read_value(sys.stdin.buffer, NEW_STORE_VALUE_LIMIT)
    with mmkv.open(args.store, "c") as store:     # as mmkv.open: created when missing
        if value is None:
            limit = store.stats().get("max_value_len", REDIS_VALUE_LIMIT)
            value = _read_value(sys.stdin.buffer, limit)
        store[key] = value
    return EXIT_OK


def _cmd_del(args: argparse.Namespace) -> int:
    key = _arg_bytes(args.key, args, "KEY")
    with mmkv.open(args.store, "w") as store:
        try:
            del store[key]
        except KeyError:
            raise Failure(f"{args.store}: no such key: {_show(key)}") from None
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    return _demo.run(args.rounds)


# ---- parser and main ----

class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"mmkv: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= n <= 10**9:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000000000, not {n}")
    return n


def _encoding_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-x", "--hex", action="store_true",
                       help="KEY and VALUE are hexadecimal (any bytes)")
    group.add_argument("-b", "--base64", action="store_true",
                       help="KEY and VALUE are base64 (any bytes)")


_STORE_HELP = "path of the store file, or a Redis URL (redis://HOST:PORT/DB?namespace=NAME)"


def _add_commands(sub: Any) -> None:
    p = sub.add_parser("dump", help="write every record, sorted by key, as a dump",
                       description="Write every record of STORE, sorted by key, as a dump "
                                   "(one JSON object a line); a damaged store is salvaged "
                                   "(exit 3).")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE, atomically (default: stdout)")
    p.set_defaults(func=_cmd_dump)
    p = sub.add_parser("restore", help="build STORE from a dump, atomically",
                       description="Build STORE from a dump: STORE appears whole or not at "
                                   "all, and a truncated or altered dump changes nothing.")
    p.add_argument("dump", metavar="DUMP", help='a dump file, or "-" for stdin')
    p.add_argument("store", metavar="STORE",
                   help="path of the store to create, or a Redis URL (its namespace is "
                        "filled, not atomically)")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing STORE")
    p.set_defaults(func=_cmd_restore)
    p = sub.add_parser("check", help="verify the store: exit 0 sound, 1 with a report")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("stat", help="counts, sizes, reclaimable space, table load")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_stat)
    p = sub.add_parser("compact", help="reclaim the space of deleted and overwritten data")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.set_defaults(func=_cmd_compact)
    p = sub.add_parser("get", help="write the value of KEY to stdout (raw bytes)")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.add_argument("key", metavar="KEY", help="the key (text; see --hex, --base64)")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_get)
    p = sub.add_parser("set", help='set KEY to VALUE ("-": read it from stdin)')
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.add_argument("key", metavar="KEY", help="the key (text; see --hex, --base64)")
    p.add_argument("value", metavar="VALUE",
                   help='the value (text; see --hex, --base64), or "-": the raw bytes of '
                        "stdin, up to the store's limit")
    p.add_argument("-c", "--create", action="store_true",
                   help="create STORE if missing (the default; kept for old scripts)")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_set)
    p = sub.add_parser("del", help="remove KEY")
    p.add_argument("store", metavar="STORE", help=_STORE_HELP)
    p.add_argument("key", metavar="KEY", help="the key (text; see --hex, --base64)")
    _encoding_flags(p)
    p.set_defaults(func=_cmd_del)
    p = sub.add_parser("demo", help="show two processes sharing one store")
    p.add_argument("--rounds", type=_positive_int, default=20000, metavar="N",
                   help="increments per process, at least 1 (default 20000)")
    p.set_defaults(func=_cmd_demo)


def _parser() -> _Parser:
    p = _Parser(prog="mmkv", description="mmkv store tools",
                epilog="exit status: 0 ok, 1 error, 2 usage, 3 salvaged dump of a damaged "
                       "store; binary keys: --hex or --base64")
    p.add_argument("--version", action="version", version=f"mmkv {mmkv.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_commands(sub)
    return p


def _die_of_sigpipe() -> int:
    """After a broken pipe on stdout: end as a Unix tool does, killed by SIGPIPE (status
    141 in the shell), with nothing printed; 141 if the signal cannot be raised."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())     # the exit flush cannot fail any more
        os.close(devnull)
    if threading.current_thread() is threading.main_thread():
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    return 128 + signal.SIGPIPE


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)      # unwinds like Ctrl-C: temporary files are removed


def _check_url(store: object) -> None:
    """A malformed Redis URL is a usage error (exit 2), found before anything is opened."""
    from ._redis_url import is_redis_url, parse
    if isinstance(store, str) and is_redis_url(store):
        try:
            parse(store)
        except ValueError as e:
            raise UsageError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with argv (default sys.argv[1:]); the exit status."""
    args = _parser().parse_args(argv)
    if args.command != "demo" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _check_url(getattr(args, "store", None))
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _die_of_sigpipe()
    except UsageError as e:
        print(f"mmkv: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (Failure, _dump.DumpError) as e:
        print(f"mmkv: {e}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("mmkv: out of memory (the input is larger than this process may hold)",
              file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ValueError, ImportError) as e:     # ImportError: no mmkv[redis]
        print(f"mmkv: {_first_line(e)}", file=sys.stderr)
        return EXIT_ERROR
