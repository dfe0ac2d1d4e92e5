"""Real drivers against real servers, each shown two ways (issue 27 section 3).

Every server is the real one, started once per session on 127.0.0.1 in a
temporary directory (tests/server_helpers.py: MariaDB, PostgreSQL, OpenSSH's
sshd, an SMTP responder, pyftpdlib; tests/redis_helpers.py: redis-server),
and stopped by its PID. Each test makes N operations that each take SLOW
seconds on the server, from N tasklets beside a ticker tasklet
(tests/monkey_helpers.py ``scenario``): they must overlap (well under the
N x SLOW they take one after another) while the ticker keeps ticking.

The ways, as the README's "Using blocking libraries" gives them:
``patched``: a fresh interpreter that calls ``monkey.patch_all()`` first,
then uses the driver unmodified; ``threads``: this (unpatched) process, each
call through ``run_in_thread``; ``hook``: this process, a driver hook the
project ships (psycopg2's wait callback). A test skips, saying what to
install, when its server binary or its Python driver is missing.
"""

import json
import os
import subprocess
import sys

import pytest
from chat_helpers import ROOT
from monkey_helpers import SLOW, scenario
from server_helpers import MariaDB, Missing, PostgreSQL, Responder, Sshd

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monkey_helpers.py")
N = 10
#: Serial takes at least N x SLOW = 3 s; overlapping, about SLOW (threads: the
#: pool's MAX_WORKERS at a time) plus the drivers' own work, which a loaded
#: machine stretches: so the bound is just under what any serial run takes.
WELL_UNDER = 0.9 * N * SLOW
EXPECTED = [f"ok /slow/{i}" for i in range(N)]


def _needs(module, package):
    pytest.importorskip(module, reason=f"needs the Python driver {package} (pip install"
                                       f" '.[test]')")


def _start(server_class):
    try:
        return server_class()
    except Missing as exc:
        pytest.skip(f"{exc}: run `make system-deps`")


@pytest.fixture(scope="session")
def mariadb():
    server = _start(MariaDB)
    yield f"127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    server = _start(PostgreSQL)
    yield server.conninfo
    server.stop()


@pytest.fixture(scope="session")
def sshd():
    server = _start(Sshd)
    yield f"{server.user}@127.0.0.1:{server.port}", server.dir
    server.stop()


@pytest.fixture(scope="session")
def smtp_server():
    server = Responder("smtp")
    yield f"127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def ftp_server():
    _needs("pyftpdlib", "pyftpdlib")
    server = Responder("ftp")
    yield f"127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_url():
    from redis_helpers import REDIS_SERVER, RedisServer
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server: run `make system-deps`")
    server = RedisServer()
    yield server.url
    server.stop()


def _patched(kind, target, ca=None, env=None):
    """The scenario in a fresh interpreter that ran monkey.patch_all() first."""
    proc = subprocess.run([sys.executable, HELPER, "client", kind, target, str(N), ca or "-"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _run(way, kind, target, ca=None, env=None):
    if way == "patched":
        return _patched(kind, target, ca, env)
    return scenario(kind, target, N, ca, way="threads")


def _assert_overlapped(result, well_under=WELL_UNDER):
    assert result["answers"] == EXPECTED
    assert result["elapsed"] < well_under, result
    assert result["ticks"] >= 5, result        # the hub went on ticking meanwhile


@pytest.mark.parametrize("way", ["patched", "threads"])
def test_pymysql_queries_overlap_against_mariadb(mariadb, way):
    _needs("pymysql", "PyMySQL")
    _assert_overlapped(_run(way, "pymysql", mariadb))


@pytest.mark.parametrize("way", ["patched", "threads"])
def test_psycopg_queries_overlap_against_postgresql(postgres, way):
    """Patched, psycopg 3 needs PSYCOPG_WAIT_FUNC=wait_poll: its default wait is
    in C (it detects gevent's patching, not ours); wait_poll calls the
    patched select.poll."""
    _needs("psycopg", "psycopg[binary]")
    _assert_overlapped(_run(way, "psycopg", postgres, env={"PSYCOPG_WAIT_FUNC": "wait_poll"}))


@pytest.fixture
def green_psycopg2():
    """psycopg2 with microthreads.extras.psycopg2's wait callback, for one test."""
    _needs("psycopg2", "psycopg2-binary")
    from psycopg2 import extensions

    from microthreads.extras import psycopg2 as green
    green.make_green()
    yield
    extensions.set_wait_callback(None)


def test_psycopg2_queries_overlap_through_the_shipped_wait_callback(postgres, green_psycopg2):
    _assert_overlapped(scenario("psycopg2", postgres, N, way="concurrent"))


def test_a_timeout_through_the_wait_callback_cancels_the_query_and_closes_the_connection(
        postgres, green_psycopg2):
    import psycopg2

    import microthreads
    events = []

    def main():
        watcher = psycopg2.connect(postgres)
        conn = psycopg2.connect(postgres)
        try:
            with microthreads.Timeout(0.2):
                conn.cursor().execute("SELECT pg_sleep(30) -- interrupted")
        except microthreads.Timeout:
            events.append("timed out")
        events.append(("closed", bool(conn.closed)))
        with watcher.cursor() as cursor:         # no backend sleeps on for 30 s
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                           " AND query LIKE '%%-- interrupted'")
            events.append(("still running", cursor.fetchone()[0]))
        watcher.close()

    microthreads.run(main)
    assert events == ["timed out", ("closed", True), ("still running", 0)]


def test_psycopg2_queries_overlap_in_threads(postgres):
    _needs("psycopg2", "psycopg2-binary")
    _assert_overlapped(scenario("psycopg2", postgres, N, way="threads"))


@pytest.mark.parametrize("way", ["patched", "threads"])
def test_paramiko_commands_overlap_against_sshd(sshd, way):
    """Patched, this needs patch_thread(): paramiko's transport runs in an OS
    thread and wakes the tasklets through threading.Event and Condition.

    An SSH command costs sshd a session (a process, a shell) besides its
    SLOW seconds, about 0.2 s more here: the serial sum is N times one
    command timed alone just before, on the same connection."""
    _needs("paramiko", "paramiko")
    target, keys = sshd
    result = _run(way, "paramiko", target, keys)
    _assert_overlapped(result, 0.5 * N * max(result["one"], SLOW))


def test_requests_over_https_overlap_in_threads(http_servers):
    """Patched: tests/test_monkey.py's ``..._over_https[requests]``."""
    _needs("requests", "requests")
    _http_port, https_port, certs = http_servers
    result = scenario("requests", f"https://localhost:{https_port}", N, certs.ca, way="threads")
    _assert_overlapped(result)


def test_redis_blocking_pool_waits_overlap_in_threads(redis_url):
    """N calls on a BlockingConnectionPool of N/2 connections: half wait in its
    queue for a connection, and the BLPOPs of SLOW overlap in two rounds.
    Patched: tests/test_monkey_threading.py's ``..._fifty_tasklets_on_five_connections``."""
    _needs("redis", "redis")
    _assert_overlapped(scenario("redis-pool", redis_url, N, way="threads"))


@pytest.mark.parametrize("way", ["patched", "threads"])
def test_smtplib_mails_overlap(smtp_server, way):
    _assert_overlapped(_run(way, "smtplib", smtp_server))


@pytest.mark.parametrize("way", ["patched", "threads"])
def test_ftplib_downloads_overlap_against_pyftpdlib(ftp_server, way):
    _assert_overlapped(_run(way, "ftplib", ftp_server))
