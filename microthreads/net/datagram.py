"""DatagramServer: UDP, one handler tasklet per datagram."""

from __future__ import annotations

import errno
import logging
import socket as _socket
from collections.abc import Callable
from contextvars import copy_context
from typing import Any

from ..errors import TaskletExit
from ..group import Group
from ..hub import get_hub
from ..nonblocking import EAGER_BUDGET, READABLE, WRITABLE, EagerBudget, call, retry
from ..sync import Event, Lock
from ..tasklet import Tasklet, getcurrent, joinall, killall, spawn
from .common import describe, family_of, resolve
from .errors import NetworkError

log = logging.getLogger("microthreads.net")

Address = Any                     # (host, port) or (host, port, flowinfo, scope_id)
Handler = Callable[[bytes, Address], object]

#: The largest datagram read whole by default (the largest UDP payload).
MAX_DATAGRAM = 65535
#: At most this many handler tasklets wait, idle, for the next datagram.
IDLE_HANDLERS = 64


class DatagramServer:
    """Receives UDP datagrams on ``address`` and runs ``handler(data, address)``
    in a tasklet of its own for each, as gevent's DatagramServer.

    ::

        def echo(data, address):
            server.sendto(data, address)

        server = DatagramServer(("127.0.0.1", 0), echo).start()

    ``address`` is ``(host, port)`` (IPv6 when the host is an IPv6 address;
    a hostname is resolved off the hub; port 0 picks a free port, read it
    from ``.address``) or a bound datagram socket to serve on (the server
    closes it on ``stop()``). A handler that blocks holds only its own
    tasklet; at most ``max_handlers`` (None: no limit) run at once, beyond
    which the server stops reading until one ends and the kernel's receive
    buffer absorbs (or, when full, drops) what arrives: UDP's back-pressure.
    A handler's exception is logged once with its traceback, and the server
    goes on. A datagram longer than ``max_datagram`` bytes is cut to that
    length, as ``recvfrom`` does. While datagrams keep arriving, the reader
    yields after every ``EAGER_BUDGET`` of them, so a flood cannot starve
    the other tasklets.

    A handler tasklet that is done waits (up to ``IDLE_HANDLERS`` of them)
    to be handed the next datagram, which costs a switch instead of a new
    tasklet: handlers of successive datagrams may share a tasklet, never at
    the same time, each in a fresh copy of the server's ``contextvars``
    context (as a new tasklet would be), so one cannot see what another set.
    """

    def __init__(self, address: Address | _socket.socket, handler: Handler, *,
                 max_handlers: int | None = None, max_datagram: int = MAX_DATAGRAM,
                 reuse_port: bool = False) -> None:
        self.handler = handler
        self.max_handlers = max_handlers
        self.max_datagram = max_datagram
        self.reuse_port = reuse_port
        self._address = address
        self._sock: _socket.socket | None = None
        self._bound: Address = None
        self._handlers = Group()              # every handler tasklet, busy or idle
        self._idle: list[Tasklet] = []        # parked until handed a datagram; LIFO
        self._busy = 0                        # handlers handed a datagram, not yet done
        self._room = Event()                  # set when a busy handler is done
        self._reader: Tasklet | None = None
        self._stopped = Event()
        self._send_lock = Lock()              # one sender waits for room at a time

    @property
    def address(self) -> Address:
        """The bound address (with the real port once started)."""
        return self._bound if self._bound is not None else self._address

    @property
    def socket(self) -> _socket.socket | None:
        """The datagram socket while started (non-blocking; use ``sendto`` to write)."""
        return self._sock

    def start(self) -> DatagramServer:
        """Bind (if not given a socket) and start reading in a tasklet; returns at once.

        Raises OSError if the address cannot be bound. Starting twice does nothing.
        """
        if self._reader is not None:
            return self
        sock = self._bind()
        sock.setblocking(False)
        self._sock = sock
        self._bound = sock.getsockname()
        self._stopped.clear()
        self._reader = spawn(self._read_loop, sock)
        self._reader.name = f"datagrams {describe(self._bound)}"
        return self

    def _bind(self) -> _socket.socket:
        if isinstance(self._address, _socket.socket):
            return self._address
        family, sockaddr = resolve(self._address, family_of(self._address))
        sock = _socket.socket(family, _socket.SOCK_DGRAM)
        try:
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            if self.reuse_port:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    def serve_forever(self) -> None:
        """Start, then wait until ``stop()`` is called."""
        self.start()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading and close the socket; let handlers run ``timeout`` seconds, then kill them.

        ``timeout=None`` kills them at once. A handler may call it: the others
        are stopped and the caller goes on to its end. A stopped server may
        be started again on a new socket (when it bound the first itself).
        """
        if self._reader is None or self._sock is None:
            return
        reader, self._reader = self._reader, None
        sock, self._sock = self._sock, None
        reader.kill(block=False)
        fd = sock.fileno()
        if fd >= 0:                           # a sender waiting for room gets NetworkError
            get_hub().close_fd(fd, NetworkError(f"datagram server {describe(self._bound)}"
                                                " was stopped"))
        sock.close()
        idle, self._idle = self._idle, []
        killall(idle, block=False)
        me = getcurrent()
        handlers = [t for t in self._handlers if t is not me and t not in idle]
        if timeout:
            joinall(handlers, timeout)
        killall([t for t in handlers + idle if not t.dead], block=True)
        self._busy = 0
        self._stopped.set()

    def sendto(self, data: bytes, address: Address) -> int:
        """Send one datagram to ``address``; the number of bytes sent.

        Waits (cooperatively) only while the socket's send buffer is full.
        Raises NetworkError if the server is not started (or is stopped
        meanwhile), OSError as ``socket.sendto`` does (too long, unreachable).
        """
        sock = self._started_socket()
        try:
            return sock.sendto(data, address)
        except BlockingIOError:
            pass
        with self._send_lock:
            sock = self._started_socket()     # stop() may have come while we waited
            return retry(get_hub(), sock.fileno(), WRITABLE, None, sock.sendto, data, address)

    def _started_socket(self) -> _socket.socket:
        sock = self._sock
        if sock is None:
            raise NetworkError(f"datagram server {describe(self.address)} is not started")
        return sock

    def _read_loop(self, sock: _socket.socket) -> None:
        hub = get_hub()
        fd = sock.fileno()
        recvfrom = sock.recvfrom
        size = self.max_datagram
        budget = EagerBudget(hub, EAGER_BUDGET)
        while True:
            if self.max_handlers is not None and self._busy >= self.max_handlers:
                self._room.clear()
                self._room.wait()             # the kernel buffers (or drops) meanwhile
                continue
            budget.spend()                    # a flood yields every EAGER_BUDGET datagrams
            try:
                data, address = call(hub, fd, READABLE, None, recvfrom, size, budget=budget)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    return                    # closed under us
                log.debug("datagram server %s: %s", describe(self._bound), exc)
                continue                      # an ICMP error reported on a later read
            self._busy += 1
            if self._idle:
                hub.schedule_wakeup(self._idle.pop(), (data, address))
            else:
                self._handlers.spawn(self._serve, data, address)

    def _serve(self, data: bytes, address: Address) -> None:
        """A handler tasklet's body: handle, then wait to be handed the next datagram."""
        me: Tasklet = getcurrent()  # a handler is a tasklet
        hub = get_hub()
        idle = self._idle
        while True:
            try:
                copy_context().run(self._handle, data, address)
            finally:
                self._busy -= 1
                self._room.set()
            if len(idle) >= IDLE_HANDLERS or self._reader is None:
                return
            idle.append(me)
            try:
                data, address = hub.park()
            except BaseException:
                if me in idle:
                    idle.remove(me)
                else:                         # handed a datagram, killed before it ran
                    self._busy -= 1
                raise

    def _handle(self, data: bytes, address: Address) -> None:
        try:
            self.handler(data, address)
        except TaskletExit:
            raise
        except NetworkError as exc:           # sendto after stop(), say
            log.debug("datagram handler for %s: %s", describe(address), exc)
        except Exception:
            log.exception("datagram handler for %s failed", describe(address))

    def __enter__(self) -> DatagramServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "" if self._reader is not None else " stopped"
        return f"<DatagramServer {describe(self.address)} handlers={len(self._handlers)}{state}>"
