"""Standings of two bench runs, figure by figure.

    python tools/bench_compare.py OLD.json NEW.json

A standing is how many times better microthreads is than a peer on one
figure of one run (peer/microthreads where lower is better, the inverse
where higher is). Prints, as a Markdown table, each standing in both runs
and its change, flagging a fall of more than 10%. The scale-out table is
left out: its rows are not peers.
"""

from __future__ import annotations

import json
import sys


def median(table: dict, row: str, key: str) -> float | None:
    return ((table["rows"].get(row) or {}).get("median") or {}).get(key)


def standings(old: dict, new: dict):
    for name, old_table in old["tables"].items():
        new_table = new["tables"].get(name)
        if not new_table or name == "cluster":
            continue
        for figure in old_table["figures"]:
            key, better = figure["key"], figure["better"]
            old_mt = median(old_table, "microthreads", key)
            new_mt = median(new_table, "microthreads", key)
            if better not in ("higher", "lower") or not old_mt or not new_mt:
                continue
            for row in old_table["rows"]:
                old_peer, new_peer = median(old_table, row, key), median(new_table, row, key)
                if row == "microthreads" or not old_peer or not new_peer:
                    continue
                if better == "higher":
                    before, after = old_mt / old_peer, new_mt / new_peer
                else:
                    before, after = old_peer / old_mt, new_peer / new_mt
                yield name, figure["label"], row, before, after


def main() -> None:
    with open(sys.argv[1]) as old_file, open(sys.argv[2]) as new_file:
        old, new = json.load(old_file), json.load(new_file)
    print("| table | figure | peer | old standing | new standing | change | |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, label, row, before, after in standings(old, new):
        change = after / before - 1
        flag = "below -10%" if change < -0.10 else ""
        print(f"| {name} | {label} | {row} | {before:.2f}x | {after:.2f}x "
              f"| {change:+.0%} | {flag} |")


if __name__ == "__main__":
    main()
