"""Cooperative networking: ``import microthreads.net``.

Bytes in, bytes out: text and its encoding belong to the application.

- ``listen(address, ssl=None)`` -> ``Listener``; ``Listener.accept()`` -> ``Connection``
- ``connect(address, timeout=None, ssl=None, server_hostname=None)`` -> ``Connection``
- ``Connection``: ``recv``, ``recv_line``, iteration over lines, ``send``,
  ``sendall``, ``write`` (bounded queued output), ``flush``, ``close``,
  ``wait_closed``, ``peer``
- ``StreamServer(address, handler, ssl=None)``: one tasklet per connection
- ``DatagramServer(address, handler)``: UDP, one tasklet per datagram
- ``NetworkError``, ``NotTLSError`` (a plaintext client on a TLS port), ``LineTooLong``
- ``microthreads.net.socket``: a cooperative drop-in for the stdlib module
- ``microthreads.net.ssl``: the same for the stdlib ``ssl`` module (TLS)

``ssl=context`` (an ``ssl.SSLContext``) makes a Connection TLS; it then
behaves exactly as over TCP.
"""

from . import socket, ssl
from .datagram import DatagramServer
from .errors import LineTooLong, NetworkError, NotTLSError
from .server import Listener, StreamServer, connect, listen
from .stream import Connection

__all__ = ["Connection", "DatagramServer", "LineTooLong", "Listener", "NetworkError",
           "NotTLSError", "StreamServer", "connect", "listen", "socket", "ssl"]
