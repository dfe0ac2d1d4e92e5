"""The --workers supervisor: what it passes to its workers, how it restarts them."""

from __future__ import annotations

from chat.__main__ import parse_args
from chat.federation.url import ENV
from chat.supervisor import worker_argv, worker_env


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
