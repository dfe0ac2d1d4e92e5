"""Networking errors: one for everything the peer does, one for overlong lines."""

from __future__ import annotations


class NetworkError(ConnectionError):
    """The peer went away or the connection is unusable.

    Raised for a reset, a broken pipe, use after ``close()``, a connection
    closed while a tasklet waited on it, an output backlog over its bound
    under the "close" policy, and EOF where a whole message was expected.
    Subclasses ``ConnectionError`` (so ``OSError``).
    """


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
