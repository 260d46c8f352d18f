"""Every `>>>` example in a docstring of the mmkv package runs and prints what it shows.

Issue 13: "Every example in the README and in docstrings runs as a doctest."  Each module
of mmkv/ is imported (the redis-backed ones need redis-py, which the test extra installs)
and doctest runs its examples, from a fresh temporary directory.  mmkv/__main__.py runs the
command line when imported, so it is read instead: it must hold no example.
"""
import doctest
import importlib
import os
import pkgutil

import pytest

# The checkout's package directory (the suite runs on an editable install of it); mmkv is
# imported only inside the tests, as everywhere in tests/, so collection needs no build.
PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mmkv")
MODULES = sorted(f"mmkv.{m.name}" for m in pkgutil.iter_modules([PACKAGE_DIR])
                 if m.name != "__main__")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module):
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def test_package_docstrings_hold_examples():
    """There are docstring examples to run, so the test below cannot pass vacuously."""
    assert sum(len(_examples(importlib.import_module(name))) for name in MODULES) >= 2


def test_main_module_holds_no_example():
    """mmkv/__main__.py is not imported (it runs the CLI): it must hold no `>>>` example."""
    with open(os.path.join(PACKAGE_DIR, "__main__.py"), encoding="utf-8") as f:
        assert ">>>" not in f.read()


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples_pass(name, tmp_path, monkeypatch):
    """Each docstring example of the module gives the output it shows."""
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _examples(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
