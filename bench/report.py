"""Presenting results: a terminal table per scenario with ratios to
microthreads, bench/results/latest.json, and bench/results/latest.png."""

import json
import statistics

from bench import runner
from bench.scenarios import (
    ASYNCIO,
    C_LIMIT,
    CHAT_ROWS,
    GREENLET,
    MICROTHREADS,
    PLOTTED,
    SELECTORS,
    UVLOOP,
)

RESULTS = runner.BENCH / "results"
REFERENCE = MICROTHREADS.key
LABEL_WIDTH = 32


def row_label(row, versions):
    if row is SELECTORS:
        return f"{row.name} (Python {versions['python']})"
    if row is C_LIMIT:
        return f"{row.name} (cc -O2)"
    if row is ASYNCIO:
        return f"{row.name} (Python {versions['python']})"
    return f"{row.name} {versions.get(row.version_of, '')}".strip()


def medians(runs, figures):
    return {f.key: statistics.median(run[f.key] for run in runs)
            for f in figures if all(f.key in run for run in runs)}


def format_value(value, figure):
    if value is None:
        return "-"
    if figure.digits == -2:
        return f"{value:.0%}" if value >= 0 else "?"
    if figure.digits >= 0:
        return f"{value:,.{figure.digits}f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_ratio(value, reference):
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def format_table(table, result, versions, runs):
    """The table as text: one line per row, each figure beside its ratio to
    microthreads (zero-figures, which must be 0, get no ratio)."""
    rows = result["rows"]
    reference = rows.get(REFERENCE, {}).get("median") or {}
    header = " " * LABEL_WIDTH
    widths = {}
    for figure in table.figures:
        title = figure.label + {"higher": " ^", "lower": " v"}.get(figure.better, "")
        widths[figure.key] = max(len(title) + 2, 11)
        header += title.rjust(widths[figure.key])
        if figure.better in ("higher", "lower"):
            header += "vs mt".rjust(7)
    lines = [f"{table.title}  (median of {runs} run{'s' * (runs != 1)})", header]
    for row in table.rows:
        entry = rows.get(row.key)
        if entry is None:
            continue
        label = row_label(row, versions)[:LABEL_WIDTH - 1].ljust(LABEL_WIDTH)
        if entry["median"] is None:
            lines.append(f"{label}{entry['status']}")
            continue
        text = label
        for figure in table.figures:
            value = entry["median"].get(figure.key)
            shown = format_value(value, figure)
            if figure.better == "zero" and value:
                shown += " !"
            text += shown.rjust(widths[figure.key])
            if figure.better in ("higher", "lower"):
                text += format_ratio(value, reference.get(figure.key)).rjust(7)
        if entry["errors"]:
            text += f"  ({len(entry['errors'])} run(s) failed: {entry['errors'][0]})"
        lines.append(text)
    if table.note:
        lines.append(f"  note: {table.note}")
    lines.append("  ^ higher is better, v lower is better; vs mt = this row's figure / "
                 "microthreads'")
    return "\n".join(line.rstrip() for line in lines)


