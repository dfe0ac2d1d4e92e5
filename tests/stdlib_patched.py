"""CPython's own tests of the modules patching touches, run after ``monkey.patch_all()``.

``make test-stdlib`` runs this. Each module of ``MODULES`` runs in a fresh
interpreter of its own (patching is process-wide and a hung test must not
take the others with it) that calls ``monkey.patch_all()`` first, then runs
``test.<module>`` with ``unittest`` (a module's ``load_tests``, or its
``test_main()`` with ``test.support.run_unittest`` running what it is
handed), at most ``--timeout`` seconds (default 300) per module.

Every test must pass (or skip) except the ones listed in
``tests/stdlib_known_failures.txt``: one test id a line, then its reason.
A listed test is not run (some of them hang), and counts as a known failure;
``--run-known`` runs them too and reports those that now pass (their entry
goes). The run fails on a failure that is not listed and on a module that
overruns its time or dies. Entries for tests this Python does not have are
ignored; ``3.10,3.13:`` before an id limits the entry to those versions,
``unpatched:`` makes it hold for the unpatched baseline too (a failure of
the machine's own; the baseline ignores the other entries).

    python tests/stdlib_patched.py                      # every module, patched
    python tests/stdlib_patched.py test_socket test_ssl # some of them
    python tests/stdlib_patched.py test_socket.FileObjectClassTestCase  # a class or a test
    python tests/stdlib_patched.py --unpatched          # the baseline: no patching, no list
    python tests/stdlib_patched.py --run-known test_ssl  # which listed ones pass now?
    python tests/stdlib_patched.py --jobs 2 --timeout 300 --json out.json

An interpreter without the ``test`` package (Debian splits it off) is
reported and the run exits 0. The ``network``, ``subprocess`` and
``walltime`` resources are on (``test_timeout`` needs ``network`` to run at
all; its tests of remote hosts skip themselves where there is no DNS, as
here); the child gets the default SIGINT handler even when started in the
background (``test_threading``'s ``interrupt_main`` tests need it).

A patched child runs with ``MICROTHREADS_THREAD_IDLE=0`` (unless the
environment sets it): ``run_in_thread``'s workers (name lookups: every
``connect(("localhost", port))``) exit as soon as they are idle, not 5 s
later. CPython's threaded tests wait, after each test, until the number of
threads is back where it was (``threading_helper.wait_threads_exit``), so
with the default each such test lasted 5 s and test_socket overran its time
(in FileObjectClassTestCase, where it looked like a hang).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KNOWN_FAILURES = os.path.join(HERE, "stdlib_known_failures.txt")

#: Issue 27's list: the stdlib modules whose behaviour patching replaces or leans on.
MODULES = [
    "test_socket", "test_ssl", "test_selectors", "test_select", "test_subprocess",
    "test_httplib", "test_httpservers", "test_urllib", "test_urllib2_localnet",
    "test_socketserver", "test_ftplib", "test_smtplib", "test_poplib", "test_imaplib",
    "test_wsgiref", "test_xmlrpc", "test_timeout", "test_thread", "test_threading",
    "test_threading_local", "test_queue", "test_signal", "test_telnetlib",
]
#: Started first (each took 25-50 s on 3.11, most of it waiting), so the others fill the
#: remaining jobs around them instead of leaving one of them last, alone.
SLOW_FIRST = ["test_imaplib", "test_signal", "test_ssl", "test_socket", "test_xmlrpc",
              "test_subprocess"]
#: The resources test.support lets tests use (regrtest's -u); network is left out.
RESOURCES = ["network", "subprocess", "walltime"]
FAILED = ("fail", "error", "unexpected-success")
KNOWN = "known failure: "


# ------------------------------------------------------------- in the child


def _child(spec: str, patched: bool, out_path: str, run_known: bool) -> None:
    module, _, names = spec.partition(".")       # "test_socket" or "test_socket.Class[.test]"
    sys.path[0] = ROOT                           # not tests/: its helpers shadow nothing then
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if patched:
        from microthreads import monkey
        monkey.patch_all()
    import unittest
    known = {} if run_known else read_known_failures(patched=patched)
    run_test = unittest.TestCase.run

    def run_unless_known(test, result=None):
        reason = known.get(test.id())
        if reason is None or result is None:
            return run_test(test, result)
        result.startTest(test)
        result.addSkip(test, KNOWN + reason)
        result.stopTest(test)
        return result

    unittest.TestCase.run = run_unless_known

    from test import support
    support.use_resources = list(RESOURCES)
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 (one line per test, as it ends)

    class Recorder(unittest.TextTestResult):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.outcome = {}

        def _note(self, test, outcome):
            test_id = test.id()
            if self.outcome.get(test_id) in FAILED:
                return                           # a failed subtest makes the test failed
            self.outcome[test_id] = outcome

        def addSuccess(self, test):
            super().addSuccess(test)
            self._note(test, "pass")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._note(test, "fail")

        def addError(self, test, err):
            super().addError(test, err)
            self._note(test, "error")

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._note(test, "known" if reason.startswith(KNOWN) else "skip")

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._note(test, "pass")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._note(test, "unexpected-success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                failed = issubclass(err[0], test.failureException)
                self._note(test, "fail" if failed else "error")

        def stopTest(self, test):
            super().stopTest(test)
            test_id = test.id()
            outcome = self.outcome.setdefault(test_id, "pass")
            out.write(json.dumps([test_id, outcome]) + "\n")

    def run(suite):
        runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Recorder)
        runner.run(suite)

    def run_unittest(*classes):                  # what an old-style test_main hands over
        loader = unittest.defaultTestLoader
        suite = unittest.TestSuite()
        for cls in classes:
            if isinstance(cls, (unittest.TestSuite, unittest.TestCase)):
                suite.addTest(cls)
            elif isinstance(cls, str):
                suite.addTest(loader.loadTestsFromModule(sys.modules[cls]))
            else:
                suite.addTest(loader.loadTestsFromTestCase(cls))
        run(suite)

    support.run_unittest = run_unittest
    try:
        mod = __import__(f"test.{module}", fromlist=["*"])
    except unittest.SkipTest as exc:
        out.write(json.dumps([f"test.{module}", "skip", str(exc)]) + "\n")
        return
    if names:
        run(unittest.defaultTestLoader.loadTestsFromName(names, mod))
    elif hasattr(mod, "test_main") and not hasattr(mod, "load_tests"):
        mod.test_main()
    else:
        run(unittest.defaultTestLoader.loadTestsFromModule(mod))


# ------------------------------------------------------------ in the parent


def has_test_package(python: str) -> bool:
    """Whether ``python`` carries CPython's own tests (Debian ships them apart)."""
    probe = subprocess.run([python, "-c", "import test.test_socket"], capture_output=True)
    return probe.returncode == 0


