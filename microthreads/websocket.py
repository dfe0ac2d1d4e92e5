"""WebSocket (RFC 6455) over a ``microthreads.net.Connection``, blocking-looking.

``import microthreads.websocket`` (needs wsproto: ``pip install
'microthreads[websocket]'``; ``import microthreads`` does not). The protocol
(framing, fragments, UTF-8 validation, close codes, permessage-deflate) is
wsproto's, sans-I/O; this module does the I/O on a Connection and the
policies around it:

- ``accept(environ_or_connection, ...) -> WebSocket``: the server side, from a
  WSGI environ whose server offers ``environ["microthreads.upgrade"]`` (as
  ``microthreads.wsgi`` does) or from a raw Connection of a StreamServer-style
  handler (the HTTP upgrade request is read from it). A request that is not
  a valid upgrade, or whose Origin is not allowed, raises ``HandshakeError``.
- ``connect("ws://host:port/path" or "wss://...", ...) -> WebSocket``: a client.
- ``WebSocket``: ``receive(timeout=None)`` (str or bytes; None once closed),
  ``send(message)``, ``close(code=1000, reason="")``, iteration over messages,
  ``closed``, ``close_code``, ``close_reason``.

Received pings are answered and keepalive pongs noticed while some tasklet is
in ``receive()`` (which is where a WebSocket reads); the chat and most
servers always have one there.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence, Union
from urllib.parse import urlsplit

try:
    from wsproto import WSConnection
    from wsproto.connection import Connection as _Protocol
    from wsproto.connection import ConnectionState, ConnectionType
    from wsproto.events import (
        AcceptConnection,
        BytesMessage,
        CloseConnection,
        Message,
        Ping,
        Pong,
        RejectConnection,
        RejectData,
        Request,
        TextMessage,
    )
    from wsproto.extensions import Extension, PerMessageDeflate
    from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
    from wsproto.handshake import server_extensions_handshake
    from wsproto.utilities import ProtocolError, generate_accept_token, split_comma_header
except ImportError as exc:                    # pragma: no cover - the extra is missing
    raise ImportError("microthreads.websocket needs wsproto:"
                      " pip install 'microthreads[websocket]'") from exc

from .hub import get_hub
from .net import Connection, NetworkError
from .net import connect as _dial
from .net.errors import network_error
from .nonblocking import deadline_after, remaining
from .sync import Event
from .timeout import Timeout

if TYPE_CHECKING:
    from typing_extensions import Self

    from .timers import Timer

__all__ = ["ConnectionClosed", "HandshakeError", "Prepared", "WebSocket", "accept", "connect",
           "origin_allowed"]

#: A message (text or binary) is refused past this many bytes unless told
#: otherwise: the peer gets close code 1009.
MAX_MESSAGE = 1 << 20
#: The raw-Connection path reads a request head of at most this many bytes.
MAX_REQUEST_HEAD = 16384
#: How long ``close()`` waits for the peer's close frame (seconds).
CLOSE_TIMEOUT = 5.0
#: How long the opening handshake may take (seconds), on the raw path and the client's.
HANDSHAKE_TIMEOUT = 10.0
#: How much ``receive()`` asks the Connection for at a time.
READ_SIZE = 65536
#: Whether a server socket without extensions decodes the commonest frame
#: (final, text or binary, masked, up to 64 KiB) itself while wsproto is
#: between messages, as wsproto would (DESIGN.md, "WebSocket": it is most of
#: the cost of a small message); False: wsproto decodes every frame. Read
#: when a WebSocket is made.
FAST_PATH = True

Data = Union[str, bytes]

_OPEN = ConnectionState.OPEN
#: The first byte of the frames the fast path decodes: FIN, no RSV bit, text or binary.
_FINAL_TEXT, _FINAL_BINARY = 0x81, 0x82


def _frame_size(data: bytes, pos: int) -> int | None:
    """The length (header and payload) of the frame whose header starts at
    ``data[pos:]``; None while its header is not all there. Any header,
    valid or not: wsproto judges it (RFC 6455 5.2)."""
    have = len(data) - pos
    if have < 2:
        return None
    second = data[pos + 1]
    length, head = second & 0x7F, 2 + (4 if second & 0x80 else 0)
    if length == 126:
        head += 2
        if have < head:
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
    elif length == 127:
        head += 8
        if have < head:
            return None
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
    return head + length if have >= head else None


def _server_frame(message: Data) -> bytes:
    """``message`` as one final, unmasked, uncompressed frame (RFC 6455 5.2):
    the frame wsproto's server side sends for it, for ``Prepared``;
    TypeError for anything else than str or bytes."""
    if type(message) is str:
        payload, first = message.encode("utf-8"), _FINAL_TEXT
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload, first = bytes(message), _FINAL_BINARY
    else:
        raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def _unmask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte masking ``key`` repeated (RFC 6455 5.3)."""
    size = len(payload)
    if not size:
        return payload
    mask = (key * ((size + 3) >> 2))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        size, "little")


