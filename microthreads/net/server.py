"""listen, connect, Listener and StreamServer: one tasklet per connection."""

from __future__ import annotations

import errno
import logging
import os
import socket as _socket
from typing import TYPE_CHECKING, Any

from ..hub import get_hub
from ..nonblocking import READABLE, EagerBudget, deadline_after, retry
from ..sync import Event
from ..tasklet import Tasklet, getcurrent, joinall, killall, spawn
from ..timeout import Timeout, sleep
from . import socket as _coop
from . import ssl as _tls
from .common import describe, family_of, forget_on_its_thread, resolve
from .errors import NetworkError, NotTLSError, network_error
from .stream import Connection, check_options

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..hub import Hub

log = logging.getLogger("microthreads.net")

#: Accepts in a row that did not wait, after which the accepting tasklet yields
#: once (issue 19, item 8): the handlers just spawned and every other tasklet
#: run, and the hub polls, before the next batch. 32 matches the hub's
#: POLL_EVERY: at most that many connections are taken per turn of a flood.
ACCEPT_BUDGET = 32
#: After EMFILE/ENFILE on accept, how long the server backs off.
EMFILE_BACKOFF = 0.1
#: How long a TLS client may take over its handshake (seconds), unless told.
HANDSHAKE_TIMEOUT = 10.0
#: How long a client on a TLS port may take to send its first byte (seconds),
#: unless told: a TLS client sends its ClientHello as soon as it connects, a
#: plaintext one (``nc``, ``telnet``) waits for the server to speak.
HELLO_TIMEOUT = 2.0


class Listener:
    """A listening socket; ``accept()`` returns Connections.

    ``address`` is the bound address (with the real port when 0 was asked).
    Connection options (``timeout``, ``max_output``, ``on_full``,
    ``stall_timeout``) given here apply to every accepted Connection.

    With ``ssl`` (an ``ssl.SSLContext``, the stdlib's or
    ``microthreads.net.ssl``'s) every Connection is TLS, server side:
    ``accept()`` returns it after its handshake, which may take at most
    ``handshake_timeout`` seconds. A client whose first bytes are not a TLS
    record, or that sends none within ``hello_timeout`` seconds, is a
    plaintext client: ``NotTLSError``.
    """

    def __init__(self, sock: _socket.socket, *, ssl: Any = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 hello_timeout: float = HELLO_TIMEOUT, **connection_options: Any) -> None:
        check_options(connection_options)
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._hub = get_hub()
        self.address = sock.getsockname()
        self.ssl = ssl
        self.handshake_timeout = handshake_timeout
        self.hello_timeout = hello_timeout
        self.connection_options = connection_options
        self._closed = False
        self._budget = EagerBudget(self._hub, ACCEPT_BUDGET)   # accepts in a row without a wait

    def fileno(self) -> int:
        """The listening socket's descriptor number; never fails. After ``close()``
        it is still the old number, which the system may have given to another file."""
        return self._fd

    def accept_socket(self) -> tuple[_socket.socket, Any]:
        """The next ``(socket, peer)``: waits for one. OSError (EMFILE, ...) as raised.

        Every ACCEPT_BUDGET-th call in a row that did not wait first yields
        once (the hub polls first): a flood of connections keeps the accept
        loop busy, never the hub. NetworkError once the listener is closed.
        """
        self._budget.spend()
        if self._closed:                      # else accept() on a closed socket: EBADF
            raise network_error(f"listener {describe(self.address)} is closed")
        try:
            return self._sock.accept()
        except BlockingIOError:
            pass
        return retry(self._hub, self._fd, READABLE, None, self._sock.accept, budget=self._budget)

    def accept(self) -> Connection:
        """Wait for the next connection and return it as a Connection.

        Under TLS, after its handshake: a failed or overlong handshake raises
        NetworkError (``NotTLSError`` for a plaintext client), its
        descriptor already closed.
        """
        sock, peer = self.accept_socket()
        conn = self.wrap(sock, peer)
        self.handshake(conn)
        return conn

    def wrap(self, sock: _socket.socket, peer: Any) -> Connection:
        """A Connection over an accepted socket (under TLS, its handshake not yet done)."""
        if sock.family in (_socket.AF_INET, _socket.AF_INET6):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if self.ssl is not None:
            sock = _tls.wrap_with(self.ssl, sock, server_side=True,
                                    do_handshake_on_connect=False)
        return Connection(sock, peer or self.address, **self.connection_options)

    def handshake(self, conn: Connection) -> None:
        """Under TLS, the server side of ``conn``'s handshake; nothing otherwise.

        At most ``handshake_timeout`` seconds. Any failure (a bad or stalled
        client, a reset, a certificate refused) closes ``conn`` and raises
        NetworkError naming the peer and the reason: ``NotTLSError`` for a
        client whose first bytes are no TLS record, or that sent none within
        ``hello_timeout`` seconds.
        """
        try:
            self._handshake(conn)
        except NetworkError:
            conn.close("TLS handshake failed")
            raise

    def _handshake(self, conn: Connection) -> None:
        """``handshake``, leaving ``conn`` open when it fails."""
        if self.ssl is None:
            return
        try:
            _tls.expect_client_hello(conn.socket, min(self.hello_timeout,
                                                      self.handshake_timeout), conn.peer)
            _tls.handshake(conn.socket, self.handshake_timeout)
        except NotTLSError:
            raise
        except (OSError, ValueError) as exc:
            raise NetworkError(f"{describe(conn.peer)}: TLS handshake failed:"
                               f" {_tls.describe_error(exc)}") from exc

    def close(self) -> None:
        """Stop listening; a tasklet waiting in accept() gets NetworkError."""
        if self._closed:
            return
        self._closed = True
        error = network_error(f"listener {describe(self.address)} was closed")
        self._hub.close_fd(self._fd, error)
        self._sock.close()
        if isinstance(self.address, str) and self.address and not self.address.startswith("\0"):
            try:
                os.unlink(self.address)
            except OSError:
                pass

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:                  # dropped without close(): see Connection
            forget_on_its_thread(self._hub, self._fd)

    def __repr__(self) -> str:
        return f"<Listener {describe(self.address)}{' closed' if self._closed else ''}>"


