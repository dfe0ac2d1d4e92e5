"""Connection: a socket read as lines and written through a bounded queue.

Reads are straight-line: ``recv_line()`` returns the next line, parking the
tasklet only when the socket has nothing yet. Every operation tries the
non-blocking system call first and waits for readiness only on EAGAIN, so a
busy socket costs no hub switch; after ``EAGER_BUDGET`` operations in a row
that did not wait, the tasklet yields once, so a peer flooding as fast as
loopback allows cannot starve the others.

``write()`` never waits for the peer while the output queue is empty and
the socket takes the data: it sends at once, without a switch. What the
socket does not take is queued and sent by the hub whenever the socket is
writable, many queued pieces joined into one system call. The queue is
bounded; at the bound the policy chosen when the Connection was made
applies: ``"wait"`` parks the writer until there is room, ``"close"``
closes the connection (a slow reader must not hold memory forever).
"""

from __future__ import annotations

import logging
import socket as _socket
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator, NoReturn, TypeVar

from ..hub import get_hub
from ..nonblocking import EAGER_BUDGET, READABLE, WRITABLE, EagerBudget, deadline_after, retry
from ..sync import Event
from .common import describe, forget_on_its_thread
from .errors import LineTooLong, NetworkError, network_error

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..timers import Timer

log = logging.getLogger("microthreads.net")
T = TypeVar("T")

#: How much ``recv_line`` asks the kernel for at a time.
READ_SIZE = 65536
#: After a read that would have blocked, this many reads wait for readiness
#: first; the next tries at once again.
READ_PROBE = 8
#: At most this much queued output is joined into one send.
SEND_CHUNK = 256 * 1024


def check_options(options: dict[str, object], also: tuple[str, ...] = ()) -> None:
    """Refuse, where they are given, keywords that ``Connection()`` would refuse
    later (at each accept): TypeError naming them and the ones it takes."""
    known = CONNECTION_OPTIONS + also
    unknown = sorted(name for name in options if name not in known)
    if unknown:
        raise TypeError(f"unknown Connection option{'s' if len(unknown) > 1 else ''}"
                        f" {', '.join(map(repr, unknown))} (it takes {', '.join(known)})")