def run_module(module: str, patched: bool, timeout: float, log_dir: str,
               run_known: bool = False) -> dict:
    """Run ``test.<module>`` in a child: its outcomes by test id, seconds, overrun, log."""
    out_path = os.path.join(log_dir, f"{module}.results")
    log_path = os.path.join(log_dir, f"{module}.log")
    args = [sys.executable, __file__, "--child", module, out_path]
    if not patched:
        args.append("--unpatched")
    if run_known:
        args.append("--run-known")
    env = dict(os.environ)
    if patched:
        env.setdefault("MICROTHREADS_THREAD_IDLE", "0")   # idle workers exit: see the docstring
    started = time.monotonic()
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=log_dir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        with _running_lock:
            _running.add(proc)
            if _stopping:                        # the run was stopped as this one started
                _kill(proc)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            code = proc.wait()
        finally:
            with _running_lock:
                _running.discard(proc)
    outcomes: dict[str, str] = {}
    if os.path.exists(out_path):
        with open(out_path) as results:
            for line in results:
                test_id, outcome = json.loads(line)[:2]
                outcomes[test_id] = outcome
    return {"module": module, "outcomes": outcomes, "seconds": time.monotonic() - started,
            "timed_out": timed_out, "returncode": code, "log": log_path}


#: The children running now: killed if the run itself is interrupted or terminated.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_stopping = False


