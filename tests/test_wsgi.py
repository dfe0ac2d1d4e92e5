"""microthreads.wsgi.WSGIServer: PEP 3333 and HTTP/1.1 as clients see them."""

import http.client
import io
import logging
import socket
import threading
import time

import pytest
from wsgi_helpers import LIMIT, closed_by_peer, dial, hello, read_response, read_to_eof, serving

import microthreads


def client(served):
    return http.client.HTTPConnection("127.0.0.1", served.address[1], timeout=LIMIT)


def get(served, path="/", method="GET", body=None, headers=None):
    conn = client(served)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- PEP 3333


def test_the_environ_has_every_key_pep_3333_requires_with_its_type():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    with serving(app) as served:
        get(served, "/a%20b/c?x=1&y=%41", headers={"X-Thing": "yes", "Content-Type": "a/b"})
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["SCRIPT_NAME"] == ""
    assert seen["PATH_INFO"] == "/a b/c"                 # decoded, as PEP 3333 says
    assert seen["QUERY_STRING"] == "x=1&y=%41"           # as sent
    assert seen["CONTENT_TYPE"] == "a/b"
    assert "CONTENT_LENGTH" not in seen
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == str(served.address[1])
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["HTTP_X_THING"] == "yes"
    assert seen["HTTP_HOST"] == f"127.0.0.1:{served.address[1]}"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is False
    assert seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False
    assert hasattr(seen["wsgi.input"], "read") and hasattr(seen["wsgi.errors"], "write")
    assert all(type(v) is str for k, v in seen.items() if k.isupper())


def test_the_input_reads_lines_and_blocks_and_stops_at_the_end_of_the_body():
    got = {}

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        if environ["REQUEST_METHOD"] == "GET":
            start_response("200 OK", [])
            return [b"done"]
        got["line"] = stream.readline()
        got["part"] = stream.readline(3)
        got["block"] = stream.read(4)
        got["lines"] = list(stream)
        got["after"] = stream.read()
        start_response("200 OK", [])
        return [b"done"]

    with serving(app) as served, dial(served) as sock:
        body = b"first\nsecond\nthird\nfourth"
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
        _head, answer, rest = read_response(sock)
        assert answer == b"done"
        _head, answer, rest = read_response(sock, rest)  # the next request was not read as body
        assert answer == b"done"
    assert got == {"line": b"first\n", "part": b"sec", "block": b"ond\n",
                   "lines": [b"third\n", b"fourth"], "after": b""}


def test_a_chunked_request_body_is_read_to_its_end():
    def app(environ, start_response):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [data.upper()]

    with serving(app) as served, dial(served) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
        _head, body, _ = read_response(sock)
    assert body == b"HELLO WORLD"


def test_start_response_with_exc_info_replaces_the_headers_not_yet_sent():
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("oops")
        except KeyError:
            import sys
            start_response("503 Busy", [("X-Second", "2")], sys.exc_info())
        return [b"later"]

    with serving(app) as served:
        response, body = get(served)
    assert (response.status, response.getheader("X-Second"), response.getheader("X-First"),
            body) == (503, "2", None, b"later")


def test_start_response_with_exc_info_after_the_headers_reraises_and_the_connection_closes():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"begun ")
        try:
            raise KeyError("oops")
        except KeyError:
            import sys
            start_response("500 Error", [], sys.exc_info())   # raises KeyError here
        return [b"never"]

    with serving(app) as served, dial(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_to_eof(sock)
    assert data.startswith(b"HTTP/1.1 200 OK") and b"begun " in data
    assert not data.endswith(b"0\r\n\r\n")            # no clean end: the client sees a cut


def test_the_write_callable_sends_before_the_iterable():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    with serving(app) as served:
        response, body = get(served)
    assert body == b"written returned"
    assert response.getheader("Transfer-Encoding") == "chunked"


def test_the_iterable_is_closed_after_the_answer_and_after_a_failure():
    closed = []

    class Body:
        def __init__(self, fail):
            self.fail = fail

        def __iter__(self):
            yield b"a"
            if self.fail:
                raise ValueError("half way")
            yield b"b"

        def close(self):
            closed.append(self.fail)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body(environ["PATH_INFO"] == "/fail")

    with serving(app) as served:
        assert get(served)[1] == b"ab"
        with pytest.raises(http.client.IncompleteRead):
            get(served, "/fail")
    assert closed == [False, True]


def test_the_file_wrapper_sends_a_file():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "200000")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 200000), 8192)

    with serving(app) as served:
        assert get(served)[1] == b"x" * 200000


