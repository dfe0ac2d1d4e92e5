"""The hub's pollers: direct ``select.epoll``, or a ``selectors`` selector elsewhere.

A poller keeps one ``FdWatch`` per descriptor the hub waits on and tells the
kernel what to watch (``set_mask``) only when that changes: a descriptor stays
registered between waits. Level-triggered throughout: an event that nobody
consumes is reported again at the next poll.

Some facts about epoll, and what this module does about each
--------------------------------------------------------------

epoll registers the *open file description*, not the descriptor number: the
kernel keys its interest list on (number, file) as looked up when
``epoll_ctl`` was called, and drops an entry only when every descriptor of
that file is closed. Four hazards follow.

- **A descriptor closed without telling us.** ``close()`` removes the entry
  when it was the file's last descriptor, silently. Our ``FdWatch`` still
  says "registered", so the next ``modify`` fails with ENOENT and an
  ``unregister`` with ENOENT or EBADF. ``set_mask`` takes ENOENT as "the
  kernel forgot it" and registers anew when something is wanted, and EBADF on
  a removal as done. The supported order is the hub's ``close_fd()`` (forget,
  wake the waiters) before closing, which never meets this.
- **A descriptor number reused.** Closed behind our back and the number
  handed to a new socket: our watch and the kernel disagree in the other
  direction, and ``register`` fails with EEXIST (a duplicate of the old file
  still open keeps the old entry alive). ``set_mask`` then ``modify``\\ s, so
  the new file is what is watched. A wake-up on the old number that arrives
  afterwards only makes a waiter retry its system call and get EAGAIN: every
  wait in this package is followed by a non-blocking attempt, never trusted.
- **Regular files.** epoll refuses them with EPERM (they are always
  "ready"). That is raised as an OSError that says so and points to
  ``run_in_thread``: file I/O must not be polled.
- **The hang-up spin.** EPOLLHUP and EPOLLERR are reported whether asked for
  or not. A descriptor whose peer hung up while nobody waits on it would wake
  every poll forever, a busy loop at 100% CPU. When an event arrives that no
  waiter wants, the hub narrows the mask; when nothing at all is wanted (or
  only a hang-up came), the descriptor leaves the poller until it is waited
  on again (``set_mask(..., hangup=True)``).

The ``selectors`` fallback meets the same cases through the selector's own
bookkeeping (KeyError for an unknown descriptor, ValueError for a closed
one); ``set_mask`` and ``forget`` treat both pollers alike.
"""

from __future__ import annotations

import errno
import selectors
from typing import Any, Callable

from .env import env_choice

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

#: The two sides of a descriptor, as indexes into ``FdWatch`` lists.
READING, WRITING = 0, 1
#: (side, its READ/WRITE bit), by side.
SIDES = ((READING, READ), (WRITING, WRITE))
#: The verb of each side, for error messages.
VERB = ("read", "write")
#: ``FdWatch.waiter[WAIT_NUMBER + side]``: the number of the wait of the greenlet
#: parked on ``side`` (one list for both: a second list is 72 B of every idle connection).
WAIT_NUMBER = 2
#: ``FdWatch.callback`` until a callback is set: most descriptors never get
#: one, and a list of their own is 72 B each (an idle connection's memory).
NO_CALLBACKS: tuple[None, None] = (None, None)


class FdWatch:
    """What waits on one file descriptor: at most one reader, one writer.

    A waiter is either a parked greenlet (with the number of its wait) or a
    persistent callback. ``mask`` is what the poller is told to watch; it
    grows when a waiter needs it and shrinks only when an event arrives that
    nobody waits for. ``callback`` is ``NO_CALLBACKS`` until ``set_callback``.
    """

    __slots__ = ("callback", "fd", "mask", "registered", "waiter")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.mask = 0
        self.registered = False
        # Indexed by side, READING (0) or WRITING (1): a parked greenlet, and at
        # WAIT_NUMBER + side the number of its wait.
        self.waiter: list[Any] = [None, None, 0, 0]
        self.callback: list[Callable[[], Any] | None] | tuple[None, None] = NO_CALLBACKS

    def set_callback(self, side: int, callback: Callable[[], Any] | None) -> None:
        """The persistent callback of ``side`` (None: none)."""
        callbacks = self.callback
        if isinstance(callbacks, tuple):
            if callback is None:
                return
            callbacks = self.callback = [None, None]
        callbacks[side] = callback

    def busy(self) -> bool:
        """True while a greenlet or a callback waits on either side."""
        callbacks = self.callback
        waiter = self.waiter
        return waiter[0] is not None or waiter[1] is not None or callbacks[0] is not None or \
            callbacks[1] is not None


