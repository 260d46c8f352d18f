"""Markdown tables from a peers.py JSON, for the results page that goes beside it.

Prints: mmkv over each peer per workload, the rates of every row, the value-size figure, the
busy-thread figure, the get cost against store size, and issue 11's other figures as stored.
It computes nothing that peers.py did not store except formatting (and MB/s already stored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPS = ("insert", "get", "miss", "iterate", "overwrite", "delete")


def rate(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def ratio(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def peer_table(doc: dict) -> list[str]:
    rows = doc["summary"]
    counts = {r["store"]: r["n"] for r in rows}
    table = doc["ratios_mmkv_over_peer"]
    peers = [s for s in dict.fromkeys(r["store"] for r in rows)
             if s not in ("mmkv", "mmkv durable=True")]
    out = ["| peer (N) | " + " | ".join(OPS) + " |", "| --- |" + " ---: |" * len(OPS)]
    for peer in sorted(peers, key=lambda p: (p == "lmdb sync=True", -counts[p])):
        name = (f"durable: mmkv durable=True over {peer}" if peer == "lmdb sync=True" else peer)
        out.append(f"| {name} ({counts[peer]:,}) | "
                   + " | ".join(ratio(table.get(op, {}).get(peer)) for op in OPS) + " |")
    return out


def rates_table(doc: dict) -> list[str]:
    rows = {(r["store"], r["op"]): r for r in doc["summary"]}
    stores = list(dict.fromkeys(r["store"] for r in doc["summary"]))
    out = ["| store | " + " | ".join(OPS) + " |", "| --- |" + " ---: |" * len(OPS)]
    for s in stores:
        out.append(f"| {s} | " + " | ".join(
            f"{rate(rows[s, op]['median'])}" if (s, op) in rows else "" for op in OPS) + " |")
    return out


def values_table(doc: dict) -> list[str]:
    fig = doc["figures"].get("values")
    if not fig:
        return ["(no values figure in this run)"]
    out = ["| value, N | op | store | ops/s | MB/s | mmkv / store |",
           "| --- | --- | --- | ---: | ---: | ---: |"]
    for size, entry in fig["sizes"].items():
        label = f"{int(size):,} B, {entry['n']:,}"
        for op in fig["ops"]:
            for r in entry["summary"]:
                if r["op"] != op:
                    continue
                mine = entry["ratios_mmkv_over_peer"].get(op, {}).get(r["store"])
                out.append(f"| {label} | {op} | {r['store']} | {rate(r['median'])} |"
                           f" {r['median_mb_per_s']:.1f} | {ratio(mine)} |")
    return out


def busy_table(doc: dict) -> list[str]:
    fig = doc["figures"].get("busy")
    if not fig:
        return ["(no busy figure in this run)"]
    med = {(r["store"], r["op"], r["busy"]): r["median"] for r in fig["summary"]}
    out = ["| op | busy threads | mmkv ops/s | mmkv / dict | mmkv / lmdb | mmkv beside them"
           " / alone | dict ditto | lmdb ditto |", "| --- | ---: |" + " ---: |" * 6]
    for key, values in fig["ratios"].items():
        op, busy = key.split(" busy=")
        out.append(f"| {op} | {busy} | {rate(med.get(('mmkv', op, int(busy)), 0))} | "
                   + " | ".join(ratio(values.get(n)) for n in
                                ("mmkv/dict", "mmkv/lmdb", "mmkv vs alone", "dict vs alone",
                                 "lmdb vs alone")) + " |")
    return out


def scale_table(doc: dict) -> list[str]:
    fig = doc["figures"].get("scale")
    if not fig:
        return ["(no scale figure in this run)"]
    out = ["| keys | mmkv ns/get | cost vs base | dict ns/get | cost vs base | lmdb ns/get |"
           " cost vs base |", "| ---: |" + " ---: |" * 6]
    for n, e in fig["sizes"].items():
        if "skipped" in e:
            out.append(f"| {int(n):,} | skipped: {e['skipped']} | | | | | |")
            continue
        out.append(f"| {int(n):,} | " + " | ".join(
            f"{e[k]['median_ns']:.0f} | {e[k].get('cost_vs_base', 0):.2f}" if k in e else " | "
            for k in ("mmkv", "dict", "lmdb")) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="a peers.py --out file")
    doc = json.loads(parser.parse_args(argv).json.read_text(encoding="utf-8"))
    sections = [("mmkv over each peer", peer_table(doc)), ("median ops/s", rates_table(doc)),
                ("value sizes", values_table(doc)), ("busy threads", busy_table(doc)),
                ("get cost against store size", scale_table(doc))]
    for title, lines in sections:
        print(f"## {title}\n")
        print("\n".join(lines) + "\n")
    print("## issue_11_figures (as stored)\n")
    for name, value in doc["issue_11_figures"].items():
        print(f"- {name}: {json.dumps(value)}")
    print(f"\nload average: start {doc['machine'].get('load_average_start')},"
          f" end {doc['machine'].get('load_average_end')}; notes: {doc.get('notes')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
