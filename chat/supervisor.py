"""``python -m chat --workers N --redis URL``: N chat nodes on one port.

The supervisor runs no chat itself: it starts N worker processes (each
``python -m chat`` with the supervisor's flags, the Redis URL in its
environment, and its listening sockets, the telnet port's and the web
port's, set SO_REUSEPORT, so the kernel spreads new connections over them;
the supervisor holds both ports bound, so a port that cannot be had fails
it at once, exit 1, and ``--port 0`` is one port for every worker),
restarts a worker that dies (after 1 s, doubling for each quick death up to
30 s, back to 1 s once a worker stayed up a minute: a crash loop costs
little and says so in the log), and
on SIGTERM or SIGINT passes SIGTERM to every worker, waits for them (5 s,
then SIGKILL) and exits 0.

Workers never outlive it: each asks the kernel for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``, Linux), and checks at start that its
parent is still the supervisor (it may have died before the prctl).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import Callable, Protocol

import microthreads
from microthreads import subprocess
from microthreads.nonblocking import deadline_after, remaining

from .backoff import Backoff
from .cli import command_line
from .federation.url import ENV

log = logging.getLogger("chat.supervisor")

PR_SET_PDEATHSIG = 1
RESTART_FIRST = 1.0     # seconds before a worker's first restart; doubles each time
RESTART_CAP = 30.0      # up to this
RESTART_RESET = 60.0    # a worker up this long starts again from RESTART_FIRST
STOP_GRACE = 5.0        # seconds the workers have to stop before SIGKILL


def die_with_parent(parent_pid: int) -> None:
    """In a worker: SIGTERM when the supervisor dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            log.warning("prctl(PR_SET_PDEATHSIG) is unavailable")
    if os.getppid() != parent_pid:
        log.warning("the supervisor (pid %d) is gone; exiting", parent_pid)
        sys.exit(1)


#: Flags the supervisor does not pass on as given: its own, those it sets, and
#: --redis, which goes in the environment (``worker_env``): a command line is
#: readable by every local user (/proc/PID/cmdline), and the URL may hold a password.
_NOT_PASSED_ON = frozenset({"workers", "port", "worker_of", "worker_number", "redis"})


def worker_argv(args: argparse.Namespace, port: int) -> list[str]:
    """The command line of one worker, less its ``--worker-number``: every
    flag of the supervisor's (as the parser read it, so a new flag is passed
    on without a change here), less --workers, with the port resolved and
    --worker-of this process."""
    return [sys.executable, "-m", "chat", "--port", str(port), "--worker-of", str(os.getpid()),
            *command_line(args, leave_out=_NOT_PASSED_ON)]


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of one worker: the supervisor's, with the Redis URL."""
    return {**os.environ, ENV: args.redis}


def _hold_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket on (host, port): resolves port 0
    once for every worker, and keeps the port ours while workers restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock



class Process(Protocol):
    """What ``Workers`` needs of a worker process (a ``microthreads.subprocess.Popen``)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


def supervise(args: argparse.Namespace) -> int:
    """Run ``args.workers`` workers until SIGTERM/SIGINT; the exit status
    (0, or 1 if the port or the web port cannot be had)."""
    holders: list[socket.socket] = []       # the telnet port's; the web port's (not 0: off)
    for wanted in (args.port, args.web_port) if args.web_port else (args.port,):
        try:
            holders.append(_hold_port(args.host, wanted))
        except OSError as exc:
            log.error("cannot serve on %s:%d: %s", args.host, wanted, exc.strerror or exc)
            for holder in holders:
                holder.close()
            return 1
    port = holders[0].getsockname()[1]
    argv, env = worker_argv(args, port), worker_env(args)
    workers = Workers(args.workers, lambda index: subprocess.Popen(
        [*argv, "--worker-number", str(index)], env=env, stdin=subprocess.DEVNULL))
    hub = microthreads.get_hub()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not workers.stopping.is_set():
            log.info("got %s: stopping the workers", signal.Signals(signum).name)
        hub.call_soon_threadsafe(workers.stopping.set)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("supervisor %d: %d workers on %s:%d, room %r", os.getpid(), args.workers,
             args.host, port, args.room)
    if len(holders) > 1:
        log.info("chat page of the workers on %s://%s:%d/", "https" if args.tls_cert else "http",
                 args.host, args.web_port)
    try:
        microthreads.run(workers.run)
    finally:
        for holder in holders:
            holder.close()
    log.info("supervisor stopped")
    return 0


class Workers:
    """``count`` worker slots, each started, and restarted when it exits,
    until ``stopping`` is set; ``run()`` does it in the calling tasklet.

    ``spawn(index)`` starts the worker of slot ``index`` (a Popen, or
    anything that is a ``Process``). How a worker ended decides when it
    starts again (each end is logged, with the wait):

    - status 0: it stopped cleanly (an operator's SIGTERM to that worker:
      it shut down as asked). Restarted after ``first`` seconds, and the
      back-off starts over: not a crash.
    - any other status, or killed by a signal (SIGKILL included: an
      operator's cannot be told from the kernel's out-of-memory killer): a
      crash. Restarted after ``first`` seconds, twice as long after each
      crash, up to ``cap``; a worker that stayed up ``reset`` seconds or
      more starts again from ``first``.

    Once ``stopping`` is set, every running worker gets SIGTERM and has
    ``grace`` seconds to exit before SIGKILL; ``run`` returns when all are
    gone. The waits are the hub's: no polling.
    """

    def __init__(self, count: int, spawn: Callable[[int], Process], *,
                 first: float = RESTART_FIRST, cap: float = RESTART_CAP,
                 reset: float = RESTART_RESET, grace: float = STOP_GRACE) -> None:
        self._count = count
        self._spawn = spawn
        self._first, self._cap, self._reset, self._grace = first, cap, reset, grace
        self._running: dict[int, Process] = {}     # slot -> its worker, while it runs
        #: Set to stop every worker and end ``run``.
        self.stopping = microthreads.Event()

    def run(self) -> None:
        """Keep the workers running until ``stopping`` is set; then stop them."""
        slots = [microthreads.spawn(self._keep, index) for index in range(self._count)]
        for index, tasklet in enumerate(slots):
            tasklet.name = f"worker slot {index}"
        try:
            self.stopping.wait()
        finally:
            self.stopping.set()
            self._stop()
            microthreads.joinall(slots, timeout=1.0)    # each sees its worker's end
            microthreads.killall(slots)

    def running(self) -> list[Process]:
        """The workers running now."""
        return list(self._running.values())

    def _keep(self, index: int) -> None:
        """Slot ``index``: start its worker, wait for its end, wait, again."""
        clock = microthreads.get_hub().clock
        backoff = Backoff(self._first, self._cap)
        while not self.stopping.is_set():
            try:
                proc = self._running[index] = self._spawn(index)
            except OSError as exc:          # fork or exec failed: as a crash
                delay = backoff.next()
                log.error("worker %d could not start: %s; trying again in %gs", index, exc, delay)
                if self.stopping.wait(delay):
                    return
                continue
            started = clock()
            log.info("worker %d started (pid %d)", index, proc.pid)
            try:
                status = proc.wait()
            finally:
                del self._running[index]
            if self.stopping.is_set():
                return
            up = clock() - started
            if up >= self._reset:
                backoff.reset()
            if status == 0:                 # stopped as asked: not a crash
                backoff.reset()
                delay = self._first
                log.info("worker %d (pid %d) stopped cleanly after %gs; restarting in %gs",
                         index, proc.pid, round(up, 2), delay)
            else:
                delay = backoff.next()
                log.warning("worker %d (pid %d) %s after %gs; restarting in %gs",
                            index, proc.pid, _how_it_ended(status), round(up, 2), delay)
            if self.stopping.wait(delay):
                return

    def _stop(self) -> None:
        """SIGTERM to every running worker; SIGKILL to those still up after the grace."""
        workers = [proc for proc in self._running.values() if proc.poll() is None]
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        hub = microthreads.get_hub()
        deadline = deadline_after(hub, self._grace)
        for proc in workers:
            try:
                proc.wait(remaining(hub, deadline))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %gs; killing it", proc.pid,
                            self._grace)
                proc.kill()
                proc.wait()


def _how_it_ended(status: int) -> str:
    """``exited with status 1``, or ``was killed by SIGKILL``."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"
