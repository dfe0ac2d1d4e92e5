"""A drop-in for the stdlib ``socket`` module whose blocking calls cooperate.

::

    from microthreads.net import socket
    s = socket.create_connection(("127.0.0.1", 8080), timeout=5)
    s.sendall(b"hello")          # parks this tasklet, not the thread

``socket.socket`` subclasses the stdlib class: the OS socket is always
non-blocking, and ``settimeout``/``setblocking`` set the timeout the
cooperative methods honour (None waits forever, 0.0 raises BlockingIOError,
a number raises ``TimeoutError``, i.e. ``socket.timeout``). Name lookups
(``getaddrinfo``, ``gethostbyname``, ...) run in a worker thread through
``run_in_thread``. Every other name of the stdlib module is re-exported, so
code written for blocking sockets (a third-party client library, say) runs
cooperatively when handed this module.
"""

# mypy: disable-error-code="no-redef"
# (this module redefines, on purpose, names the stdlib star import brought in)

from __future__ import annotations

import builtins
import functools
import ipaddress
import socket as _std_module
import sys
import types
from operator import index as _index
from socket import *  # noqa: F403  (constants and helpers, re-exported as they are)
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ..hub import current_hub, get_hub
from ..nonblocking import READABLE, WRITABLE, deadline_after, retry, wait_ready
from ..threads import run_in_thread
from ..timeout import sleep
from .errors import network_error

# The stdlib's names as they are now: microthreads.monkey.patch_socket() replaces the
# module's attributes later, and this module must keep calling the originals.
if TYPE_CHECKING:                   # the same names, as the type checker knows them
    from types import FrameType

    from typing_extensions import Buffer, Self

    from ..hub import Hub

    _std = _std_module
else:
    _std = types.SimpleNamespace(**vars(_std_module))

T = TypeVar("T")

# The stdlib's public names, no more: `from microthreads.net.socket import *`
# must find each of them here (dir() also lists the stdlib's imports: errno, os...).
__all__ = list(_std_module.__all__)

# error, timeout, gaierror and herror came with the star import, as they are.
_GLOBAL_DEFAULT_TIMEOUT: Any = _std._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