class Poller:
    """What both pollers share: the hazard handling of ``set_mask`` and ``forget``."""

    #: (side, the event flags that wake it, its READ/WRITE bit), per side.
    sides: tuple[tuple[int, int, int], ...] = ((READING, READ, READ), (WRITING, WRITE, WRITE))
    #: The flags of the commonest event, "readable" and nothing else: the hub's
    #: dispatch hands it straight to a waiting reader.
    readable: int = READ

    def fileno(self) -> int:
        """The poller's own descriptor (the epoll or selector's), readable when a
        watched descriptor is ready; what ``Hub.fileno()`` hands a host loop."""
        raise NotImplementedError

    def register(self, fd: int, mask: int) -> None:
        """Start watching ``fd`` for ``mask`` (READ|WRITE bits). OSError from the
        kernel as it is (EBADF, EEXIST, EPERM for a regular file under epoll):
        ``set_mask``, the hub's one caller, decides what each means."""
        raise NotImplementedError

    def modify(self, fd: int, mask: int) -> None:
        """Change what ``fd`` is watched for; OSError (ENOENT, EBADF) as ``register``."""
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; OSError (ENOENT, EBADF) if the kernel has no such
        registration, KeyError from a selector that never had it."""
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """[(fd, flags)] of the ready descriptors, waiting at most ``timeout``
        seconds (None: until one is ready). Flags are tested against ``sides``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the poller's descriptor (idempotent); the hub calls it as it closes."""
        raise NotImplementedError

    def set_mask(self, watch: FdWatch, mask: int, hangup: bool = False) -> None:
        """Tell the kernel to watch ``mask`` (READ|WRITE bits) on ``watch.fd``.

        Unregisters when nothing is wanted, or when ``hangup`` (an event came
        that nobody waits for) and the descriptor is idle: see "the hang-up
        spin" above. Survives a descriptor closed or reused behind our back.
        Raises OSError for a regular file (EPERM), and any other error of
        the kernel's as it is.
        """
        fd = watch.fd
        try:
            if mask == 0 or (hangup and not watch.busy()):
                if watch.registered:
                    self.unregister(fd)
                    watch.registered = False
                mask = 0
            elif watch.registered:
                self.modify(fd, mask)
            else:
                self.register(fd, mask)
                watch.registered = True
        except FileNotFoundError:            # closed behind our back (no close_fd) ...
            watch.registered = False
            if mask:                         # ... and the number reused: watch the new file
                self.register(fd, mask)
                watch.registered = True
        except OSError as exc:
            if exc.errno == errno.EBADF and mask == 0:
                watch.registered = False     # closed behind our back: the kernel forgot it
            elif exc.errno == errno.EEXIST:
                self.modify(fd, mask)
                watch.registered = True
            elif exc.errno == errno.EPERM:   # a regular file: always ready
                raise OSError(exc.errno, f"fd {fd} cannot be polled (a regular file?);"
                              " use run_in_thread for file I/O") from None
            else:
                raise
        watch.mask = mask

    def forget(self, watch: FdWatch) -> None:
        """Unregister ``watch.fd`` if registered; a descriptor already gone is fine."""
        if watch.registered:
            watch.registered = False
            try:
                self.unregister(watch.fd)
            except (OSError, KeyError, ValueError):
                pass


class EpollPoller(Poller):
    """Direct ``select.epoll``: one registration per descriptor for its life."""

    def __init__(self) -> None:
        import select
        self._epoll = select.epoll()
        self._in = select.EPOLLIN | select.EPOLLPRI
        self._out = select.EPOLLOUT
        self._err = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
        self._rdhup = select.EPOLLRDHUP
        self.readable = select.EPOLLIN
        # An error or a hang-up wakes both sides, so the next system call reports it.
        self.sides = ((READING, self._in | self._err, READ),
                      (WRITING, self._out | self._err, WRITE))

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _flags(self, mask: int) -> int:
        flags = 0
        if mask & READ:
            flags |= self._in | self._rdhup
        if mask & WRITE:
            flags |= self._out
        return flags

    def register(self, fd: int, mask: int) -> None:
        self._epoll.register(fd, self._flags(mask))

    def modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, self._flags(mask))

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """[(fd, epoll flags)], as epoll gives them (no copy per event)."""
        try:
            return self._epoll.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return []

    def close(self) -> None:
        self._epoll.close()


class SelectorPoller(Poller):
    """The portable fallback over ``selectors.DefaultSelector``."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def fileno(self) -> int:
        return self._selector.fileno()

    def register(self, fd: int, mask: int) -> None:
        self._selector.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._selector.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """[(fd, READ|WRITE bits)]."""
        return [(key.fd, mask) for key, mask in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


def make_poller() -> Poller:
    """epoll where there is one; ``MICROTHREADS_POLLER=selectors`` forces the
    fallback, ``epoll`` insists on epoll; ValueError names
    any other value."""
    kind = env_choice("MICROTHREADS_POLLER", ("epoll", "selectors"))
    if kind == "selectors":
        return SelectorPoller()
    if kind == "epoll":
        return EpollPoller()
    try:
        return EpollPoller()
    except (ImportError, AttributeError):
        return SelectorPoller()
