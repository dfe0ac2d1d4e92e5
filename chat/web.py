"""The chat's web side: one page, and web members over a WebSocket at ``/ws``.

A web member is another transport of the same member: the server's login
and chat loop (server.py) read lines from its terminal and the room writes
lines to its terminal's ``conn``, as for telnet. Here the terminal is a
``WebTerminal`` over a ``microthreads.websocket.WebSocket`` and its ``conn``
a ``WebLink``: one text message per protocol line each way, the lines a
telnet member gets without their CRLF (PROTOCOL.md, "The web page").

``WebFront`` is the WSGI application on ``--web-port`` (served by
``microthreads.wsgi.WSGIServer``): the page and its script and style (package
data in ``chat/web/``, no build step), and the WebSocket upgrade.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from microthreads import websocket

from .terminal import TOO_FAST, say_and_close
from .text import RateLimiter, decode, sanitize

if TYPE_CHECKING:
    from microthreads.wsgi import WSGIServer

    from .server import ChatServer

StartResponse = Callable[..., Any]

log = logging.getLogger("chat")

#: A message longer than this closes the WebSocket (1009); one longer than
#: ``--max-line`` but within it gets ``Line too long`` as telnet does.
MAX_MESSAGE = 1 << 16
#: A browser answers pings by itself: a silent peer is dropped within
#: ``--keepalive`` seconds plus this.
PONG_TIMEOUT = 15.0

#: What the page may load and reach: itself, nothing else (no inline script).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self';"
                           " img-src 'self'; connect-src 'self'; base-uri 'none';"
                           " form-action 'none'; frame-ancestors 'none'")
_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
          "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
          "/chat.css": ("chat.css", "text/css; charset=utf-8"),
          "/favicon.ico": ("favicon.svg", "image/svg+xml")}
_SECURITY_HEADERS = [("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                     ("X-Content-Type-Options", "nosniff"),
                     ("Referrer-Policy", "no-referrer"),
                     ("Cache-Control", "no-cache")]


class WebLink:
    """A web member's side of the room: what ``Member`` and the server ask of
    a telnet member's Connection (``write``, ``flush``, ``close``,
    ``close_reason``, ``peer``), over a WebSocket.

    ``write(data)`` takes the room's encoded lines (each ending in CRLF, one
    or many) and sends each as one text message. The room hands the same
    batch to every member: it is framed once for all the web members that
    get it (``websocket.Prepared``).
    """

    __slots__ = ("ws",)

    #: The last batch framed, shared by every link: (data, its Prepared).
    _last: tuple[bytes | None, websocket.Prepared | None] = (None, None)

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    @property
    def peer(self) -> Any:
        """The peer's address (the WebSocket's)."""
        return self.ws.peer

    @property
    def close_reason(self) -> str | None:
        """Why the connection was closed, for the logs (the Connection's)."""
        reason: str | None = self.ws.connection.close_reason
        return reason

    @close_reason.setter
    def close_reason(self, reason: str | None) -> None:
        self.ws.connection.close_reason = reason

    def write(self, data: bytes) -> None:
        """Send the lines in ``data`` (UTF-8, each ending in CRLF), a message
        each; NetworkError if the member is gone or its backlog is over the
        bound (it is then disconnected)."""
        last, prepared = WebLink._last
        if data is not last:
            lines = decode(data).split("\r\n")
            lines.pop()                        # after the last CRLF: nothing
            prepared = websocket.Prepared(lines)
            WebLink._last = (data, prepared)
        assert prepared is not None                # framed with its data
        self.ws.send_prepared(prepared)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queued messages are sent, ``timeout`` seconds at most;
        whether they were."""
        return bool(self.ws.connection.flush(timeout))

    def close(self, reason: str | None = None) -> None:
        """Close the WebSocket now: a close frame (1001 once the server is
        shutting down, else 1000) without waiting for the answer."""
        if reason and not self.ws.connection.close_reason:
            self.ws.connection.close_reason = reason
        code = 1001 if reason == "server shutting down" else 1000
        self.ws.close(code, "", timeout=0)

    @property
    def closed(self) -> bool:
        """Whether the WebSocket is closed."""
        return bool(self.ws.closed)


class WebTerminal:
    """Lines in and out of one web member, as ``Terminal`` is for telnet.

    ``read_line()`` returns the next message as clean text (control, escape
    and bidi characters removed, stripped), or None once the WebSocket is
    closed; a message over ``max_line`` bytes is answered with
    ``Line too long`` and skipped, and messages over the rate are dropped
    with the same warning. Binary messages are read as UTF-8 with
    replacement. ``say(text)`` sends one text message.
    """

    __slots__ = ("_clock", "_limiter", "before_write", "conn", "deliver", "max_line", "on_flood",
                 "ws")

    def __init__(self, ws: websocket.WebSocket, *, max_line: int = 4096,
                 limiter: RateLimiter | None = None, clock: Callable[[], float]) -> None:
        self.ws = ws
        self.conn = WebLink(ws)
        #: The room's encoded lines, a message each (``WebLink.write``).
        self.deliver = self.conn.write
        self.max_line = max_line
        self._limiter = limiter
        self._clock = clock
        self.before_write: Callable[[], None] | None = None
        #: Called with ``conn`` when the member is told it sends too fast (the
        #: server logs it).
        self.on_flood: Callable[[Any], None] | None = None

    def say(self, text: str) -> None:
        """Send ``text`` as one message; never blocks (a backlog over the bound
        closes the connection and raises NetworkError)."""
        if self.before_write is not None:
            self.before_write()
        self.ws.send(text)

    def hang_up(self, text: str) -> None:
        """Tell ``text`` and disconnect (``terminal.say_and_close``)."""
        say_and_close(self, text)

    def read_line(self) -> str | None:
        """The next message as clean text; None once the WebSocket is closed."""
        limiter = self._limiter
        while True:
            data = self.ws.receive()
            if data is None:
                return None
            message = data if isinstance(data, str) else decode(data)
            if len(message) > self.max_line // 4 and len(message.encode()) > self.max_line:
                self.say(f"Line too long (limit {self.max_line} bytes).")
                continue
            if limiter is not None:
                now = self._clock()
                if not limiter.allow(now):
                    if limiter.warn_due(now):
                        self.say(TOO_FAST)
                        if self.on_flood is not None:
                            self.on_flood(self.conn)
                    continue
            return sanitize(message).strip()


def _file(name: str) -> bytes:
    return resources.files(__package__).joinpath("web").joinpath(name).read_bytes()


class WebFront:
    """The WSGI application of the web port: the page, and ``/ws``.

    ``chat`` is the ``ChatServer`` whose room web members join
    (``chat.web_session(ws)``). ``origins``: the Origins allowed to open
    the WebSocket (None: the same host as the page, which is what the page
    is served from). Every answer carries the Content-Security-Policy.
    """

    def __init__(self, chat: ChatServer, origins: Sequence[str] | None = None) -> None:
        self.chat = chat
        self.origins = origins
        self._files = {path: (_file(name), kind) for path, (name, kind) in _FILES.items()}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """The WSGI call: a file of the page, ``/ws``, or 404/405."""
        path = environ.get("PATH_INFO", "/")
        if path == "/ws":
            return self.websocket(environ, start_response)
        entry = self._files.get("/" if path == "/index.html" else path)
        if entry is None:
            return _plain(start_response, "404 Not Found", "Not found.")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "GET only.",
                          [("Allow", "GET, HEAD")])
        body, kind = entry
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))),
                                  *_SECURITY_HEADERS])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def websocket(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        """Upgrade to a WebSocket and run the member's session in this tasklet."""
        o = self.chat.options
        try:
            ws = websocket.accept(environ, origins=self.origins, max_message=MAX_MESSAGE,
                                  ping_interval=o.keepalive, ping_timeout=PONG_TIMEOUT,
                                  max_output=o.max_backlog, on_full="close")
        except websocket.HandshakeError as exc:
            log.info("%s: WebSocket refused: %s", environ.get("REMOTE_ADDR"), exc.status)
            start_response(exc.status, exc.headers + _SECURITY_HEADERS)
            return [exc.body]
        ws.connection.stall_timeout = o.stall_timeout
        self.chat.web_session(ws)
        return []


def _plain(start_response: StartResponse, status: str, text: str,
           headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *headers, *_SECURITY_HEADERS])
    return [body]


def serve(chat: ChatServer, host: str, port: int, ssl: Any = None,
          reuse_port: bool = False) -> WSGIServer:
    """Start the web port's WSGIServer for ``chat``; the server (``.address``,
    ``.stop()``). Raises OSError when the port cannot be had."""
    from microthreads.wsgi import WSGIServer
    server = WSGIServer((host, port), WebFront(chat), ssl=ssl, reuse_port=reuse_port)
    server.start()
    return server


