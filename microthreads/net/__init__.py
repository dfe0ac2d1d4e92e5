"""Cooperative networking: ``import microthreads.net``.

Bytes in, bytes out: text and its encoding belong to the application.

- ``listen(address)`` -> ``Listener``; ``Listener.accept()`` -> ``Connection``
- ``connect(address, timeout=None)`` -> ``Connection``
- ``Connection``: ``recv``, ``recv_line``, iteration over lines, ``send``,
  ``sendall``, ``write`` (bounded queued output), ``flush``, ``close``,
  ``wait_closed``, ``peer``
- ``StreamServer(address, handler)``: one tasklet per connection
- ``NetworkError``, ``LineTooLong``
- ``microthreads.net.socket``: a cooperative drop-in for the stdlib module
"""

from . import socket
from .errors import LineTooLong, NetworkError
from .server import Listener, StreamServer, connect, listen
from .stream import Connection

__all__ = ["Connection", "LineTooLong", "Listener", "NetworkError", "StreamServer", "connect",
           "listen", "socket"]
