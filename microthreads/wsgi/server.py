"""WSGIServer: PEP 3333 over HTTP/1.1, one tasklet per connection.

Each connection runs in its StreamServer tasklet: it reads, feeds the bytes
to httptools' parser (llhttp), calls the application for each complete
request head in arrival order, and writes its answer. The application runs
in that same tasklet, so its straight-line calls (a database, an API, a
``time.sleep`` under ``monkey.patch_all()``) park only its own connection.
The body is read only when the application reads ``wsgi.input``: the parser
is fed by whoever needs the next bytes, the request loop between requests,
the input while the application reads. Nothing is read ahead of need, so
memory per connection stays within the header limit and one read.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import httptools  # the `http` extra: pip install 'microthreads[http]'

from ..hub import get_hub
from ..net.errors import NetworkError, NotTLSError
from ..net.server import StreamServer
from ..net.stream import Connection
from ..nonblocking import deadline_after, remaining

if TYPE_CHECKING:
    from types import TracebackType

    from ..timers import Timer

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
    StartResponse = Callable[..., Callable[[bytes], None]]
    WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

log = logging.getLogger("microthreads.wsgi")
ACCESS_LOG = logging.getLogger("microthreads.wsgi.access")

SERVER_SOFTWARE = "microthreads"
#: How much one read asks the kernel for.
READ_SIZE = 65536
#: An application that left at most this much of a body unread: the server
#: reads and drops the rest, and the connection is kept; more, it is closed.
DRAIN_LIMIT = 65536
#: A connection closed with input unread would be reset by the kernel, and a
#: client still sending its request would lose the answer to the reset: so
#: it is half-closed first and what the client still sends is read and
#: dropped until it closes, at most this long and this much (a "lingering
#: close", as Apache's and nginx's).
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024

_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}
_NO_BODY_STATUS = frozenset((204, 304))
_PASSED_THROUGH = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))


def _linger(conn: Connection, tls: bool) -> None:
    """Before the close of a connection with input unread: half-close, then
    read and drop what the client still sends until its EOF, at most
    LINGER_BYTES for LINGER_SECONDS. Under TLS, which has no safe half-close
    (Connection.shutdown_write), only the reading: the answer said
    "Connection: close", so a client that has read it closes, and the close
    comes at the limit otherwise."""
    hub = get_hub()
    deadline = deadline_after(hub, LINGER_SECONDS)
    left = LINGER_BYTES
    try:
        if not tls:
            conn.shutdown_write()
        while left > 0:
            conn.timeout = remaining(hub, deadline)
            data = conn.recv(min(left, READ_SIZE))
            if not data:
                return
            left -= len(data)
    except (NetworkError, TimeoutError):
        pass


class _Reject(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def _error_response(status: int, why: str) -> bytes:
    body = f"{status} {_REASONS[status]}: {why}\n".encode()
    return (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class _Errors:
    """``wsgi.errors``: a text stream whose lines go to ``logging`` ("microthreads.wsgi")."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._partial:
            log.error("%s", self._partial)
            self._partial = ""


class FileWrapper:
    """``wsgi.file_wrapper``: iterates ``filelike`` in blocks; ``close()`` closes it."""

    def __init__(self, filelike: Any, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.block_size)
            if not data:
                return
            yield data


class _NoBody:
    """``wsgi.input`` of a request without a body: always at its end."""

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


_NO_BODY = _NoBody()


class _Request:
    """One request whose head is complete: its environ and its body so far."""

    __slots__ = ("body", "complete", "continue_expected", "discard", "environ", "head",
                 "http10", "keep_alive", "received", "upgrade")

    def __init__(self, environ: dict[str, Any], keep_alive: bool, http10: bool,
                 head: bool, upgrade: bool) -> None:
        self.environ = environ
        self.keep_alive = keep_alive
        self.http10 = http10
        self.head = head
        self.upgrade = upgrade
        self.body = bytearray()       # received and not yet read by the application
        self.received = 0             # body bytes received in all
        self.complete = False         # the parser saw the end of the message
        self.discard = False          # drop body bytes as they come (draining)
        self.continue_expected = False