class Connection:
    """One stream connection (TCP or Unix, either under TLS), bytes in and bytes out.

    Under TLS ``sock`` is a ``microthreads.net.ssl.SSLSocket`` (``connect``
    and ``Listener`` make it so): the same fast path, OpenSSL's "want read" or
    "want write" taking the place of EAGAIN.

    ``peer`` is the address at the other end. ``timeout`` (seconds, None for
    none) bounds each receive and each wait for output room, raising
    ``TimeoutError``. ``max_output`` bounds queued output (bytes);
    ``on_full`` is ``"wait"`` or ``"close"``. ``stall_timeout``: with output
    pending that has not moved at all for that many seconds, the connection
    is closed (None: never).
    """

    __slots__ = ("__weakref__", "_budget", "_buf", "_closed", "_discarding", "_drained", "_eof",
                 "_fd", "_gone", "_guess", "_hub", "_lost", "_out", "_out_moved", "_out_size",
                 "_pos", "_room", "_sock", "_stall_timer", "_tls", "_waits_after_miss",
                 "_writer_armed",
                 "close_reason", "max_output", "on_full", "peer", "stall_timeout", "timeout")

    def __init__(self, sock: Any, peer: Any = None, *, timeout: float | None = None,
                 max_output: int = 1 << 20, on_full: str = "wait",
                 stall_timeout: float | None = None) -> None:
        if on_full not in ("wait", "close"):
            raise ValueError("on_full must be 'wait' or 'close'")
        sock.setblocking(False)
        self._sock = sock
        self._fd: int = sock.fileno()
        self._hub = get_hub()
        self.peer = peer
        self.timeout = timeout
        self.max_output = max_output
        self.on_full = on_full
        self.stall_timeout = stall_timeout
        self.close_reason: str | None = None          # why it was closed, for logs
        # A TLS socket (microthreads.net.ssl) says "would block" as a plain one
        # does through recv_nowait and send_nowait. Each call looks its method up
        # (no bound method kept: 72 B each of every idle connection; and
        # ``sock.recv(n)`` costs fewer instructions than a kept ``recv(n)``).
        self._tls = hasattr(sock, "recv_nowait")
        self._buf = b""                   # received, not yet returned ...
        self._pos = 0                     # ... from this offset on
        self._discarding = False          # inside an overlong line
        self._eof = False
        self._budget = EagerBudget(self._hub, EAGER_BUDGET)  # operations in a row that did not wait
        self._guess = 0                   # > 0: the next reads wait first (see _read_chunk)
        # TLS: plaintext may sit decrypted in OpenSSL while the descriptor is not
        # readable, so a TLS read always tries first
        self._waits_after_miss = 0 if self._tls else READ_PROBE
        self._out: deque[bytes] | None = None   # queued output (a deque of bytes, made on demand)
        self._out_size = 0
        self._out_moved = 0               # bytes sent from the queue so far
        self._writer_armed = False        # the hub calls _on_writable when writable
        self._room: Event | None = None         # output below its bound
        self._drained: Event | None = None      # output queue empty
        self._stall_timer: Timer | None = None
        self._gone = False                # the peer went away, or close()
        self._lost: Event | None = None         # for wait_closed(), made on demand
        self._closed = False

    # ------------------------------------------------------------- reading

    def fileno(self) -> int:
        """The socket's descriptor number; never fails. After ``close()`` it is
        still the old number, which the system may have given to another file."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once the Connection is closed, by ``close()`` or by a failure
        (``close_reason`` says which).
        """
        return self._closed

    @property
    def socket(self) -> Any:
        """The socket underneath (a ``microthreads.net.ssl.SSLSocket`` under TLS).

        For what the Connection does not wrap (socket options, the TLS
        session, the peer's certificate). Reading or writing it directly
        bypasses the Connection's buffers and its output queue.
        """
        return self._sock

    def charge(self, cost: int) -> None:
        """Count ``cost`` more operations against the eager budget, yielding once
        if that spends it (``microthreads.nonblocking.EagerBudget``).

        Every operation (each ``recv``, ``recv_line``, ``send``, ``sendall``)
        counts one, buffered or not, as it begins. A protocol layer that does
        work per item of what one ``recv`` returned (a line, a telnet command)
        charges the rest: one read of 16 KiB can hold 16,384 of them, and
        counted as one operation they would run unbroken. Call it before
        taking the next item, never between taking and keeping one: a kill or
        Timeout raised in the yield must lose nothing.
        """
        self._budget.spend(cost)

    def _after_eagain(self, writable: bool, doing: str, arg: Any) -> Any:
        """The slow path of every operation: the socket would block, so wait
        for it (each wait at most ``timeout`` seconds) and try again
        (``microthreads.nonblocking.retry``): its send of ``arg`` (``writable``),
        else its receive of up to ``arg`` bytes.

        TimeoutError when time runs out, the connection left open;
        NetworkError if it is closed meanwhile; an OSError from the socket
        ends it (``_failed``).
        """
        if self._closed:
            raise self._closed_error()
        hub = self._hub
        timeout = self.timeout                # (no call for the usual None)
        deadline = None if timeout is None else deadline_after(hub, timeout)
        sock = self._sock
        kind = type(sock)                     # its type's function, called with it
        if self._tls:
            operation = kind.send_nowait if writable else kind.recv_nowait
        else:
            operation = kind.send if writable else kind.recv
        try:
            return retry(hub, self._fd, writable, deadline, operation, sock, arg,
                         budget=self._budget)
        except OSError as exc:
            self._wait_failed(exc, doing)

    def _wait_failed(self, exc: OSError, doing: str) -> NoReturn:
        """Raise what an OSError met on the slow path means; called in its handler."""
        if exc.errno is not None or not isinstance(exc, (TimeoutError, NetworkError)):
            raise self._failed(exc, doing) from exc   # the socket's (a kernel ETIMEDOUT too)
        if isinstance(exc, NetworkError):
            raise exc                                 # close() meanwhile
        # the wait's own time limit; the message is made only now, off the hot path
        raise TimeoutError(f"{describe(self.peer)}: {doing} timed out") from None

    def _read_chunk(self, size: int) -> bytes:
        """The next bytes from the socket (b"" at EOF), waiting if needed.

        The read adapts to what the last ones found: after a read that would
        have blocked (a request answered, its peer not yet heard from), the
        next READ_PROBE - 1 reads wait for readiness first instead of trying
        a system call that is likely to fail with EAGAIN; the one after tries
        at once again, and reads stay eager while that finds data. Either way
        the data and errors are the same. A TLS read always tries first: its
        plaintext may be buffered where readiness does not show it.
        """
        wait_first = self._guess > 0            # a recent eager read found nothing
        if wait_first:
            self._guess -= 1                    # down to 0: ints CPython shares (-8 to -6
            #                                     were 32 B each of an idle connection)
            if self.timeout is None and not self._closed:
                # retry's first wait, inline (the commonest wait of a server): no
                # time limit; a read that still would block takes the slow path
                self._budget.refill()
                try:
                    self._hub.wait_readable(self._fd)
                except OSError as exc:
                    self._wait_failed(exc, "receive")
                wait_first = False
        got: bytes | None = None
        if not wait_first:
            try:
                got = self._sock.recv_nowait(size) if self._tls else self._sock.recv(size)
            except BlockingIOError:
                self._guess = self._waits_after_miss
                # wait below, outside the handler: a tasklet parked inside it keeps
                # the exception and its traceback alive (0.5 KiB per idle connection)
            except OSError as exc:
                raise self._failed(exc, "receive") from exc
        data = self._after_eagain(READABLE, "receive", size) \
            if got is None else got
        if not data:
            self._eof = True
            self._mark_lost()
        return data

    def recv(self, n: int = READ_SIZE) -> bytes:
        """Up to ``n`` bytes; waits until at least one is there. b"" at EOF.

        Bytes already buffered by ``recv_line`` come first. Raises
        NetworkError on a reset or after close, TimeoutError past ``timeout``.
        """
        self._budget.spend()
        if self._pos < len(self._buf):
            end = self._pos + n
            data = self._buf[self._pos:end]
            self._pos = min(end, len(self._buf))
            return data
        if self._eof:
            return b""
        return self._read_chunk(n)

    def recv_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; NetworkError if EOF comes first."""
        parts: list[bytes] = []
        missing = n
        while missing:
            data = self.recv(missing)
            if not data:
                raise network_error(f"{describe(self.peer)}: EOF after {n - missing} of"
                                   f" {n} bytes")
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)

    def recv_line(self, limit: int = 65536) -> bytes:
        """The next line, with its ``\\n``; b"" at EOF.

        A last line without ``\\n`` is returned as it is. A line longer than
        ``limit`` bytes (its ``\\n`` included) raises ``LineTooLong`` as soon
        as the limit is passed; its bytes are dropped, and the next call
        returns the line after it. Memory held stays within ``limit`` plus
        one read of ``READ_SIZE``. Lines are sliced out of one buffer per
        read: no copying of the buffer per line.
        """
        self._budget.spend()
        buf, pos = self._buf, self._pos
        if pos == len(buf) and not self._eof:   # nothing buffered (the usual case): read first
            self._buf, self._pos = b"", 0       # the spent buffer goes before the wait
            buf, pos = self._read_chunk(READ_SIZE), 0
        while True:
            end = buf.find(b"\n", pos)
            if self._discarding:
                if end < 0:
                    buf, pos = b"", 0
                else:
                    pos = end + 1
                    self._discarding = False
                    continue
            elif end >= 0:
                if end + 1 - pos > limit:
                    self._buf, self._pos = buf, end + 1
                    raise LineTooLong(f"line longer than {limit} bytes")
                self._buf, self._pos = buf, end + 1
                return buf[pos:end + 1]
            elif len(buf) - pos > limit:
                self._buf, self._pos = b"", 0
                self._discarding = True
                raise LineTooLong(f"line longer than {limit} bytes")
            if self._eof:
                self._buf, self._pos = b"", 0
                return b"" if self._discarding else buf[pos:]
            self._buf, self._pos = buf, pos   # kept if the read raises
            chunk = self._read_chunk(READ_SIZE)
            # only the partial line is copied, never the whole buffer
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            pos = 0

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what was received and not yet returned.

        The next ``recv``/``recv_line`` returns it first, then the bytes that
        were buffered after it, then the socket's. For a protocol layer that
        read past its own end (an HTTP server handing the connection on after
        an upgrade). It never reads or waits; b"" is a no-op.
        """
        if data:
            self._buf = bytes(data) + self._buf[self._pos:]
            self._pos = 0

    def __iter__(self) -> Iterator[bytes]:
        """Yields ``recv_line()`` results until EOF."""
        while True:
            line = self.recv_line()
            if not line:
                return
            yield line

    # ------------------------------------------------------------- writing

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Send some of ``data``, waiting until the socket takes at least a byte.

        Returns how many bytes were sent. Queued ``write()`` output goes first.
        """
        if self._out:
            self.flush()
        self._budget.spend()
        sent: int
        try:
            sent = self._sock.send_nowait(data) if self._tls else self._sock.send(data)
            return sent
        except BlockingIOError:
            pass
        except OSError as exc:
            raise self._failed(exc, "send") from exc
        sent = self._after_eagain(WRITABLE, "send", data)
        return sent

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting as needed; queued output goes first."""
        if self._out:
            self.flush()
        self._budget.spend()
        try:
            # the usual case: all of it, at once
            sent = self._sock.send_nowait(data) if self._tls else self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._failed(exc, "send") from exc
        if sent == len(data):
            return
        view = memoryview(data)
        total = len(view)
        while sent < total:               # the socket took part of it: wait for room
            sent += self._after_eagain(WRITABLE, "send", view[sent:])

    def _failed(self, exc: OSError, doing: str) -> NetworkError:
        """The failure policy (DESIGN.md, "Failures"): an OSError from the socket
        ends the connection, whichever operation met it.

        Closes it (``close_reason`` says what failed and why; every other
        waiter gets NetworkError) and returns the NetworkError to raise,
        which names the peer and carries the errno. Closed already (by
        another tasklet, or the hub's writer): "connection closed".
        """
        if self._closed:
            return network_error(f"{describe(self.peer)}: connection closed", exc.errno)
        reason = exc.strerror or str(exc)
        self.close(f"{doing} failed: {reason}")
        return network_error(f"{describe(self.peer)}: {reason}", exc.errno)

    def _closed_error(self) -> NetworkError:
        return network_error(f"{describe(self.peer)}: connection closed")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (bytes) for sending; the hub sends it in order.

        With nothing queued, the data is sent at once with one non-blocking
        system call (no switch); what the socket does not take is queued and
        sent by the hub whenever the socket is writable, many queued pieces
        joined into one system call. Past ``max_output`` queued bytes,
        ``on_full="wait"`` parks the caller until there is room (TimeoutError
        past ``timeout``); ``on_full="close"`` closes the connection and
        raises NetworkError. Never blocks under "close", so it is safe to call
        from a broadcast loop or a finish hook.
        """
        if self._closed:
            raise self._closed_error()
        if not self._out:
            try:
                sent = self._sock.send_nowait(data) if self._tls else self._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._failed(exc, "write") from exc
            if sent == len(data):
                return
            data = data[sent:]
        if type(data) is not bytes:
            data = bytes(data)
        if self._out is None:
            self._out = deque()
        self._out.append(data)
        self._out_size += len(data)
        if not self._writer_armed:
            self._arm_writer()
        if self._out_size > self.max_output:
            if self.on_full == "close":
                self.close(f"output backlog over {self.max_output} bytes")
                raise network_error(f"{describe(self.peer)}: output backlog over"
                                   f" {self.max_output} bytes; connection closed")
            self._wait_for_room()

    @property
    def pending_output(self) -> int:
        """Bytes queued by ``write()`` and not yet sent."""
        return self._out_size

    def _on_writable(self) -> None:
        """On the hub: send as much queued output as the socket takes."""
        out = self._out
        while out:
            if len(out) == 1 or len(out[0]) >= SEND_CHUNK:
                data = out[0]
            else:
                pieces: list[bytes] = []
                size = 0
                while out and size < SEND_CHUNK:
                    piece = out.popleft()
                    pieces.append(piece)
                    size += len(piece)
                data = b"".join(pieces)
                out.appendleft(data)
            try:
                sent = self._sock.send_nowait(data) if self._tls else self._sock.send(data)
            except BlockingIOError:
                break
            except OSError as exc:               # nobody to raise it to: close only
                self._failed(exc, "write")
                return
            self._out_size -= sent
            self._out_moved += sent
            if sent < len(data):
                out[0] = data[sent:]
                break
            out.popleft()
        if out:
            if not self._writer_armed:
                self._arm_writer()
        else:
            if self._writer_armed:
                self._writer_armed = False
                self._hub.remove_writer(self._fd)
            if self._drained is not None:
                self._drained.set()
        if self._room is not None and self._out_size <= self.max_output:
            self._room.set()

    def _arm_writer(self) -> None:
        """Have the hub call _on_writable while output is queued."""
        self._writer_armed = True
        self._hub.add_writer(self._fd, self._on_writable)
        if self.stall_timeout and self._stall_timer is None:
            self._arm_stall_timer()

    def _wait_for_room(self) -> None:
        while self._out_size > self.max_output:
            if self._room is None:
                self._room = Event()
            self._room.clear()
            if not self._room.wait(self.timeout):
                raise TimeoutError(f"{describe(self.peer)}: no room for output in time")
            if self._closed:
                raise self._closed_error()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued output is sent; False if ``timeout`` passed first.

        Raises NetworkError if the connection closes meanwhile.
        """
        while self._out:
            if self._closed:
                raise self._closed_error()
            if self._drained is None:
                self._drained = Event()
            self._drained.clear()
            if not self._drained.wait(timeout):
                return False
        if self._closed and self._out_size:
            raise self._closed_error()
        return True

    def _arm_stall_timer(self) -> None:
        """Check in ``stall_timeout`` seconds whether queued output has moved."""
        if self.stall_timeout is not None:
            self._stall_timer = self._hub.call_later(self.stall_timeout, self._check_stall,
                                                     self._out_moved)

    def _check_stall(self, moved_before: int) -> None:
        self._stall_timer = None
        if self._closed or not self._out:
            return
        if self._out_moved == moved_before:
            self.close(f"output stalled for {self.stall_timeout:g} s")
        else:
            self._arm_stall_timer()

    # ------------------------------------------------------------- lifetime

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the peer has gone away or the connection is closed.

        The seed's ``on_lost_connection``. It consumes no data: it learns of
        the loss from the tasklet that reads or writes (EOF, reset, broken
        pipe) or from ``close()``. Returns False if ``timeout`` passed first.
        """
        if self._gone:
            return True
        if self._lost is None:
            self._lost = Event()
        return self._lost.wait(timeout)

    def _mark_lost(self) -> None:
        self._gone = True
        if self._lost is not None:
            self._lost.set()

    def shutdown_write(self) -> None:
        """Send EOF to the peer (half-close) after queued output; reading goes on.

        Not under TLS: NotImplementedError, as asyncio's ``write_eof`` on a TLS
        transport. A TLS half-close is a close_notify, and the only way
        Python sends one (the stdlib SSLSocket's ``unwrap`` or ``shutdown``)
        calls OpenSSL's SSL_shutdown twice, the second call reading and
        discarding the application data it meets: what the peer still sends
        would be lost. A bare TCP EOF instead is, to OpenSSL 3, a fatal
        truncation, after which the peer cannot write either.
        """
        if self._tls:
            raise NotImplementedError("TLS has no safe half-close here: close() instead")
        self.flush()
        try:
            self._sock.shutdown(_socket.SHUT_WR)
        except OSError as exc:
            raise self._failed(exc, "shutdown") from exc

    def set_keepalive(self, idle: int = 60, interval: int = 10, count: int = 5,
                      user_timeout: float | None = None) -> None:
        """Turn TCP keepalive on, so a peer that vanished is noticed.

        After ``idle`` seconds without traffic the kernel sends a probe, then
        one every ``interval`` seconds; ``count`` unanswered probes close the
        connection (ETIMEDOUT to whoever reads or writes it next).
        ``user_timeout`` (seconds, Linux's TCP_USER_TIMEOUT): data sent and
        not acknowledged for that long also closes it, instead of the ~15
        minutes of retransmissions; it then bounds the probes as well. The
        peer sees nothing of either. Options the platform lacks are skipped,
        and so is everything on a socket that is not TCP (a Unix socket).
        """
        sock = self._sock
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
            if hasattr(_socket, "TCP_KEEPIDLE"):
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPIDLE, idle)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPINTVL, interval)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_KEEPCNT, count)
            if user_timeout is not None and hasattr(_socket, "TCP_USER_TIMEOUT"):
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_USER_TIMEOUT,
                                int(user_timeout * 1000))
        except OSError:
            pass                              # not TCP (a Unix socket): nothing to keep alive

    def close(self, reason: str | None = None) -> None:
        """Close now (queued output is dropped; ``flush()`` first to send it).

        Idempotent. Wakes every tasklet waiting on this connection with
        NetworkError and forgets the descriptor (``hub.close_fd``), then
        closes it.
        """
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason or self.close_reason or "closed"
        self._hub.close_fd(self._fd, self._closed_error())
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        if self._out:
            self._out.clear()
        self._writer_armed = False
        try:
            self._sock.close()
        except OSError:
            pass
        self._mark_lost()
        for event in (self._room, self._drained):
            if event is not None:
                event.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped without close(): its socket is about to close the descriptor;
        # drop the hub's registration first, so a reused number starts clean.
        # A Connection whose __init__ failed has no _closed (its slots are
        # unset) and registered nothing: nothing to do.
        if not getattr(self, "_closed", True):
            forget_on_its_thread(self._hub, self._fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Connection {describe(self.peer)} {state} fd={self._fd}>"


#: The keyword options ``Connection`` takes, which listen(), connect(), Listener
#: and StreamServer pass on to each Connection they make.
CONNECTION_OPTIONS = ("timeout", "max_output", "on_full", "stall_timeout")
