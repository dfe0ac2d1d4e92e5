#!/usr/bin/env python3
"""Issue 19's attacks on a real chat server, with the figures they cost.

::

    python tests/attacks.py newlines         # bare newlines from clients at the prompt
    python tests/attacks.py nops             # IAC NOP pairs from clients at the prompt
    python tests/attacks.py handle           # 4 KB handles of combining marks
    python tests/attacks.py storm            # reconnect storm: join, leave, join, ...
    python tests/attacks.py storm --lines 40 # ... saying a full burst each time
    python tests/attacks.py newlines --seconds 5 --attackers 4 --runs 3

Each run starts ``python -m chat`` on a free 127.0.0.1 port (chat_helpers),
logs in a member "watcher" and measures what the attack costs it or the
server, then stops the server. ``newlines`` and ``nops`` print the watcher's
round-trip latency (its own line back to it, one ping every 0.1 s) during
the attack: median and max in ms, with how many pings came back while the
attack ran. ``handle`` prints the server's CPU ms per 4 KB handle line (from
/proc/PID/stat). ``storm`` prints the sessions/s one client completes and
the lines/s the watcher receives. ``--runs N`` repeats and prints each run
and the medians.

Importable: ``Flood``, ``reconnect_storm`` and ``server_cpu_seconds`` are
used by ``test_security.py``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_helpers import GREETING, chat_servers, iac

NOP = 241
NEWLINES = b"\n" * 16384
NOPS = iac(NOP) * 8192
#: A 4 KB line of combining marks in reverse canonical order: every U+0316
#: (class 220) must move past every U+0300 (class 230) when put in NFC.
MARKS = "a" + "\u0300" * 1000 + "\u0316" * 1000


class Pinger(threading.Thread):
    """A member that says ``ping N`` every ``interval`` s and times each echo.

    ``latencies`` holds (sent at, seconds to come back) for each ping; a ping
    whose echo has not come back when ``stop()`` is called is timed up to then.
    """

    def __init__(self, client, interval=0.1):
        super().__init__(daemon=True, name=f"pinger {client.name}")
        self.client = client
        self.interval = interval
        self.latencies = []
        self._stopping = threading.Event()

    def run(self):
        number = 0
        while not self._stopping.is_set():
            sent = time.monotonic()
            self.client.say(f"ping {number}")
            self.client.lines_until(f"{self.client.name} says: ping {number}", timeout=60)
            self.latencies.append((sent, time.monotonic() - sent))
            number += 1
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - sent)))

    def stop(self):
        self._stopping.set()
        self.join(70)

    def echoed_between(self, start, end):
        """How many echoes came back between ``start`` and ``end``."""
        return sum(start <= sent + latency <= end for sent, latency in self.latencies)

    def during(self, start, end):
        """Latencies of the pings under way at some time between ``start`` and ``end``."""
        return [latency for sent, latency in self.latencies
                if sent < end and sent + latency > start]


class Flood:
    """``attackers`` clients sending ``payload`` over and over, each from a
    thread of its own, until ``stop()``: at the login prompt, or logged in
    as ``attackerN`` first if ``log_in``. ``sent`` counts the bytes the
    server took; ``started`` is when all were connected (monotonic)."""

    def __init__(self, port, payload, attackers=1, log_in=False):
        self.sent = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        ready = threading.Barrier(attackers + 1)
        self._threads = [threading.Thread(target=self._attack, daemon=True,
                                          args=(port, payload, n, log_in, ready))
                         for n in range(attackers)]
        for thread in self._threads:
            thread.start()
        ready.wait(10)
        self.started = time.monotonic()

    def _attack(self, port, payload, number, log_in, ready):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            if log_in:
                sock.sendall(f"attacker{number}\r\n".encode())
            sock.settimeout(0.5)
            ready.wait(10)
            while not self._stopping.is_set():
                try:
                    sock.sendall(payload)
                except TimeoutError:
                    continue            # the server is behind: good, try again
                except OSError:
                    return
                with self._lock:
                    self.sent += len(payload)

    def stop(self):
        """Stop every attacker; returns when the attack stopped (monotonic)."""
        self._stopping.set()
        stopped = time.monotonic()
        for thread in self._threads:
            thread.join(10)
        return stopped

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def reconnect_storm(port, seconds, lines=0):
    """One client logs in as ``stormN``, quits and reconnects, as fast as the
    server lets it, for ``seconds``; returns the sessions it completed (a
    session: connected, got the greeting, sent a handle, and joined); each
    sends ``lines`` lines before its ``/quit``."""
    said = "".join(f"line {n}\r\n" for n in range(lines))
    sessions = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                file = sock.makefile("rb")
                if file.readline().rstrip(b"\r\n").decode() != GREETING:
                    continue
                sock.sendall(f"storm{sessions}\r\n{said}/quit\r\n".encode())
                if file.readline().startswith(b"storm"):    # joined, not refused
                    sessions += 1
        except OSError:
            pass
    return sessions


def server_cpu_seconds(pid):
    """User plus system CPU time of process ``pid`` so far, from /proc."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------- the CLI


def measure_flood(payload, seconds, attackers):
    with chat_servers() as start:
        server = start()
        (watcher,) = server.room("watcher")
        pinger = Pinger(watcher)
        pinger.start()
        time.sleep(0.5)                             # some pings before, for a baseline
        attack = Flood(server.port, payload, attackers)
        time.sleep(seconds)
        end = attack.stop()
        pinger.stop()
        during = pinger.during(attack.started, end)
        return {"median ms": statistics.median(during) * 1000, "max ms": max(during) * 1000,
                "pings back": len(during)}


def measure_handle(count=50):
    with chat_servers() as start:
        server = start("--rate", "0")
        client = server.connect()
        client.expect(GREETING)
        before = server_cpu_seconds(server.pid)
        for _ in range(count):
            client.say(MARKS)
            client.line()
            client.expect(GREETING)
        return {"cpu ms per handle": (server_cpu_seconds(server.pid) - before) * 1000 / count}


def measure_storm(seconds, lines):
    with chat_servers() as start:
        server = start()
        (watcher,) = server.room("watcher")
        stop = threading.Event()
        received = [0]

        def count():
            watcher.sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    data = watcher.sock.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    return
                received[0] += data.count(b"\n")

        counter = threading.Thread(target=count, daemon=True)
        counter.start()
        begin = time.monotonic()
        sessions = reconnect_storm(server.port, seconds, lines)
        elapsed = time.monotonic() - begin
        stop.set()
        counter.join(5)
        return {"sessions/s": sessions / elapsed, "watcher lines/s": received[0] / elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("attack", choices=["newlines", "nops", "handle", "storm"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--attackers", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--lines", type=int, default=0, help="storm: lines said per session")
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        if args.attack in ("newlines", "nops"):
            payload = NEWLINES if args.attack == "newlines" else NOPS
            result = measure_flood(payload, args.seconds, args.attackers)
        elif args.attack == "handle":
            result = measure_handle()
        else:
            result = measure_storm(args.seconds, args.lines)
        results.append(result)
        print("  ".join(f"{key} {value:.1f}" for key, value in result.items()), flush=True)
    if args.runs > 1:
        print("median: " + "  ".join(f"{key} {statistics.median(r[key] for r in results):.1f}"
                                     for key in results[0]))


if __name__ == "__main__":
    main()
