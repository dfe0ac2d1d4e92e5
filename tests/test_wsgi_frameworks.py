"""WSGIServer with real parts: Flask, Django, requests, http.client, curl, HTTPS."""

import concurrent.futures
import http.client
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tls_helpers import server_context
from wsgi_helpers import LIMIT, serving

requests = pytest.importorskip("requests")

TESTS = Path(__file__).parent


@pytest.fixture
def flask_app():
    pytest.importorskip("flask", reason="Flask is in the test extra")
    from wsgi_apps import flask_app
    flask_app.next_event.clear()
    return flask_app


@pytest.fixture
def django_app():
    pytest.importorskip("django", reason="Django is in the test extra")
    from wsgi_apps.django_app import application
    return application


def test_flask_answers_requests_and_echoes_a_large_body(flask_app):
    with serving(flask_app.app) as served, requests.Session() as session:
        assert session.get(served.url + "/", timeout=LIMIT).text == "hello from flask"
        body = os.urandom(1 << 20)
        response = session.post(served.url + "/echo", data=body, timeout=LIMIT)
        assert response.content == body
        assert session.get(served.url + "/missing", timeout=LIMIT).status_code == 404


def test_flask_streams_server_sent_events_chunk_by_chunk(flask_app):
    with serving(flask_app.app) as served, \
            requests.get(served.url + "/events", stream=True, timeout=LIMIT) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)                     # arrives before the second is made
        assert first == b"data: first\n\n"
        flask_app.next_event.set()
        assert b"".join(chunks) == b"data: second\n\n"


def test_django_answers_through_requests_and_http_client(django_app):
    with serving(django_app) as served:
        assert requests.get(served.url + "/", timeout=LIMIT).text == "hello from django"
        conn = http.client.HTTPConnection("127.0.0.1", served.address[1], timeout=LIMIT)
        conn.request("POST", "/echo?q=x", body=b"12345")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b'{"method": "POST", "length": 5, "query": "x"}'
        conn.request("GET", "/nowhere")               # the same connection, kept alive
        assert conn.getresponse().status == 404
        conn.close()


def test_https_with_requests_verifying_the_certificate(certs, flask_app):
    with serving(flask_app.app, ssl=server_context(certs)) as served:
        assert served.url.startswith("https://")
        response = requests.get(served.url + "/", timeout=LIMIT, verify=certs.ca)
        assert response.text == "hello from flask"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(served.url + "/", timeout=LIMIT, verify=certs.untrusted)


# ---------------------------------------------------------------- curl

needs_curl = pytest.mark.skipif(shutil.which("curl") is None,
                                reason="curl is not installed (make system-deps)")


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", str(LIMIT), *args],
                          capture_output=True, timeout=LIMIT + 5)


@needs_curl
def test_curl_reuses_the_connection_uploads_chunked_and_waits_for_100_continue(flask_app):
    with serving(flask_app.app) as served:
        result = curl("-v", served.url + "/", served.url + "/")
        assert result.stdout == b"hello from flask" * 2
        assert b"Re-using existing connection" in result.stderr or \
            b"Reusing existing connection" in result.stderr
        result = subprocess.run(
            ["curl", "-sS", "-v", "--max-time", str(LIMIT), "-H", "Transfer-Encoding: chunked",
             "-H", "Expect: 100-continue", "--data-binary", "@-", served.url + "/echo"],
            input=b"streamed body", capture_output=True, timeout=LIMIT + 5)
        assert result.stdout == b"streamed body"
        assert b"HTTP/1.1 100 Continue" in result.stderr
        head = curl("-I", served.url + "/")
        assert head.stdout.startswith(b"HTTP/1.1 200 OK") and b"hello" not in head.stdout


# ---------------------------------------------------------------- concurrency


def test_100_concurrent_requests_that_sleep_with_patched_time_sleep_overlap():
    """Each handler calls time.sleep(0.2) under --patch: they overlap (about
    0.2 s in all; 20 s one after another). The bound is loose for a loaded
    machine."""
    process = subprocess.Popen(
        [sys.executable, "-m", "microthreads.wsgi", "wsgi_apps.plain:application", "--patch",
         "--bind", "127.0.0.1:0", "--backlog", "200"],
        cwd=TESTS, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    try:
        for line in process.stderr:
            if "serving" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        else:
            pytest.fail("the server did not start")

        def one(_):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LIMIT * 3)
            conn.request("GET", "/?sleep=0.2")
            body = conn.getresponse().read()
            conn.close()
            return body

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            began = time.monotonic()
            bodies = list(pool.map(one, range(100)))
            elapsed = time.monotonic() - began
        assert all(body.startswith(b"patched=True") for body in bodies)
        assert elapsed < 10, f"100 requests of 0.2 s took {elapsed:.1f} s"
    finally:
        process.terminate()
        process.wait(LIMIT)
        process.stderr.close()
