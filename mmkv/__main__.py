"""`python -m mmkv`: the command line (mmkv.cli)."""
from .cli import main

raise SystemExit(main())
