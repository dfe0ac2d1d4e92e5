"""Per-iteration profiles of issue 28's two core figures, beside their bounds.

    python tools/profile_core.py switch [--rounds N] [--mode trace|ir]
    python tools/profile_core.py echo   [--conns C] [--requests R] [--mode trace|ir]

``switch``: one ``sleep(0)`` round trip with 2 tasklets (bench's switch row),
beside the raw greenlet switch pair (``bench/peers/greenlet_ref.py``).
``echo``: one request of a 64-byte line echoed by ``microthreads.net``'s
StreamServer (the bench's echo peer's handler) to C connections from a
client process, beside the selectors floor (``bench/peers/selectors_peer.py``).
With C connections in request/response, every request of ours waits (its
handler parks until the next line comes).

Every figure is per iteration, as the difference between a run of N and one
of 2N iterations divided by N, so start-up (imports, accepts, spawns) drops out.

``--mode trace`` (the default): Python-level, in-process. Counts every call
(Python functions and C functions called from Python, ``sys.setprofile``) and
every bytecode executed (``sys.settrace`` with ``f_trace_opcodes``); a
function's *self* bytecodes are those run in its own frames, its *inclusive*
ones add those of its callees in the same greenlet (a switch leaves the
caller's stack: a greenlet's work is counted in the frames of that greenlet).
Bytecodes are the interpreter's share of the cost; C calls (a greenlet
switch, a system call) count one each here, and weigh what ``ir`` shows.

``--mode ir``: valgrind callgrind (deterministic), this script run under it
twice; total instructions per iteration and their self share per shared
object (the interpreter's ``libpython``, greenlet's ``_greenlet``, ``libc``,
the ``select``/``_socket`` modules). Kernel time (the system calls
themselves) is not counted by callgrind. Needs ``valgrind`` on PATH.

Run from a checkout with its venv: ``.venv/bin/python tools/profile_core.py
echo``; ``PYTHONPATH`` may point at another checkout to profile that one.
The echo figures depend a little on how many connections each poll finds
ready (the client's speed); the switch figures are exact.
"""

from __future__ import annotations

import argparse
import collections
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))       # after PYTHONPATH: that checkout, when given, wins

LINE = b"x" * 63 + b"\n"


# ------------------------------------------------------------ the workloads

