"""Packaging (issue 13): `python -m build` makes an abi3 wheel and an sdist holding the tests,
and each installs into a fresh venv where the package imports and works.  Slow: it compiles
the core twice and creates two venvs (pip may fetch the build requirements)."""

import os
import subprocess
import sys
import tarfile
import venv
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 900
SMOKE = ("import json, mmkv, sys; d = mmkv.open(sys.argv[1], codec=json); d['k'] = [1]; "
         "assert d['k'] == [1] and d.incr('n') == 1; d.close(); print(mmkv.__version__)")


def _run(*argv, cwd=None):
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT)
    assert r.returncode == 0, (argv, r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
         str(out), ROOT)
    wheel = next(out.glob("*.whl"))
    sdist = next(out.glob("*.tar.gz"))
    return wheel, sdist


def _fresh_venv(where):
    venv.create(where, with_pip=True)
    return os.path.join(where, "bin", "python")


@pytest.mark.slow
def test_wheel_tagged_abi3_with_license_and_types(dists):
    """The wheel is cp310-abi3, ships LICENSE, py.typed and the stubs, and declares the SPDX
    license."""
    wheel, _ = dists
    assert wheel.name.endswith("-cp310-abi3-linux_x86_64.whl") or "-cp310-abi3-" in wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert {"mmkv/py.typed", "mmkv/_core.pyi", "mmkv/_store.pyi"} <= set(names)
    assert any(n.startswith("mmkv/_core.abi3") for n in names)
    assert "License-Expression: MIT" in meta and "Classifier: Typing :: Typed" in meta


@pytest.mark.slow
def test_sdist_holds_the_tests_license_and_changelog(dists):
    """The sdist carries the test suite, LICENSE and CHANGELOG.md, and no built objects."""
    _, sdist = dists
    with tarfile.open(sdist) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    assert {"LICENSE", "CHANGELOG.md", "tests/conftest.py", "tests/unit/test_codec.py",
            "native/mmkv.h", "mmkv/_build.py"} <= set(names)
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["wheel", "sdist"])
def test_dist_installs_into_a_fresh_venv_and_works(tmp_path, dists, which):
    """Each distribution installs into a fresh venv, away from the checkout, and works."""
    wheel, sdist = dists
    python = _fresh_venv(str(tmp_path / "venv"))
    _run(python, "-m", "pip", "install", "-q", str(wheel if which == "wheel" else sdist),
         cwd=str(tmp_path))
    version = _run(python, "-c", SMOKE, str(tmp_path / "s.mmkv"), cwd=str(tmp_path)).strip()
    assert version == _run(sys.executable, "-c", "import mmkv; print(mmkv.__version__)").strip()
    _run(os.path.join(str(tmp_path / "venv"), "bin", "mmkv"), "check", str(tmp_path / "s.mmkv"))
