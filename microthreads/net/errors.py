"""Networking errors: one for everything the peer does, one for overlong lines."""

from __future__ import annotations

import socket


class NetworkError(ConnectionError):
    """The peer went away or the connection is unusable.

    Raised for a reset, a broken pipe, use after ``close()``, a connection
    closed while a tasklet waited on it, an output backlog over its bound
    under the "close" policy, and EOF where a whole message was expected.
    Subclasses ``ConnectionError`` (so ``OSError``).
    """


class NotTLSError(NetworkError):
    """A client on a TLS port that does not speak TLS (a plaintext client).

    Raised instead of the handshake's failure when the client's first bytes
    are not a TLS record (a ClientHello begins with byte 0x16), or when it
    sent nothing within the server's ``hello_timeout`` (``nc`` and
    ``telnet`` wait for the server to speak first). ``first_bytes`` holds
    what it had sent, unread (``b""`` for none). ``answer(data)`` sends
    ``data`` to it in the clear, as long as its connection is open (in a
    ``StreamServer``'s ``on_handshake_error``): a line saying how to connect.
    """

    def __init__(self, message: str, first_bytes: bytes, sock: socket.socket) -> None:
        super().__init__(message)
        self.errno = None
        self.first_bytes = first_bytes
        self._sock = sock

    def answer(self, data: bytes) -> bool:
        """Send ``data`` in the clear, without waiting; True if all of it went.

        What the client had sent is read and dropped (as much as has come),
        so that closing the connection after this ends it with a FIN, not a
        reset that could lose ``data`` on the way. Never raises: a client
        already gone, or a socket buffer too full for ``data`` (only a long
        answer can fill a fresh connection's), is False.
        """
        raw = socket.socket                     # its own methods: under the TLS layer
        try:
            sent = raw.send(self._sock, data)
            for _ in range(16):
                if not raw.recv(self._sock, 65536):
                    break
        except OSError:
            return False
        return sent == len(data)


class LineTooLong(ValueError):
    """A line passed the limit given to ``recv_line``.

    The bytes of that line read so far are dropped, and so is the rest of it
    up to its newline: the next ``recv_line`` returns the line after it.
    """


def network_error(message: str, code: int | None = None) -> NetworkError:
    """The one way the package makes a NetworkError.

    ``str()`` is ``message`` (which names the peer), and ``errno`` is the
    operating system's code when there was one (None for "connection
    closed", an output backlog or an early EOF).
    """
    error = NetworkError(message)
    error.errno = code
    return error
