"""The waker: how other OS threads, signals and Ctrl-C reach a hub asleep in its poll.

A ``Waker`` is a non-blocking pipe and a thread-safe FIFO. ``send(item)``
from any thread (or a signal handler) appends the item and, unless a byte is
already on its way, writes one; the hub watches ``fileno()`` and, when it is
readable, ``drain()`` moves the items into the hub's own FIFO. In the main
thread it is also the signal wakeup descriptor (``signal.set_wakeup_fd``),
and it installs the Ctrl-C handler while the hub has control, and tells
whether a Python signal handler could still wake someone.

It imports nothing of the runtime. Its two descriptors are closed by
``close()``, or by a finalizer when the waker is collected or at exit: a
thread that got a hub and ended without ``Hub.close()`` leaks nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from signal import getsignal as _getsignal
else:   # the C function: signal.getsignal's enum wrapping costs ~1 µs (typeshed has no _signal)
    from _signal import getsignal as _getsignal

__all__ = ["Waker"]

_SIGINT = int(signal.SIGINT)

#: The signals whose Python handlers count as "something could still wake a tasklet".
WATCHED_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGQUIT",
    "SIGWINCH", "SIGINT") if hasattr(signal, name))


def _close_pipe(read_fd: int, write_fd: int) -> None:
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


class Waker:
    """A thread-safe way into one hub: items sent from anywhere, drained on the hub.

    ``target`` is the deque ``drain()`` appends the items to, in the order
    sent; ``on_interrupt(exc)`` is called (in the main thread, from the
    signal handler) with a KeyboardInterrupt on Ctrl-C while the Ctrl-C
    handler is installed (``install_sigint``).
    """

    __slots__ = ("__weakref__", "_finalizer", "_old_wakeup_fd", "_on_interrupt", "_pending",
                 "_target", "_wake_r", "_wake_w", "items")

    def __init__(self, target: deque[Any], on_interrupt: Callable[[BaseException], None]) -> None:
        #: Items sent and not yet drained (the hub reads its length).
        self.items: deque[Any] = deque()
        self._target = target
        self._on_interrupt = on_interrupt
        self._wake_r, self._wake_w = os.pipe()
        self._finalizer = weakref.finalize(self, _close_pipe, self._wake_r, self._wake_w)
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pending = False
        self._old_wakeup_fd: int | None = None
        if threading.current_thread() is threading.main_thread():
            try:
                self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w,
                                                           warn_on_full_buffer=False)
            except (ValueError, OSError):
                self._old_wakeup_fd = None

    def fileno(self) -> int:
        """The descriptor to watch for reading; when readable, call ``drain()``."""
        return self._wake_r

    @property
    def signals(self) -> bool:
        """True if signals reach this waker (it is the main thread's wakeup fd)."""
        return self._old_wakeup_fd is not None

    def send(self, item: Any) -> None:
        """From any OS thread or a signal handler: queue ``item`` and wake the poll."""
        self.items.append(item)
        if not self._pending:
            self._pending = True
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass                         # full: it is awake anyway; closed: gone

    def drain(self) -> None:
        """On the hub, when ``fileno()`` is readable: move the items to ``target``.

        The order (read the pipe, then clear the flag, then move the items)
        keeps one invariant: while ``_pending`` is True, a byte is in the pipe
        or about to be written by the thread that set it.

        - A byte this read consumes was written before the read, hence set
          its flag before the read, hence before the flag is cleared below:
          the clear accounts for it. (Clearing first, as this method once
          did, let a thread set the flag and write between the clear and the
          read: the read ate that byte, the flag stayed True with the pipe
          empty, no later call wrote again, and the hub slept in its poll
          with callbacks stuck; issue 19, item 4.)
        - A thread that sees the flag True (set before the clear) skips its
          write; its item was appended before the clear, so it is in the
          deque when the loop below empties it.
        - A thread that sees the flag False (after the clear) sets it and
          writes; that byte arrives after the read, so it stays in the pipe and
          wakes the next poll, even if the loop below already moved its
          item (a spurious wake-up costs one empty drain).
        - Two threads that both see False both write: two bytes, one drain.
        A signal handler calling ``send`` in the middle of this method is the
        same as another thread at that point.
        """
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._pending = False
        items = self.items
        append = self._target.append
        while items:
            append(items.popleft())

    def install_sigint(self) -> Any:
        """While the hub has control, Ctrl-C goes to ``on_interrupt``: install
        that handler if Python's default one is in place (main thread only);
        return the handler to restore afterwards, or None."""
        if self._old_wakeup_fd is None or _getsignal(_SIGINT) is not \
                signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, self._on_sigint)
        return signal.default_int_handler

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Raised to the caller at the end of this iteration, whether or not it
        # polls; a poll in progress has already been woken by the wakeup fd.
        self._on_interrupt(KeyboardInterrupt())

    def signal_handlers_installed(self, host_handlers: tuple[Any, ...] = ()) -> bool:
        """True if a Python signal handler (not ours, nor one of ``host_handlers``)
        could still wake someone; always False outside the main thread."""
        if self._old_wakeup_fd is None:
            return False
        ours = (signal.default_int_handler, self._on_sigint, *host_handlers)
        for signum in WATCHED_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler) and handler not in ours:
                return True
        return False

    def close(self) -> None:
        """Give the signal wakeup fd back, close both descriptors; idempotent.

        From the waker's own thread (``signal.set_wakeup_fd`` is the main
        thread's); a finalizer run elsewhere only closes the descriptors.
        """
        if self._old_wakeup_fd is not None and \
                threading.current_thread() is threading.main_thread():
            try:
                signal.set_wakeup_fd(self._old_wakeup_fd)
            except (ValueError, OSError):
                pass
            self._old_wakeup_fd = None
        self._finalizer()
