"""Shared helpers for the microthreads.net tests: a bounded run, connected pairs."""

import resource
import socket
import struct

import pytest

import microthreads
from microthreads import net

#: No single net test may take longer than this (real or virtual seconds).
LIMIT = 10


def run(main, *args, seconds=LIMIT):
    """``microthreads.run(main)`` under a time limit: a bug fails, it does not hang."""
    return microthreads.run(microthreads.with_timeout, seconds, main, *args)


def connected_pair(client_options=None, **server_options):
    """``(client, server)``: two Connections over TCP on 127.0.0.1 (call in a tasklet).

    ``server_options`` (``max_output``, ``on_full``, ``timeout``, ...) apply to
    the accepted side, ``client_options`` to the dialling side.
    """
    with net.listen(("127.0.0.1", 0), **server_options) as listener:
        client = net.connect(listener.address, **(client_options or {}))
        server = listener.accept()
    return client, server


def connection_and_socket(**options):
    """``(conn, raw)``: an accepted Connection and the plain stdlib socket at its other end.

    ``raw`` is non-blocking: read it with ``received(raw)``.
    """
    with net.listen(("127.0.0.1", 0), **options) as listener:
        raw = socket.create_connection(listener.address, timeout=LIMIT)  # loopback: at once
        conn = listener.accept()
    raw.setblocking(False)
    return conn, raw


def received(raw, size=1 << 20):
    """What a non-blocking stdlib socket holds right now (b"" if nothing)."""
    try:
        return raw.recv(size)
    except BlockingIOError:
        return b""


def reset(raw):
    """Close a stdlib socket with SO_LINGER 0: the peer gets a reset, not an EOF."""
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def fill_until_blocked(raw, chunk=b"x" * 65536):
    """Write to a non-blocking stdlib socket until the kernel takes no more; the total."""
    total = 0
    while True:
        try:
            total += raw.send(chunk)
        except BlockingIOError:
            return total


def need_descriptors(n):
    """Raise the soft RLIMIT_NOFILE to at least ``n`` (toward the hard limit), or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} descriptors; RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def socketpair_connections(buffer=None, **options):
    """``(a, b)``: Connections over a Unix socketpair; ``options`` apply to ``a``.

    ``buffer`` caps the kernel's send buffer of ``a``, so a few hundred
    kilobytes are enough to fill it.
    """
    a, b = socket.socketpair()
    if buffer:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    return net.Connection(a, **options), net.Connection(b)