def listen(address: Any, backlog: int = 128, reuse_port: bool = False,
           **connection_options: Any) -> Listener:
    """Listen on ``address``; the seed's ``network.listen``.

    ``(host, port)`` is TCP, over IPv6 when the host is an IPv6 address (a
    hostname is resolved off the hub); a ``str`` path is a Unix socket (a
    stale socket file there is replaced). Port 0 picks a free port: read it
    from ``Listener.address``. ``reuse_port`` sets SO_REUSEPORT, so several
    processes can accept on one port. ``ssl=context`` (and
    ``handshake_timeout``, ``hello_timeout``) make every accepted Connection
    TLS: see Listener.
    """
    check_options(connection_options, also=("ssl", "handshake_timeout", "hello_timeout"))
    family, sockaddr = resolve(address, family_of(address))
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        if family == _socket.AF_UNIX:
            path = os.fspath(sockaddr)
            if isinstance(path, str) and path and not path.startswith("\0") and \
                    os.path.exists(path):
                os.unlink(path)
        else:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(sock, **connection_options)


def connect(address: Any, timeout: float | None = None, *, ssl: Any = None,
            server_hostname: str | None = None, **connection_options: Any) -> Connection:
    """Dial ``address`` (as for ``listen``) and return a Connection.

    A hostname is resolved off the hub and each of its addresses is tried in
    turn. Raises NetworkError if refused or unreachable, TimeoutError if
    ``timeout`` seconds pass first (a listener whose backlog is full does
    not answer: that is a timeout too).

    ``ssl=context`` (an ``ssl.SSLContext``) makes it TLS: the handshake is
    done before this returns, within the same ``timeout``. The certificate is
    checked against ``server_hostname`` (default: the host of ``address``) as
    the context says; a certificate or name it refuses raises the stdlib's
    ``ssl.SSLCertVerificationError``, any other TLS failure NetworkError.
    """
    check_options(connection_options)
    family = family_of(address)
    if family is not None:
        candidates = [(family, address)]
    else:
        infos = _coop.getaddrinfo(address[0], address[1], 0, _socket.SOCK_STREAM)
        candidates = [(info[0], info[4]) for info in infos]
    hub = get_hub()
    deadline = deadline_after(hub, timeout)
    error: NetworkError | None = None
    for family, sockaddr in candidates:
        try:
            sock = _dial(hub, family, sockaddr, deadline)
        except NetworkError as exc:
            error = exc                   # refused there: try the next address
            continue
        if ssl is not None:
            if server_hostname is None and family != _socket.AF_UNIX:
                server_hostname = address[0]
            sock = _tls.client_handshake(ssl, sock, server_hostname, sockaddr, deadline)
        return Connection(sock, sockaddr, **connection_options)
    assert error is not None                  # getaddrinfo gave an address, or raised
    raise error


