"""Cooperative TLS: a counterpart of the stdlib ``ssl`` module.

::

    from microthreads.net import socket, ssl
    context = ssl.create_default_context()
    raw = socket.create_connection(("example.org", 443), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="example.org")
    tls.sendall(b"GET / HTTP/1.0\\r\\nHost: example.org\\r\\n\\r\\n")
    reply = tls.recv(65536)       # parks this tasklet, not the thread

``SSLSocket`` is the stdlib's ``ssl.SSLSocket`` over a cooperative
``microthreads.net.socket.socket``: the OS socket is always non-blocking, and
every TLS operation (the handshake, ``recv``, ``send``, ``sendall``,
``unwrap``) tries OpenSSL first and parks the tasklet only when OpenSSL asks
for the socket to become readable (``SSLWantReadError``) or writable
(``SSLWantWriteError``), then tries again. Because the retry is driven by
OpenSSL's own answer, plaintext already decrypted and buffered inside the SSL
object (``pending()``) is returned at once: readiness of the descriptor is not
the whole story, and it is never consulted first. Timeouts are those of the
cooperative socket (``settimeout``): None waits forever, a number raises
``TimeoutError``, 0.0 raises the ``SSLWant*Error`` as the stdlib does for a
non-blocking socket.

Certificate and hostname failures raise the stdlib's own
``ssl.SSLCertVerificationError``; every exception class, constant and helper
of the stdlib module is re-exported, so ``except ssl.SSLError`` works the same
with either module.

``SSLContext`` is the stdlib's, whose ``wrap_socket`` makes the cooperative
``SSLSocket``; ``wrap_with(context, sock, ...)`` does the same for a context
made by the stdlib (or by a third-party library). ``create_default_context``
returns the cooperative ``SSLContext``. The plain stdlib ``ssl`` refuses a
cooperative socket with a TypeError naming this module (it would otherwise
block the whole hub), unless ``microthreads.monkey.patch_ssl()`` was called.

TLS renegotiation (TLS 1.2 and older) is refused by the contexts made here
(``OP_NO_RENEGOTIATION``): a write that would have to wait for the peer's
handshake data cannot be retried by the hub's write-queue callback.
"""

from __future__ import annotations

import errno as _errno
import socket as _socket
import ssl as _std
from functools import partial
from typing import Any, Callable, TypeVar, cast

from ..hub import get_hub
from ..nonblocking import READABLE, call, deadline_after, remaining, retry
from . import socket as _coop
from .common import describe
from .errors import NetworkError, NotTLSError

__all__ = sorted({name for name in dir(_std) if not name.startswith("_")} |
                 {"SSLContext", "SSLSocket", "cooperative_class", "create_default_context",
                  "wrap_with"})