def run_switch(impl: str, rounds: int) -> None:
    """``rounds`` round trips: sleep(0) by each of 2 tasklets, or a raw pair."""
    if impl == "microthreads":
        from bench.peers import microthreads_peer
        microthreads_peer.sleep0(2, rounds // 2)     # 2 tasklets: rounds round trips
    else:
        from bench.peers import greenlet_ref
        greenlet_ref.switch_pairs(rounds)


def client(port: int, conns: int, requests: int) -> None:
    """The load: ``conns`` connections in rounds of one request each: every
    connection sends LINE, and the next round starts once every reply of this
    one is in. So each request of a round finds its server waiting for it, as
    when the server keeps up (the bench's), however slow a tracer or valgrind
    makes the server; a poll finds up to ``conns`` requests ready."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for sock in socks:
        sock.setblocking(False)
    sel = selectors.DefaultSelector()
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ)
    for _ in range(requests):
        for sock in socks:
            sock.send(LINE)
        got = dict.fromkeys(socks, b"")
        waiting = len(socks)
        while waiting:
            for key, _mask in sel.select():
                sock = key.fileobj                       # type: ignore[assignment]
                got[sock] += sock.recv(65536)
                if len(got[sock]) == len(LINE):
                    waiting -= 1
    for sock in socks:
        sock.close()


def run_echo(impl: str, conns: int, requests: int) -> None:
    """Serve one client process's ``conns`` x ``requests`` echoes, then return."""
    procs: list[subprocess.Popen[bytes]] = []

    def start_client(port: int) -> None:
        procs.append(subprocess.Popen([sys.executable, __file__, "_client", str(port),
                                       str(conns), str(requests)]))
    try:
        if impl == "microthreads":
            _echo_microthreads(start_client, conns)
        else:
            _echo_selectors(start_client, conns)
    finally:
        for proc in procs:
            proc.wait()


def _echo_microthreads(start_client: Callable[[int], None], conns: int) -> None:
    import microthreads
    import microthreads.net as net

    done = microthreads.Event()
    ended = 0

    def handle(conn: Any) -> None:               # bench/peers/microthreads_peer.py's
        nonlocal ended
        for line in conn:
            conn.sendall(line)
        ended += 1
        if ended == conns:
            done.set()

    def main() -> None:
        server = net.StreamServer(("127.0.0.1", 0), handle).start()
        start_client(server.address[1])
        done.wait()
        server.stop()

    microthreads.run(main)


class _AllClosed(Exception):
    pass


def _echo_selectors(start_client: Callable[[int], None], conns: int) -> None:
    from bench.peers import selectors_peer

    class Echo(selectors_peer.EchoServer):
        ended = 0

        def on_close(self, conn: Any) -> None:
            Echo.ended += 1
            if Echo.ended == conns:
                raise _AllClosed

    loop = selectors_peer.Loop()
    server = Echo()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    start_client(listener.getsockname()[1])

    def on_accept(_mask: int) -> None:
        while True:
            try:
                sock, _address = listener.accept()
            except BlockingIOError:
                return
            server.on_connect(selectors_peer.Connection(loop, sock, server))

    loop.selector.register(listener, selectors.EVENT_READ, on_accept)
    try:
        loop.run()
    except _AllClosed:
        pass
    finally:
        loop.selector.close()
        listener.close()


# ------------------------------------------------------------ trace mode

class Tracer:
    """Calls and bytecodes per function, with a stack per greenlet."""

    def __init__(self) -> None:
        from greenlet import getcurrent
        self.getcurrent = getcurrent
        self.calls: collections.Counter[str] = collections.Counter()
        self.self_ops: collections.Counter[str] = collections.Counter()
        self.incl_ops: collections.Counter[str] = collections.Counter()
        self.stacks: dict[Any, list[str]] = {}

    @staticmethod
    def name(code: Any) -> str:
        return f"{Path(code.co_filename).name}:{code.co_qualname}"

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            self.calls[self.name(frame.f_code)] += 1   # a generator's resume is one too
        elif event == "c_call":
            owner = getattr(arg, "__self__", None)
            kind = type(owner).__name__ if owner is not None and \
                not isinstance(owner, type(sys)) else ""
            self.calls[f"C {kind + '.' if kind else ''}{arg.__name__}"] += 1

    def trace(self, frame: Any, event: str, arg: Any) -> Callable[..., Any]:
        stack = self.stacks.setdefault(self.getcurrent(), [])
        if event == "call":
            frame.f_trace_opcodes = True
            stack.append(self.name(frame.f_code))
        elif event == "opcode":
            if stack:
                self.self_ops[stack[-1]] += 1
                for name in set(stack):
                    self.incl_ops[name] += 1
        elif event == "return" and stack:
            stack.pop()
        return self.trace

    def run(self, fn: Callable[[], None]) -> Tracer:
        sys.setprofile(self.profile)
        sys.settrace(self.trace)
        try:
            fn()
        finally:
            sys.settrace(None)
            sys.setprofile(None)
        return self


def trace_per_iteration(fn: Callable[[int], None], n: int) -> dict[str, Any]:
    fn(max(2, n // 10))                                    # warm up (imports, caches)
    small, big = Tracer().run(lambda: fn(n)), Tracer().run(lambda: fn(2 * n))

    def per(name: str) -> dict[str, float]:
        a, b = getattr(small, name), getattr(big, name)
        return {k: (b[k] - a[k]) / n for k in set(a) | set(b)}
    return {"calls": per("calls"), "self": per("self_ops"), "incl": per("incl_ops")}


def print_trace(title: str, prof: dict[str, Any], top: int) -> None:
    calls, self_ops, incl = prof["calls"], prof["self"], prof["incl"]
    total_ops = sum(self_ops.values())
    py_calls = sum(v for k, v in calls.items() if not k.startswith("C "))
    c_calls = sum(v for k, v in calls.items() if k.startswith("C "))
    print(f"\n## {title}: per iteration {py_calls:.2f} Python calls, {c_calls:.2f} C calls,"
          f" {total_ops:.1f} bytecodes\n")
    print("| function | calls | self bytecodes | self % | inclusive % |")
    print("| --- | ---: | ---: | ---: | ---: |")
    names = set(self_ops) | {k for k, v in calls.items() if abs(v) > 0.005}
    rows = sorted(names, key=lambda k: (-self_ops.get(k, 0), -calls.get(k, 0)))
    for name in rows[:top]:
        s, c, i = self_ops.get(name, 0), calls.get(name, 0), incl.get(name, 0)
        if abs(s) < 0.005 and abs(c) < 0.005:
            continue
        print(f"| {name} | {c:.2f} | {s:.1f} | {100 * s / total_ops:.1f} |"
              f" {100 * i / total_ops:.1f} |" if total_ops else f"| {name} | {c:.2f} | | | |")


# ------------------------------------------------------------ ir mode

OBJECTS = {"libpython": "interpreter (libpython)", "_greenlet": "greenlet (_greenlet.so)",
           "libc": "libc", "select": "select module", "_socket": "_socket module"}


def callgrind(argv: list[str]) -> tuple[int, dict[str, int]]:
    """Total Ir of ``python argv`` under callgrind, and self Ir per shared object."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, *argv], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)],
                              check=True, capture_output=True, text=True).stdout
    total = 0
    per_obj: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(?:\*\s+)?(PROGRAM TOTALS|\S.*)$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if what.startswith("PROGRAM TOTALS"):
            total = ir
            continue
        obj = re.search(r"\[(.*)\]\s*$", what)
        if not obj:
            continue
        base = Path(obj.group(1)).name
        group = next((label for key, label in OBJECTS.items() if base.startswith(key)), "other")
        per_obj[group] += ir
    per_obj["not attributed to an object"] = total - sum(per_obj.values())
    return total, dict(per_obj)


def ir_per_iteration(args: list[str], n: int) -> tuple[float, dict[str, float]]:
    small = callgrind([__file__, "_run", *args, str(n)])
    big = callgrind([__file__, "_run", *args, str(2 * n)])
    keys = set(small[1]) | set(big[1])
    return (big[0] - small[0]) / n, {k: (big[1].get(k, 0) - small[1].get(k, 0)) / n
                                     for k in keys}


def print_ir(title: str, total: float, per_obj: dict[str, float]) -> None:
    print(f"\n## {title}: {total:,.0f} instructions per iteration (callgrind)\n")
    print("| where (self) | instructions | share |")
    print("| --- | ---: | ---: |")
    for key, ir in sorted(per_obj.items(), key=lambda kv: -kv[1]):
        print(f"| {key} | {ir:,.0f} | {100 * ir / total:.1f}% |")


# ------------------------------------------------------------ command line

def main() -> None:
    if sys.argv[1:2] == ["_client"]:
        client(*map(int, sys.argv[2:5]))
        return
    if sys.argv[1:2] == ["_run"]:                # one workload, for callgrind
        what, impl, *nums = sys.argv[2:]
        if what == "switch":
            run_switch(impl, int(nums[-1]))
        else:
            run_echo(impl, int(nums[0]), int(nums[1]))
        return
    parser = argparse.ArgumentParser(prog="tools/profile_core.py", description=__doc__.split(
        "\n")[0])
    parser.add_argument("what", choices=["switch", "echo"])
    parser.add_argument("--mode", choices=["trace", "ir"], default="trace")
    parser.add_argument("--rounds", type=int, default=20000, help="switch: round trips (N)")
    parser.add_argument("--conns", type=int, default=100, help="echo: connections")
    parser.add_argument("--requests", type=int, default=50,
                        help="echo: requests per connection (N is conns x this)")
    parser.add_argument("--only", choices=["ours", "bound"], help="one side only")
    parser.add_argument("--top", type=int, default=25, help="trace: rows per table")
    args = parser.parse_args()
    if args.what == "switch":
        sides = [("microthreads", "sleep(0) round trip, 2 tasklets"),
                 ("greenlet", "raw greenlet switch pair")]
        n = args.rounds
    else:
        sides = [("microthreads", f"echo request, {args.conns} connections"),
                 ("selectors", f"selectors floor, {args.conns} connections")]
        n = args.conns * args.requests
    if args.only:
        sides = sides[:1] if args.only == "ours" else sides[1:]
    if args.mode == "ir" and not shutil.which("valgrind"):
        sys.exit("--mode ir needs valgrind on PATH")
    for impl, title in sides:
        if args.mode == "ir":
            extra = [str(args.conns)] if args.what == "echo" else []
            count = args.requests if args.what == "echo" else n
            total, per_obj = ir_per_iteration([args.what, impl, *extra], count)
            if args.what == "echo":         # ir_per_iteration divided by requests per conn
                total, per_obj = total / args.conns, {k: v / args.conns
                                                      for k, v in per_obj.items()}
            print_ir(title, total, per_obj)
        else:
            if args.what == "switch":
                def fn(k: int, impl: str = impl) -> None:
                    run_switch(impl, k)
                prof = trace_per_iteration(fn, n)
            else:
                def fn(k: int, impl: str = impl) -> None:
                    run_echo(impl, args.conns, max(1, k // args.conns))
                prof = trace_per_iteration(fn, n)
            print_trace(title, prof, args.top)


if __name__ == "__main__":
    main()
