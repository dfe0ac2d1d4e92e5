"""The --workers supervisor: what it passes to its workers, how it restarts them."""

from __future__ import annotations

import logging
import signal
from itertools import pairwise

import microthreads
from chat.cli import parse_args
from chat.federation.url import ENV
from chat.supervisor import Workers, worker_argv, worker_env
from microthreads import subprocess
from microthreads.testing import VirtualClock


def test_a_worker_gets_every_flag_of_the_supervisor_but_workers():
    given = ["--host", "127.0.0.1", "--port", "0", "--workers", "3", "--rate", "2.5",
             "--max-line", "100", "--login-timeout", "0.1", "--max-backlog", "4096",
             "--stall-timeout", "7", "--log-level", "debug", "--room", "den",
             "--max-clients", "9", "--stream-bound", "10", "--redis", "redis://h:1/0"]
    supervisor = parse_args(given)
    argv = worker_argv(supervisor, 4321)
    assert argv[1:3] == ["-m", "chat"]
    worker = parse_args(argv[3:])
    assert (worker.workers, worker.port) == (None, 4321)
    assert worker.worker_of is not None
    unchanged = {"workers", "port", "worker_of", "redis"}
    assert ({k: v for k, v in vars(worker).items() if k not in unchanged}
            == {k: v for k, v in vars(supervisor).items() if k not in unchanged})


def test_a_worker_gets_the_defaults_too(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    supervisor = parse_args(["--workers", "2", "--redis", "redis://h:1/0"])
    argv = worker_argv(supervisor, 1)
    monkeypatch.setenv(ENV, worker_env(supervisor)[ENV])
    worker = parse_args(argv[3:])
    assert vars(worker) == {**vars(supervisor), "workers": None, "port": 1,
                            "worker_of": worker.worker_of}


def test_a_worker_gets_the_redis_url_in_its_environment_not_its_command_line():
    url = "redis://alice:s3cret@h:1/0?password=s3cret"
    supervisor = parse_args(["--workers", "2", "--redis", url])
    assert not any("s3cret" in arg for arg in worker_argv(supervisor, 1))
    assert worker_env(supervisor)[ENV] == url


class _Worker:
    """A stand-in for a worker's Popen: it ends with ``status`` after ``lifetime``
    seconds of the hub's (virtual) clock, or when sent a signal."""

    pids = iter(range(1000, 2000))

    def __init__(self, lifetime, status=1):
        self.pid = next(self.pids)
        self.returncode = None
        self.signals = []
        self._status = status
        self._ended = microthreads.Event()
        self._timer = microthreads.get_hub().call_later(lifetime, self._end, status)

    def _end(self, status):
        if self.returncode is None:
            self.returncode = status
            self._ended.set()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired("worker", timeout)
        return self.returncode

    def send_signal(self, signum):
        self.signals.append(signum)
        self._timer.cancel()
        self._end(0 if signum == signal.SIGTERM else -signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def _supervise(workers, until):
    """Run ``workers`` on a virtual clock until ``until``; then stop them."""
    def main():
        microthreads.spawn_later(until, workers.stopping.set)
        workers.run()
    with VirtualClock():
        microthreads.run(main)


def test_a_crash_looping_worker_is_restarted_after_waits_that_double_to_a_cap(caplog):
    starts = []

    def spawn(index):
        starts.append(microthreads.get_hub().clock())
        return _Worker(lifetime=0.25)             # dies soon, every time

    workers = Workers(1, spawn, first=1.0, cap=8.0, reset=60.0)
    with caplog.at_level(logging.INFO, logger="chat.supervisor"):
        _supervise(workers, until=50.0)
    waits = [b - a for a, b in pairwise(starts)]
    assert waits[:6] == [1.25, 2.25, 4.25, 8.25, 8.25, 8.25]
    assert ("worker 0 (pid 1000) exited with status 1 after 0.25s; restarting in 1s"
            in caplog.text)
    assert "restarting in 8s" in caplog.text and "restarting in 16s" not in caplog.text


def test_a_worker_that_stayed_up_long_enough_restarts_from_the_first_wait():
    starts, lifetimes = [], iter([0.25, 0.25, 0.25, 100.0, 0.25])

    def spawn(index):
        starts.append(microthreads.get_hub().clock())
        return _Worker(lifetime=next(lifetimes, 0.25))

    workers = Workers(1, spawn, first=1.0, cap=30.0, reset=60.0)
    _supervise(workers, until=120.0)
    waits = [b - a for a, b in pairwise(starts)]
    assert waits[:5] == [1.25, 2.25, 4.25, 101.0, 2.25]   # up 100 s: 1 s again, then 2


def test_a_worker_that_stopped_cleanly_is_restarted_without_growing_the_back_off(caplog):
    starts, statuses = [], iter([1, 1, 0, 0, 1])       # two crashes, two clean stops, a crash

    def spawn(index):
        starts.append(microthreads.get_hub().clock())
        return _Worker(lifetime=0.25, status=next(statuses, 1))

    workers = Workers(1, spawn, first=1.0, cap=30.0, reset=60.0)
    with caplog.at_level(logging.INFO, logger="chat.supervisor"):
        _supervise(workers, until=20.0)
    waits = [b - a for a, b in pairwise(starts)]
    assert waits[:5] == [1.25, 2.25, 1.25, 1.25, 1.25]   # a clean stop starts the back-off over
    assert "worker 0 (pid" in caplog.text and "stopped cleanly after 0.25s; restarting in 1s" \
        in caplog.text


def test_a_worker_killed_by_a_signal_is_logged_by_the_signals_name(caplog):
    def spawn(index):
        return _Worker(lifetime=0.5, status=-signal.SIGKILL)

    with caplog.at_level(logging.INFO, logger="chat.supervisor"):
        _supervise(Workers(1, spawn, first=1.0, cap=30.0), until=1.0)
    assert "was killed by SIGKILL after 0.5s; restarting in 1s" in caplog.text


def test_stopping_sends_sigterm_to_every_worker_and_sigkill_to_one_that_stays():
    made = []

    class Stubborn(_Worker):
        def send_signal(self, signum):
            if signum == signal.SIGTERM:
                self.signals.append(signum)       # ignored
            else:
                super().send_signal(signum)

    def spawn(index):
        worker = (Stubborn if index == 1 else _Worker)(lifetime=1000.0)
        made.append(worker)
        return worker

    workers = Workers(2, spawn, grace=5.0)
    with VirtualClock() as clock:
        def main():
            microthreads.spawn_later(3.0, workers.stopping.set)
            workers.run()
        microthreads.run(main)
        assert clock.now() == 8.0                 # the grace, then SIGKILL
    assert [worker.signals for worker in made] == [[signal.SIGTERM],
                                                  [signal.SIGTERM, signal.SIGKILL]]
    assert workers.running() == []
