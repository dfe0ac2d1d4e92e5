"""What every peer shares: its command line, the chat seed's texts, and
measuring helpers. Nothing here touches a concurrency library, so a peer may
import it before its own (gevent and eventlet are not monkey-patched anyway).

A peer module defines some of:

    echo_server(port)          serve lines back on 127.0.0.1:port, forever
    chat_server(port)          the chat seed subset on 127.0.0.1:port, forever
    sleep0(ntasks, rounds)     seconds for ntasks tasks doing `rounds` sleep(0) each
    spawn_join(count)          seconds to spawn `count` no-op tasks and join them all
    idle_tasks(count, mark)    call mark() before spawning `count` tasks that block
                               on one event, and again once all of them are blocked

and ends with `common.main(__name__)`. The harness runs it as
`python -m bench.peers.<name> MODE [--port P] [--count N] [--target S]`;
the measuring modes print one JSON object on stdout.
"""

import argparse
import gc
import json
import math
import re
import resource
import sys
import time

PROMPT = b"What is your handle?\r\n"
TAKEN = b"That handle is already taken.\r\n"
INVALID = b"Invalid handle: use 1 to 32 letters, digits, '_', '-' or '.'.\r\n"
MAX_BACKLOG = 1 << 20  # unsent bytes one member may have before it is dropped
MAX_LINE = 4096  # a longer input line ends the session
HOST = "127.0.0.1"

_HANDLE = re.compile(r"[\w.-]{1,32}\Z")


def valid_handle(handle):
    return bool(_HANDLE.match(handle))


def text_of(line):
    """The text of an input line: decoded with replacement, whitespace stripped."""
    return line.decode("utf-8", "replace").strip()


def joined(handle):
    return f"{handle} has joined the chat.\r\n".encode()


def left(handle):
    return f"{handle} has left the chat.\r\n".encode()


def says(handle, text):
    return f"{handle} says: {text}\r\n".encode()


def online(handles):
    return f"Online ({len(handles)}): {', '.join(handles)}\r\n".encode()


def raise_nofile():
    """Let this process hold as many descriptors as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid="self"):
    """Resident set size of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def emit(**figures):
    print(json.dumps(figures), flush=True)


def ns_per_sleep0(sleep0, ntasks, target):
    """Calibrate `rounds` so one measurement takes about `target` seconds;
    return nanoseconds per sleep(0) (one task yielding and being resumed)."""
    sleep0(ntasks, 2)  # warm up code paths and allocator
    rounds = 1
    while True:
        elapsed = sleep0(ntasks, rounds)
        if elapsed >= target / 20:
            break
        rounds *= 10
    if elapsed < target:
        rounds = max(rounds, math.ceil(rounds * target / elapsed))
        elapsed = sleep0(ntasks, rounds)
    return elapsed / (ntasks * rounds) * 1e9


def _run(peer, args):
    if args.mode == "echo":
        peer.echo_server(args.port)
    elif args.mode == "chat":
        peer.chat_server(args.port)
    elif args.mode == "switch":
        emit(
            sleep0_2_ns=ns_per_sleep0(peer.sleep0, 2, args.target),
            sleep0_1000_ns=ns_per_sleep0(peer.sleep0, 1000, args.target),
        )
    elif args.mode == "spawn":
        peer.spawn_join(1000)  # warm-up
        gc.collect()
        emit(spawn_join_s=peer.spawn_join(args.count), count=args.count)
    elif args.mode == "idletasks":
        marks = []

        def mark():
            gc.collect()
            marks.append(rss_kib())

        peer.idle_tasks(100, lambda: None)  # warm-up: code paths, free lists
        peer.idle_tasks(args.count, mark)
        if len(marks) != 2:
            raise RuntimeError("idle_tasks must call mark() twice")
        emit(idle_task_kib=(marks[1] - marks[0]) / args.count, count=args.count)


def main(module_name):
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}")
    parser.add_argument("mode", choices=["echo", "chat", "switch", "spawn", "idletasks"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.5, help="seconds per switch figure")
    args = parser.parse_args()
    peer = sys.modules[module_name]
    needed = {"echo": "echo_server", "chat": "chat_server", "switch": "sleep0",
              "spawn": "spawn_join", "idletasks": "idle_tasks"}[args.mode]
    if not hasattr(peer, needed):
        sys.exit(f"{module_name} has no {args.mode} mode")
    raise_nofile()
    if args.mode in ("echo", "chat") and not args.port:
        sys.exit("--port is required")
    started = time.monotonic()
    try:
        _run(peer, args)
    except KeyboardInterrupt:
        pass
    finally:
        if args.mode not in ("echo", "chat"):
            name = getattr(peer.__spec__, "name", module_name)
            print(f"{name} {args.mode}: {time.monotonic() - started:.2f} s", file=sys.stderr)