class socket(_std.socket):
    """A stdlib socket whose blocking methods park the tasklet instead."""

    __slots__ = ("_mt_timeout",)

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._mt_timeout = super().gettimeout()  # the default, or 0.0 for SOCK_NONBLOCK
        super().setblocking(False)

    # ---------------------------------------------------------------- timeout

    def settimeout(self, value: float | None) -> None:
        """As the stdlib's: None waits without limit, 0.0 never waits, else at
        most ``value`` seconds; ValueError if negative or NaN, TypeError if not a
        number (an int or a float). The descriptor itself
        stays non-blocking: waits park the tasklet.
        """
        if value is not None:
            value = value if isinstance(value, float) else float(_index(value))  # TypeError
            if value != value:
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._mt_timeout = value

    def gettimeout(self) -> float | None:
        """The timeout ``settimeout`` set (None: no limit); never fails."""
        return self._mt_timeout

    @property
    def timeout(self) -> float | None:
        """The timeout, as ``gettimeout()``."""
        return self._mt_timeout

    def setblocking(self, flag: bool) -> None:
        """As the stdlib's: True is ``settimeout(None)``, False ``settimeout(0.0)``."""
        super().setblocking(False)               # OSError on a closed descriptor, as the stdlib's
        self._mt_timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """False only under a timeout of 0.0, as the stdlib's."""
        return self._mt_timeout != 0.0

    def _io(self, writable: bool, flags: int, operation: Callable[..., T], *args: Any) -> T:
        """``operation(*args)``, the one path of every method that may wait.

        Tried at once; if it would block, BlockingIOError under a timeout of
        0.0 or with ``MSG_DONTWAIT`` in ``flags`` (as the stdlib's), else waits
        (``microthreads.nonblocking.retry``) at most the socket's timeout,
        then ``socket.timeout``.
        """
        try:
            return operation(*args)
        except BlockingIOError:
            if self._mt_timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        hub = get_hub()
        return retry(hub, self.fileno(), writable, deadline_after(hub, self._mt_timeout),
                     operation, *args, timeout_error=_std.timeout)

    # ---------------------------------------------------------------- methods

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """At most ``bufsize`` bytes; b'' at EOF.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(READABLE, flags, _std.socket.recv, self, bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer``; the number of bytes written.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(READABLE, flags, _std.socket.recv_into, self, buffer, nbytes, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Received bytes and the sender's address.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(READABLE, flags, _std.socket.recvfrom, self, bufsize, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """``recvfrom`` into ``buffer``: ``(nbytes, address)``.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(READABLE, flags, _std.socket.recvfrom_into, self, buffer, nbytes, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """Data and ancillary data, as the stdlib's ``recvmsg``.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(READABLE, flags, _std.socket.recvmsg, self, bufsize, ancbufsize, flags)

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0,
                     flags: int = 0) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """``recvmsg`` into ``buffers``, as the stdlib's ``recvmsg_into``.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        buffers = list(buffers)                  # a generator is read once, not once per try
        return self._io(READABLE, flags, _std.socket.recvmsg_into, self, buffers, ancbufsize,
                        flags)

    def send(self, data: Buffer, flags: int = 0) -> int:
        """Send some of ``data``; the number of bytes sent.

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0 or with ``MSG_DONTWAIT``, BlockingIOError at once.
        OSError as the stdlib's.
        """
        return self._io(WRITABLE, flags, _std.socket.send, self, data, flags)

    def sendto(self, data: Buffer, *flags_address: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``, as the stdlib's."""
        flags = flags_address[0] if len(flags_address) > 1 else 0
        return self._io(WRITABLE, flags, _std.socket.sendto, self, data, *flags_address)

    def sendmsg(self, *args: Any) -> int:
        """``sendmsg(buffers[, ancdata[, flags[, address]]])``, as the stdlib's."""
        flags = args[2] if len(args) > 2 else 0
        args = tuple(list(a) if i < 2 else a for i, a in enumerate(args))   # iterables once
        return self._io(WRITABLE, flags, _std.socket.sendmsg, self, *args)

    if hasattr(_std.socket, "sendmsg_afalg"):         # Linux
        def sendmsg_afalg(self, *args: Any, **kwargs: Any) -> int:
            """As the stdlib's ``sendmsg_afalg`` (Linux's kernel crypto sockets).

            Tried at once; if it would block, parks the tasklet until the socket is
            ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
            under a timeout of 0.0, BlockingIOError at once. OSError as the stdlib's.
            """
            send = functools.partial(_std.socket.sendmsg_afalg, self, *args, **kwargs)
            return self._io(WRITABLE, kwargs.get("flags", 0), send)

    def sendall(self, data: Buffer, flags: int = 0) -> None:
        """Send all of ``data``; the socket's timeout bounds the whole, as the stdlib's."""
        view = memoryview(data).cast("B")
        send = _std.socket.send
        sent = 0
        hub: Hub | None = None
        deadline: float | None = None
        while sent < len(view):
            try:
                sent += send(self, view[sent:], flags)
                continue
            except BlockingIOError:
                if self._mt_timeout == 0.0 or flags & _MSG_DONTWAIT:
                    raise
            if hub is None:
                hub = get_hub()
                deadline = deadline_after(hub, self._mt_timeout)
            sent += retry(hub, self.fileno(), WRITABLE, deadline, send, self, view[sent:], flags,
                          timeout_error=_std.timeout)

    def accept(self) -> tuple[socket, Any]:
        """A connection and its address, as the stdlib's: the new socket is one of
        this module's, with the default timeout (not the listener's).

        Tried at once; if it would block, parks the tasklet until the socket is
        ready, at most the socket's timeout: then ``socket.timeout`` (TimeoutError);
        under a timeout of 0.0, BlockingIOError at once. OSError as the stdlib's.
        """
        fd, address = self._io(READABLE, 0, self._accept)  # type: ignore[attr-defined]  # the C method
        # as the stdlib's: a plain socket of this module (an SSLSocket subclass wraps it
        # itself), with the default timeout, not the listener's
        return socket(self.family, self.type, self.proto, fileno=fd), address

    def connect(self, address: Any) -> None:
        # this class's connect_ex, not self's: an SSLSocket's connects (wraps) a second time
        """Connect to ``address`` (a name is resolved off the hub), waiting for the
        handshake at most the socket's timeout (``socket.timeout``); a refusal or
        any other failure raises OSError with the system's code.
        """
        error = socket.connect_ex(self, address)
        if error:
            raise OSError(error, _strerror(error))

    def connect_ex(self, address: Any) -> int:
        """``connect``, returning the error code (0 on success) instead of raising
        OSError; still raises ``socket.timeout`` and name-lookup errors. Under a
        timeout of 0.0, one attempt (EINPROGRESS), as the stdlib's.
        """
        address = _resolve_for(self.family, address)
        if self._mt_timeout == 0.0:              # non-blocking: one attempt, as the stdlib's
            return _std.socket.connect_ex(self, address)
        hub = get_hub()
        return dial(self, address, deadline_after(hub, self._mt_timeout), _std.timeout)

    def getsockopt(self, *args: Any) -> Any:
        """As the stdlib's. The plain stdlib ``ssl`` asks this first when it wraps a
        socket: then TypeError naming ``microthreads.net.ssl``, since its blocking
        handshake would stall the hub (unless ``monkey.patch_ssl()`` was called).
        """
        if args[:2] == (_std.SOL_SOCKET, _std.SO_TYPE):   # the stdlib ssl's first question
            _refuse_blocking_tls(sys._getframe(1))
        return super().getsockopt(*args)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """As the stdlib's, through the cooperative ``send``.

        The stdlib's os.sendfile path waits in its own selector, which would
        block the hub.
        """
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined,no-any-return]

    def dup(self) -> Self:
        """A new socket of this class on a duplicate descriptor; OSError as ``os.dup``."""
        return type(self)(self.family, self.type, self.proto, fileno=_dup(self.fileno()))

    def detach(self) -> int:
        """Give up the descriptor (returned, -1 if closed) without closing it; the
        hub forgets it first, so whoever takes it over starts clean.
        """
        fd = self.fileno()
        if fd >= 0:
            get_hub().forget_fd(fd)
        return super().detach()

    def __del__(self) -> None:
        # Dropped without close(): drop the hub's registration before the
        # descriptor closes, so a reused number starts clean.
        hub = current_hub()
        if hub is not None:
            fd = self.fileno()
            if fd >= 0:
                hub.forget_fd(fd)
        super().__del__()  # type: ignore[misc]  # _socket.socket's, not in typeshed

    def _real_close(self, _ss: Any = _std._socket.socket) -> None:  # type: ignore[attr-defined]
        # _ss is the C type, as in the stdlib: socket.socket.close() would call us again
        fd = self.fileno()
        if fd >= 0:
            get_hub().close_fd(fd, network_error(f"socket fd {fd} was closed"))
        _ss.close(self)


SocketType = socket  # type: ignore[misc,assignment]  # the stdlib's alias, for ours

import errno as _errno  # noqa: E402
import os as _os  # noqa: E402

_EINPROGRESS, _EAGAIN, _EALREADY = _errno.EINPROGRESS, _errno.EAGAIN, _errno.EALREADY
_MSG_DONTWAIT = getattr(_std, "MSG_DONTWAIT", 0)
_ExceptionGroup: Any = getattr(builtins, "ExceptionGroup", None)   # 3.11+
_dup = _os.dup
_strerror = _os.strerror


def _refuse_blocking_tls(caller: FrameType | None) -> None:
    """Raise TypeError if ``caller`` is the stdlib's ``SSLSocket._create`` making a
    blocking SSLSocket over a cooperative socket: it would block the whole hub.

    Asked before the stdlib has taken the descriptor, so refusing loses nothing.
    """
    std_ssl = sys.modules.get("ssl")
    if std_ssl is None or caller is None or \
            caller.f_code is not std_ssl.SSLSocket._create.__func__.__code__:
        return
    if getattr(caller.f_locals.get("cls"), "_microthreads_cooperative", False):
        return
    raise TypeError("the stdlib ssl module would block the hub on a microthreads socket:"
                    " use microthreads.net.ssl (create_default_context(), SSLContext,"
                    " wrap_with) or call microthreads.monkey.patch_ssl() first")


def ip_family(host: Any) -> int | None:
    """AF_INET or AF_INET6 for an IP literal (an IPv6 one may carry a ``%zone``);
    None for anything else (a hostname, "", None): the one IP-literal parser."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return _std.AF_INET6 if ip.version == 6 else _std.AF_INET


def _is_ip(host: Any) -> bool:
    return ip_family(host) is not None


#: A Unix listener whose backlog is full refuses with EAGAIN: retry this often.
UNIX_CONNECT_RETRY = 0.01


def dial(sock: _std.socket, sockaddr: Any, deadline: float | None,
         timeout_error: Callable[[str], BaseException] = TimeoutError) -> int:
    """The one dial: connect the non-blocking ``sock`` to ``sockaddr``, cooperatively.

    Returns 0 once connected, or the errno of the failure (refused,
    unreachable). Waits for the connection at most until ``deadline`` (hub
    clock; None: no limit), then raises ``timeout_error(message)``. A Unix
    listener whose backlog is full answers EAGAIN at once instead of letting
    the caller wait in its backlog, as TCP does: the attempt is repeated every
    UNIX_CONNECT_RETRY seconds until the deadline. Works on a plain stdlib
    socket (``connect()``) and on this module's (``socket.connect``).
    """
    hub = get_hub()
    while True:
        code = _std.socket.connect_ex(sock, sockaddr)
        if code != _EAGAIN or sock.family != getattr(_std, "AF_UNIX", None):
            break
        if deadline is not None and hub.clock() >= deadline:
            raise timeout_error(f"connect to {sockaddr!r} timed out")
        sleep(UNIX_CONNECT_RETRY)
    if code in (_EINPROGRESS, _EAGAIN, _EALREADY):
        wait_ready(hub, sock.fileno(), WRITABLE, deadline, timeout_error,
                   f"connect to {sockaddr!r} timed out")
        code = sock.getsockopt(_std.SOL_SOCKET, _std.SO_ERROR)
    return code


def _resolve_for(family: int, address: Any) -> Any:
    """Resolve a hostname off the hub, so connect() never blocks on DNS."""
    if family not in (_std.AF_INET, _std.AF_INET6) or not isinstance(address, tuple):
        return address
    host = address[0]
    if not host or _is_ip(host):
        return address
    infos = getaddrinfo(host, address[1], family, _std.SOCK_STREAM)
    return infos[0][4]


# ------------------------------------------------------------ name lookups


def getaddrinfo(host: bytes | str | None, port: bytes | str | int | None, family: int = 0,
                type: int = 0, proto: int = 0, flags: int = 0,
                ) -> list[tuple[_std.AddressFamily, _std.SocketKind, int, str, Any]]:
    """stdlib ``getaddrinfo`` in a worker thread (numeric hosts answered inline)."""
    if host is None or (isinstance(host, str) and _is_ip(host)) or host in ("", b""):
        return list(_std.getaddrinfo(host, port, family, type, proto, flags))
    return list(run_in_thread(_std.getaddrinfo, host, port, family, type, proto, flags))


def gethostbyname(hostname: str) -> str:
    """stdlib ``gethostbyname`` in a worker thread (an IP literal answered inline)."""
    if _is_ip(hostname):
        return hostname
    return run_in_thread(_std.gethostbyname, hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """stdlib ``gethostbyname_ex`` in a worker thread."""
    return run_in_thread(_std.gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """stdlib ``gethostbyaddr`` in a worker thread."""
    return run_in_thread(_std.gethostbyaddr, ip_address)


def getnameinfo(sockaddr: tuple[str, int] | tuple[str, int, int, int],
                flags: int) -> tuple[str, str]:
    """stdlib ``getnameinfo`` in a worker thread."""
    return run_in_thread(_std.getnameinfo, sockaddr, flags)


def getfqdn(name: str = "") -> str:
    """stdlib ``getfqdn`` in a worker thread."""
    return run_in_thread(_std.getfqdn, name)


# ------------------------------------------------------------ constructors


def socketpair(family: int | None = None, type: int = _std.SOCK_STREAM,
               proto: int = 0) -> tuple[socket, socket]:
    """A connected pair of cooperative sockets."""
    if family is None:
        family = getattr(_std, "AF_UNIX", _std.AF_INET)
    a, b = _std.socketpair(family, type, proto)
    return socket(a.family, a.type, a.proto, a.detach()), socket(b.family, b.type, b.proto,
                                                                  b.detach())


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """A cooperative socket on a duplicate of descriptor ``fd``."""
    return socket(family, type, proto, _dup(fd))


def create_connection(address: tuple[str | None, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: Any = None, *, all_errors: bool = False) -> socket:
    """Connect to ``(host, port)``, trying each address in turn, cooperatively.

    As the stdlib's: when every address fails, the first error is raised, or
    with ``all_errors=True`` (Python 3.11+) an ``ExceptionGroup`` of them all.
    """
    if all_errors and sys.version_info < (3, 11):
        raise TypeError("create_connection() got an unexpected keyword argument 'all_errors'")
    host, port = address
    errors: list[OSError] = []
    for family, type_, proto, _canon, sockaddr in getaddrinfo(host, port, 0, _std.SOCK_STREAM):
        sock = None
        try:
            sock = socket(family, type_, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            errors.append(exc)
            if sock is not None:
                sock.close()
    if not errors:
        raise OSError("getaddrinfo returns an empty list")
    try:
        if all_errors:
            raise _ExceptionGroup("create_connection failed", errors)
        raise errors[0]
    finally:
        errors.clear()                        # no reference cycle through the tracebacks


def create_server(address: Any, *, family: int = _std.AF_INET, backlog: int | None = None,
                  reuse_port: bool = False, dualstack_ipv6: bool = False) -> socket:
    """As the stdlib's, returning a cooperative listening socket."""
    plain = _std.create_server(address, family=family, backlog=backlog, reuse_port=reuse_port,
                               dualstack_ipv6=dualstack_ipv6)
    return socket(plain.family, plain.type, plain.proto, plain.detach())