def __getattr__(name: str) -> Any:
    """Every other name (exceptions, constants, helpers) is the stdlib's own."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_std, name)

_T = TypeVar("_T")
_EOF_CODES = (_std.SSL_ERROR_EOF, _std.SSL_ERROR_ZERO_RETURN)
#: OpenSSL's "would block": it needs the descriptor readable, or writable
_WOULD_BLOCK = (_std.SSLWantReadError, _std.SSLWantWriteError)


class SSLSocket(_std.SSLSocket, _coop.socket):
    """A stdlib ``ssl.SSLSocket`` whose blocking operations park the tasklet.

    Made by ``SSLContext.wrap_socket`` (or this module's ``wrap_with``);
    there is no public constructor, as in the stdlib. The socket it wraps is
    detached, as in the stdlib: use the returned object from then on.
    """

    #: Read by microthreads.net.socket: the stdlib may wrap this class.
    _microthreads_cooperative = True
    _sslobj: Any                    # the stdlib's _ssl._SSLSocket, or None
    _mt_timeout: float | None       # microthreads.net.socket's timeout

    # ------------------------------------------------------------ the engine

    def _call(self, operation: Callable[..., _T], *args: Any,
              timeout: float | None = None, use_timeout: bool = True) -> _T:
        """``operation(*args)``, retried until OpenSSL stops asking to wait.

        Parks on the descriptor side OpenSSL names (read or write), at most
        until the deadline from ``timeout`` (or the socket's own timeout when
        ``use_timeout``): then ``TimeoutError``. With a socket timeout of 0.0
        the ``SSLWant*Error`` is raised as the stdlib raises it.
        """
        if use_timeout:
            timeout = self._mt_timeout
            if timeout == 0.0:
                return operation(*args)
        try:
            return operation(*args)
        except _WOULD_BLOCK as exc:
            writable = isinstance(exc, _std.SSLWantWriteError)
        hub = get_hub()
        return retry(hub, self.fileno(), writable, deadline_after(hub, timeout), operation, *args,
                     timeout_error=_coop.timeout, would_block=_WOULD_BLOCK,
                     wants_write=_std.SSLWantWriteError)

    # ------------------------------------------------------ stdlib methods

    def do_handshake(self, block: bool = False) -> None:
        """The TLS handshake, parking as needed.

        ``block=True`` ignores a timeout of 0.0 (waits without limit), as the
        stdlib's does. Raises ``SSLCertVerificationError`` for a certificate
        or hostname the context does not accept, ``SSLError`` for any other
        TLS failure, ``OSError`` (a reset) or ``TimeoutError``.
        """
        self._check_connected()  # type: ignore[attr-defined]
        if block and self._mt_timeout == 0.0:
            self._call(self._sslobj.do_handshake, timeout=None, use_timeout=False)
        else:
            self._call(self._sslobj.do_handshake)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Up to ``len`` bytes of plaintext (b"" at EOF), parking until some come."""
        return self._call(_std.SSLSocket.read, self, len, buffer)

    def write(self, data: Any) -> int:
        """Encrypt and send all of ``data`` (the stdlib never writes less), parking as needed."""
        return self._call(_std.SSLSocket.write, self, data)

    def send(self, data: Any, flags: int = 0) -> int:
        """As ``write`` once the TLS layer is on; a cooperative plain send before."""
        return self._call(_std.SSLSocket.send, self, data, flags)

    def unwrap(self) -> Any:
        """The TLS closing handshake (close_notify both ways); the plain socket after it."""
        if not self._sslobj:
            raise ValueError(f"No SSL wrapper around {self}")
        plain = self._call(self._sslobj.shutdown)
        self._sslobj = None
        return plain

    def _real_close(self) -> None:
        # One try at close_notify, never a wait: a peer that reads to the end
        # (openssl s_client, say) then sees a clean close, not a truncation.
        sslobj = self._sslobj
        if sslobj is not None:
            try:
                sslobj.shutdown()
            except (OSError, ValueError):
                pass
        super()._real_close()  # type: ignore[misc]

    # ---------------------------------------------- for microthreads.net.Connection

    def recv_nowait(self, size: int) -> bytes:
        """One attempt at up to ``size`` bytes of plaintext; never waits.

        Decrypted plaintext already buffered in the SSL object comes first.
        Raises ``BlockingIOError`` when OpenSSL needs the socket to become
        readable (or, rarely, writable: a handshake message it must send back;
        the caller waits for readable and tries again, which costs a few
        wake-ups but never loses data). b"" at EOF, clean or not: a peer that
        closes or resets without TLS's close_notify reads as EOF, as with the
        stdlib's ``suppress_ragged_eofs``; a record cut short is never
        returned in part.
        """
        try:
            return cast(bytes, self._sslobj.read(size))
        except (_std.SSLWantReadError, _std.SSLWantWriteError):
            raise BlockingIOError(_errno.EAGAIN, "TLS: would block") from None
        except _std.SSLError as exc:
            if exc.args[0] in _EOF_CODES:
                return b""
            raise

    def send_nowait(self, data: Any) -> int:
        """One attempt at sending all of ``data``; never waits.

        Returns ``len(data)`` (OpenSSL writes all or nothing) or raises
        ``BlockingIOError``. After a ``BlockingIOError`` the next attempt must
        begin with the same bytes, at least as many: OpenSSL may hold part of
        a record. ``microthreads.net.Connection``'s output queue keeps to that
        (it only ever appends to the piece it retries).
        """
        try:
            return cast(int, self._sslobj.write(data))
        except (_std.SSLWantReadError, _std.SSLWantWriteError):
            raise BlockingIOError(_errno.EAGAIN, "TLS: would block") from None


class SSLContext(_std.SSLContext):
    """The stdlib's ``ssl.SSLContext``; ``wrap_socket`` returns a cooperative ``SSLSocket``."""

    sslsocket_class = SSLSocket

    def __new__(cls, protocol: int | None = None, *args: Any, **kwargs: Any) -> SSLContext:
        context = super().__new__(cls, protocol, *args, **kwargs)
        _no_renegotiation(context)
        return context

    def wrap_socket(self, sock: _socket.socket, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: Any = None) -> SSLSocket:
        """As the stdlib's, cooperatively: ``wrap_with(self, sock, ...)``.

        A ``sslsocket_class`` of the user's own (a subclass of the stdlib's
        ``ssl.SSLSocket``) is honoured: the socket is an instance of it that
        cooperates (``cooperative_class``). ``monkey.patch_ssl()`` makes
        this every context's ``wrap_socket``.
        """
        return wrap_with(self, sock, server_side, do_handshake_on_connect,
                         suppress_ragged_eofs, server_hostname, session)


def _no_renegotiation(context: _std.SSLContext) -> None:
    context.options |= getattr(_std, "OP_NO_RENEGOTIATION", 0)


def create_default_context(purpose: Any = _std.Purpose.SERVER_AUTH, *,
                           cafile: str | None = None, capath: str | None = None,
                           cadata: Any = None) -> SSLContext:
    """The stdlib's ``create_default_context``, as a cooperative ``SSLContext``.

    Same settings (verification, hostname checking, system CA certificates);
    only the class of the context differs, so its sockets cooperate.
    """
    context = _std.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
    context.__class__ = SSLContext        # same layout: the stdlib class, one attribute more
    _no_renegotiation(context)
    return cast(SSLContext, context)


def wrap_with(context: _std.SSLContext, sock: _socket.socket, server_side: bool = False,
              do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
              server_hostname: str | bytes | None = None, session: Any = None) -> SSLSocket:
    """``context.wrap_socket(sock, ...)`` for any context (a stdlib one too), cooperatively.

    ``sock`` may be a cooperative or a plain stdlib socket: the result is a
    cooperative ``SSLSocket`` either way (of the context's own
    ``sslsocket_class`` when it is a user's subclass: ``cooperative_class``),
    and ``sock`` is detached. Raises as ``SSLContext.wrap_socket`` does
    (ValueError for a missing server_hostname when the context checks
    hostnames, the handshake's errors when connected and
    ``do_handshake_on_connect``).
    """
    cls = cooperative_class(getattr(context, "sslsocket_class", SSLSocket))
    create = cls._create  # type: ignore[attr-defined]  # the stdlib's, private
    return cast(SSLSocket, create(sock=sock, server_side=server_side,
                                  do_handshake_on_connect=do_handshake_on_connect,
                                  suppress_ragged_eofs=suppress_ragged_eofs,
                                  server_hostname=server_hostname, context=context,
                                  session=session))


#: Where cooperative_class keeps the class it made, in the user's class itself
#: (a cache that lives and dies with it).
_DERIVED = "__microthreads_cooperative_class__"


def cooperative_class(cls: type) -> type[SSLSocket]:
    """The cooperative class for sockets of ``cls``, a ``sslsocket_class``.

    ``cls`` itself when it cooperates already (this module's ``SSLSocket``
    or a subclass of it); this module's ``SSLSocket`` for the stdlib's
    ``ssl.SSLSocket``; for a user's subclass of the stdlib's, a subclass of
    both (``cls`` first, so its overrides win; same name), made once per
    class: its sockets are instances of ``cls`` and cooperate. TypeError for
    anything that is not an ``ssl.SSLSocket`` class.
    """
    if getattr(cls, "_microthreads_cooperative", False):
        return cls
    if cls is _std.SSLSocket:
        return SSLSocket
    if not (isinstance(cls, type) and issubclass(cls, _std.SSLSocket)):
        raise TypeError(f"sslsocket_class must be an ssl.SSLSocket subclass, not {cls!r}")
    derived: type[SSLSocket] | None = vars(cls).get(_DERIVED)
    if derived is None:
        derived = type(cls.__name__, (cls, SSLSocket),
                       {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                        "__doc__": cls.__doc__})
        setattr(cls, _DERIVED, derived)
    return derived


# ------------------------------------------------ for microthreads.net.server


def handshake(sock: SSLSocket, timeout: float | None) -> None:
    """The handshake of ``sock`` within ``timeout`` seconds, whatever its own timeout.

    Raises what ``do_handshake`` raises; ``TimeoutError`` when time runs out;
    ``OSError`` (ENOTCONN) if the peer was gone before the socket was wrapped.
    """
    if sock._sslobj is None:
        raise OSError(_errno.ENOTCONN, "not connected: the peer left before the handshake")
    sock._call(sock._sslobj.do_handshake, timeout=timeout, use_timeout=False)


#: The content type of a TLS handshake record, the first byte a TLS client sends.
HANDSHAKE_RECORD = 0x16


def expect_client_hello(sock: SSLSocket, timeout: float, peer: Any) -> None:
    """Peek at the first bytes of ``sock``, a server side not yet handshaken.

    Waits at most ``timeout`` seconds for them and consumes nothing. Returns
    if they begin a TLS handshake record, or if the client closed (the
    handshake then fails as it does). Raises ``NotTLSError`` if they do not,
    or if nothing came in time; ``OSError`` as the peek raises it (a reset).
    """
    hub = get_hub()
    peek = partial(_socket.socket.recv, sock, 5, _socket.MSG_PEEK)
    try:
        head = call(hub, sock.fileno(), READABLE, deadline_after(hub, timeout), peek)
    except TimeoutError:
        raise NotTLSError(f"{describe(peer)}: sent nothing in {timeout:g} s on the TLS port:"
                          " not a TLS client", b"", sock) from None
    if head and head[0] != HANDSHAKE_RECORD:
        raise NotTLSError(f"{describe(peer)}: not speaking TLS (its first bytes: {head!r})",
                          head, sock)


def client_handshake(context: _std.SSLContext, sock: _socket.socket,
                     server_hostname: str | None, peer: Any,
                     deadline: float | None) -> SSLSocket:
    """Wrap a connected ``sock`` as a TLS client and handshake by ``deadline``.

    ``sock`` is closed on any failure. Raises ``SSLCertVerificationError``
    as OpenSSL gave it (a certificate or name the context refuses),
    ``TimeoutError`` past the deadline, NetworkError for anything else.
    """
    tls = None
    try:
        tls = wrap_with(context, sock, server_hostname=server_hostname,
                          do_handshake_on_connect=False)
        handshake(tls, remaining(get_hub(), deadline))
        return tls
    except BaseException as exc:
        (tls or sock).close()
        if isinstance(exc, (_std.SSLCertVerificationError, TimeoutError)) or \
                not isinstance(exc, (OSError, ValueError)):
            raise
        raise NetworkError(f"{describe(peer)}: TLS handshake failed:"
                           f" {describe_error(exc)}") from exc


def describe_error(exc: BaseException) -> str:
    """A TLS failure in a few words: OpenSSL's reason, else the OS error."""
    if isinstance(exc, _std.SSLCertVerificationError):
        return f"certificate refused: {exc.verify_message}"
    if isinstance(exc, _std.SSLError) and getattr(exc, "reason", None):
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
