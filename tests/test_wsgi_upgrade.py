"""environ["microthreads.upgrade"]: handing a request's connection to another protocol."""

from wsgi_helpers import closed_by_peer, dial, read_response, serving

import microthreads.net

UPGRADE_REQUEST = (b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                   b"Upgrade: echo\r\n\r\n")


def echo_upgrade(environ, start_response):
    """Switches to a line echo protocol until the client says "bye"."""
    assert isinstance(environ["microthreads.connection"], microthreads.net.Connection)
    conn = environ["microthreads.upgrade"]("101 Switching Protocols",
                                           [("Upgrade", "echo"), ("Connection", "Upgrade")])
    assert conn is environ["microthreads.connection"]
    for line in conn:
        conn.sendall(b"echo " + line)
        if line == b"bye\n":
            break
    return [b"this body is ignored"]


def test_upgrade_writes_the_head_as_given_and_hands_over_the_bytes_read_past_it():
    with serving(echo_upgrade) as served, dial(served) as sock:
        sock.sendall(UPGRADE_REQUEST + b"first\n")       # one segment: head and new protocol
        head, _body, rest = read_response(sock)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        names = sorted(line.split(b":")[0].lower() for line in lines[1:])
        assert names == [b"connection", b"date", b"server", b"upgrade"]
        data = rest
        while b"echo first\n" not in data:
            data += sock.recv(100)
        assert data == b"echo first\n"
        sock.sendall(b"bye\n")
        data = b""
        while b"echo bye\n" not in data:
            data += sock.recv(100)
        assert data == b"echo bye\n"
        assert closed_by_peer(sock)          # nothing more is written; the server closes


def test_upgrade_after_start_response_raises_and_the_request_is_answered_500():
    errors = []

    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            environ["microthreads.upgrade"]("101 Switching Protocols", [])
        except RuntimeError as exc:
            errors.append(str(exc))
            raise
        return [b""]

    with serving(app) as served, dial(served) as sock:
        sock.sendall(UPGRADE_REQUEST)
        head, _, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 500 ")
    assert errors and "start_response" in errors[0]


def test_a_request_that_is_not_upgraded_is_answered_and_the_connection_closed():
    def refuse(environ, start_response):
        start_response("400 Bad Request", [("Content-Length", "0")])
        return [b""]

    with serving(refuse) as served, dial(served) as sock:
        sock.sendall(UPGRADE_REQUEST)
        head, _, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert closed_by_peer(sock)
