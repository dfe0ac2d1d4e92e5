"""Bad input gets an HTTP answer and costs nothing else: each case serves a fast
request on another connection while the bad one is under way."""

import logging
import threading
import time

import pytest
from tls_helpers import client_context, server_context
from wsgi_helpers import LIMIT, closed_by_peer, dial, hello, read_response, read_to_eof, serving

from microthreads.wsgi import server as wsgi_server


def fast_request_works(served):
    with dial(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, _ = read_response(sock)
    return head.startswith(b"HTTP/1.1 200 ")


def answer_and_close(sock):
    """The status of the answer ``sock`` gets, after which the server must close."""
    head, _, _ = read_response(sock)
    assert b"Connection: close" in head
    assert closed_by_peer(sock)
    return int(head.split(b" ")[1])


def reading_app(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [])
    return [b"read %d" % len(data)]


@pytest.mark.parametrize(("begun", "ended", "status"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", b"no colon in this header\r\n\r\n", 400),
    (b"GET /", b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n", b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: ", b"y" * 9000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\n", b"Content-Length: 2000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n", 400),
], ids=["malformed", "long-target", "header-count", "header-size", "body-size", "bad-chunk"])
def test_a_bad_request_is_answered_and_closed_while_others_are_served(begun, ended, status):
    with serving(hello if status != 400 else reading_app, max_body=1000) as served, \
            dial(served) as bad:
        bad.sendall(begun)
        assert fast_request_works(served)
        bad.sendall(ended)
        assert answer_and_close(bad) == status


def test_a_head_over_its_total_limit_is_431():
    with serving(hello, max_head=2000) as served, dial(served) as bad:
        bad.sendall(b"GET / HTTP/1.1\r\n")
        for i in range(30):
            bad.sendall(b"X-%d: %s\r\n" % (i, b"y" * 100))
        assert answer_and_close(bad) == 431
        assert fast_request_works(served)


def keeps_sending_then_reads_to_eof(sock, status):
    """The server answers ``status``; the client goes on sending the rest of its
    head without looking, then reads: it must meet the server's EOF, not a reset.
    A server that closed with the client's input unread would be reset by the
    kernel, failing the client's sends (EPIPE) or its reads before it saw the
    answer; the server half-closes (not under TLS) and reads the rest away
    instead (a lingering close)."""
    head, _, rest = read_response(sock)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    for i in range(300):
        sock.sendall(b"X-%d: %s\r\n" % (i, b"y" * 100))
    assert rest + read_to_eof(sock) == b""


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_client_that_goes_on_sending_after_its_431_meets_no_reset(request, monkeypatch, tls):
    options = {}
    if tls:     # no half-close: the server reads until the client's EOF or the limit
        monkeypatch.setattr(wsgi_server, "LINGER_SECONDS", 0.5)
        certs = request.getfixturevalue("certs")
        options["ssl"] = server_context(certs)
    with serving(hello, max_head=2000, **options) as served, dial(served) as bad:
        if tls:
            bad = client_context(certs).wrap_socket(bad, server_hostname="localhost")
        bad.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"y" * 3000 + b"\r\n")
        keeps_sending_then_reads_to_eof(bad, 431)
        if not tls:
            assert fast_request_works(served)


def test_a_chunked_body_over_the_limit_is_413_whatever_the_app_returns():
    with serving(reading_app, max_body=1000) as served, dial(served) as bad:
        bad.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        bad.sendall(b"400\r\n" + b"x" * 0x400 + b"\r\n")
        assert answer_and_close(bad) == 413
        assert fast_request_works(served)


def test_a_body_within_the_limit_is_read():
    with serving(reading_app, max_body=1000) as served, dial(served) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
        assert read_response(sock)[1] == b"read 1000"


def test_a_client_that_sends_its_head_a_byte_at_a_time_gets_408_at_the_header_timeout():
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 1000
    with serving(hello, header_timeout=0.5) as served, dial(served) as slow:
        stop = threading.Event()

        def dribble():
            for byte in request:
                if stop.wait(0.05):
                    return
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return

        dribbler = threading.Thread(target=dribble)
        began = time.monotonic()
        dribbler.start()
        try:
            assert fast_request_works(served)
            assert answer_and_close(slow) == 408
            assert 0.4 < time.monotonic() - began < LIMIT
        finally:
            stop.set()
            dribbler.join(LIMIT)


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout():
    with serving(hello, keepalive_timeout=0.3) as served, dial(served) as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(idle)
        began = time.monotonic()
        assert fast_request_works(served)
        assert closed_by_peer(idle)
        assert 0.25 < time.monotonic() - began < LIMIT


def test_a_connection_that_never_sends_a_request_is_closed_at_the_header_timeout():
    with serving(hello, header_timeout=0.3) as served, dial(served) as silent:
        assert fast_request_works(served)
        assert closed_by_peer(silent)


def test_over_max_connections_a_client_gets_503():
    with serving(hello, max_connections=1) as served, dial(served) as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(first)                         # the one slot is taken now
        with dial(served) as second:
            assert answer_and_close(second) == 503
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(first)[1] == b"hello"


def test_a_refused_client_that_goes_on_sending_after_its_503_meets_no_reset():
    with serving(hello, max_connections=1) as served, dial(served) as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(first)                         # the one slot is taken now
        with dial(served) as second:
            second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            keeps_sending_then_reads_to_eof(second, 503)


def failing_app(environ, start_response):
    """/before waits, then raises before its headers; /after sends its headers,
    waits, then raises; anything else is hello."""
    import microthreads
    path = environ["PATH_INFO"]
    if path == "/before":
        microthreads.sleep(0.2)
        raise RuntimeError("before the headers")
    if path == "/after":
        start_response("200 OK", [("Content-Length", "10")])
        return _fail_after_a_chunk()
    return hello(environ, start_response)


def _fail_after_a_chunk():
    import microthreads
    yield b"12345"
    microthreads.sleep(0.2)
    raise RuntimeError("after the headers")


@pytest.mark.parametrize("path", ["/before", "/after"])
def test_an_app_error_is_answered_or_closed_while_others_are_served(path, caplog):
    with caplog.at_level(logging.CRITICAL, logger="microthreads"), \
            serving(failing_app) as served, dial(served) as bad:
        bad.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        assert fast_request_works(served)              # while the failing one waits
        if path == "/before":
            assert answer_and_close(bad) == 500
        else:
            data = read_to_eof(bad)
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n12345")
        assert fast_request_works(served)
