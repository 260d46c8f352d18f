"""The C core under AddressSanitizer and UBSan: a fuzz target for the header, record and table
parsers (fuzz_open.c, built here straight from native/*.c), the corpus replayed through it,
and a C smoke test of the whole API.

API.md: "A damaged or hostile file never crashes the interpreter."  STYLE.md: "The C core
also builds with -fsanitize=address,undefined for a test run."  A sanitizer report, a signal
or a hang fails the test with the report and the input that caused it; the fuzzer is then
restarted with the next seed until the time budget (MMKV_FUZZ_SECONDS, default 30) is spent,
so one run reports every distinct finding.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

pytestmark = pytest.mark.crash

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NATIVE = os.path.join(ROOT, "native")
CORPUS = os.path.join(HERE, "corpus")
SOURCES = sorted(f for f in os.listdir(NATIVE) if f.endswith(".c"))   # the whole core
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-g", "-O1",
         "-std=gnu11", "-pthread", "-Wall", "-Wextra"]
# handle_sigbus=0: the core's own SIGBUS guard must see the fault, not ASan
ENV = {"ASAN_OPTIONS": "handle_sigbus=0:detect_leaks=1:abort_on_error=0:"
                       "allocator_may_return_null=1",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
FUZZ_SECONDS = float(os.environ.get("MMKV_FUZZ_SECONDS", "30"))
MIN_ITERATIONS = 300
SANITIZER = re.compile(r"Sanitizer|runtime error|DATA VIOLATION|fuzz_open:")


@pytest.fixture(scope="module")
def fuzz_binary(tmp_path_factory):
    """fuzz_open built with ASan and UBSan; skipped where gcc or the sanitizer runtimes are
    missing."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    folder = tmp_path_factory.mktemp("asan")
    probe = folder / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    proc = subprocess.run([gcc, *FLAGS, str(probe), "-o", str(folder / "probe")],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip("gcc cannot link -fsanitize=address,undefined (libasan/libubsan missing): "
                    + proc.stderr.decode(errors="replace")[-300:])
    with open(os.path.join(NATIVE, "mmkv.h")) as f:
        extra = ["-DHAVE_SCAN_ITEMS"] if "mmkv_iter_scan_items" in f.read() else []
    out = folder / "fuzz_open"
    cmd = [gcc, *FLAGS, *extra, "-I" + NATIVE, os.path.join(HERE, "fuzz_open.c"),
           *[os.path.join(NATIVE, s) for s in SOURCES], "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, timeout=300)
    assert proc.returncode == 0, ("building fuzz_open failed:\n"
                                  + proc.stderr.decode(errors="replace"))
    return str(out)


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder on tmpfs when there is one (fdatasync costs nothing there)."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    folder = tempfile.mkdtemp(prefix="mmkv-fuzz-", dir=base)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _run(cmd, timeout):
    env = dict(os.environ, **ENV)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        return (proc.returncode, proc.stdout.decode(errors="replace"),
                proc.stderr.decode(errors="replace"))
    except subprocess.TimeoutExpired as exc:
        return ("hung", (exc.stdout or b"").decode(errors="replace"),
                (exc.stderr or b"").decode(errors="replace"))


def _summary(stderr):
    """The line that names a finding: ASan's SUMMARY, UBSan's runtime error, ours."""
    for pattern in (r"SUMMARY: .*", r".*runtime error: .*", r"DATA VIOLATION.*", r"fuzz_open: .*"):
        m = re.search(pattern, stderr)
        if m:
            return m.group(0).strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "no output"


def _frames(stderr, count=8):
    return "\n".join(re.findall(r"^\s+#\d+ .*$", stderr, re.M)[:count])


def test_sanitizers_smoke_of_the_c_api_is_clean(fuzz_binary, workdir):
    """put/get/delete/pop/incr/cas/setdefault/popitem/clear/compact/iterate against a model,
    through table rebuilds, a compaction and a reopen: no sanitizer report, no leak."""
    rc, out, err = _run([fuzz_binary, "smoke", workdir], timeout=120)
    assert rc == 0 and "smoke ok" in out and not SANITIZER.search(err), err[-6000:]


def test_sanitizers_corpus_replays_clean(fuzz_binary, workdir):
    """Every reproducer kept in tests/fuzz/corpus runs clean under ASan and UBSan."""
    files = sorted(glob.glob(os.path.join(CORPUS, "*.mmkv")))
    if not files:
        pytest.skip("no corpus files")
    failures = []
    for path in files:          # one process each, so every failing file is named
        rc, out, err = _run([fuzz_binary, "replay", workdir, path], timeout=60)
        if rc != 0 or SANITIZER.search(err):
            failures.append("%s: returncode %s: %s\n%s" % (os.path.basename(path), rc,
                                                          _summary(err), _frames(err)))
    assert not failures, "%d of %d corpus files fail:\n%s" % (len(failures), len(files),
                                                              "\n\n".join(failures))


def test_sanitizers_fuzz_open_for_a_bounded_time_is_clean(fuzz_binary, workdir, tmp_path):
    """Mutated stores (flips, interesting values in the header, table and records,
    truncation, extension, zeroed ranges, recovery after a reboot, pending intents) through
    salvage, open "r" and "w"/"c", get, iterate, check, writes, clear and compact: no
    sanitizer report, signal, hang or wrong value, over MIN_ITERATIONS inputs at least."""
    deadline = time.monotonic() + FUZZ_SECONDS
    seed, iterations, runs, findings = 20261125, 0, 0, {}
    while time.monotonic() < deadline - 1 and len(findings) < 20:
        left = deadline - time.monotonic()
        rc, out, err = _run([fuzz_binary, "fuzz", workdir, "%.1f" % left, "100000000", str(seed)],
                            timeout=left + 60)
        runs += 1
        done = re.findall(r"^(?:iterations|progress) (\d+)", out, re.M)
        iterations += int(done[-1]) if done else 0
        if rc != 0 or SANITIZER.search(err):
            key = _summary(err)
            if key not in findings:
                saved = tmp_path / ("finding-%d.mmkv" % len(findings))
                current = os.path.join(workdir, "current-input.mmkv")
                if os.path.exists(current):
                    shutil.copy(current, saved)
                findings[key] = "seed %d, returncode %s, input saved as %s\n%s\n%s" % (
                    seed, rc, saved, _frames(err), err[-1500:] if not _frames(err) else "")
        seed += 1
    print("fuzz_open: %d iterations in %d runs, %d distinct findings"
          % (iterations, runs, len(findings)))
    assert not findings, "%d distinct findings in %d iterations:\n%s" % (
        len(findings), iterations, "\n\n".join("%s\n%s" % kv for kv in findings.items()))
    assert iterations > MIN_ITERATIONS, "only %d iterations in %.0f s" % (iterations, FUZZ_SECONDS)
