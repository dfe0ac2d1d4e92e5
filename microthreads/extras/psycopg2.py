"""psycopg2 on the hub: a wait callback that parks the tasklet, not the thread.

::

    from microthreads.extras import psycopg2 as green
    green.make_green()           # once, before the first connect
    import psycopg2              # connect() and execute() now park the tasklet

psycopg2 is written in C over libpq and does its own socket I/O, so patching
cannot reach it. It offers one hook instead (``set_wait_callback``, the one
psycogreen uses for gevent): with a callback installed, every connection
runs libpq asynchronously, and whenever libpq would block psycopg2 calls the
callback, which here waits for the connection's socket through the hub.
Works without ``monkey.patch_all()``, and from any thread: where no hub runs
(before ``microthreads.run``, in a plain thread) that thread's hub serves
the wait, which then behaves as a blocking call.

What it cannot change: a server-side cancel (``conn.cancel()``) and
``psycopg2.connect``'s name lookup of a host name (give an address, or use
``run_in_thread``) still block; a connection is used by one tasklet at a
time, as psycopg2 asks of threads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..hub import get_hub

__all__ = ["make_green", "wait_callback"]


def make_green() -> None:
    """Install ``wait_callback`` as psycopg2's wait callback, for the whole process.

    Idempotent. Connections made before the call stay synchronous (psycopg2
    decides at connect time). Raises ImportError without psycopg2.
    """
    from psycopg2 import extensions
    extensions.set_wait_callback(wait_callback)


def wait_callback(conn: Any) -> None:
    """Drive ``conn.poll()`` until libpq is done, parking the calling tasklet on
    the connection's socket whenever libpq says it must read or write.

    Raises what ``poll()`` raises (the query's error, a lost connection), and
    ``psycopg2.OperationalError`` for a state psycopg2 never returns. If the
    wait is interrupted (a ``microthreads.Timeout``, a kill, Ctrl-C), the
    query is cancelled on the server and the exception raised; psycopg2 then
    closes the connection, as it does whenever its callback fails.
    """
    from psycopg2 import OperationalError, extensions
    hub = get_hub()
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            wait = hub.wait_readable
        elif state == extensions.POLL_WRITE:
            wait = hub.wait_writable
        else:
            raise OperationalError(f"psycopg2 poll() returned an unknown state {state!r}")
        fd = conn.fileno()             # libpq may change sockets while it connects
        try:
            wait(fd)
        except BaseException:
            with contextlib.suppress(Exception):   # the interruption is what to report
                conn.cancel()
            raise
        finally:
            # libpq closes the socket behind the hub's back: leave nothing
            # registered that a later descriptor of the same number would inherit
            hub.forget_fd(fd)