def _stop_children() -> None:
    """The run is over or stopped: kill every child still running, and any started later."""
    global _stopping
    with _running_lock:
        _stopping = True
        for proc in _running:
            _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """Kill a child and whatever it started: its own process group (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass                                     # gone already


def read_known_failures(path: str = KNOWN_FAILURES, patched: bool = True) -> dict[str, str]:
    """``{test id: reason}`` for this Python, from the known-failures file.

    A line is ``[QUALIFIER:]... TEST_ID REASON``. Qualifiers: versions
    (``3.10,3.11:``) limit the entry to those Pythons; ``unpatched:`` makes
    it hold for the unpatched baseline too (the machine's own failures),
    where every other entry is ignored.
    """
    known: dict[str, str] = {}
    version = "{}.{}".format(*sys.version_info[:2])
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition(" ")
            *qualifiers, test_id = test_id.split(":")
            versions = [v for q in qualifiers if q != "unpatched" for v in q.split(",")]
            if "*" in test_id or not reason.strip() or not test_id.startswith("test.") \
                    or any(not v.startswith("3.") for v in versions):
                raise SystemExit(f"{path}:{number}: [3.N,...:][unpatched:]test.<id> and its"
                                 " reason, no wildcards")
            if versions and version not in versions:
                continue
            if patched or "unpatched" in qualifiers:
                known[test_id] = reason.strip()
    return known


def summarise(results: list[dict], known: dict[str, str]) -> tuple[list[str], list[list]]:
    """The problems (unlisted failures, listed passes, overruns) and the table rows."""
    problems, rows = [], []
    for result in results:
        outcomes = result["outcomes"]
        failed = sorted(t for t, o in outcomes.items() if o in FAILED)
        listed = [t for t, o in outcomes.items() if o == "known" or (o in FAILED and t in known)]
        for test_id in failed:
            if test_id not in known:
                problems.append(f"FAIL {test_id} ({outcomes[test_id]}): not in the known failures")
        for test_id, outcome in sorted(outcomes.items()):
            if test_id in known and outcome in ("pass", "skip"):
                problems.append(f"PASS {test_id}: listed as a known failure, remove the entry")
        if result["timed_out"]:
            problems.append(f"TIMEOUT {result['module']} after {result['seconds']:.0f} s"
                            f" (log: {result['log']})")
        elif not outcomes or result["returncode"] not in (0, 1):
            problems.append(f"CRASH {result['module']} exit {result['returncode']}"
                            f" (log: {result['log']})")
        passed = sum(1 for o in outcomes.values() if o == "pass")
        skipped = sum(1 for o in outcomes.values() if o == "skip")
        rows.append([result["module"], len(outcomes), passed, skipped, len(failed),
                     len(listed), round(result["seconds"], 1)])
    return problems, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*",
                        help="test modules, or module.Class[.test] (default: every module)")
    parser.add_argument("--unpatched", action="store_true", help="the baseline: no patch_all()")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per module")
    parser.add_argument("--jobs", type=int, default=2, help="modules at once")
    parser.add_argument("--json", help="write every test's outcome here")
    parser.add_argument("--logs", default=os.path.join(ROOT, "build", "stdlib-tests"),
                        help="each module's output goes to LOGS/<version>-<mode>/<module>.log")
    parser.add_argument("--run-known", action="store_true",
                        help="run the listed known failures too, and report those that pass")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], not args.unpatched, args.child[1], args.run_known)
        return 0
    if not has_test_package(sys.executable):
        print(f"{sys.executable} has no CPython test package (import test.test_socket"
              " fails): make test-stdlib skipped")
        return 0
    import test
    test_dir = os.path.dirname(test.__file__)
    modules = args.modules or [m for m in MODULES if os.path.exists(
        os.path.join(test_dir, m + ".py")) or os.path.isdir(os.path.join(test_dir, m))]
    order = sorted(modules, key=lambda m: m not in SLOW_FIRST)   # stable: the rest as listed
    known = read_known_failures(patched=not args.unpatched)
    started = time.monotonic()
    mode = "unpatched" if args.unpatched else "patched"
    log_dir = os.path.join(args.logs, "{}.{}-{}".format(*sys.version_info[:2], mode))
    shutil.rmtree(log_dir, ignore_errors=True)
    os.makedirs(log_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # a CI's stop: clean up first
    pool = ThreadPoolExecutor(args.jobs)
    try:
        done = dict(zip(order, pool.map(lambda m: run_module(
            m, not args.unpatched, args.timeout, log_dir, args.run_known), order), strict=True))
    finally:                                     # interrupted: no child outlives the run
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_children()
        pool.shutdown()
    results = [done[m] for m in modules]
    problems, rows = summarise(results, known)
    for problem in problems:
        print(problem)
        log = next((r["log"] for r in results if problem.split()[1].startswith(
            f"test.{r['module']}.") or problem.split()[1] == r["module"]), None)
        if log and not problem.startswith("PASS"):
            with open(log) as text:
                print("    ... " + "".join(text.readlines()[-15:]).replace("\n", "\n    "))
    title = "unpatched" if args.unpatched else "after monkey.patch_all()"
    print(f"\nCPython {sys.version.split()[0]}'s tests, {title}:")
    print(f"{'module':24} {'run':>5} {'passed':>6} {'skipped':>7} {'failed':>6}"
          f" {'known':>5} {'s':>6}")
    for row in rows:
        print(f"{row[0]:24} {row[1]:5} {row[2]:6} {row[3]:7} {row[4]:6} {row[5]:5} {row[6]:6}")
    totals = [sum(r[i] for r in rows) for i in range(1, 6)]
    print(f"{'total':24} {totals[0]:5} {totals[1]:6} {totals[2]:7} {totals[3]:6} {totals[4]:5}"
          f" {time.monotonic() - started:6.0f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"python": sys.version.split()[0], "patched": not args.unpatched,
                       "results": results, "rows": rows}, out, indent=1)
    if args.unpatched:
        return 0
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
