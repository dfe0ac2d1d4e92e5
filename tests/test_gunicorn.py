"""gunicorn -k microthreads.gunicorn.Worker: the worker under a real arbiter."""

import concurrent.futures
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wsgi_helpers import LIMIT, closed_by_peer, read_response

gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")

TESTS = Path(__file__).parent


class Arbiter:
    """gunicorn in a subprocess (cwd tests/), one worker of ours, on a free port."""

    def __init__(self, *args, app="wsgi_apps.plain:application"):
        extra = ["--no-control-socket"] if int(gunicorn.__version__.split(".")[0]) >= 25 else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "microthreads.gunicorn.Worker",
             "-b", "127.0.0.1:0", "-w", "1", *extra, *args, app],
            cwd=TESTS, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
        self.log = []
        self.port = int(self.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1))
        self.wait_for(r"Booting worker with pid")

    def wait_for(self, pattern):
        """The match of the next stderr line matching ``pattern``."""
        for line in self.process.stderr:
            self.log.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        pytest.fail(f"gunicorn ended before {pattern!r}: {''.join(self.log)}")

    def get(self, path="/"):
        """``(status, body)`` of one request; retries while the new worker boots."""
        deadline = time.monotonic() + LIMIT
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=LIMIT)
                conn.request("GET", path)
                response = conn.getresponse()
                result = response.status, response.read().decode()
                conn.close()
                return result
            except (ConnectionError, http.client.RemoteDisconnected):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pid(self):
        return int(re.search(r"pid=(\d+)", self.get()[1]).group(1))

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(LIMIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.stderr.close()


@pytest.fixture
def arbiter(request):
    started = []

    def start(*args, **kwargs):
        started.append(Arbiter(*args, **kwargs))
        return started[-1]

    yield start
    for one in started:
        if one.process.poll() is None:
            one.stop()


def test_the_worker_patches_before_loading_and_overlaps_sleeping_requests(arbiter):
    gun = arbiter("--worker-connections", "100")
    status, body = gun.get()
    assert status == 200 and body.startswith("patched=True ")
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        began = time.monotonic()
        results = list(pool.map(lambda _: gun.get("/?sleep=0.3"), range(20)))
        elapsed = time.monotonic() - began
    assert all(status == 200 for status, _ in results)
    assert elapsed < 4, f"20 requests of 0.3 s took {elapsed:.1f} s (6 s one by one)"


@pytest.mark.slow
def test_a_busy_worker_that_notifies_outlives_its_timeout(arbiter):
    gun = arbiter("--timeout", "1")
    pid = gun.pid()
    status, _ = gun.get("/?sleep=2.5")               # longer than --timeout: still alive
    assert status == 200
    assert gun.pid() == pid


def test_max_requests_restarts_the_worker_and_hup_reloads_and_term_stops(arbiter):
    gun = arbiter("--max-requests", "3")
    first = gun.pid()
    pids = [gun.pid() for _ in range(4)]
    assert pids[:2] == [first, first]            # the third request was its last
    assert pids[-1] != first
    before = gun.pid()
    gun.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + LIMIT
    while gun.pid() == before:
        assert time.monotonic() < deadline, "HUP did not bring a new worker"
        time.sleep(0.05)
    assert gun.stop() == 0


def test_term_lets_a_request_in_flight_finish(arbiter):
    gun = arbiter("--graceful-timeout", "5")
    gun.get()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(gun.get, "/?sleep=0.5")
        time.sleep(0.2)
        gun.process.send_signal(signal.SIGTERM)
        assert slow.result(LIMIT)[0] == 200
    assert gun.process.wait(LIMIT) == 0


def test_flask_and_django_under_gunicorn(arbiter):
    pytest.importorskip("flask")
    pytest.importorskip("django")
    assert arbiter(app="wsgi_apps.flask_app:app").get() == (200, "hello from flask")
    assert arbiter(app="wsgi_apps.django_app:application").get() == (200, "hello from django")


def test_worker_connections_bound_the_connections_and_keep_alive_closes_idle_ones(arbiter):
    gun = arbiter("--worker-connections", "1", "--keep-alive", "1")
    with socket.create_connection(("127.0.0.1", gun.port), timeout=LIMIT) as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(first)[0].startswith(b"HTTP/1.1 200 ")
        with socket.create_connection(("127.0.0.1", gun.port), timeout=LIMIT) as second:
            second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(second)[0].startswith(b"HTTP/1.1 503 ")
        began = time.monotonic()
        assert closed_by_peer(first)                 # idle past --keep-alive 1
        assert 0.5 < time.monotonic() - began < LIMIT
