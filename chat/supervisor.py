"""``python -m chat --workers N --redis URL``: N chat nodes on one port.

The supervisor runs no chat itself: it starts N worker processes (each
``python -m chat`` with the supervisor's flags, the Redis URL in its
environment, and its listening socket set SO_REUSEPORT, so the kernel
spreads new connections over them), restarts a worker that dies (after
1 s, doubling for each quick death up to 30 s, back to 1 s once a worker
stayed up a minute: a crash loop costs little and says so in the log), and
on SIGTERM or SIGINT passes SIGTERM to every worker, waits for them (5 s,
then SIGKILL) and exits 0.

Workers never outlive it: each asks the kernel for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``, Linux), and checks at start that its
parent is still the supervisor (it may have died before the prctl).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("chat.supervisor")

PR_SET_PDEATHSIG = 1
RESTART_FIRST = 1.0     # seconds before a worker's first restart; doubles each time
RESTART_CAP = 30.0      # up to this
RESTART_RESET = 60.0    # a worker up this long starts again from RESTART_FIRST
POLL = 0.2              # seconds between looks at the workers
STOP_GRACE = 5.0


def die_with_parent(parent_pid):
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
_NOT_PASSED_ON = {"help", "workers", "port", "worker_of", "redis"}


def worker_argv(args, port):
    """The command line of one worker: every flag of the supervisor's (as the
    parser read it, so a new flag is passed on without a change here), less
    --workers, with the port resolved and --worker-of this process."""
    from .__main__ import build_parser

    argv = [sys.executable, "-m", "chat", "--port", str(port), "--worker-of", str(os.getpid())]
    # argparse keeps its options in ``_actions``: no public way to list them
    for action in build_parser()._actions:
        value = getattr(args, action.dest, None)
        if action.dest in _NOT_PASSED_ON or not action.option_strings or value is None:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:                   # store_true and the like
            if value != action.default:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(_arg, value)]
        else:
            argv += [flag, _arg(value)]
    return argv


def worker_env(args):
    """The environment of one worker: the supervisor's, with the Redis URL."""
    from .federation.url import ENV

    return {**os.environ, ENV: args.redis}


def _arg(value):
    """A value as the parser will read it back (repr keeps a float exact)."""
    return repr(value) if isinstance(value, float) else str(value)


def _hold_port(host, port):
    """Bind (not listen) a SO_REUSEPORT socket on (host, port): resolves port 0
    once for every worker, and keeps the port ours while workers restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def supervise(args):
    """Run ``args.workers`` workers until SIGTERM/SIGINT; the exit status."""
    try:
        holder = _hold_port(args.host, args.port)
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return 1
    port = holder.getsockname()[1]
    stopping = []

    def on_signal(signum, _frame):
        if not stopping:
            log.info("got %s: stopping the workers", signal.Signals(signum).name)
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    argv, env = worker_argv(args, port), worker_env(args)
    workers = Workers(args.workers,
                      lambda: subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
    log.info("supervisor %d: %d workers on %s:%d, room %r", os.getpid(), args.workers,
             args.host, port, args.room)
    try:
        while not stopping:
            workers.tick(time.monotonic())
            time.sleep(POLL)                 # ok-blocking: the supervisor runs no hub
    finally:
        _stop(workers.running())
        holder.close()
    log.info("supervisor stopped")
    return 0


class Workers:
    """``count`` worker slots, each started, and restarted when it exits.

    Restarts back off: a worker that exits waits ``first`` seconds, then
    twice as long after each exit, up to ``cap``; one that stayed up
    ``reset`` seconds or more starts again from ``first``. Each exit is
    logged with the wait. ``spawn()`` starts one worker (a Popen, or
    anything with ``poll``, ``pid`` and ``returncode``). The clock is the
    caller's: ``tick(now)`` does what is due at ``now``.
    """

    def __init__(self, count, spawn, *, first=RESTART_FIRST, cap=RESTART_CAP,
                 reset=RESTART_RESET):
        self._spawn = spawn
        self._first, self._cap, self._reset = first, cap, reset
        self._procs = [None] * count         # Popen, or None while waiting to restart
        self._started = [0.0] * count        # when each was started
        self._due = [float("-inf")] * count  # when each may start (again)
        self._delay = [first] * count        # its next wait

    def tick(self, now):
        """Note the workers that exited; start those whose wait is over."""
        for index, proc in enumerate(self._procs):
            if proc is not None and proc.poll() is not None:
                self._exited(index, proc, now)
                proc = None
            if proc is None and now >= self._due[index]:
                self._procs[index] = proc = self._spawn()
                self._started[index] = now
                log.info("worker %d started (pid %d)", index, proc.pid)

    def running(self):
        return [proc for proc in self._procs if proc is not None]

    def _exited(self, index, proc, now):
        if now - self._started[index] >= self._reset:
            self._delay[index] = self._first
        delay = self._delay[index]
        self._due[index] = now + delay
        self._delay[index] = min(delay * 2, self._cap)
        self._procs[index] = None
        log.warning("worker %d (pid %d) exited with status %s after %gs; restarting in %gs",
                    index, proc.pid, proc.returncode, round(now - self._started[index], 2), delay)


def _stop(workers):
    workers = [w for w in workers if w.poll() is None]
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in workers:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop in %gs; killing it", proc.pid, STOP_GRACE)
            proc.kill()
            proc.wait()
