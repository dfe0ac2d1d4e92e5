"""make autobahn: the Autobahn|Testsuite's fuzzing client against a WebSocket
echo server on microthreads (microthreads.websocket on a StreamServer).

autobahntestsuite is Python 2.7 only: this makes a virtualenv for it under
build/autobahn/ with a Python 2.7 found on PATH or in ``$(pyenv root)``
(virtualenv itself, the last release that makes 2.7 environments, goes into
build/autobahn/ too), installs autobahntestsuite from PyPI into it, starts the
echo server on a free loopback port (a child process, stopped by its PID),
runs ``wstest -m fuzzingclient`` on the cases, and prints a summary of the
report (build/autobahn/reports/servers/index.json; index.html beside it).
A case passes as wsproto's own compliance run counts it: behaviour and close
behaviour OK or INFORMATIONAL. Exit status 1 if any case failed.

    python tools/autobahn.py [--cases fast|all|'["1.*", ...]']

The "fast" cases are wsproto's choice for its own CI: sections 1 to 11, and
of the permessage-deflate sections 12 and 13 the first four of each group
and 12.1.11-12, 13.1.11-12 (the rest are slow stress tests).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "autobahn")
VENV = os.path.join(BUILD, "venv")
SUITE = "autobahntestsuite==25.10.1"
VIRTUALENV = "virtualenv<20.22"            # 20.22 dropped making Python 2 environments
CASES = {
    "all": ["*"],
    "fast": [f"{i}.*" for i in range(1, 12)] + ["12.*.[1234]$", "13.*.[1234]$",
                                                 "12.1.11", "12.1.12", "13.1.11", "13.1.12"],
}
PASS = {"OK", "INFORMATIONAL"}


def python27():
    """A Python 2.7 that runs: on PATH (a pyenv shim of an inactive version does
    not), else the newest in ``$(pyenv root)/versions``."""
    try:
        root = subprocess.check_output(["pyenv", "root"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    candidates = [shutil.which("python2.7"), *sorted(glob.glob(os.path.join(
        root, "versions", "2.7.*", "bin", "python2.7")), reverse=True)]
    for exe in filter(None, candidates):
        if subprocess.call([exe, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
            return exe
    sys.exit("autobahn: autobahntestsuite needs Python 2.7: none on PATH or in pyenv")


def wstest():
    """build/autobahn/venv/bin/wstest, made on first use."""
    exe = os.path.join(VENV, "bin", "wstest")
    if os.path.exists(exe):
        return exe
    py27 = python27()
    tool = os.path.join(BUILD, "virtualenv-tool")
    quiet = ["-q", "--disable-pip-version-check"]
    print(f"autobahn: a Python 2.7 virtualenv for {SUITE} ({py27})", flush=True)
    subprocess.check_call([py27, "-m", "pip", "install", *quiet, "--target", tool, VIRTUALENV])
    subprocess.check_call([py27, "-m", "virtualenv", "-q", VENV],
                          env={**os.environ, "PYTHONPATH": tool})
    subprocess.check_call([os.path.join(VENV, "bin", "python"), "-m", "pip", "install",
                           *quiet, SUITE])
    return exe


def serve(port):
    """The echo server (in the child process): every message back as it came;
    permessage-deflate agreed when offered (only sections 12 and 13 offer it)."""
    import microthreads
    from microthreads import net, websocket

    def echo(conn):
        ws = websocket.accept(conn, origins=["*"], compression=True,
                              max_message=64 << 20)
        for message in ws:
            ws.send(message)

    server = net.StreamServer(("127.0.0.1", port), echo)
    microthreads.run(server.serve_forever)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"autobahn: the echo server exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("autobahn: the echo server did not listen")


def summarize(index):
    with open(index) as f:
        results = json.load(f)["microthreads"]
    verdicts = Counter()
    failed = []
    for case, result in sorted(results.items(), key=lambda kv: [int(x) for x in
                                                                  kv[0].split(".")]):
        verdicts[(result["behavior"], result["behaviorClose"])] += 1
        if result["behavior"] not in PASS or result["behaviorClose"] not in PASS:
            failed.append((case, result["behavior"], result["behaviorClose"]))
    print(f"autobahn: {len(results)} cases, {len(results) - len(failed)} passed,"
          f" {len(failed)} failed")
    for (behavior, close), count in sorted(verdicts.items()):
        print(f"  behavior {behavior}, close {close}: {count}")
    for case, behavior, close in failed:
        print(f"  FAILED {case}: behavior {behavior}, close {close}")
    return failed


def main():
    parser = argparse.ArgumentParser(prog="tools/autobahn.py", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="fast", help="fast, all, or a JSON list")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    cases = CASES.get(args.cases) or json.loads(args.cases)
    exe = wstest()
    port = free_port()
    spec = os.path.join(BUILD, "fuzzingclient.json")
    reports = os.path.join(BUILD, "reports", "servers")
    with open(spec, "w") as f:
        json.dump({"options": {"failByDrop": False}, "outdir": reports,
                   "servers": [{"agent": "microthreads", "url": f"ws://127.0.0.1:{port}"}],
                   "cases": cases, "exclude-cases": [], "exclude-agent-cases": {}}, f)
    command = [sys.executable, os.path.abspath(__file__), "--serve", str(port)]
    server = subprocess.Popen(command, cwd=ROOT)
    try:
        wait_listening(port, server)
        subprocess.check_call([exe, "-m", "fuzzingclient", "-s", spec], cwd=BUILD,
                              stdout=subprocess.DEVNULL)
    finally:
        server.terminate()                    # by its PID: the child we started
        server.wait(10)
    failed = summarize(os.path.join(reports, "index.json"))
    print(f"autobahn: report in {os.path.relpath(reports, ROOT)}/index.html")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
