"""Shared helpers for the WSGI tests: a server in a thread of its own, raw HTTP."""

import contextlib
import socket
import threading

import pytest

pytest.importorskip("httptools", reason="needs the http extra (pip install 'microthreads[http]')")

import microthreads
from microthreads.wsgi import WSGIServer

#: No single WSGI test waits longer than this for anything.
LIMIT = 10


class Served:
    """A running WSGIServer seen from the test's thread."""

    def __init__(self, server, hub):
        self.server = server
        self.hub = hub
        self.address = server.address
        self.url = f"{'https' if server.scheme == 'https' else 'http'}://127.0.0.1:{self.address[1]}"

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's hub, in a tasklet; wait for it, return its value."""
        done = threading.Event()
        box = {}

        def run():
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed back to the test
                box["error"] = exc
            done.set()

        self.hub.call_soon_threadsafe(microthreads.spawn, run)
        assert done.wait(LIMIT), "the server's hub did not run the call"
        if "error" in box:
            raise box["error"]
        return box.get("value")


@contextlib.contextmanager
def serving(app, stop_timeout=1.0, **options):
    """A WSGIServer for ``app`` on 127.0.0.1 (port 0) in a thread with its own hub.

    Yields a ``Served``; stops the server (``stop(stop_timeout)``) and joins
    the thread after the block.
    """
    ready = threading.Event()
    box = {}

    def main():
        server = WSGIServer(("127.0.0.1", 0), app, **options)
        server.start()
        stop = microthreads.Event()
        box.update(server=server, hub=microthreads.get_hub(), stop=stop)
        ready.set()
        stop.wait()
        server.stop(stop_timeout)

    def thread_main():
        try:
            microthreads.run(microthreads.with_timeout, 60, main)
        except BaseException as exc:
            box["error"] = exc
            ready.set()
        finally:
            microthreads.get_hub().close()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert ready.wait(LIMIT)
    if "error" in box:
        raise box["error"]
    try:
        yield Served(box["server"], box["hub"])
    finally:
        box["hub"].call_soon_threadsafe(box["stop"].set)
        thread.join(LIMIT)
        assert not thread.is_alive(), "the server thread did not stop"
    if "error" in box:
        raise box["error"]


def dial(served):
    """A blocking stdlib socket connected to the server (timeout LIMIT)."""
    return socket.create_connection(served.address, timeout=LIMIT)


def read_response(sock, buffered=b""):
    """``(head, body, rest)`` of one response read from ``sock`` (Content-Length
    or chunked framing; a body without either is read to EOF)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"EOF inside a response head: {data!r}")
        data += chunk
    head, _, data = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    status = int(head.split(b" ", 2)[1])
    if status in (100, 101, 204, 304):
        return head, b"", data
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(data) < length:
            data += _more(sock)
        return head, data[:length], data[length:]
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in data:
                data += _more(sock)
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            while len(data) < size + 2:
                data += _more(sock)
            body += data[:size]
            data = data[size + 2:]
            if size == 0:
                return head, body, data
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return head, data, b""
        data += chunk


def _more(sock):
    chunk = sock.recv(65536)
    if not chunk:
        raise EOFError("EOF inside a response body")
    return chunk


def read_to_eof(sock):
    """Every byte the server sends on ``sock`` until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def closed_by_peer(sock):
    """True if the server closed ``sock`` (EOF or reset) within LIMIT seconds."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def hello(environ, start_response):
    """The smallest app: 200, "hello"."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
