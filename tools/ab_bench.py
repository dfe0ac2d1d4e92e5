"""Interleaved A/B of make bench's figures between two revisions, same machine.

    python tools/ab_bench.py REV_A REV_B [--pairs 3] [--only switch,echo,idle]
                             [--rows microthreads]

Each revision is checked out in a temporary worktree, and ``python -m bench
--runs 1`` runs from it (cwd and PYTHONPATH there, so every server process
the bench starts imports that revision), alternating A, B, A, B... so that a
machine whose speed drifts affects both alike. Prints, as a Markdown table,
each figure of each row: A's and B's runs, their medians, and B's change
(positive is better), flagging a fall of more than 10%. The peers' code is
the same in both, so a change of microthreads' figure is the change of its
standing against every peer. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_once(checkout: Path, only: str, rows: str) -> dict:
    """One ``python -m bench --runs 1`` from ``checkout``; the tables it measured
    (not those latest.json keeps from earlier runs)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    subprocess.run([sys.executable, "-m", "bench", "--runs", "1", "--only", only,
                    "--rows", rows], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    results = json.loads((checkout / "bench" / "results" / "latest.json").read_text())
    kept = set(results.get("kept_from_earlier_runs", ()))
    return {name: table for name, table in results["tables"].items() if name not in kept}


def figures(tables: dict, names: list[str], rows: list[str]):
    """(table, figure, row) -> (value, better) of the tables measured."""
    for name in names:
        table = tables[name]
        for figure in table["figures"]:
            for row in rows:
                value = ((table["rows"].get(row) or {}).get("median") or {}).get(figure["key"])
                if value is not None:
                    yield (name, figure["label"], row), (value, figure["better"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", default="switch,echo,idle")
    parser.add_argument("--rows", default="microthreads")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {args.a: [], args.b: []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {rev: Path(tmp) / side for rev, side in ((args.a, "a"), (args.b, "b"))}
        for rev, tree in trees.items():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(tree), rev], check=True)
        try:
            for pair in range(args.pairs):
                for rev, tree in trees.items():
                    print(f"pair {pair + 1}: {rev}", file=sys.stderr, flush=True)
                    runs[rev].append(bench_once(tree, args.only, args.rows))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)
    names = list(runs[args.a][0])
    rows = args.rows.split(",")
    values: dict = {}
    for rev, tables_of_runs in runs.items():
        for tables in tables_of_runs:
            for where, (value, better) in figures(tables, [n for n in names if n in tables],
                                                  rows):
                values.setdefault(where, {"better": better}).setdefault(rev, []).append(value)
    print(f"| table | figure | row | {args.a} | {args.b} | change | |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (name, label, row), seen in values.items():
        if args.a not in seen or args.b not in seen:
            continue
        a, b = statistics.median(seen[args.a]), statistics.median(seen[args.b])
        if not a or not b:
            continue
        change = (b / a - 1) if seen["better"] == "higher" else (a / b - 1)
        flag = "below -10%" if change < -0.10 else ""
        show = ", ".join(f"{v:.4g}" for v in seen[args.a]), ", ".join(
            f"{v:.4g}" for v in seen[args.b])
        print(f"| {name} | {label} | {row} | {a:.4g} ({show[0]}) | {b:.4g} ({show[1]}) "
              f"| {change:+.0%} | {flag} |")


if __name__ == "__main__":
    main()