class Input:
    """``wsgi.input``: the request body as a stream, read on demand.

    ``read(size)``, ``readline(size)``, ``readlines(hint)`` and iteration
    return b"" at the end of the body and never read past it. The first read
    of a request that said ``Expect: 100-continue`` sends the interim
    ``100 Continue`` first. A client that goes away raises NetworkError; one
    that sends no byte for ``read_timeout`` seconds, TimeoutError; a body
    over ``max_body`` or malformed chunked framing raises ValueError (and the
    server answers 413 or 400, whatever the application returns).
    """

    def __init__(self, http: _HTTPConnection, request: _Request) -> None:
        self._http = http
        self._request = request

    def _fill(self) -> bool:
        """More body into the buffer; False at its end."""
        request = self._request
        if request.complete:
            return False
        self._http.receive_body(request)
        return True

    def read(self, size: int | None = -1) -> bytes:
        """At most ``size`` bytes of the body (all the rest if None or negative);
        b"" at its end.

        Waits for the client as the body arrives; fails as the class says
        (NetworkError, TimeoutError, ValueError).
        """
        body = self._request.body
        if size is None or size < 0:
            while self._fill():
                pass
            data = bytes(body)
            body.clear()
            return data
        while len(body) < size and self._fill():
            pass
        data = bytes(body[:size])
        del body[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """The next line of the body with its ``\n``, at most ``size`` bytes; b""
        at its end.

        Waits for the client as the body arrives; fails as the class says
        (NetworkError, TimeoutError, ValueError).
        """
        body = self._request.body
        start = 0
        while True:
            end = body.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if size is not None and 0 <= size <= len(body):
                end = size
                break
            start = len(body)
            if not self._fill():
                end = len(body)
                break
        if size is not None and 0 <= size < end:
            end = size
        data = bytes(body[:end])
        del body[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines, stopping once they total ``hint`` bytes (if
        positive).

        Waits for the client as the body arrives; fails as the class says
        (NetworkError, TimeoutError, ValueError).
        """
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _HTTPConnection:
    """The HTTP side of one Connection: parser callbacks, the request loop, responses."""

    def __init__(self, server: WSGIServer, conn: Connection) -> None:
        self.server = server
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Request] = deque()  # heads complete, not yet answered
        self.building: _Request | None = None    # the request whose body the parser reads
        self.error: _Reject | None = None         # the parser met this: answer after pending
        self.upgrade_tail = b""                   # bytes past an upgrade request's head
        self.in_head = False                      # a request head has begun, not ended
        self.head_bytes = 0
        self.idle = False                         # waiting for a request, none begun
        self.idle_since = 0.0                     # ... since then (hub clock)
        self.hijacked = False
        self.served = 0
        self.unread_input = False                 # it closes with input unread: linger
        self.request: _Request          # the one being answered (set by respond)
        peer = conn.peer
        base = server.base_environ.copy()
        if isinstance(peer, tuple):
            base["REMOTE_ADDR"] = peer[0]
            base["REMOTE_PORT"] = str(peer[1])
        else:
            base["REMOTE_ADDR"] = ""
        base["microthreads.connection"] = conn
        base["microthreads.upgrade"] = self.upgrade
        self.base_environ = base
        self.start_response = self._start_response
        self.write = self._write
        self.status: str | None = None        # the answer being made (see _reset_response)
        self.response_headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.keep_alive = True
        self.chunked = False
        self.no_body = False
        self.left: int | None = None          # of a Content-Length the app gave
        self.sent = 0
        # the head being parsed
        self._environ: dict[str, Any] = {}
        self._url = b""
        self._header_count = 0

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self._environ = self.base_environ.copy()
        self._url = b""
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_request_line:
            raise _Reject(414, f"request target longer than {self.server.max_request_line}"
                               " bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        server = self.server
        self._header_count += 1
        if self._header_count > server.max_headers:
            raise _Reject(431, f"more than {server.max_headers} header fields")
        if len(name) + len(value) > server.max_header_size:
            raise _Reject(431, f"a header field longer than {server.max_header_size} bytes")
        key = _KEYS.get(name, "")
        if key == "":
            key = _environ_key(name)
        if key is None:
            return                            # an underscore: could pose as a dash
        environ = self._environ
        text = value.decode("latin-1")
        if key in environ:
            environ[key] += "," + text
        else:
            environ[key] = text

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        environ = self._environ
        url = self._url
        method_bytes = parser.get_method()
        method = _METHODS.get(method_bytes) or method_bytes.decode("latin-1")
        version = parser.get_http_version()
        environ["REQUEST_METHOD"] = method
        environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
        raw_uri = url.decode("latin-1")
        environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
        if not url.startswith(b"/") and url != b"*" and method != "CONNECT":  # absolute
            parsed = httptools.parse_url(url)
            url = parsed.path or b"/"
            if parsed.query is not None:
                url += b"?" + parsed.query
        path, _, query = url.partition(b"?")
        if b"%" in path:
            path = _unquote(path)
        environ["PATH_INFO"] = path.decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        request = _Request(environ, parser.should_keep_alive(), version == "1.0",
                           method == "HEAD",
                           ("HTTP_UPGRADE" in environ or method == "CONNECT")
                           and parser.should_upgrade())
        length = environ.get("CONTENT_LENGTH")
        if length is not None or "HTTP_TRANSFER_ENCODING" in environ:
            if length is not None and int(length) > self.server.max_body:  # llhttp: digits
                raise _Reject(413, f"a body over {self.server.max_body} bytes")
            if "HTTP_EXPECT" in environ:
                request.continue_expected = environ["HTTP_EXPECT"].lower() == "100-continue"
            environ["wsgi.input"] = Input(self, request)
        else:
            environ["wsgi.input"] = _NO_BODY
        self.building = request
        self.pending.append(request)

    def on_body(self, data: bytes) -> None:
        request = self.building
        assert request is not None            # a body follows a head
        request.received += len(data)
        if request.received > self.server.max_body:
            raise _Reject(413, f"a body over {self.server.max_body} bytes")
        if not request.discard:
            request.body += data

    def on_message_complete(self) -> None:
        request = self.building
        assert request is not None
        request.complete = True

    # ------------------------------------------------------------ reading

    def feed(self, data: bytes) -> None:
        """Parse ``data``; a parse error is kept in ``self.error`` (answered in turn).

        A head still incomplete after it is charged the whole of ``data`` (an
        upper bound when the head began inside it), so a head that never ends
        holds at most ``max_head`` bytes plus one read.
        """
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgrade_tail = data[exc.args[0]:]
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self.error = cause if isinstance(cause, _Reject) else _Reject(400, str(exc))
        except httptools.HttpParserError as exc:
            self.error = _Reject(400, str(exc) or "malformed request")
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.server.max_head and self.error is None:
                self.error = _Reject(431, f"request head over {self.server.max_head} bytes")

    def next_request(self) -> _Request | None:
        """The next request whose head is complete, reading as needed; None: close."""
        pending = self.pending
        server = self.server
        conn = self.conn
        deadline = None
        while not pending:
            if self.error is not None:
                self.answer_error(self.error)
                return None
            if self.upgrade_tail or (self.building is not None and self.building.upgrade):
                return None                   # the parser stopped at an upgrade
            if server.stopping:
                return None
            if self.in_head:                  # the head's own limit, from its first byte
                hub = get_hub()
                if deadline is None:
                    deadline = deadline_after(hub, server.header_timeout)
                conn.timeout = remaining(hub, deadline)
            else:                             # the server's sweep ends a long wait
                conn.timeout = None
                self.idle_since = server.clock()
                self.idle = True
            try:
                data = conn.recv(READ_SIZE)
            except TimeoutError:
                if self.in_head:
                    self.answer_error(_Reject(408, "the request head took too long"))
                return None
            except NetworkError:
                if conn.closed and self.idle:
                    return None               # closed by the sweep or by stop()
                raise
            finally:
                self.idle = False
            if not data:
                return None
            self.feed(data)
        return pending.popleft()

    def receive_body(self, request: _Request) -> None:
        """Read and parse the next bytes of ``request``'s body (Input, draining)."""
        if request.continue_expected:
            request.continue_expected = False
            self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.error is not None:
            raise ValueError(f"request body refused: {self.error}")
        self.conn.timeout = self.server.read_timeout
        data = self.conn.recv(READ_SIZE)
        if not data:
            raise NetworkError(f"{self.describe()}: EOF inside the request body")
        self.feed(data)
        if self.error is not None:
            raise ValueError(f"request body refused: {self.error}")

    def describe(self) -> str:
        peer = self.conn.peer
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix socket"

    def answer_error(self, reject: _Reject) -> None:
        log.debug("%s: %d %s", self.describe(), reject.status, reject)
        self.unread_input = True              # the connection closes after it
        try:
            self.conn.sendall(_error_response(reject.status, str(reject)))
        except (NetworkError, TimeoutError):
            pass

    # ------------------------------------------------------------ the request loop

    def serve(self) -> None:
        """Answer requests in order until the connection should close."""
        server = self.server
        server.connections.add(self)
        try:
            while True:
                request = self.next_request()
                if request is None or not self.respond(request):
                    break
                self.served += 1
        finally:
            server.connections.discard(self)
        if self.unread_input:
            _linger(self.conn, self.server.scheme == "https")

    def respond(self, request: _Request) -> bool:
        """Run the application for ``request`` and send its answer; False: close."""
        self.request = request
        environ = request.environ
        result: Any = None
        try:
            result = self.server.app(environ, self.start_response)
            if not self.hijacked:
                self._send_result(request, result)
        except (NetworkError, TimeoutError) as exc:   # the client went or stalled
            log.debug("%s: %s", self.describe(), exc)
            self.keep_alive = False
        except Exception:
            self.keep_alive = False
            if not self.hijacked:
                self._failed(request)
        finally:
            close = None if type(result) is list else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("close() of the response to %s failed", _request_line(
                        environ))
                    self.keep_alive = False
        if self.server.access_log is not None and not self.hijacked:
            self._log_access(environ)
        keep = self.keep_alive and not self.hijacked
        self._reset_response()
        if keep and not request.complete:
            keep = self._drain(request)
        if not keep and not request.complete and not self.hijacked:
            self.unread_input = True
        return keep

    def _failed(self, request: _Request) -> None:
        environ = request.environ
        if self.error is not None and self.error.status in (400, 413) and \
                not self.headers_sent:
            self.answer_error(self.error)     # the body was refused, not the app's fault
            self.status = f"{self.error.status} "
            return
        log.exception("error in the application for %s", _request_line(environ))
        if not self.headers_sent:
            self.status = "500 "
            self.sent = 0
            try:
                self.conn.sendall(_error_response(500, "see the server log"))
            except (NetworkError, TimeoutError):
                pass

    def _drain(self, request: _Request) -> bool:
        """Read and drop what is left of a body the application did not read."""
        if request.received + DRAIN_LIMIT < _declared_length(request):
            return False
        if request.continue_expected:
            return False                      # the client waits for a 100 never sent
        request.discard = True
        request.body.clear()
        try:
            while not request.complete:
                if request.received > DRAIN_LIMIT and not request.environ.get(
                        "CONTENT_LENGTH"):
                    return False
                self.receive_body(request)
        except (NetworkError, TimeoutError, ValueError):
            return False
        return True

    # ------------------------------------------------------------ responses

    def _reset_response(self) -> None:
        self.status = None
        self.response_headers = []
        self.headers_sent = False
        self.keep_alive = True
        self.chunked = False
        self.no_body = False
        self.left = None
        self.sent = 0

    def _start_response(self, status: str, headers: list[tuple[str, str]],
                        exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if type(status) is not str or len(status) < 4 or status[3] != " " or \
                not status[:3].isdigit():
            raise AssertionError(f"status must be a str like '200 OK', not {status!r}")
        if type(headers) is not list:
            raise AssertionError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.response_headers = headers
        return self.write

    def _head(self, length: int | None) -> bytes:
        """The status line and headers (and the framing) of the answer, as bytes.

        ``length``: the body's length when the server knows it (a list).
        """
        status = self.status
        if status is None:
            raise AssertionError("the application sent a body before start_response()")
        request = self.request
        server = self.server
        lines = server._status_line(status)
        code = int(status[:3])
        keep_alive = request.keep_alive and not server.stopping
        extra = b""
        has_length = has_date = has_server = framed = False
        kinds = _HEADER_KINDS
        for name, value in self.response_headers:
            lines += f"{name}: {value}\r\n"
            kind = kinds.get(name)
            if kind is None:
                kind = _header_kind(name)
            if not kind:
                continue
            if kind == 1:
                has_length = True
                self.left = int(value)
            elif kind == 2:
                if value.lower() == "close":
                    keep_alive = False
            elif kind == 3:
                has_date = True
            elif kind == 4:
                has_server = True
            else:
                framed = True                 # the app frames the body itself
        if lines.count("\n") != len(self.response_headers) + 1 or \
                lines.count("\r") != len(self.response_headers) + 1:
            raise ValueError("a response header holds a line break")
        if request.head or code in _NO_BODY_STATUS or code < 200:
            self.no_body = True
            self.left = None                  # a Content-Length here describes no body sent
            if length is not None and not has_length and request.head:
                lines += f"Content-Length: {length}\r\n"
        elif has_length:
            pass
        elif length is not None:
            lines += f"Content-Length: {length}\r\n"
        elif framed:
            keep_alive = False
        elif request.http10:
            keep_alive = False                # the body ends where the connection does
        else:
            lines += "Transfer-Encoding: chunked\r\n"
            self.chunked = True
        if not keep_alive:
            if not request.http10:
                lines += "Connection: close\r\n"
        elif request.http10:
            lines += "Connection: keep-alive\r\n"
        self.keep_alive = keep_alive
        if has_date or has_server:
            if not has_date:
                extra = server._date_line
            elif not has_server:
                extra = server._server_line
        else:
            extra = server._date_and_server
        self.headers_sent = True
        return lines.encode("latin-1") + extra + b"\r\n"

    def _body(self, data: bytes) -> bytes:
        """``data`` framed for the wire (chunked, or cut at Content-Length)."""
        if self.no_body:
            return b""
        if self.left is not None:
            if len(data) > self.left:
                log.error("the application sent more than its Content-Length for %s",
                          _request_line(self.request.environ))
                data = data[:self.left]
                self.keep_alive = False
            self.left -= len(data)
        self.sent += len(data)
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def _send_result(self, request: _Request, result: Iterable[bytes]) -> None:
        sendall = self.conn.sendall
        if type(result) is list and not self.headers_sent:
            body = result[0] if len(result) == 1 else b"".join(result)
            if type(body) is not bytes:
                raise TypeError(f"the application's body holds {type(body).__name__},"
                                " not bytes")
            sendall(self._head(len(body)) + self._body(body))
        else:
            for data in result:
                if type(data) is not bytes:
                    raise TypeError(f"the application yielded {type(data).__name__},"
                                    " not bytes")
                if not data:
                    continue
                if self.headers_sent:
                    sendall(self._body(data))
                else:
                    sendall(self._head(None) + self._body(data))
            if not self.headers_sent:
                sendall(self._head(0))
            if self.chunked:
                sendall(b"0\r\n\r\n")
        if self.left:                         # shorter than its Content-Length
            self.keep_alive = False

    def _write(self, data: bytes) -> None:
        """The ``write()`` callable of start_response: send ``data`` now."""
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not data and self.headers_sent:
            return                            # an empty chunk would end a chunked body
        if self.headers_sent:
            self.conn.sendall(self._body(data))
        else:
            self.conn.sendall(self._head(None) + self._body(data))

    # ------------------------------------------------------------ upgrade

    def upgrade(self, status: str, headers: list[tuple[str, str]]) -> Connection:
        """``environ["microthreads.upgrade"]``: hand the connection to the caller.

        Writes ``status`` and ``headers`` (plus Date and Server, unless given)
        at once, marks the request hijacked, and returns the Connection with
        the bytes already read past the request's head put back in front
        (``Connection.unread``). After the application returns the server
        writes nothing more and closes the connection. RuntimeError if the
        answer was begun already, or if requests pipelined after this one were
        read already (their bytes are gone into the parser).
        """
        request = self.request
        if self.headers_sent or self.hijacked:
            raise RuntimeError("upgrade(): the answer to this request was begun already")
        if self.pending or (self.building is not request) or self.in_head:
            raise RuntimeError("upgrade(): requests pipelined after this one were read")
        if self.status is not None:
            raise RuntimeError("upgrade(): start_response() was called already")
        names = {name.lower() for name, _ in headers}
        head = self.server._status_line(status) + "".join(
            f"{name}: {value}\r\n" for name, value in headers)
        extra = b"" if "date" in names else self.server._date_line
        if "server" not in names:
            extra += self.server._server_line
        self.hijacked = True
        self.conn.sendall(head.encode("latin-1") + extra + b"\r\n")
        tail = bytes(request.body) + self.upgrade_tail
        request.body.clear()
        self.upgrade_tail = b""
        self.conn.timeout = None
        self.conn.unread(tail)
        return self.conn

    # ------------------------------------------------------------ access log

    def _log_access(self, environ: dict[str, Any]) -> None:
        status = (self.status or "-").split(" ", 1)[0]
        logger = self.server.access_log
        assert logger is not None
        logger.info('%s - - [%s] "%s" %s %s "%s" "%s"', environ.get("REMOTE_ADDR") or "-",
                    time.strftime("%d/%b/%Y:%H:%M:%S %z"), _request_line(environ), status,
                    self.sent if self.headers_sent or self.sent else "-",
                    environ.get("HTTP_REFERER", "-"), environ.get("HTTP_USER_AGENT", "-"))


def _request_line(environ: dict[str, Any]) -> str:
    return f"{environ.get('REQUEST_METHOD')} {environ.get('RAW_URI')}" \
           f" {environ.get('SERVER_PROTOCOL')}"


def _declared_length(request: _Request) -> int:
    length = request.environ.get("CONTENT_LENGTH")
    return int(length) if length else 0


def _unquote(path: bytes) -> bytes:
    from urllib.parse import unquote_to_bytes
    return unquote_to_bytes(path)


#: response header names the server looks at: 1 Content-Length, 2 Connection,
#: 3 Date, 4 Server, 5 Transfer-Encoding; 0 any other (cached per spelling)
_KIND_OF = {"content-length": 1, "connection": 2, "date": 3, "server": 4,
            "transfer-encoding": 5}
_HEADER_KINDS: dict[str, int] = {}


def _header_kind(name: str) -> int:
    kind = _KIND_OF.get(name.lower(), 0)
    if len(_HEADER_KINDS) < 1024:
        _HEADER_KINDS[name] = kind
    return kind


_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_METHODS = {name.encode(): name for name in (
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")}
_KEYS: dict[bytes, str | None] = {}


def _environ_key(name: bytes) -> str | None:
    """``b"User-Agent"`` -> ``"HTTP_USER_AGENT"``; None for a name with an underscore."""
    try:
        return _KEYS[name]
    except KeyError:
        pass
    if b"_" in name:
        key = None
    else:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in _PASSED_THROUGH:
            key = "HTTP_" + key
    if len(_KEYS) < 1024:                     # names vary by case only so much
        _KEYS[name] = key
    return key


class WSGIServer:
    """Serves the WSGI application ``app`` (PEP 3333) over HTTP/1.1 on ``address``.

    ``address`` is as for ``microthreads.net.listen`` (or a Listener). Each
    connection runs in a tasklet of its own, and so does the application for
    its requests: keep-alive, pipelined requests answered in order, chunked
    bodies both ways, ``Expect: 100-continue`` answered on the first read
    of ``wsgi.input``, HEAD, Date and Server headers. ``ssl=context`` serves
    HTTPS (``wsgi.url_scheme`` is then "https"); a plaintext HTTP request
    there gets a 400 in the clear naming the https:// address to use.

    Limits, each answered and followed by a close (lingering: half-closed, the
    client's further input read and dropped, ``LINGER_SECONDS`` and
    ``LINGER_BYTES`` at most, so a client still sending reads the answer, not
    a reset; under TLS, no half-close, only the reading): a request target
    over ``max_request_line`` bytes (414), over ``max_headers`` header fields
    or one over ``max_header_size`` bytes or a whole head over ``max_head``
    (431), a body over ``max_body`` (413), a head not complete within
    ``header_timeout`` seconds of its first byte (408), a malformed request
    (400). An idle keep-alive connection is closed after ``keepalive_timeout``
    seconds; a body that stalls ``read_timeout`` seconds raises TimeoutError
    in the application. Over ``max_connections`` a client gets 503 (and the
    lingering close). An application that raises before its headers are sent
    gives the client a 500 (the traceback goes to the log, once); after them,
    the connection is closed.

    ``access_log``: False (none), True (logger "microthreads.wsgi.access") or
    a ``logging.Logger``; one INFO line per request in the combined format.
    ``environ``: extra keys for every request's environ.

    Attributes: ``address`` (bound), ``scheme`` ("http" or "https"),
    ``connections`` (the live HTTP connections, a set: ``len()`` counts
    them), ``stream_server`` (the ``StreamServer`` underneath).
    """

    def __init__(self, address: Any, app: WSGIApp, *, ssl: Any = None,
                 max_connections: int | None = None, access_log: bool | logging.Logger = False,
                 max_request_line: int = 8190, max_headers: int = 100,
                 max_header_size: int = 8190, max_head: int | None = None,
                 max_body: int = 1 << 30, header_timeout: float = 10.0,
                 keepalive_timeout: float = 5.0, read_timeout: float = 60.0,
                 environ: dict[str, Any] | None = None, backlog: int = 1024,
                 reuse_port: bool = False, handshake_timeout: float = 10.0) -> None:
        self.app = app
        self.max_request_line = max_request_line
        self.max_headers = max_headers
        self.max_header_size = max_header_size
        self.max_head = max_head if max_head is not None else \
            max_request_line + max_headers * (max_header_size + 4)
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.read_timeout = read_timeout
        self.access_log: logging.Logger | None = None
        if isinstance(access_log, logging.Logger):
            self.access_log = access_log
        elif access_log:
            self.access_log = ACCESS_LOG
        options: dict[str, Any] = {}
        if ssl is not None:
            options = {"ssl": ssl, "handshake_timeout": handshake_timeout}
        self.stream_server = StreamServer(address, self._handle, max_connections,
                                          self._refuse, backlog=backlog,
                                          reuse_port=reuse_port,
                                          on_handshake_error=self._not_https, **options)
        self.extra_environ = dict(environ or {})
        self.scheme = "https" if ssl is not None else "http"
        self.connections: set[_HTTPConnection] = set()
        self.stopping = False
        self.base_environ: dict[str, Any] = {}
        self._status_lines: dict[str, str] = {}
        self._date_timer: Timer | None = None
        self._sweep_timer: Timer | None = None
        self.clock = get_hub().clock
        #: how often idle connections are checked against their timeouts
        self._sweep_every = max(0.05, min(1.0, keepalive_timeout / 4, header_timeout / 4))
        self._date_line = self._server_line = self._date_and_server = b""
        self._update_date()

    @property
    def address(self) -> Any:
        """The bound address (after ``start()``; the real port when 0 was asked)."""
        return self.stream_server.address

    def start(self) -> WSGIServer:
        """Listen and start serving in tasklets; returns at once."""
        self.stopping = False
        self.stream_server.start()
        self.base_environ = self._make_base_environ()
        self.clock = get_hub().clock
        if self._date_timer is None:
            self._update_date()
        if self._sweep_timer is None:
            self._sweep_timer = get_hub().call_later(self._sweep_every, self._sweep)
        return self

    def serve_forever(self) -> None:
        """Start, then serve until ``stop()`` is called."""
        self.start()
        self.stream_server.serve_forever()

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: stop accepting, close idle keep-alive connections at
        once, let requests in flight finish for ``timeout`` seconds (their
        answers say ``Connection: close``), then kill what is left.

        ``timeout=None`` kills them at once. A stopped server may be started again.
        """
        self.stopping = True
        for http in list(self.connections):
            if http.idle:
                http.conn.close("server stopping")
        self.stream_server.stop(timeout)
        for timer in (self._date_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        self._date_timer = self._sweep_timer = None

    def __enter__(self) -> WSGIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<WSGIServer {self.address!r} connections={len(self.connections)}>"

    # ------------------------------------------------------------ internals

    def _make_base_environ(self) -> dict[str, Any]:
        address = self.address
        if isinstance(address, tuple):
            host, port = str(address[0]), str(address[1])
        else:
            host, port = "localhost", ""
        environ = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme,
            "wsgi.errors": _Errors(),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SERVER_NAME": host,
            "SERVER_PORT": port,
            "SCRIPT_NAME": "",
        }
        environ.update(self.extra_environ)
        return environ

    def _status_line(self, status: str) -> str:
        """``"HTTP/1.1 <status>\\r\\n"``, cached."""
        line = self._status_lines.get(status)
        if line is None:
            if "\n" in status or "\r" in status:
                raise ValueError("the status holds a line break")
            line = f"HTTP/1.1 {status}\r\n"
            if len(self._status_lines) < 256:
                self._status_lines[status] = line
        return line

    def _update_date(self) -> None:
        """Rebuild the Date header, and come back at the next second."""
        now = time.time()
        self._date_line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode()
        self._server_line = f"Server: {SERVER_SOFTWARE}\r\n".encode()
        self._date_and_server = self._date_line + self._server_line
        if self.stream_server.listener is not None and not self.stopping:
            self._date_timer = get_hub().call_later(1.0 - now % 1.0 + 0.001,
                                                    self._update_date)
        else:
            self._date_timer = None

    def _sweep(self) -> None:
        """Close the connections that waited for a request longer than they may:
        ``header_timeout`` for a first request, ``keepalive_timeout`` after one.
        One timer for the server instead of one per wait."""
        now = self.clock()
        for http in list(self.connections):
            if http.idle:
                limit = self.keepalive_timeout if http.served else self.header_timeout
                if now - http.idle_since >= limit:
                    http.conn.close("idle" if http.served else "no request in time")
        if self.stopping:
            self._sweep_timer = None
        else:
            self._sweep_timer = get_hub().call_later(self._sweep_every, self._sweep)

    def _handle(self, conn: Connection) -> None:
        _HTTPConnection(self, conn).serve()

    def _refuse(self, conn: Connection) -> None:
        conn.sendall(_error_response(503, "too many connections"))
        _linger(conn, self.scheme == "https")      # its request is unread

    def _not_https(self, conn: Connection, error: NetworkError) -> None:
        if isinstance(error, NotTLSError) and error.first_bytes:   # a request, not silence
            host, port = conn.socket.getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            error.answer(_error_response(400, f"this port speaks HTTPS: use https://{host}:{port}/"))
        log.debug("%s", error)