def test_wsgi_errors_writes_lines_to_logging(caplog):
    def app(environ, start_response):
        environ["wsgi.errors"].write("one\ntwo")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="microthreads.wsgi"), serving(app) as served:
        get(served)
    assert [r.getMessage() for r in caplog.records if r.name == "microthreads.wsgi"] == \
        ["one", "two"]


# ---------------------------------------------------------------- HTTP/1.1


def test_keep_alive_serves_many_requests_on_one_connection():
    ports = []

    def app(environ, start_response):
        ports.append(environ["REMOTE_PORT"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"n%d" % len(ports)]

    with serving(app) as served:
        conn = client(served)
        bodies = []
        for _ in range(3):
            conn.request("GET", "/")
            bodies.append(conn.getresponse().read())
        conn.close()
    assert bodies == [b"n1", b"n2", b"n3"]
    assert len(set(ports)) == 1


def test_pipelined_requests_are_answered_in_order():
    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/slow":
            microthreads.sleep(0.05)
        return [environ["PATH_INFO"].encode()]

    with serving(app) as served, dial(served) as sock:
        sock.sendall(b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % p
                              for p in (b"slow", b"b", b"c")))
        rest = b""
        bodies = []
        for _ in range(3):
            _, body, rest = read_response(sock, rest)
            bodies.append(body)
    assert bodies == [b"/slow", b"/b", b"/c"]


def test_http_1_0_closes_after_the_answer_unless_it_asks_for_keep_alive():
    with serving(hello) as served:
        with dial(served) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            head, body, _ = read_response(sock)
            assert body == b"hello" and closed_by_peer(sock)
        with dial(served) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head, body, _ = read_response(sock)
            assert b"Connection: keep-alive" in head
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert read_response(sock)[1] == b"hello"


def test_connection_close_closes_after_the_answer():
    with serving(hello) as served, dial(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, body, _ = read_response(sock)
        assert b"Connection: close" in head and body == b"hello"
        assert closed_by_peer(sock)


def test_a_body_without_a_length_goes_chunked_to_http_1_1_and_to_eof_for_1_0():
    def app(environ, start_response):
        start_response("200 OK", [])
        return iter([b"one ", b"", b"two"])

    with serving(app) as served:
        response, body = get(served)
        assert (response.getheader("Transfer-Encoding"), body) == ("chunked", b"one two")
        with dial(served) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            head, body, _ = read_response(sock)
            assert b"chunked" not in head and body == b"one two"


def test_a_list_body_gets_a_content_length():
    with serving(hello) as served:
        response, _body = get(served)
    assert response.getheader("Content-Length") == "5"


def test_expect_100_continue_is_answered_only_when_the_app_reads_the_body():
    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/read":
            return [environ["wsgi.input"].read()]
        return [b"not read"]

    with serving(app) as served:
        with dial(served) as sock:
            sock.sendall(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            head, _, rest = read_response(sock)
            assert head == b"HTTP/1.1 100 Continue"
            sock.sendall(b"body")
            head, body, _ = read_response(sock, rest)
            assert head.startswith(b"HTTP/1.1 200") and body == b"body"
        with dial(served) as sock:
            sock.sendall(b"POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            head, body, _ = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200") and body == b"not read"
            assert closed_by_peer(sock)      # its body never came: the connection is done


def test_head_gets_the_headers_and_no_body():
    with serving(hello) as served, dial(served) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"hello") < 1:
            data += sock.recv(65536)
        first, _, second = data.partition(b"\r\n\r\n")
        assert b"Content-Length: 5" in first
        assert second.startswith(b"HTTP/1.1 200 OK")   # no body between the two


def test_head_and_304_keep_the_connection_though_their_content_length_has_no_body():
    def app(environ, start_response):
        status = "304 Not Modified" if environ["PATH_INFO"] == "/cached" else "200 OK"
        start_response(status, [("Content-Length", "1000")])
        return iter([b"x" * 1000])

    with serving(app) as served, dial(served) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /cached HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"x" * 1000):
            data += sock.recv(65536)
        assert data.count(b"x") == 1000               # only the GET's body
        assert b"Connection: close" not in data


