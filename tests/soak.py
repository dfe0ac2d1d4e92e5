#!/usr/bin/env python3
"""The soak: many members chatting while others churn, against a real chat server.

::

    python tests/soak.py                    # 120 s, the figures, exit 1 on a failure
    python tests/soak.py --seconds 3600     # longer (make soak ARGS="--seconds 3600")

It starts ``python -m chat --rate 0`` as a subprocess on a free 127.0.0.1 port
and drives it from this one process (a microthreads hub; see ``Soak``):

- ``--members`` long-lived members log in first and stay for the whole run;
  each sends numbered lines at ``--rate`` lines a second. They are the
  observers: each must receive every line broadcast after the last of them
  joined, exactly once, every sender's lines in order, and all of them in one
  and the same order.
- churn sessions start at ``--churn`` a second, each a fresh handle: log in,
  send a few numbered lines, then leave by ``/quit``, by close, by half-close,
  by reset (SO_LINGER 0), by a reset without waiting for the echo, or never
  log in at all (connect and vanish, connect and reset, send a handle and
  vanish).

At the end it prints messages delivered, lost, misordered, sessions
completed, the server's descriptors (peak, and final against the start) and
its RSS (start, after warm-up, middle, end), its hub's live tasklets, timers
and watched descriptors before and after (read through
``microthreads.format_run_info()`` in the server, on SIGUSR1), and exits 1 on
any loss, misorder, failed session, logged server error or leak.

Importable: ``run_soak(seconds=20)`` returns a ``Report`` (``test_soak.py``);
``ChatProcess`` runs one chat server subprocess with that probe, and is used
by ``test_faults.py`` too.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = re.compile(r"chat listening on 127\.0\.0\.1:(\d+)")
HUB_COUNTS = re.compile(r"<Hub thread=\d+ tasklets=(\d+) ready=(\d+) timers=(\d+) fds=(\d+)>")
#: Seconds any single wait of the driver may take before it counts as a failure.
PATIENCE = 30.0

#: RSS growth allowed from the end of warm-up to the end of the run: the larger
#: of RSS_GROWTH_KIB and RSS_GROWTH_FRACTION of the warm-up RSS. Why this much:
#: under a steady load the server holds a steady number of objects, but CPython
#: takes memory from the OS in 256 KiB arenas and gives one back only when it is
#: wholly empty, so a long-lived object allocated late (a dict growing a size
#: class, a greenlet stack) can pin an arena or two: the runs on this machine
#: moved 0.1 to 0.9 MiB after warm-up. A leak of one session's objects
#: (connection, terminal, tasklet: several KiB) over the ~1,200 sessions of a
#: default run, or of 40 bytes per line over its ~60,000 lines, passes 2 MiB.
#: On top of that, PER_CONNECTION_KIB for each connection the server held at its
#: busiest after warm-up beyond what it held at the end of warm-up: on a loaded
#: machine churn sessions overlap more, and each costs the server ~10.5 KiB
#: while it lasts (measured: 200 members logged in), memory CPython may keep.
RSS_GROWTH_KIB = 2048
RSS_GROWTH_FRACTION = 0.05
PER_CONNECTION_KIB = 16


# --------------------------------------------------------- the server process


class ChatProcess:
    """One ``python -m chat`` subprocess on a free 127.0.0.1 port, with a probe.

    ``start()`` waits for its listening line (the port comes from it);
    ``stop()`` ends it by its PID (SIGTERM, then SIGKILL after ``grace``
    seconds) and is safe to call twice: use it as a context manager, so it is
    stopped even when a test fails. ``nofile`` caps RLIMIT_NOFILE (soft and
    hard) in the child. ``fds()`` and ``rss_kib()`` read /proc; ``hub()`` asks
    the server (SIGUSR1) for ``format_run_info()`` and returns its hub's counts.
    ``sleep`` is how waits here pass time (``microthreads.sleep`` in a tasklet).
    """

    def __init__(self, *chat_args, nofile=None, sleep=time.sleep, log_level="info"):
        self.chat_args = [str(a) for a in chat_args]
        self.nofile = nofile
        self.sleep = sleep
        self.log_level = log_level
        self.proc = None
        self.port = None
        self.returncode = None
        self._dir = tempfile.TemporaryDirectory(prefix="chat-soak-")
        self.log_path = os.path.join(self._dir.name, "server.log")
        self.probe_path = os.path.join(self._dir.name, "probe.txt")
        self._probes = 0

    @property
    def pid(self):
        return self.proc.pid

    @property
    def address(self):
        return ("127.0.0.1", self.port)

    def start(self, timeout=PATIENCE):
        argv = [sys.executable, os.path.abspath(__file__), "_serve", self.probe_path,
                str(self.nofile or 0), "--", "--host", "127.0.0.1", "--port", "0",
                "--web-port", "0",
                "--log-level", self.log_level, *self.chat_args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            match = LISTENING.search(self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log()
                self.stop()
                raise RuntimeError(f"the chat server did not start:\n{text}")
            time.sleep(0.02)

    def stop(self, grace=10.0):
        """SIGTERM, wait, SIGKILL if it lingers; the exit status."""
        if self.proc is not None and self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.returncode = self.proc.returncode
        return self.returncode

    def close(self):
        self.stop()
        self._dir.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def errors(self):
        """Log lines that are errors: a traceback, ERROR or CRITICAL."""
        return [line for line in self.log().splitlines()
                if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]

    def fds(self):
        """The server's open descriptors now (from /proc/PID/fd)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def run_info(self, timeout=10.0):
        """The server's ``microthreads.format_run_info()``, fresh (asked by SIGUSR1)."""
        self._probes += 1
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.probe_path) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            head, _, rest = text.partition("\n")
            if head == f"probe {self._probes}":
                return rest
            self.sleep(0.02)
        raise RuntimeError("the chat server did not answer the probe")

    def hub(self):
        """``{"tasklets", "ready", "timers", "fds"}`` of the server's hub now, and
        ``"queued"``: how many times so far the hub sent output a connection had
        to queue (a reader was behind)."""
        info = self.run_info()
        counts = hub_counts(info)
        counts["queued"] = int(re.search(r"queued-output sends (\d+)", info).group(1))
        return counts

    def settle(self, expected_fds, expected_hub, timeout=PATIENCE):
        """Wait until the server holds ``expected_fds`` descriptors and its hub
        the counts of ``expected_hub`` (tasklets, timers, fds); what it holds
        when they match or time runs out: ``(fds, hub)``."""
        deadline = time.monotonic() + timeout
        keys = ("tasklets", "timers", "fds")
        while True:
            fds = self.fds()
            hub = self.hub() if fds == expected_fds else None
            if hub is not None and all(hub[k] == expected_hub[k] for k in keys):
                return fds, hub
            if time.monotonic() > deadline:
                return fds, hub or self.hub()
            self.sleep(0.1)


