"""Fixtures for the SIGKILL tests: real processes started with "spawn", killed with SIGKILL.

The process plumbing and the self-validating values are shared with tests/multiproc, so both
folders go on sys.path; spawned children inherit sys.path and import the workers by name.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for folder in (HERE, os.path.join(os.path.dirname(HERE), "multiproc")):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from _harness import children, db_path  # noqa: E402,F401  (fixtures)