def test_an_unread_small_body_is_skipped_and_the_connection_kept():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    with serving(app) as served, dial(served) as sock:
        sock.sendall(b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        _, body, rest = read_response(sock)
        assert body == b"/first"
        sock.sendall(b"y" * 1000 + b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, rest)[1] == b"/second"


def test_an_empty_write_does_not_end_a_chunked_body():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"a")
        write(b"")
        write(b"b")
        return []

    with serving(app) as served:
        assert get(served)[1] == b"ab"


def test_every_answer_has_date_and_server_unless_the_app_gave_them():
    def app(environ, start_response):
        headers = [("Server", "mine")] if environ["PATH_INFO"] == "/own" else []
        start_response("200 OK", headers)
        return [b""]

    with serving(app) as served:
        response, _ = get(served)
        assert response.getheader("Server") == "microthreads"
        date = response.getheader("Date")
        assert date.endswith(" GMT")
        assert abs(http.client.email.utils.parsedate_to_datetime(date).timestamp()
                   - time.time()) < 5
        response, _ = get(served, "/own")
        assert response.getheaders().count(("Server", "mine")) == 1
        assert response.getheader("Date")


def test_the_access_log_has_a_line_per_request_when_on_and_none_when_off(caplog):
    with caplog.at_level(logging.INFO, logger="microthreads.wsgi.access"):
        with serving(hello) as served:
            get(served, "/quiet")
        with serving(hello, access_log=True) as served:
            get(served, "/loud?x=1", headers={"User-Agent": "tester"})
    lines = [r.getMessage() for r in caplog.records if r.name == "microthreads.wsgi.access"]
    assert len(lines) == 1
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '"GET /loud?x=1 HTTP/1.1" 200 5 "-" "tester"' in lines[0]


# ---------------------------------------------------------------- failures


def test_an_app_that_raises_before_its_headers_gives_500_and_one_logged_traceback(caplog):
    def app(environ, start_response):
        raise RuntimeError("secret detail")

    with caplog.at_level(logging.ERROR, logger="microthreads"), serving(app) as served:
        response, body = get(served)
    assert response.status == 500
    assert b"secret" not in body and b"Traceback" not in body
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "secret detail" in str(tracebacks[0].exc_info[1])


def test_an_app_that_raises_after_its_headers_has_its_connection_closed(caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        yield b"12345"
        raise RuntimeError("mid-body")

    with caplog.at_level(logging.ERROR, logger="microthreads"), serving(app) as served, \
            dial(served) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_to_eof(sock)
    assert data.endswith(b"\r\n\r\n12345")


def test_a_client_that_resets_mid_response_is_forgotten_and_others_are_served():
    started = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/big":
            started.set()
            for _ in range(10000):
                yield b"x" * 65536
        else:
            yield b"fast"

    with serving(app) as served:
        sock = dial(served)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert started.wait(LIMIT)
        sock.recv(1000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        assert get(served)[1] == b"fast"
        deadline = time.monotonic() + LIMIT
        while served.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not served.server.connections


# ---------------------------------------------------------------- stopping


def test_stop_closes_idle_connections_at_once_and_lets_requests_in_flight_finish():
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            while not release.is_set():
                microthreads.sleep(0.01)
        start_response("200 OK", [])
        return [b"finished"]

    with serving(app) as served:
        idle = dial(served)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(idle)
        busy = dial(served)
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        stopper = threading.Thread(target=served.call, args=(served.server.stop, 5))
        stopper.start()
        assert closed_by_peer(idle)                  # idle: closed at once
        release.set()
        head, body, _ = read_response(busy)
        assert body == b"finished" and b"Connection: close" in head
        stopper.join(LIMIT)
        with pytest.raises(OSError):
            dial(served)
        idle.close()
        busy.close()


@pytest.mark.parametrize(("status", "headers"), [
    ("200 OK", [("X-Evil", "a\r\nSet-Cookie: injected=1")]),
    ("200 OK\r\nX-Evil: 1", []),
    ("OK", []),
], ids=["header-line-break", "status-line-break", "status-without-code"])
def test_a_malformed_answer_from_the_app_is_a_500_and_never_reaches_the_wire(status, headers,
                                                                             caplog):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"body"]

    with caplog.at_level(logging.ERROR, logger="microthreads"), serving(app) as served:
        response, _body = get(served)
    assert response.status == 500
    assert response.getheader("Set-Cookie") is None and response.getheader("X-Evil") is None