def write_json(report):
    """Write latest.json, keeping the tables of an earlier latest.json that
    this run did not measure (a run of some scenarios replaces only theirs).
    Each table carries the date of the run that measured it. Returns the
    path and the merged report."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    for table in report["tables"].values():
        table.setdefault("date", report["date"])
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    kept = {key: {**table, "date": table.get("date", earlier.get("date"))}
            for key, table in earlier.get("tables", {}).items()
            if key not in report["tables"]}
    if kept:
        report = {**report, "tables": {**kept, **report["tables"]},
                  "kept_from_earlier_runs": sorted(kept)}
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path, report


def plot(report, tables):
    """One bar group per plotted figure, each row's median divided by
    microthreads' (or by asyncio's where microthreads has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {table.key: table for table in tables}
    groups = [(t, f, label) for t, f, label in PLOTTED if t in report["tables"]]
    if not groups:
        return None
    present = {row for table_key, _, _ in groups for row in by_key[table_key].rows}
    rows = [row for row in [*CHAT_ROWS, GREENLET] if row in present]
    colors = {"gevent": "#4c72b0", "eventlet": "#8172b3", "asyncio": "#55a868",
              "uvloop": "#64b5cd", "trio": "#ccb974", "selectors": "#937860",
              "selectors_batched": "#b5a48a", "c": "#8c8c8c", "microthreads": "#c44e52",
              "greenlet": "#da8bc3"}
    fig, ax = plt.subplots(figsize=(17, 7.5), dpi=100)
    width = 0.85 / len(rows)
    labels, used = [], set()
    for g, (table_key, figure_key, label) in enumerate(groups):
        table_rows = report["tables"][table_key]["rows"]

        def median_of(key, table_rows=table_rows, figure_key=figure_key):
            entry = table_rows.get(key) or {}
            return (entry.get("median") or {}).get(figure_key)

        reference = median_of(REFERENCE)
        if not reference:
            reference = median_of(ASYNCIO.key)
            label += "\n(vs asyncio)"
        figure = next(f for f in by_key[table_key].figures if f.key == figure_key)
        labels.append(f"{label}\n{'higher' if figure.better == 'higher' else 'lower'} "
                      "is better")
        shown = [row for row in rows if median_of(row.key) is not None and reference]
        for i, row in enumerate(shown):
            x = g + (i - (len(shown) - 1) / 2) * width
            ratio = median_of(row.key) / reference
            ax.bar(x, ratio, width * 0.95, color=colors.get(row.key, "#333333"),
                   label=None if row.key in used else row.name)
            used.add(row.key)
            ax.text(x, ratio * 1.04, f"{ratio:.2g}", ha="center", va="bottom",
                    fontsize=6.5, rotation=90)
    ax.axhline(1.0, color="#c44e52", linewidth=1, linestyle="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels, fontsize=8.5)
    ax.set_ylabel("ratio to microthreads (log scale; microthreads = 1.0)")
    machine = report["machine"]
    runs = report["settings"]["runs"]
    ax.set_title(
        f"microthreads benchmarks, {report['date'][:10]}: each figure divided by "
        f"microthreads' (median of {runs} run{'s' * (runs != 1)})\n"
        f"{machine['cpu']}, server on CPU {machine['server_cpu']}, load generator on CPU "
        f"{machine['client_cpu']}, {machine['python']}", fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    order = [r.name for r in rows if r.name in names]
    ax.legend([handles[names.index(n)] for n in order], order, fontsize=8, ncol=len(order),
              loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    path = RESULTS / "latest.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path



# Issue 28's table: (figure, microthreads' (table, figure), [(bound, (table, row, figure))], goal)
BOUNDS = [
    ("sleep(0) round trip, 2 tasks, ns", ("switch", "sleep0_2_ns"),
     [("raw greenlet pair", ("switch", GREENLET.key, "sleep0_2_ns")),
      ("uvloop", ("switch", UVLOOP.key, "sleep0_2_ns"))],
     "at most 1.5x the raw pair, and below uvloop"),
    ("spawn + join of 100,000, s", ("spawn", "spawn_join_s"),
     [("asyncio tasks", ("spawn", ASYNCIO.key, "spawn_join_s"))],
     "no slower than asyncio (1.00x)"),
    ("idle logged-in member, KiB RSS", ("idle", "kib_per_member"),
     [("a parked tasklet (spawn table)", ("spawn", MICROTHREADS.key, "idle_task_kib")),
      ("uvloop", ("idle", UVLOOP.key, "kib_per_member"))],
     "at most 7 KiB"),
    ("echo, 100 connections, req/s", ("echo", "req_s"),
     [("selectors floor", ("echo", SELECTORS.key, "req_s"))],
     "at least 0.8x the floor"),
]


def _median(tables, table_key, row_key, figure_key):
    row = (tables.get(table_key) or {}).get("rows", {}).get(row_key) or {}
    return (row.get("median") or {}).get(figure_key)


def format_bounds(tables):
    """Issue 28's figures from this run's tables: microthreads' median beside
    each bound's and the ratio microthreads / bound; a figure whose tables
    were not measured in this run says so."""
    lines = ["microthreads against what bounds it (issue 28)",
             f"{'figure':<34}{'microthreads':>13}  {'bound':<31}{'bound fig':>10}"
             f"{'ratio to bound':>16}  goal"]
    for name, (table_key, figure_key), bounds, goal in BOUNDS:
        ours = _median(tables, table_key, REFERENCE, figure_key)
        for i, (bound_name, where) in enumerate(bounds):
            theirs = _median(tables, *where)
            shown = "not measured" if ours is None else f"{ours:,.2f}"
            bound = "not measured" if theirs is None else f"{theirs:,.2f}"
            ratio = format_ratio(ours, theirs) if ours is not None else "-"
            lines.append(f"{name if i == 0 else '':<34}{shown if i == 0 else '':>13}  "
                         f"{bound_name:<31}{bound:>10}{ratio:>16}  {goal if i == 0 else ''}")
    return "\n".join(line.rstrip() for line in lines)
