"""What the modules of ``microthreads.net`` share: addresses, and descriptors left behind.

Not part of the public API (``microthreads.net`` does not export it); one
place for the helpers that stream, server, datagram and ssl each need.
"""

from __future__ import annotations

import os
import socket as _socket
import threading
from typing import TYPE_CHECKING, Any

from . import socket as _coop

if TYPE_CHECKING:
    from ..hub import Hub


def describe(peer: Any) -> str:
    """An address as log lines and error messages name it: ``host:port``,
    ``[v6]:port``, a Unix path, or "unix socket" for an unnamed one."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        return f"[{host}]:{peer[1]}" if ":" in str(host) else f"{host}:{peer[1]}"
    return str(peer) if peer else "unix socket"


def family_of(address: Any) -> int | None:
    """The address family of ``address`` as ``listen``/``connect`` take it: AF_UNIX
    for a path, AF_INET for ``("", port)``, the IP literal's family, or None for
    a hostname (to be resolved)."""
    if isinstance(address, (str, bytes, os.PathLike)):
        return _socket.AF_UNIX
    host = address[0]
    if not host:
        return _socket.AF_INET                # "" binds every IPv4 address
    return _coop.ip_family(host)              # None: a hostname, resolved off the hub


def resolve(address: Any, family: int | None) -> tuple[int, Any]:
    """``(family, sockaddr)`` to bind or dial: ``address`` as it is when ``family``
    is known, else the first answer of a name lookup made off the hub (raises
    ``socket.gaierror`` as ``getaddrinfo`` does)."""
    if family is not None:
        return family, address
    infos = _coop.getaddrinfo(address[0], address[1], 0, _socket.SOCK_STREAM)
    family, _type, _proto, _canon, sockaddr = infos[0]
    return family, sockaddr


def forget_on_its_thread(hub: Hub | None, fd: int) -> None:
    """``hub.forget_fd(fd)`` from a finalizer, if it runs on the hub's own thread.

    For an object dropped without ``close()`` whose socket is about to close
    the descriptor: the registration goes first, so a reused number starts
    clean. On another thread (the garbage collector runs anywhere) it does
    nothing: a hub is touched only from its own thread.
    """
    if hub is not None and fd >= 0 and hub.thread_id == threading.get_ident():
        hub.forget_fd(fd)