def _message(data: Data | bytearray | memoryview) -> Message[Any]:
    if isinstance(data, str):
        return TextMessage(data=data)
    return BytesMessage(data=bytes(data) if type(data) is memoryview else data)


class ConnectionClosed(NetworkError):
    """``send`` (or ``receive`` waiting in another way) on a closed WebSocket.

    A ``NetworkError`` (so a ``ConnectionError``), as every failure of a
    peer is in ``microthreads.net``.
    """


class HandshakeError(NetworkError):
    """The opening handshake failed.

    Server side: the request is not a WebSocket upgrade this server takes.
    ``status`` (``"400 Bad Request"``, ``"403 Forbidden"`` for an Origin not
    allowed, ``"426 Upgrade Required"``...), ``headers`` and ``body`` are the
    HTTP answer: a WSGI app returns them (``start_response(exc.status,
    exc.headers); return [exc.body]``); on a raw Connection ``accept`` has
    sent them already. Client side: the server refused (``status`` is its
    status line) or answered something that is not an acceptance.
    """

    def __init__(self, status: str, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"WebSocket handshake: {status}: {message}")
        self.status = status
        self.body = (message + "\n").encode("utf-8")
        self.headers = [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(self.body))), *headers]


class Prepared:
    """Messages framed once, to be sent to many WebSockets (``send_prepared``).

    As gorilla/websocket's PreparedMessage: a broadcast to N server-side
    sockets without compression frames the messages once, not N times; a
    socket that compresses (or a client, which masks) frames them itself.
    ``messages`` is the sequence given (str: text, bytes: binary).
    """

    __slots__ = ("_frames", "messages")

    def __init__(self, messages: Sequence[Data]) -> None:
        self.messages = messages
        self._frames: bytes | None = None

    @property
    def frames(self) -> bytes:
        """The messages as unmasked, uncompressed frames (made on first use)."""
        if self._frames is None:
            self._frames = b"".join([_server_frame(message) for message in self.messages])
        return self._frames


