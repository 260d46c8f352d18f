"""One PNG from a peers.py JSON: median ops/s per workload and store, grouped bars, log scale.

Reads the "summary" rows that peers.py writes (store label, op, n, median ops/s) and draws one
group of bars per workload (insert, get, miss, iterate, overwrite, delete), one bar per store,
in a fixed order with mmkv first.  A store that does not run a workload leaves a gap.  The
stores measured on a smaller N (the slow peers, the fsync-per-write ones) say so in the legend.
Needs matplotlib (the `bench` extra).  The method is in README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPS = ("insert", "get", "miss", "iterate", "overwrite", "delete")
ORDER = ("mmkv", "mmkv shm", "dict", "lmdb sync=False", "lmdb 1 read txn", "rocksdict",
         "UltraDict", "diskcache", "sqlitedict 1 commit", "dbm.gnu", "dbm.ndbm", "dbm.dumb",
         "Manager().dict()", "Redis", "sqlitedict autocommit", "mmkv durable=True",
         "lmdb sync=True")
LABELS = {"lmdb sync=False": "lmdb, txn per op", "lmdb 1 read txn": "lmdb, 1 read txn",
          "sqlitedict 1 commit": "sqlitedict, 1 commit", "Redis": "Redis (loopback)"}


def load(path: Path) -> tuple[dict[str, dict[str, float]], dict[str, int], int, dict]:
    """{store: {op: median ops/s}}, {store: n}, the full N, and the whole document."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    rates: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for row in doc["summary"]:
        rates.setdefault(row["store"], {})[row["op"]] = row["median"]
        counts[row["store"]] = row["n"]
    return rates, counts, doc["workload"]["n"], doc


def ordered(stores) -> list[str]:
    known = [s for s in ORDER if s in stores]
    return known + sorted(s for s in stores if s not in ORDER)


def legend_label(store: str, n: int, full_n: int) -> str:
    label = LABELS.get(store, store)
    return label if n == full_n else f"{label} (N={n:,})"


def colours(stores: list[str]) -> list:
    """mmkv's rows in strong reds, the rest from a qualitative map."""
    import matplotlib
    others = matplotlib.colormaps["tab20"]
    strong = {"mmkv": "#c0152f", "mmkv shm": "#f06a6a", "mmkv durable=True": "#7a0019"}
    shades = [others(i) for i in (0, 2, 4, 8, 10, 12, 14, 16, 18, 1, 3, 5, 9, 11, 13, 15, 17, 19)]
    rest = iter(shades * 2)                 # tab20 without its reds: the dark shades first
    return [strong[store] if store in strong else next(rest) for store in stores]


def plot(source: Path, target: Path, title: str | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates, counts, full_n, doc = load(source)
    stores = ordered(rates)
    ops = [op for op in OPS if any(op in rates[s] for s in stores)]
    width = 0.85 / len(stores)
    fig, ax = plt.subplots(figsize=(15, 7), dpi=110)
    for i, (store, colour) in enumerate(zip(stores, colours(stores), strict=True)):
        xs = [j + (i - (len(stores) - 1) / 2) * width for j, op in enumerate(ops)
              if op in rates[store]]
        ys = [rates[store][op] for op in ops if op in rates[store]]
        ax.bar(xs, ys, width * 0.95, color=colour,
               label=legend_label(store, counts[store], full_n),
               edgecolor="black" if store.startswith("mmkv") else "none", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)), [op if op != "iterate" else "iterate (items)" for op in ops],
                  fontsize=12)
    ax.set_ylabel("operations per second (median; log scale)", fontsize=12)
    ax.grid(axis="y", which="major", alpha=0.4)
    ax.grid(axis="y", which="minor", alpha=0.12)
    ax.set_axisbelow(True)
    for j in range(1, len(ops)):
        ax.axvline(j - 0.5, color="grey", linewidth=0.5, alpha=0.5)
    ax.set_xlim(-0.5, len(ops) - 0.5)
    day = doc.get("date", "")[:10]
    ax.set_title(title or f"mmkv and its peers, one thread, {full_n:,} keys of"
                 f" {doc['workload']['key_len']} B, values of {doc['workload']['value_len']} B"
                 f" ({day}, tools/bench/peers.py)", fontsize=13)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=10, frameon=False)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="a peers.py --out file")
    parser.add_argument("--out", type=Path, help="the PNG (default: the JSON's name, .png)")
    parser.add_argument("--title", help="replaces the default title")
    args = parser.parse_args(argv)
    target = args.out or args.json.with_suffix(".png")
    plot(args.json, target, args.title)
    print(f"plot: wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