def hub_counts(run_info):
    """``{"tasklets", "ready", "timers", "fds"}`` from ``format_run_info()``'s first
    line, ``repr(hub)``: live tasklets, ready callbacks, live timers, watched fds."""
    match = HUB_COUNTS.search(run_info)
    return dict(zip(("tasklets", "ready", "timers", "fds"), map(int, match.groups()), strict=True))


def _serve(argv):
    """The child: ``soak.py _serve PROBE NOFILE -- chat args``; runs ``python -m chat``
    with RLIMIT_NOFILE capped (if NOFILE > 0) and a SIGUSR1 probe that writes
    ``format_run_info()`` to PROBE."""
    probe_path, nofile = argv[0], int(argv[1])
    chat_args = argv[argv.index("--") + 1:]
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    sys.path.insert(0, ROOT)
    import microthreads
    from chat.__main__ import main
    from microthreads.net.stream import Connection

    hub = microthreads.get_hub()
    probes = [0]
    flushes = [0]
    on_writable = Connection._on_writable

    def counted_on_writable(conn):           # runs only when output had to be queued
        flushes[0] += 1
        return on_writable(conn)

    Connection._on_writable = counted_on_writable

    def write_probe():                       # on the hub, between two tasklets
        probes[0] += 1
        text = (f"probe {probes[0]}\nqueued-output sends {flushes[0]}\n"
                f"{microthreads.format_run_info(hub)}\n")
        with open(probe_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(probe_path + ".tmp", probe_path)

    signal.signal(signal.SIGUSR1, lambda _signum, _frame: hub.call_soon_threadsafe(write_probe))
    return main(chat_args)


# ------------------------------------------------------------------- the report


@dataclass
class Report:
    seconds: float = 0.0
    members: int = 0
    rate: float = 0.0
    churn: float = 0.0
    pausers: int = 0
    lines_sent: int = 0                  # chat lines sent by members and churners
    delivered: int = 0                   # lines the long-lived members received and checked
    lost: int = 0
    misordered: int = 0
    sessions_started: int = 0
    sessions_completed: int = 0
    sessions_failed: int = 0
    modes: dict = field(default_factory=dict)
    fds_start: int = 0
    fds_peak: int = 0
    fds_warm: int = 0                    # at the end of warm-up
    fds_peak_after_warm: int = 0
    fds_final: int = 0
    rss_kib: dict = field(default_factory=dict)      # start, warm, middle, end
    hub_start: dict = field(default_factory=dict)
    hub_final: dict = field(default_factory=dict)
    server_cpu: float = 0.0
    driver_cpu: float = 0.0
    server_exit: int = None
    server_errors: list = field(default_factory=list)
    failures: list = field(default_factory=list)     # first few failed sessions, why
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def rss_limit(self):
        """The most RSS may be at the end, in KiB (see RSS_GROWTH_KIB)."""
        warm = self.rss_kib.get("warm", 0)
        busier = max(0, self.fds_peak_after_warm - self.fds_warm)
        return warm + max(RSS_GROWTH_KIB, int(warm * RSS_GROWTH_FRACTION)) + \
            PER_CONNECTION_KIB * busier

    def judge(self):
        """Fill ``problems``: every way this run failed."""
        p = self.problems
        if self.lost:
            p.append(f"{self.lost} lines lost")
        if self.misordered:
            p.append(f"{self.misordered} lines misordered or duplicated")
        if self.sessions_failed:
            p.append(f"{self.sessions_failed} churn sessions failed: {self.failures[:5]}")
        if self.fds_final != self.fds_start:
            p.append(f"descriptors leaked: {self.fds_start} at start, {self.fds_final} at the end")
        for key in ("tasklets", "timers", "fds"):
            if self.hub_final.get(key) != self.hub_start.get(key):
                p.append(f"hub {key} leaked: {self.hub_start.get(key)} at start,"
                         f" {self.hub_final.get(key)} at the end")
        end = self.rss_kib.get("end", 0)
        if end > self.rss_limit():
            p.append(f"RSS grew after warm-up: {self.rss_kib['warm']} KiB -> {end} KiB"
                     f" (limit {self.rss_limit()} KiB)")
        if self.server_errors:
            p.append(f"the server logged {len(self.server_errors)} errors:"
                     f" {self.server_errors[:3]}")
        if self.server_exit != 0:
            p.append(f"the server exited with status {self.server_exit}")
        return self

    def text(self):
        r = self.rss_kib
        modes = ", ".join(f"{k} {v}" for k, v in sorted(self.modes.items()))
        lines = [
            f"soak: {self.seconds:g} s, {self.members} members ({self.pausers} pausing) at"
            f" {self.rate:g} lines/s each, churn {self.churn:g} sessions/s",
            f"  lines sent           {self.lines_sent}",
            f"  messages delivered   {self.delivered}",
            f"  lost                 {self.lost}",
            f"  misordered           {self.misordered}",
            f"  sessions completed   {self.sessions_completed} of {self.sessions_started}"
            f" ({self.sessions_failed} failed; {modes})",
            f"  server fds           start {self.fds_start}, peak {self.fds_peak},"
            f" final {self.fds_final}",
            f"  server RSS (MiB)     start {_mib(r.get('start'))}, after warm-up"
            f" {_mib(r.get('warm'))}, middle {_mib(r.get('middle'))}, end {_mib(r.get('end'))}"
            f" ({r.get('end', 0) - r.get('warm', 0):+d} KiB after warm-up; limit"
            f" {self.rss_limit() - r.get('warm', 0):+d} KiB)",
            f"  server hub           start {_counts(self.hub_start)}; final"
            f" {_counts(self.hub_final)}",
            f"  queued output sends  {self.hub_final.get('queued')} (output the server had to"
            f" queue in user space: a reader 4 MiB behind)",
            f"  CPU seconds          server {self.server_cpu:.1f}, driver {self.driver_cpu:.1f}",
            f"  server exit status   {self.server_exit}, errors logged {len(self.server_errors)}",
        ]
        lines.append("  verdict              " + ("PASS" if self.ok else
                                                  "FAIL: " + "; ".join(self.problems)))
        return "\n".join(lines)


def _mib(kib):
    return "?" if kib is None else f"{kib / 1024:.1f}"


def _counts(hub):
    return ", ".join(f"{k} {hub.get(k)}" for k in ("tasklets", "timers", "fds"))


# -------------------------------------------------------------------- the driver


class Lines:
    """Lines from a cooperative socket, without their CRLF; None at EOF."""

    def __init__(self, sock):
        self.sock = sock
        self._rest = b""
        self._lines = []
        self._next = 0

    def next(self):
        while self._next >= len(self._lines):
            data = self.sock.recv(65536)
            if not data:
                return None
            lines = (self._rest + data).split(b"\r\n")
            self._rest = lines.pop()
            self._lines, self._next = lines, 0
        line = self._lines[self._next]
        self._next += 1
        return line

    def until(self, predicate, what):
        while True:
            line = self.next()
            if line is None:
                raise EOFError(f"EOF while waiting for {what}")
            if predicate(line):
                return line


class Session:
    """One churn session, as the driver saw it; the observers tally its lines."""

    __slots__ = ("counts", "handle", "joins", "leaves", "mode", "must_deliver", "sent")

    def __init__(self, handle, mode):
        self.handle = handle
        self.mode = mode
        self.sent = 0                # chat lines sent
        self.must_deliver = False    # True once the driver saw its own last line come back
        self.joins = 0               # observers that saw it join
        self.leaves = 0              # observers that saw it leave
        self.counts = []             # per observer that saw it leave: its last line number


class Observer:
    """A long-lived member: sends numbered lines; checks every line it receives.

    A pauser (``pauses``: its random source) stops reading for 0.5 to 3 s every
    2 to 8 s, through a small receive buffer, and must still get every line in
    order when it reads again. (The server's kernel send buffer, which Linux
    grows to 4 MiB, holds what piles up meanwhile; the server's own bounded
    queue behind it is exercised by test_faults.py, with a bigger flood.)
    """

    def __init__(self, soak, index, pauses=None):
        self.soak = soak
        self.pauses = pauses
        self.handle = f"m{index}".encode()
        self.sock = None
        self.logged_in = None
        self.sent = 0
        self.last = {}               # sender handle -> last line number seen
        self.last_position = -1
        self.in_window = False
        self.ends = 0                # END lines seen
        self.delivered = 0
        self.lost = 0
        self.misordered = 0
        self.gone = None             # why the connection ended early

    def receive(self):
        """Reads until EOF: every line is checked as it comes.

        Its window opens at the last member's join line; ``logged_in`` is set
        at its own Online line (the only one it gets).
        """
        import microthreads
        soak = self.soak
        first = b"m%d has joined the chat." % (soak.members - 1)
        rest = b""
        pause_at = time.monotonic() + 1.0 if self.pauses else None
        try:
            while True:
                if pause_at is not None and time.monotonic() >= pause_at:
                    microthreads.sleep(self.pauses.uniform(0.5, 3.0))   # output piles up
                    pause_at = time.monotonic() + self.pauses.uniform(2.0, 8.0)
                data = self.sock.recv(262144)
                if not data:
                    break
                lines = (rest + data).split(b"\r\n")
                rest = lines.pop()
                if soak.finishing:
                    continue                   # past every END: only members leaving now
                for line in lines:
                    if self.in_window:
                        if line.startswith(b"Online (") and not self.logged_in.is_set():
                            self.logged_in.set()
                        else:
                            self.check(line)
                    elif line == first:
                        self.in_window = True
                        for index in range(soak.members - 1):
                            self.last[b"m%d" % index] = 0
                        self.check(line)
                    elif line.startswith(b"Online ("):
                        self.logged_in.set()
        except OSError as exc:
            if not soak.finishing:
                self.gone = f"{self.handle.decode()}: {exc}"
            return
        if not soak.finishing:
            self.gone = f"{self.handle.decode()}: disconnected by the server"

    def check(self, line):
        soak = self.soak
        self.delivered += 1
        # one order for everyone: a line's position is its rank among lines as
        # first seen by any observer; each observer's positions must increase
        entry = soak.positions.get(line)
        if entry is None:
            entry = soak.positions[line] = [soak.next_position, 0]
            soak.next_position += 1
        entry[1] += 1
        if entry[1] == soak.members:
            del soak.positions[line]
        if entry[0] < self.last_position:
            self.misordered += 1
        else:
            self.last_position = entry[0]
        handle, says, text = line.partition(b" says: ")
        if says:
            number = text.split(b" ", 1)[0]
            if number == b"END":
                self.ends += 1
                return
            number = int(number)
            last = self.last.get(handle)
            if last is None:
                self.misordered += 1         # a line outside its sender's session
            elif number == last + 1:
                self.last[handle] = number
            elif number > last:
                self.lost += number - last - 1
                self.last[handle] = number
            else:
                self.misordered += 1         # a repeat or a step back
        elif line.endswith(b" has joined the chat."):
            handle = line[:-21]
            if handle in self.last:
                self.misordered += 1         # joined twice
            else:
                self.last[handle] = 0
                session = soak.sessions.get(handle)
                if session is not None:
                    session.joins += 1
        elif line.endswith(b" has left the chat."):
            handle = line[:-19]
            last = self.last.pop(handle, None)
            session = soak.sessions.get(handle)
            if last is None or session is None:
                self.misordered += 1         # left twice, or without joining
            else:
                session.leaves += 1
                session.counts.append(last)
        else:
            soak.unexpected.append((self.handle, line[:200]))


class Soak:
    """The driver: runs in one microthreads hub; ``main()`` returns the Report."""

    MODES = (("quit", 25), ("close", 15), ("reset", 15), ("halfclose", 10), ("abrupt", 10),
             ("vanish", 10), ("vanish-reset", 5), ("handle-vanish", 10))

    def __init__(self, server, seconds=120.0, members=50, rate=5.0, churn=10.0, pausers=5,
                 max_sessions=200, seed=None, progress=None):
        self.server = server
        self.pausers = pausers
        self.seconds = seconds
        self.members = members
        self.rate = rate
        self.churn = churn
        self.max_sessions = max_sessions
        self.random = random.Random(seed)
        self.progress = progress
        self.report = Report(seconds=seconds, members=members, rate=rate, churn=churn,
                             pausers=pausers)
        self.observers = []
        self.sessions = {}           # handle -> Session
        self.positions = {}          # line -> [position, observers that saw it]
        self.next_position = 0
        self.unexpected = []
        self.stopping = False        # senders and churn stop
        self.finishing = False       # observers leave
        self.active = set()          # churn tasklets running
        self.samples = []            # (elapsed, rss KiB, fds)

    # ------------------------------------------------------------ the run

    def main(self):
        import microthreads
        server, report = self.server, self.report
        report.fds_start = report.fds_peak = server.fds()
        report.hub_start = server.hub()
        report.rss_kib["start"] = server.rss_kib()
        cpu_server0 = server.cpu_seconds()
        cpu_driver0 = _own_cpu()

        readers = []
        for index in range(self.members):             # one by one: m0 joins first
            pauses = random.Random(self.random.random()) if index < self.pausers else None
            readers.append(self.log_in(Observer(self, index, pauses)))
        if not self.wait_for(lambda: all(o.in_window for o in self.observers), PATIENCE):
            report.problems.append("the members never all saw the last member join")

        started = time.monotonic()
        tasks = [microthreads.spawn(self.send_lines, o) for o in self.observers]
        tasks.append(microthreads.spawn(self.churn_sessions))
        sampler = microthreads.spawn(self.sample, started)
        while not self.stopping and time.monotonic() < started + self.seconds:
            microthreads.sleep(min(1.0, started + self.seconds - time.monotonic()))
        if server.proc.poll() is not None:           # it died: the sampler said so
            self.tally()
            return report
        self.stopping = True
        report.rss_kib["end"] = server.rss_kib()
        microthreads.joinall(tasks, timeout=PATIENCE)
        microthreads.joinall(list(self.active), timeout=PATIENCE)
        sampler.kill()

        # Every churn session has ended. Once the server holds no descriptor
        # of theirs, it has broadcast every leave line (a handler closes its
        # connection as it ends, and the finish hook that says so runs before
        # the hub reads anything more); then an END line from every member
        # closes every observer's window.
        members = self.members
        self.wait_for(lambda: server.fds() <= report.fds_start + members, PATIENCE)

        def all_left():
            return all(s.leaves == s.joins and (s.joins == members or not s.must_deliver)
                       for s in self.sessions.values())
        self.wait_for(all_left, PATIENCE)
        for observer in self.observers:
            if observer.gone is None:
                observer.sock.sendall(b"END\n")
        self.wait_for(lambda: all(o.ends == self.members or o.gone for o in self.observers),
                      PATIENCE)
        report.server_cpu = server.cpu_seconds() - cpu_server0
        report.driver_cpu = _own_cpu() - cpu_driver0

        self.finishing = True
        for observer in self.observers:
            try:
                observer.sock.sendall(b"/quit\n")
            except OSError:
                pass
        microthreads.joinall(readers, timeout=PATIENCE)
        for observer in self.observers:
            observer.sock.close()
        report.fds_final, report.hub_final = server.settle(report.fds_start, report.hub_start)
        self.tally()
        return report

    def wait_for(self, condition, timeout):
        import microthreads
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            microthreads.sleep(0.05)
        return True

    def log_in(self, observer):
        """Connect, read the prompt, send the handle; its reader takes it from
        there. Returns the reader once it has seen its Online line."""
        import microthreads
        from microthreads.net import socket as csock
        sock = csock.socket(csock.AF_INET, csock.SOCK_STREAM)
        if observer.pauses:
            sock.setsockopt(csock.SOL_SOCKET, csock.SO_RCVBUF, 16384)
        sock.settimeout(PATIENCE)
        sock.connect(self.server.address)
        prompt = b"What is your handle?\r\n"
        received = b""
        while len(received) < len(prompt):     # nothing else comes before the handle
            data = sock.recv(len(prompt) - len(received))
            if not data:
                raise EOFError("the server closed before its prompt")
            received += data
        if received != prompt:
            raise AssertionError(f"expected the prompt, got {received!r}")
        sock.settimeout(None)
        sock.sendall(observer.handle + b"\n")
        observer.sock = sock
        observer.logged_in = microthreads.Event()
        self.observers.append(observer)
        reader = microthreads.spawn(observer.receive)
        if not observer.logged_in.wait(PATIENCE):
            raise AssertionError(f"{observer.handle.decode()} did not log in")
        return reader

    def send_lines(self, observer):
        """Numbered lines at a steady rate, from a random phase, padded to 10-160 bytes."""
        import microthreads
        rnd = random.Random(self.random.random())
        interval = 1.0 / self.rate
        due = time.monotonic() + rnd.random() * interval
        sock = observer.sock
        while not self.stopping and observer.gone is None:
            wait = due - time.monotonic()
            if wait > 0:
                microthreads.sleep(wait)
            due = max(due + interval, time.monotonic() - 1.0)
            if self.stopping:
                break
            line = b"%d %s\n" % (observer.sent + 1, b"x" * rnd.randrange(10, 160))
            try:
                sock.sendall(line)
            except OSError:
                return
            observer.sent += 1
            self.report.lines_sent += 1

    def churn_sessions(self):
        """Start a churn session every 1/churn seconds (at most max_sessions at once)."""
        import microthreads
        interval = 1.0 / self.churn
        due = time.monotonic()
        number = 0
        weights = [w for _m, w in self.MODES]
        modes = [m for m, _w in self.MODES]
        while not self.stopping:
            wait = due - time.monotonic()
            if wait > 0:
                microthreads.sleep(wait)
            due = max(due + interval, time.monotonic() - 1.0)
            if self.stopping or len(self.active) >= self.max_sessions:
                continue
            number += 1
            mode = self.random.choices(modes, weights)[0]
            session = Session(b"c%d" % number, mode)
            self.sessions[session.handle] = session
            self.report.sessions_started += 1
            self.report.modes[mode] = self.report.modes.get(mode, 0) + 1
            tasklet = microthreads.spawn(self.churn_one, session, self.random.randrange(1, 6))
            self.active.add(tasklet)

    def churn_one(self, session, count):
        import microthreads
        from microthreads.net import socket as csock
        try:
            with microthreads.Timeout(PATIENCE):
                sock = csock.create_connection(self.server.address, timeout=PATIENCE)
                try:
                    self.run_session(sock, session, count)
                finally:
                    sock.close()
            self.report.sessions_completed += 1
        except (OSError, EOFError, AssertionError, microthreads.Timeout) as exc:
            self.report.sessions_failed += 1
            if len(self.report.failures) < 20:
                self.report.failures.append(f"{session.handle.decode()} ({session.mode}):"
                                            f" {type(exc).__name__}: {exc}")
        finally:
            self.active.discard(microthreads.getcurrent())

    def run_session(self, sock, session, count):
        import microthreads
        from microthreads.net import socket as csock
        mode, handle = session.mode, session.handle
        if mode == "vanish":
            return
        if mode == "vanish-reset":
            _set_linger_zero(sock)
            return
        lines = Lines(sock)
        lines.until(lambda line: line == b"What is your handle?", "the prompt")
        sock.sendall(handle + b"\n")
        if mode == "handle-vanish":
            _set_linger_zero(sock)
            return
        lines.until(lambda line: line == handle + b" has joined the chat.", "its join")
        lines.until(lambda line: line.startswith(b"Online ("), "the Online line")
        pace = random.Random(handle).uniform(0.0, 0.5)          # 0 to 2.5 s of chat
        for number in range(1, count + 1):
            sock.sendall(b"%d churn\n" % number)
            session.sent = number
            self.report.lines_sent += 1
            microthreads.sleep(pace if mode != "abrupt" else 0)
        if mode == "abrupt":
            _set_linger_zero(sock)
            return
        own = handle + b" says: "
        seen = 0
        while seen < count:                  # its own lines come back, in order
            line = lines.until(lambda line: line.startswith(own), "its own lines")
            seen += 1
            assert line == own + b"%d churn" % seen, f"own line {seen} came as {line!r}"
        session.must_deliver = True
        if mode == "quit":
            sock.sendall(b"/quit\n")
            while lines.next() is not None:  # the server closes after /quit
                pass
        elif mode == "halfclose":
            sock.shutdown(csock.SHUT_WR)
            while lines.next() is not None:  # the server closes after our EOF
                pass
        elif mode == "reset":
            _set_linger_zero(sock)
        # "close": the finally's close(); with output unread it is often a reset

    def sample(self, started):
        """Every second: the server's RSS and descriptors; RSS kept for warm-up and middle."""
        import microthreads
        server, report = self.server, self.report
        warm_at = min(max(5.0, 0.25 * self.seconds), 0.5 * self.seconds)
        marks = {"warm": warm_at, "middle": 0.5 * self.seconds}
        next_progress = 10.0
        while True:
            microthreads.sleep(1.0)
            elapsed = time.monotonic() - started
            if server.proc.poll() is not None:
                last = server.log().strip().splitlines()[-3:]
                report.problems.append(f"the server died ({server.proc.returncode}) after"
                                       f" {elapsed:.0f} s; its last log lines: {last}")
                self.stopping = True
                return
            rss, fds = server.rss_kib(), server.fds()
            report.fds_peak = max(report.fds_peak, fds)
            if "warm" in report.rss_kib:
                report.fds_peak_after_warm = max(report.fds_peak_after_warm, fds)
            self.samples.append((elapsed, rss, fds))
            for name, at in marks.items():
                if name not in report.rss_kib and elapsed >= at:
                    report.rss_kib[name] = rss
                    if name == "warm":
                        report.fds_warm = report.fds_peak_after_warm = fds
            if self.progress and elapsed >= next_progress:
                next_progress += 10.0
                self.progress(f"  {elapsed:5.0f} s  rss {rss / 1024:.1f} MiB  fds {fds}"
                              f"  sessions {report.sessions_completed}"
                              f"  sent {report.lines_sent}")

    # ------------------------------------------------------------ the sums

    def tally(self):
        report, members = self.report, self.members
        for observer in self.observers:
            report.delivered += observer.delivered
            report.lost += observer.lost
            report.misordered += observer.misordered
            if observer.gone:
                report.problems.append(observer.gone)
            for other in self.observers:         # every member's lines, to the last
                last = observer.last.get(other.handle, 0)
                report.lost += max(0, other.sent - last)
            if observer.ends != members:
                report.problems.append(f"{observer.handle.decode()} saw {observer.ends}"
                                       f" END lines of {members}")
        for session in self.sessions.values():
            if session.must_deliver and session.joins != members:
                report.lost += members - session.joins       # a join line missing
            elif session.joins not in (0, members):          # some saw it join, some not
                report.lost += members - session.joins
            report.lost += session.joins - session.leaves    # a leave line missing
            if session.counts:
                expected = session.sent if session.must_deliver else max(session.counts)
                report.lost += sum(expected - c for c in session.counts if c < expected)
                report.misordered += sum(1 for c in session.counts if c > session.sent)
        if self.unexpected:
            report.problems.append(f"{len(self.unexpected)} unexpected lines, such as"
                                   f" {self.unexpected[:3]}")


def _set_linger_zero(sock):
    """Make close() send a reset (RST), not an orderly FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_soak(seconds=120.0, members=50, rate=5.0, churn=10.0, pausers=5, seed=None,
             progress=None):
    """Run the soak; the judged ``Report`` (``report.ok``, ``report.text()``)."""
    import microthreads
    server = ChatProcess("--rate", "0", "--join-rate", "0", "--max-clients", members + 1000,
                         sleep=microthreads.sleep)
    try:
        server.start()
        soak = Soak(server, seconds=seconds, members=members, rate=rate, churn=churn,
                    pausers=pausers, seed=seed, progress=progress)
        try:
            report = microthreads.run(soak.main)
        finally:
            microthreads.get_hub().close()
    finally:
        exit_status = server.stop()
        errors = server.errors()
        server.close()
    report.server_exit = exit_status
    report.server_errors = errors
    return report.judge()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_serve"]:
        return _serve(argv[1:])
    parser = argparse.ArgumentParser(prog="tests/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="how long members chat and sessions churn (default %(default)g)")
    parser.add_argument("--members", type=int, default=50,
                        help="long-lived members (default %(default)s)")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="lines a second each member sends (default %(default)g)")
    parser.add_argument("--churn", type=float, default=10.0,
                        help="churn sessions started a second (default %(default)g)")
    parser.add_argument("--pausers", type=int, default=5,
                        help="members that stop reading now and then (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    args = parser.parse_args(argv)
    print(f"soak: chat server under {args.members} members and {args.churn:g} sessions/s"
          f" of churn for {args.seconds:g} s ...", flush=True)
    report = run_soak(args.seconds, args.members, args.rate, args.churn, args.pausers,
                      args.seed, progress=lambda text: print(text, flush=True))
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
