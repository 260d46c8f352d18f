"""Fixtures for the multi-process tests: real processes started with "spawn".

This folder goes on sys.path so the test modules and their spawned children (which inherit
sys.path) can import the worker modules by name.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _harness import children, db_path  # noqa: E402,F401  (fixtures)