def _dial(hub: Hub, family: int, sockaddr: Any, deadline: float | None) -> _socket.socket:
    """A connected, non-blocking plain socket to ``sockaddr`` (``socket.dial``)."""
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        code = _coop.dial(sock, sockaddr, deadline)
        if code:
            raise network_error(f"connect to {describe(sockaddr)}: {os.strerror(code)}", code)
        if family in (_socket.AF_INET, _socket.AF_INET6):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    except BaseException:
        hub.close_fd(sock.fileno(), network_error(f"connect to {describe(sockaddr)} failed"))
        sock.close()
        raise
    return sock


class StreamServer:
    """Accepts connections and runs ``handler(conn)`` in one tasklet each.

    The Connection is closed when the handler returns or raises (an error
    other than NetworkError is logged with its traceback; a NetworkError is
    an ordinary disconnect, logged at debug level). Over ``max_connections``
    live handlers, ``refuse(conn)`` is called (in its own tasklet, at most
    ``refuse_timeout`` seconds) if given, then the connection is closed.

    Accepting survives EMFILE/ENFILE: a spare descriptor kept for the
    purpose is released to accept and close the waiting connection (the
    client sees a close, not a hang), the condition is logged once per
    burst, and the server backs off briefly and recovers by itself.
    ``address`` may also be a ``Listener``.

    ``ssl=context`` serves TLS: each handshake runs in the connection's own
    tasklet, before ``handler`` (or ``refuse``), at most ``handshake_timeout``
    seconds; a handshake that fails or stalls closes the descriptor, and the
    handler never runs. Before the close, ``on_handshake_error(conn, error)``
    is called if given (in that tasklet, at most ``refuse_timeout`` seconds;
    ``error`` is the NetworkError naming the peer and the reason, a
    ``NotTLSError`` for a plaintext client, whose ``answer(data)`` can tell
    it in the clear how to connect); without it the failure is logged at
    debug level. ``hello_timeout``: see Listener.
    """

    def __init__(self, address: Any, handler: Callable[[Connection], object],
                 max_connections: int | None = None,
                 refuse: Callable[[Connection], object] | None = None, *,
                 backlog: int = 128, reuse_port: bool = False, refuse_timeout: float = 5.0,
                 on_handshake_error: Callable[[Connection, NetworkError], object] | None = None,
                 **connection_options: Any) -> None:
        check_options(connection_options, also=("ssl", "handshake_timeout", "hello_timeout"))
        self._address = address
        self.handler = handler
        self.max_connections = max_connections
        self.refuse = refuse
        self.refuse_timeout = refuse_timeout
        self.on_handshake_error = on_handshake_error
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.connection_options = connection_options
        self.listener: Listener | None = address if isinstance(address, Listener) else None
        self._own_listener = self.listener is None
        self._bound: Any = None               # the address last bound, kept after stop()
        self.connections: dict[Tasklet, Connection] = {}   # handler tasklet -> its, live
        self._accepter: Tasklet | None = None
        self._stopped = Event()
        self._spare: int | None = None
        self._emfile_logged = False

    @property
    def address(self) -> Any:
        """The bound address (after ``start()``)."""
        if self.listener is not None:
            return self.listener.address
        return self._bound if self._bound is not None else self._address

    def start(self) -> StreamServer:
        """Listen (if not yet) and start accepting in a tasklet; returns at once."""
        if self._accepter is not None:
            return self
        listener = self.listener
        if listener is None:
            listener = self.listener = listen(self._address, self.backlog, self.reuse_port,
                                              **self.connection_options)
            self._bound = listener.address
        self._stopped.clear()
        self._open_spare()
        self._accepter = spawn(self._accept_loop, listener)
        self._accepter.name = f"accept {describe(listener.address)}"
        return self

    def serve_forever(self) -> None:
        """Start, then wait until ``stop()`` is called."""
        self.start()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let handlers finish for ``timeout`` seconds, then kill them.

        ``timeout=None`` kills them at once after closing the listener. A
        handler may call it (a "shutdown" command): the others are stopped, and
        the caller goes on to its end. A stopped server may be started again.
        """
        if self._accepter is None:
            return
        accepter, self._accepter = self._accepter, None
        accepter.kill(block=False)
        if self.listener is not None:         # there is one while accepting
            self.listener.close()
        if self._own_listener:
            self.listener = None              # start() again listens anew
        self._close_spare()
        me = getcurrent()                     # stop() may be called by a handler
        handlers = [t for t in self.connections if t is not me]
        if timeout:
            joinall(handlers, timeout)
        killall([t for t in handlers if not t.dead], block=True)
        self._stopped.set()

    def _accept_loop(self, listener: Listener) -> None:
        handle = self._handle         # bound once: every handler tasklet's function (64 B each)
        while True:
            try:
                sock, peer = listener.accept_socket()
            except NetworkError:
                return                    # the listener was closed
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._out_of_descriptors(listener, exc)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            self._emfile_logged = False
            try:
                conn = listener.wrap(sock, peer)
            except OSError:                   # reset before we got to it
                sock.close()
                continue
            if self.max_connections is not None and len(self.connections) >= \
                    self.max_connections:
                spawn(self._refuse, conn, listener).name = f"refuse {describe(peer)}"
                continue
            tasklet = spawn(handle, conn, listener)
            tasklet.name = f"handler {describe(peer)}"
            self.connections[tasklet] = conn

    def _handle(self, conn: Connection, listener: Listener) -> None:
        me = getcurrent()
        assert isinstance(me, Tasklet)        # spawned by the accept loop
        try:
            if not self._handshake(conn, listener):
                return
            self.handler(conn)
        except NetworkError as exc:
            log.debug("%s", exc)               # the message names the peer already
        except Exception:
            log.exception("handler for %s failed", describe(conn.peer))
        finally:
            conn.close()
            self.connections.pop(me, None)

    def _refuse(self, conn: Connection, listener: Listener) -> None:
        try:
            if not self._handshake(conn, listener):
                return
            if self.refuse is not None:
                with Timeout(self.refuse_timeout):
                    self.refuse(conn)
        except (NetworkError, Timeout):
            pass
        except Exception:
            log.exception("refuse() for %s failed", describe(conn.peer))
        finally:
            conn.close()

    def _handshake(self, conn: Connection, listener: Listener) -> bool:
        """``listener``'s handshake of ``conn``; False if it failed (told to
        ``on_handshake_error``, else logged), ``conn`` still open."""
        try:
            listener._handshake(conn)
            return True
        except NetworkError as exc:
            error = exc
        if self.on_handshake_error is None:
            log.debug("%s", error)             # the message names the peer already
            return False
        try:
            with Timeout(self.refuse_timeout):
                self.on_handshake_error(conn, error)
        except (NetworkError, Timeout):
            pass
        except Exception:
            log.exception("on_handshake_error() for %s failed", describe(conn.peer))
        return False

    def _open_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._spare = None

    def _close_spare(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def _out_of_descriptors(self, listener: Listener, exc: OSError) -> None:
        if not self._emfile_logged:
            self._emfile_logged = True
            log.warning("accept on %s: %s; shedding waiting connections and backing off",
                        describe(listener.address), exc.strerror)
        if self._spare is not None:
            self._close_spare()               # one descriptor free: accept and close
            raw = listener._sock              # every waiting connection with it
            for _ in range(self.backlog + 1):
                try:
                    sock, _peer = raw.accept()
                except OSError:
                    break                     # none left (or still out of descriptors)
                sock.close()
            self._open_spare()
        sleep(EMFILE_BACKOFF)

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<StreamServer {describe(self.address)} connections={len(self.connections)}>"
