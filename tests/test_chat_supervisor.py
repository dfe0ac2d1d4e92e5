"""The --workers supervisor: what it passes to its workers, how it restarts them."""

from __future__ import annotations

import logging

from chat.__main__ import parse_args
from chat.federation.url import ENV
from chat.supervisor import Workers, worker_argv, worker_env


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
    """A stand-in for a worker's Popen: it has exited once ``exit_at`` is reached."""

    pids = iter(range(1000, 2000))

    def __init__(self, clock, lifetime):
        self.pid = next(self.pids)
        self.returncode = None
        self._clock, self._exit_at = clock, clock[0] + lifetime

    def poll(self):
        if self._clock[0] >= self._exit_at:
            self.returncode = 1
        return self.returncode


def _run(workers, clock, until, step=0.25):
    while clock[0] < until:
        workers.tick(clock[0])
        clock[0] += step


def test_a_crash_looping_worker_is_restarted_after_waits_that_double_to_a_cap(caplog):
    clock, starts = [0.0], []

    def spawn():
        starts.append(clock[0])
        return _Worker(clock, lifetime=0.0)       # dies at once, every time

    workers = Workers(1, spawn, first=1.0, cap=8.0, reset=60.0)
    with caplog.at_level(logging.INFO, logger="chat.supervisor"):
        _run(workers, clock, until=50.0)
    waits = [b - a for a, b in zip(starts, starts[1:])]
    # each exit is seen one tick (0.25 s) after its start
    assert waits[:6] == [1.25, 2.25, 4.25, 8.25, 8.25, 8.25]
    assert "worker 0 (pid 1000) exited with status 1 after 0.25s; restarting in 1s" in caplog.text
    assert "restarting in 8s" in caplog.text and "restarting in 16s" not in caplog.text


def test_a_worker_that_stayed_up_long_enough_restarts_from_the_first_wait():
    clock, starts, lifetimes = [0.0], [], iter([0.0, 0.0, 0.0, 100.0, 0.0])

    def spawn():
        starts.append(clock[0])
        return _Worker(clock, lifetime=next(lifetimes, 0.0))

    workers = Workers(1, spawn, first=1.0, cap=30.0, reset=60.0)
    _run(workers, clock, until=120.0)
    waits = [b - a for a, b in zip(starts, starts[1:])]
    assert waits[:5] == [1.25, 2.25, 4.25, 101.0, 2.25]   # up 100 s: 1 s again, then 2
