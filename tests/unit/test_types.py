"""The package's types as a user's mypy --strict sees them (issue 13: "mmkv.open(p,
codec=json) types as Store[Any] and the default as Store[bytes]")."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = '''\
import json
import mmkv

d = mmkv.open("a.mmkv")
reveal_type(d)
reveal_type(d.get("k"))
j = mmkv.open("a.mmkv", codec=json)
reveal_type(j)
reveal_type(mmkv.open_shm("x"))
d["k"] = "text"
n: int = d.incr(b"k")
'''


def test_mypy_strict_on_a_user_program_types_store_by_codec(tmp_path):
    """mypy --strict on a program using mmkv.open: no error, Store[bytes] without a codec
    and Store[Any] with codec=json."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = dict(os.environ, MYPYPATH=ROOT)       # an editable install hides the package
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "prog.py"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert 'Revealed type is "mmkv._store.Store[bytes]"' in out
    assert 'Revealed type is "bytes | None"' in out
    assert 'Revealed type is "mmkv._store.Store[Any]"' in out