class WebSocket:
    """One open WebSocket; made by ``accept`` or ``connect``, not directly.

    One tasklet receives at a time (a second gets RuntimeError); any tasklet
    may send or close. ``path`` and ``request_headers`` (lower-case names)
    are the opening request's on the server side; ``subprotocol`` is the one
    agreed (or None); ``peer`` is the Connection's.
    """

    def __init__(self, conn: Connection, protocol: _Protocol | WSConnection, *, client: bool,
                 compressed: bool = False, max_message: int = MAX_MESSAGE,
                 ping_interval: float | None = None, ping_timeout: float | None = 20.0,
                 close_timeout: float = CLOSE_TIMEOUT, max_output: int | None = None,
                 on_full: str | None = None, path: str = "",
                 request_headers: Mapping[str, str] | None = None,
                 subprotocol: str | None = None) -> None:
        if max_output is not None:
            conn.max_output = max_output
        if on_full is not None:
            if on_full not in ("wait", "close"):
                raise ValueError("on_full must be 'wait' or 'close'")
            conn.on_full = on_full
        self._conn = conn
        self._proto = protocol
        self._hub = get_hub()
        #: frames of ``Prepared`` fit this socket as they are
        self._plain = not client and not compressed
        self.max_message = max_message
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.path = path
        self.request_headers: Mapping[str, str] = request_headers or {}
        self.subprotocol = subprotocol
        self.peer = conn.peer
        #: Set once the connection is over: the code of the side that began
        #: the close (its close frame), 1006 when it was lost without one.
        self.close_code: int | None = None
        self.close_reason = ""
        self._ready: deque[Data] = deque()          # whole messages not yet returned
        self._parts: list[Any] = []                 # the fragments of the message coming in
        #: The fast path (``_feed``): a server socket without extensions decodes the
        #: commonest frames itself while wsproto is between frames and messages.
        self._fast = FAST_PATH and not client and not compressed
        self._inbox = b""           # bytes read: from ``_at`` on, not decoded nor given to wsproto
        self._at = 0
        self._owed = 0              # bytes of the frame wsproto has begun, still to give it
        self._head = b""            # the header so far of a frame wsproto has begun
        self._pending = False       # wsproto may have events not acted on yet
        self._size = 0
        #: a close (the peer's, or a protocol error) read behind messages not yet returned
        self._closing: CloseConnection | None = None
        self._done = False
        self._finished = Event()
        self._receiving = False
        self._ping_timer: Timer | None = None
        self._pong_timer: Timer | None = None
        if ping_interval:
            self._ping_timer = self._hub.call_later(ping_interval, self._keepalive)

    # ------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """True once the WebSocket is over (closed by either side, or lost)."""
        return self._done

    @property
    def connection(self) -> Connection:
        """The Connection underneath (its ``pending_output``, ``close_reason``...)."""
        return self._conn

    def _closed_error(self) -> ConnectionClosed:
        error = ConnectionClosed(f"{self._conn.peer}: WebSocket closed"
                                 f" ({self.close_code} {self.close_reason})".rstrip())
        return error

    # ------------------------------------------------------------ receiving

    def receive(self, timeout: float | None = None) -> Data | None:
        """The next whole message: str for text, bytes for binary; None once closed.

        Waits until a message is complete (fragments are joined), answering
        pings on the way. A peer's close frame is answered and the
        connection closed: None, with ``close_code`` set; so is a lost
        connection (1006). A protocol error, invalid UTF-8 in text (1007) or
        a message over ``max_message`` bytes (1009) closes the WebSocket
        with that code: None. Messages that arrived before the close are
        returned first. ``timeout`` (seconds) raises TimeoutError and leaves
        the WebSocket open. RuntimeError if another tasklet is receiving.
        """
        if self._ready:
            return self._ready.popleft()
        if self._done:
            return None
        if self._receiving:
            raise RuntimeError("another tasklet is receiving on this WebSocket")
        self._receiving = True
        try:
            if timeout is None:
                return self._receive()
            with Timeout(timeout, TimeoutError(f"{self._conn.peer}: WebSocket receive timed out")):
                return self._receive()
        finally:
            self._receiving = False

    def _receive(self) -> Data | None:
        conn = self._conn
        while True:
            if self._closing is not None and not self._ready:   # after the messages before it
                closing, self._closing = self._closing, None
                self._on_close(closing)
            if self._ready:
                return self._ready.popleft()
            if self._done:
                return None
            if self._pending or not self._fast:
                self._take_events()              # what an interrupted read left in wsproto
            if self._inbox and not self._done and self._closing is None:
                self._feed(b"")                  # ... and in the inbox
            if self._ready:
                return self._ready.popleft()
            if self.closed:                      # (a property: _on_event may have closed it)
                return None
            try:
                data = conn.recv(READ_SIZE)
            except NetworkError:
                data = b""
            if not data:
                self._lost()
                return self._ready.popleft() if self._ready else None
            self._feed(data)

    def _take_events(self) -> None:
        """Act on wsproto's events until it has none, or a close is due."""
        for event in self._proto.events():
            self._on_event(event)
            if self._done or self._closing is not None:
                return
        self._pending = False

    def _give(self, data: bytes) -> None:
        """Hand ``data`` to wsproto and act on the events it makes of it."""
        self._pending = True
        self._proto.receive_data(data)
        self._take_events()

    def _feed(self, data: bytes) -> None:
        """Read ``data`` (bytes after those of the inbox): its messages, pings, close.

        wsproto is the protocol; this is a fast path in front of it
        (DESIGN.md, "WebSocket"), exact because wsproto is given whole
        frames from a frame's first byte on, and only the frames of one
        shape are decoded here: final, text or binary, masked, no RSV bit,
        a 7- or 16-bit length within ``max_message``, all in ``data``,
        while no fragmented message is open (``_parts`` empty: wsproto's
        last message ended) and wsproto has no frame begun (``_owed`` and
        ``_head`` empty: every byte it was given was a whole frame, so its
        buffer is empty). Such a frame leaves wsproto no state when it
        decodes it, so it may skip it. Any other frame goes to wsproto as
        its bytes come, and so does everything once wsproto is not open
        (closing) or on a client or compressed socket (``_fast`` False).
        """
        if self._inbox:
            data, self._inbox = self._inbox[self._at:] + data, b""
        if not self._fast:
            self._give(data)
            return
        pos, end = 0, len(data)
        while pos < end and not self._done and self._closing is None:
            if not (self._owed or self._head):   # a frame begins at pos
                if self._proto.state is not _OPEN:   # closing: wsproto's from here on
                    self._fast = False
                    self._give(data[pos:])
                    return
                first = data[pos]
                if end - pos < 2:
                    break
                second = data[pos + 1]
                length, head = second & 0x7F, 6
                if first in (_FINAL_TEXT, _FINAL_BINARY) and second & 0x80 \
                        and length <= 126 and not self._parts:
                    if length == 126:
                        if end - pos < 4:
                            break               # as wsproto, wait for the length
                        length, head = data[pos + 2] << 8 | data[pos + 3], 8
                        fast = 126 <= length <= self.max_message
                    else:
                        fast = length <= self.max_message
                    if fast and end - pos < head:
                        break                   # as wsproto, wait for the mask
                    if fast and end - pos >= head + length:
                        start = pos + head
                        pos = start + length
                        self._decoded(first, _unmask(data[start:pos], data[start - 4:start]))
                        continue
                size = _frame_size(data, pos)   # wsproto's frame, from its first byte
                if size is None:                # its header is still coming
                    chunk = self._head = data[pos:]
                else:
                    chunk = data[pos:pos + size]
                    self._owed = size - len(chunk)
            elif self._head:                    # the rest of a header wsproto has begun
                size = _frame_size(self._head + data[pos:pos + 14], 0)
                if size is None:
                    chunk = data[pos:]
                    self._head += chunk
                else:
                    self._owed = size - len(self._head)
                    self._head = b""
                    continue
            else:                               # the rest of a frame wsproto has begun
                chunk = data[pos:pos + self._owed]
                self._owed -= len(chunk)
            pos += len(chunk)
            self._inbox, self._at = data, pos   # kept if acting on the events is interrupted
            self._give(chunk)
            self._inbox = b""
        if pos < end and not self._done and self._closing is None:
            self._inbox, self._at = data, pos   # a frame's first bytes: wait for more

    def _decoded(self, first: int, payload: bytes) -> None:
        """A final frame the fast path read: its message, or a close for bad UTF-8
        (the event wsproto makes of it, acted on in the same way)."""
        if first == _FINAL_BINARY:
            self._ready.append(payload)
            return
        try:
            self._ready.append(payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self._on_event(CloseConnection(code=CloseReason.INVALID_FRAME_PAYLOAD_DATA,
                                           reason=str(exc)))

    def _on_event(self, event: Any) -> None:
        kind = type(event)
        if kind is TextMessage or kind is BytesMessage:
            self._take_fragment(event)
        elif kind is Ping:
            if self._proto.state is _OPEN:
                self._write(self._proto.send(event.response()))
        elif kind is Pong:
            if self._pong_timer is not None:
                self._pong_timer.cancel()
                self._pong_timer = None
        elif kind is CloseConnection:
            if self._ready:                      # the messages before it are read first
                self._closing = event
            else:
                self._on_close(event)

    def _take_fragment(self, event: Message[Any]) -> None:
        data = event.data
        self._size += len(data) if type(data) is not str or data.isascii() else len(
            data.encode("utf-8"))
        if self._size > self.max_message:
            self._fail(1009, f"message over {self.max_message} bytes")
            return
        if event.message_finished and not self._parts:
            self._ready.append(data if type(data) is not bytearray else bytes(data))
            self._size = 0
            return
        self._parts.append(data)
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            self._ready.append("".join(parts) if type(data) is str else b"".join(parts))

    def _on_close(self, event: CloseConnection) -> None:
        state = self._proto.state
        if state is ConnectionState.REMOTE_CLOSING:      # the peer began: answer, then close
            self.close_code, self.close_reason = event.code, event.reason or ""
            self._write(self._proto.send(event.response()))
            self._shutdown("closed by peer", flush=True)
        elif state is ConnectionState.CLOSED:            # the answer to ours, or EOF
            if self.close_code is None:
                self.close_code, self.close_reason = event.code, event.reason or ""
            self._shutdown("closed", flush=False)
        else:                                            # wsproto found a protocol error
            self._fail(event.code, event.reason or "protocol error")

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 7.1.7): a close frame with ``code``, then
        the connection is closed without waiting for the answer."""
        if self._proto.state is _OPEN:
            self.close_code, self.close_reason = code, reason
            try:
                self._write(self._proto.send(CloseConnection(code=code, reason=reason)))
            except NetworkError:
                pass
        self._shutdown(f"failed: {code} {reason}", flush=True)

    def _lost(self) -> None:
        if self.close_code is None:
            self.close_code = 1006
            self.close_reason = self._conn.close_reason or "connection lost"
        self._shutdown("connection lost", flush=False)

    def _shutdown(self, why: str, flush: bool) -> None:
        if self._done:
            return
        self._done = True
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None
        conn = self._conn
        if flush and not conn.closed:
            try:
                conn.flush(1.0)
            except NetworkError:
                pass
        conn.close(conn.close_reason or f"WebSocket {why}")
        self._finished.set()

    def __iter__(self) -> Iterator[Data]:
        """Yields ``receive()`` results until the WebSocket is closed."""
        while True:
            message = self.receive()
            if message is None:
                return
            yield message

    # ------------------------------------------------------------ sending

    def _write(self, data: bytes) -> None:
        """Queue frames on the Connection's bounded output. Over its bound under
        ``on_full="close"`` (a slow reader), the Connection closes: so does
        this WebSocket (1006), and ConnectionClosed is raised."""
        try:
            self._conn.write(data)
        except NetworkError as exc:
            self._lost()
            raise self._closed_error() from exc

    def send(self, message: Data | bytearray | memoryview) -> None:
        """Send one message: str as text, bytes (or bytearray) as binary.

        Queued on the Connection's bounded output (``write``): it returns at
        once unless the backlog is over its bound and the policy is
        ``"wait"``. ConnectionClosed once the WebSocket is closing or closed,
        or when the backlog passes its bound under ``"close"``. TypeError
        for anything else than str or bytes.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        if self._done or self._proto.state is not _OPEN:
            raise self._closed_error()
        self._write(self._proto.send(_message(message)))

    def send_prepared(self, prepared: Prepared) -> None:
        """Send ``prepared.messages``, in order: the frames made once when
        this socket can take them as they are (server side, uncompressed),
        else framed here. Fails as ``send``."""
        if self._done or self._proto.state is not _OPEN:
            raise self._closed_error()
        if self._plain:
            self._write(prepared.frames)
            return
        send = self._proto.send
        self._write(b"".join(send(_message(message)) for message in prepared.messages))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the peer answers with a pong, which ``receive`` takes)."""
        if self._done or self._proto.state is not _OPEN:
            raise self._closed_error()
        self._write(self._proto.send(Ping(payload=payload)))

    def _keepalive(self) -> None:
        """On the hub, every ``ping_interval``: a ping, unless one is unanswered."""
        self._ping_timer = None
        if self._done or self._proto.state is not _OPEN:
            return
        assert self.ping_interval is not None
        self._ping_timer = self._hub.call_later(self.ping_interval, self._keepalive)
        conn = self._conn
        if self._pong_timer is not None or conn.pending_output + 16 > conn.max_output:
            return                          # still waiting, or a backlog: the writes wait
        try:
            conn.write(self._proto.send(Ping(payload=b"keepalive")))
        except NetworkError:
            self._lost()
            return
        if self.ping_timeout:
            self._pong_timer = self._hub.call_later(self.ping_timeout, self._no_pong)

    def _no_pong(self) -> None:
        self._pong_timer = None
        if self._done:
            return
        if self._proto.state is _OPEN and self._conn.pending_output < self._conn.max_output:
            self.close_code, self.close_reason = 1011, "keepalive ping timeout"
            try:
                self._conn.write(self._proto.send(CloseConnection(
                    code=1011, reason="keepalive ping timeout")))
            except NetworkError:
                pass
        self._conn.close(f"no pong within {self.ping_timeout:g} s")
        self._lost()

    # ------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Begin the close handshake and wait (``timeout``, default
        ``close_timeout``, seconds at most; 0: not at all) for the peer's
        answer; then close the connection. Idempotent.

        Messages that arrive meanwhile are dropped (a tasklet already in
        ``receive()`` may still get them). Never raises for a peer that is
        gone: the WebSocket is closed all the same (``close_code`` 1006 if
        it was lost first).
        """
        if self._done:
            return
        if self._proto.state is _OPEN:
            self.close_code, self.close_reason = code, reason
            try:
                self._write(self._proto.send(CloseConnection(code=code, reason=reason)))
            except NetworkError:
                return                          # lost: closed already
        wait = self.close_timeout if timeout is None else timeout
        if wait <= 0:
            pass
        elif self._receiving:                   # its reader sees the answer
            self._finished.wait(wait)
        else:
            self._receiving = True
            try:
                with Timeout(wait, TimeoutError("close")):
                    while not self._done:
                        self._receive()
                        self._ready.clear()
            except TimeoutError:
                pass
            finally:
                self._receiving = False
        self._shutdown("closed", flush=wait <= 0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self._done else "open"
        return f"<WebSocket {self.path or ''} {self._conn.peer} {state}>"


# ---------------------------------------------------------------- server side

def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",")}


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` as (lower-case host, port); None if it does not parse."""
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), default_port if port is None else port


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_allowed(origin: str | None, host: str | None, origins: Sequence[str] | None,
                   scheme: str | None = None) -> bool:
    """Whether a request's ``Origin`` may open a WebSocket.

    No Origin: yes (not a browser, which always sends one). ``origins`` a
    list: the Origin (``scheme://host[:port]``, compared without case and
    default port) must be one of them, or the list holds ``"*"``. ``origins``
    None: the same host: the Origin's host and port must be the ``Host``
    header's (whose missing port is ``scheme``'s default, or else the
    Origin's scheme's).
    """
    if origin is None:
        return True
    mine = _parse_origin(origin)
    if origins is not None:
        return "*" in origins or (mine is not None and mine in
                                  {_parse_origin(allowed) for allowed in origins})
    if mine is None or host is None:
        return False
    default = _DEFAULT_PORTS.get(scheme or mine[0], 80)
    return mine[1:] == _host_port(host, default)


def _parse_origin(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    where = _host_port(parts.netloc, _DEFAULT_PORTS[scheme])
    return None if where is None else (scheme, *where)


#: The most deflate can inflate one input byte into (RFC 1951: a 258-byte
#: match coded in two bits); what bounds a piece fed to the decompressor.
DEFLATE_MAX_RATIO = 1032


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that inflates a message only up to ``max_message``
    bytes, then closes with 1009 (MESSAGE_TOO_BIG) before inflating the rest.
    wsproto inflates a read's payload whole, so 64 KiB of compressed zeros
    would become 64 MiB at once; here the payload reaches the decompressor in
    pieces small enough that a message costs at most about twice
    ``max_message``, whatever the peer sends. Control frames (a ping between
    two fragments) are not counted and do not end the message."""

    def __init__(self, max_message: int) -> None:
        super().__init__()
        self._max_message = max_message
        self._inflated = 0                  # of the data message being read
        self._control = False               # the frame being read is a control frame

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode,
                             rsv: RsvBits, payload_length: int) -> CloseReason | RsvBits:
        self._control = opcode.iscontrol()
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol,
                                   data: bytes) -> bytes | CloseReason:
        if self._control:
            return super().frame_inbound_payload_data(proto, data)
        step = (self._max_message - self._inflated) // DEFLATE_MAX_RATIO + 64
        pieces: list[bytes] = []
        for start in range(0, len(data), step):     # one piece for the usual read
            out = super().frame_inbound_payload_data(proto, data[start:start + step])
            if isinstance(out, CloseReason):
                return out
            self._inflated += len(out)
            if self._inflated > self._max_message:
                return CloseReason.MESSAGE_TOO_BIG
            pieces.append(out)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol,
                               fin: bool) -> bytes | CloseReason | None:
        out = super().frame_inbound_complete(proto, fin)
        if self._control or not fin:
            return out
        inflated, self._inflated = self._inflated, 0
        if isinstance(out, bytes) and inflated + len(out) > self._max_message:
            return CloseReason.MESSAGE_TOO_BIG
        return out


def _negotiate(method: str, headers: Mapping[str, str], origins: Sequence[str] | None,
               scheme: str | None, subprotocols: Sequence[str], compression: bool,
               max_message: int) -> tuple[list[tuple[str, str]], list[Extension], str | None]:
    """Check an upgrade request (RFC 6455 4.2.1); the 101 answer's headers, the
    extensions agreed (deflate bounded by ``max_message``) and the subprotocol.
    HandshakeError when refused."""
    if method != "GET":
        raise HandshakeError("405 Method Not Allowed", "a WebSocket opens with GET",
                             [("Allow", "GET")])
    if "websocket" not in _tokens(headers.get("upgrade")):
        raise HandshakeError("426 Upgrade Required", "this is a WebSocket endpoint",
                             [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    if "upgrade" not in _tokens(headers.get("connection")):
        raise HandshakeError("400 Bad Request", "Connection: Upgrade is missing")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeError("426 Upgrade Required", "WebSocket version 13 only",
                             [("Sec-WebSocket-Version", "13")])
    key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise HandshakeError("400 Bad Request", "Sec-WebSocket-Key is not 16 bytes of base64") \
            from None
    if not origin_allowed(headers.get("origin"), headers.get("host"), origins, scheme):
        raise HandshakeError("403 Forbidden", "this Origin may not open a WebSocket here")
    answer = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Accept", generate_accept_token(key.encode("ascii")).decode("ascii"))]
    chosen = None
    offered = split_comma_header(headers.get("sec-websocket-protocol", "").encode("latin-1"))
    for name in offered:
        if name in subprotocols:
            chosen = name
            answer.append(("Sec-WebSocket-Protocol", name))
            break
    extensions: list[Extension] = []
    requested = headers.get("sec-websocket-extensions")
    if compression and requested:
        deflate = _BoundedDeflate(max_message)
        agreed = server_extensions_handshake(
            split_comma_header(requested.encode("latin-1")), [deflate])
        if agreed is not None:
            extensions.append(deflate)
            answer.append(("Sec-WebSocket-Extensions", agreed.decode("ascii")))
    return answer, extensions, chosen


def _read_request(conn: Connection) -> tuple[str, str, dict[str, str]]:
    """The request line and headers from a raw Connection (names lower-case,
    repeats joined with ", "); HandshakeError for anything else."""
    size = 0
    lines: list[str] = []
    while True:
        line = conn.recv_line(MAX_REQUEST_HEAD)
        size += len(line)
        if size > MAX_REQUEST_HEAD:
            raise HandshakeError("431 Request Header Fields Too Large",
                                 f"a request head is at most {MAX_REQUEST_HEAD} bytes")
        if not line:
            raise network_error(f"{conn.peer}: EOF before the end of the request head")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            if lines:
                break
            continue                        # RFC 9112 2.2: an empty line before it is ignored
        lines.append(text)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError("400 Bad Request", "not an HTTP/1.1 request")
    headers: dict[str, str] = {}
    for text in lines[1:]:
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            raise HandshakeError("400 Bad Request", "a malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], parts[1], headers


def _environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    return headers


def accept(source: Connection | Mapping[str, Any], *, origins: Sequence[str] | None = None,
           subprotocols: Sequence[str] = (), compression: bool = False,
           max_message: int = MAX_MESSAGE, ping_interval: float | None = None,
           ping_timeout: float | None = 20.0, close_timeout: float = CLOSE_TIMEOUT,
           max_output: int | None = None, on_full: str | None = None,
           handshake_timeout: float = HANDSHAKE_TIMEOUT) -> WebSocket:
    """Accept a WebSocket upgrade; the open WebSocket, server side.

    ``source`` is a WSGI ``environ`` (the server must offer
    ``environ["microthreads.upgrade"]``, as ``microthreads.wsgi`` does:
    RuntimeError otherwise) or a raw ``Connection`` from which the HTTP
    request is read (at most ``handshake_timeout`` seconds: TimeoutError;
    ``MAX_REQUEST_HEAD`` bytes). A request that is not a valid upgrade
    (RFC 6455 4.2.1) or whose ``Origin`` is not allowed raises
    ``HandshakeError``: from an environ, the app is to answer with it; on a
    raw Connection the answer has been sent.

    ``origins``: None allows the same host as the request's ``Host`` (and
    requests without Origin: not from a browser); a list allows those
    origins (``"https://example.com"``; ``"*"`` any). ``subprotocols``: the
    first the client offers that is in this list is agreed.
    ``compression``: agree to permessage-deflate if the client offers it
    (a message is inflated only up to ``max_message``: a compressed bomb
    closes with 1009 having cost about twice that).
    ``max_message`` bytes per message (1009 past it). ``ping_interval``
    seconds: a keepalive ping that often; no pong within ``ping_timeout``
    closes with 1011. ``max_output``/``on_full`` set the Connection's
    output bound and policy (``"close"`` drops a slow reader).
    """
    options: dict[str, Any] = dict(max_message=max_message, ping_interval=ping_interval,
                                   ping_timeout=ping_timeout, close_timeout=close_timeout,
                                   max_output=max_output, on_full=on_full)
    if isinstance(source, Connection):
        conn = source
        try:
            with Timeout(handshake_timeout,
                         TimeoutError(f"{conn.peer}: no WebSocket request in time")):
                method, target, headers = _read_request(conn)
            answer, extensions, chosen = _negotiate(method, headers, origins, None,
                                                    subprotocols, compression, max_message)
        except HandshakeError as exc:
            _send_head(conn, exc.status, exc.headers + [("Connection", "close")], exc.body)
            raise
        _send_head(conn, "101 Switching Protocols", answer)
    else:
        environ = source
        upgrade = environ.get("microthreads.upgrade")
        if upgrade is None:
            raise RuntimeError("this WSGI server cannot hand over its connection"
                               " (no environ['microthreads.upgrade']): serve the app with"
                               " microthreads.wsgi")
        headers = _environ_headers(environ)
        answer, extensions, chosen = _negotiate(
            environ.get("REQUEST_METHOD", "GET"), headers, origins,
            environ.get("wsgi.url_scheme"), subprotocols, compression, max_message)
        target = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        conn = upgrade("101 Switching Protocols", answer)
    protocol = _Protocol(ConnectionType.SERVER, extensions)
    return WebSocket(conn, protocol, client=False, compressed=bool(extensions), path=target,
                     request_headers=headers, subprotocol=chosen, **options)


def _send_head(conn: Connection, status: str, headers: Iterable[tuple[str, str]],
               body: bytes = b"") -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    conn.sendall(head.encode("latin-1") + b"\r\n" + body)


# ---------------------------------------------------------------- client side

def connect(url: str, *, timeout: float | None = HANDSHAKE_TIMEOUT, ssl: Any = None,
            origin: str | None = None, headers: Sequence[tuple[str, str]] = (),
            subprotocols: Sequence[str] = (), compression: bool = False,
            max_message: int = MAX_MESSAGE, ping_interval: float | None = None,
            ping_timeout: float | None = 20.0, close_timeout: float = CLOSE_TIMEOUT,
            max_output: int | None = None, on_full: str | None = None) -> WebSocket:
    """Open a WebSocket to ``url`` (``ws://host[:port]/path`` or ``wss://...``).

    Dial and opening handshake within ``timeout`` seconds (TimeoutError).
    ``wss`` uses ``ssl`` (an ``ssl.SSLContext``; default: the system's
    trusted certificates, hostname checked). ``origin`` and ``headers`` are
    sent with the request; ``subprotocols`` offered; ``compression`` offers
    permessage-deflate. A refusal raises HandshakeError (``status`` is the
    server's), a failure to reach the server NetworkError; ValueError for
    a URL that is not ws or wss. The other options as for ``accept``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    if scheme == "wss" and ssl is None:
        from .net import ssl as _ssl
        ssl = _ssl.create_default_context()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if origin is not None:
        extra.append((b"Origin", origin.encode("latin-1")))
    protocol = WSConnection(ConnectionType.CLIENT)
    extensions: list[Extension] = [_BoundedDeflate(max_message)] if compression else []
    hub = get_hub()
    deadline = deadline_after(hub, timeout)
    conn = _dial((parts.hostname, port), timeout=timeout, ssl=ssl if scheme == "wss" else None)
    try:
        with Timeout(remaining(hub, deadline),
                     TimeoutError(f"{url}: no WebSocket handshake in time")):
            conn.sendall(protocol.send(Request(host=parts.netloc, target=target,
                                               extensions=extensions,
                                               subprotocols=list(subprotocols),
                                               extra_headers=extra)))
            accepted = _client_handshake(conn, protocol, url)
    except BaseException:
        conn.close()
        raise
    return WebSocket(conn, protocol, client=True, max_message=max_message,
                     ping_interval=ping_interval, ping_timeout=ping_timeout,
                     close_timeout=close_timeout, max_output=max_output, on_full=on_full,
                     path=target, subprotocol=accepted.subprotocol)


def _client_handshake(conn: Connection, protocol: WSConnection, url: str) -> AcceptConnection:
    """Read the server's answer: its acceptance, or HandshakeError with its
    status and (up to 64 KiB of) its body."""
    refused: RejectConnection | None = None
    body = b""
    finished = False
    while True:
        data = conn.recv(READ_SIZE)
        try:
            protocol.receive_data(data or None)
            for event in protocol.events():
                if isinstance(event, AcceptConnection):
                    return event
                if isinstance(event, RejectConnection):
                    refused, finished = event, not event.has_body
                elif isinstance(event, RejectData):
                    body += event.data
                    finished = event.body_finished
        except ProtocolError as exc:
            raise HandshakeError("502 Bad Gateway", f"{url}: {exc}") from None
        if refused is not None and (finished or not data or len(body) > 65536):
            raise HandshakeError(str(refused.status_code),
                                 body.decode("utf-8", "replace").strip() or "refused")
        if not data:
            raise network_error(f"{url}: connection closed during the WebSocket handshake")
