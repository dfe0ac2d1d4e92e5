"""python -m bench [--quick] [--only SCENARIO[,...]] [--runs N]

Runs every scenario for every row, prints a table per scenario with ratios
to microthreads, and writes bench/results/latest.json and latest.png.
See bench/README.md.
"""

import argparse
import datetime
import signal
import sys
import time
from dataclasses import asdict, replace

from bench import machine, report, runner, scenarios
from bench.scenarios import MICROTHREADS, SCENARIOS, RunError

ROW_KEYS = [row.key for row in [*scenarios.CHAT_ROWS, scenarios.GREENLET, scenarios.CHAT_WORKERS,
                                 *scenarios.HTTP_ROWS[:-1]]]


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="microthreads against gevent, eventlet, asyncio, uvloop, trio, a "
                    "selectors floor and a C epoll limit.")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check: 1 run, short durations, 500 idle members")
    parser.add_argument("--only", metavar="SCENARIO[,...]",
                        help=f"run only these scenarios: {', '.join(SCENARIOS)} "
                             "(or a single table: chat100, chat1000, crowd2000, crowd10000)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    parser.add_argument("--rows", metavar="ROW[,...]",
                        help=f"run only these rows: {', '.join(ROW_KEYS)}")
    parser.add_argument("--idle-members", type=int,
                        help="members in the idle scenario (default 1,000; --quick 500); "
                             "logging in M members costs M(M+1)/2 join lines")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.idle_members is not None and not 1 <= args.idle_members <= 15000:
        parser.error("--idle-members must be between 1 and 15,000")
    return args


def select_tables(settings, only, parser_error):
    tables = scenarios.tables(settings)
    if not only:
        return [t for t in tables if t.default]
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = set(SCENARIOS) | {table.key for table in tables}
    unknown = wanted - known
    if unknown:
        parser_error(f"unknown scenario {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(sorted(known))}")
    return [t for t in tables if (t.scenario in wanted and t.default) or t.key in wanted]


def probe_microthreads(procs):
    """What the microthreads rows cannot run, and why: {"microthreads" or "chat": reason}."""
    checks = {
        "microthreads": [runner.PYTHON, "-c", "import microthreads, microthreads.net"],
        "chat": [runner.PYTHON, "-m", "chat", "--help"],
    }
    unavailable = {}
    for what, cmd in checks.items():
        reason = procs.check(cmd, runner.SERVER_CPU, f"probe-{what}", timeout=30)
        if reason:
            unavailable[what] = reason
    return unavailable


def short(figures, table):
    figure = table.figures[0]
    return report.format_value(figures.get(figure.key), figure)


def run_table(table, settings, ctx, versions, row_keys):
    rows = [row for row in table.rows if row_keys is None or row.key in row_keys]
    entries = {row.key: {"label": report.row_label(row, versions), "runs": [], "errors": [],
                         "median": None, "status": "ok"} for row in rows}
    skip = set()
    if MICROTHREADS.key in entries and table.needs in ctx.unavailable:
        entries[MICROTHREADS.key]["status"] = f"n/a ({ctx.unavailable[table.needs]})"
        skip.add(MICROTHREADS.key)
    for number in range(1, settings.runs + 1):
        started = time.monotonic()
        print(f"  {table.key} run {number}/{settings.runs}:", end="", flush=True)
        for row in rows:
            if row.key in skip:
                continue
            entry = entries[row.key]
            try:
                figures = table.run(row, settings, ctx)
            except RunError as error:
                entry["errors"].append(str(error))
                if not entry["runs"]:  # it never worked: do not wait on it again
                    skip.add(row.key)
                print(f" {row.key} FAILED", end="", flush=True)
                continue
            entry["runs"].append(figures)
            print(f" {row.key} {short(figures, table)}", end="", flush=True)
        print(f"  [{time.monotonic() - started:.0f} s]", flush=True)
    for entry in entries.values():
        if entry["runs"]:
            entry["median"] = report.medians(entry["runs"], table.figures)
        elif entry["errors"]:
            entry["status"] = f"n/a ({entry['errors'][0]})"
    return {"title": table.title, "note": table.note,
            "figures": [asdict(figure) for figure in table.figures], "rows": entries}


def main(argv=None):
    parser_args = parse_args(argv)
    settings = scenarios.QUICK if parser_args.quick else scenarios.DEFAULT
    if parser_args.runs:
        settings = replace(settings, runs=parser_args.runs)
    if parser_args.idle_members:
        settings = replace(settings, idle_members=parser_args.idle_members)
    tables = select_tables(settings, parser_args.only,
                           lambda message: sys.exit(f"python -m bench: {message}"))
    row_keys = None
    if parser_args.rows:
        row_keys = {key.strip() for key in parser_args.rows.split(",")}
        if row_keys - set(ROW_KEYS):
            sys.exit(f"python -m bench: unknown row {', '.join(sorted(row_keys - set(ROW_KEYS)))}")

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)  # SIGINT too: it may arrive ignored
    procs = runner.Processes()
    started = time.monotonic()
    try:
        ctx = scenarios.Context(procs, str(runner.build("loadgen")), str(runner.build("cserver")))
        about = machine.describe()
        print(machine.summary(about), flush=True)
        print(f"settings: {settings.runs} run(s) per figure{', quick' if settings.quick else ''};"
              f" logs in {runner.LOGS.relative_to(runner.ROOT)}/", flush=True)
        if row_keys is None or MICROTHREADS.key in row_keys:
            ctx.unavailable = probe_microthreads(procs)
            for what, reason in ctx.unavailable.items():
                print(f"microthreads rows needing {what}: n/a ({reason})", flush=True)
        results = {}
        for table in tables:
            results[table.key] = run_table(table, settings, ctx, about["versions"], row_keys)
    except KeyboardInterrupt:
        print("\ninterrupted: every child process has been killed; no results written",
              file=sys.stderr)
        return 130
    finally:
        procs.kill_all()

    print()
    for table in tables:
        print(report.format_table(table, results[table.key], about["versions"], settings.runs))
        print()
    print(report.format_bounds(results))
    print()
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "seconds": round(time.monotonic() - started, 1),
        "settings": asdict(settings),
        "machine": about,
        "versions": about["versions"],
        "tables": results,
    }
    path, merged = report.write_json(result)
    kept = merged.get("kept_from_earlier_runs")
    print(f"wrote {path.relative_to(runner.ROOT)}"
          + (f" (kept the earlier {', '.join(kept)})" if kept else ""))
    if not any(table.key == key for table in tables for key, _, _ in scenarios.PLOTTED):
        print("latest.png unchanged: none of its figures was measured in this run")
    else:
        try:
            path = report.plot(merged, scenarios.tables(settings))
            if path:
                print(f"wrote {path.relative_to(runner.ROOT)}")
        except ImportError as error:
            print(f"no plot: {error}")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
