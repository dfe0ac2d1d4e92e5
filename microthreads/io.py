"""The descriptor registry: who waits on which file descriptor, for one hub.

``IOManager`` keeps one ``FdWatch`` per descriptor (``poller.py``), a parked
greenlet or a persistent callback per side, and the count of them (the hub's
loop reads ``waiters``: a watched descriptor keeps ``run()`` going). The hub
owns one and offers its verbs as its own: ``hub.wait_readable`` is
``IOManager.wait_readable``, likewise ``wait_writable``, ``add_reader``,
``remove_reader``, ``add_writer``, ``remove_writer``, ``forget_fd`` and
``close_fd``. Phase 3 of a loop turn is ``dispatch``.

It imports nothing of the runtime: it parks and resumes through the hub's
verbs (``park``, ``resume``, ``schedule_throw``, ``wait_number``).
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Callable

from greenlet import getcurrent

from .poller import NO_CALLBACKS, READING, SIDES, VERB, WAIT_NUMBER, WRITING, FdWatch, make_poller
from .timers import TIMED_OUT

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("microthreads")

__all__ = ["IOManager"]


class IOManager:
    """The descriptors one hub waits on, and the poller that watches them.

    One reader and one writer at a time per descriptor: a second raises
    RuntimeError naming the first. A descriptor stays registered with the
    poller between waits; ``forget`` (or ``close_fd``) before closing it.
    """

    __slots__ = ("_fds", "_hub", "_hub_greenlet", "_park", "_resume", "_switch",
                 "_wait_number", "poller", "waiters")

    def __init__(self, hub: Hub) -> None:
        #: The poller (epoll or a selector); the hub polls it in phase 3.
        self.poller = make_poller()
        #: Parked greenlets and callbacks on descriptors: work that keeps run() going.
        self.waiters = 0
        self._fds: dict[int, FdWatch] = {}
        self._hub = hub
        self._hub_greenlet = hub.greenlet
        self._switch = hub.greenlet.switch
        self._park = hub.park
        self._resume = hub.resume
        self._wait_number = hub.wait_number

    def __len__(self) -> int:
        """The number of descriptors registered."""
        return len(self._fds)

    def wait_readable(self, fd: int, timeout: float | None = None) -> bool:
        """Park until ``fd`` is readable (or has an error); False on timeout.

        The descriptor stays registered after the wait (its mask changes only
        when it must). One reader at a time: a second raises RuntimeError.
        """
        return self._wait(fd, READING, timeout)

    def wait_writable(self, fd: int, timeout: float | None = None) -> bool:
        """Park until ``fd`` is writable (or has an error); False on timeout.

        One writer at a time: a second raises RuntimeError.
        """
        return self._wait(fd, WRITING, timeout)

    def _wait(self, fd: int, side: int, timeout: float | None) -> bool:
        watch = self._fds.get(fd) or self._watch(fd)
        if watch.waiter[side] is not None or watch.callback[side] is not None:
            self._check_free(watch, side)     # raises (inline: waits are the hot path)
        current: Any = getcurrent()
        try:
            seq = current._seq                # a tasklet's runner has its wait state
        except AttributeError:
            seq = self._wait_number(current)  # a greenlet new to the hub gets it there
        bit = SIDES[side][1]
        if not watch.mask & bit:
            self.poller.set_mask(watch, watch.mask | bit)
        watch.waiter[side] = current
        watch.waiter[WAIT_NUMBER + side] = seq
        self.waiters += 1
        try:
            if timeout is None and current.parent is self._hub_greenlet:
                self._switch()                # a tasklet, no time limit: the fast path
                return True
            return self._park(timeout) is not TIMED_OUT
        finally:
            self.waiters -= 1
            if watch.waiter[side] is current:
                watch.waiter[side] = None

    def dispatch(self, events: list[tuple[int, int]]) -> None:
        """Phase 3: wake each side of each ready descriptor; narrow what nobody wants."""
        fds = self._fds
        sides = self.poller.sides
        readable = self.poller.readable
        resume = self._resume
        wait_number = WAIT_NUMBER             # locals, looked up once per dispatch
        reader_number = WAIT_NUMBER + READING
        for fd, flags in events:
            watch = fds.get(fd)
            if watch is None:
                continue
            if flags == readable:             # the commonest event: readable alone ...
                waiter = watch.waiter[READING]
                if waiter is not None:        # ... for a parked reader: what the loop
                    watch.waiter[READING] = None   # below does, without its steps
                    resume(waiter, watch.waiter[reader_number], None)
                    continue
            fired = unwanted = 0
            for side, wake_flags, bit in sides:
                if flags & wake_flags:
                    fired |= bit
                    waiter = watch.waiter[side]
                    if waiter is not None:
                        watch.waiter[side] = None
                        resume(waiter, watch.waiter[side + wait_number], None)
                    elif (callback := watch.callback[side]) is not None:
                        try:
                            callback()
                        except Exception:
                            log.exception("microthreads: callback %r failed", callback)
                    else:
                        unwanted |= bit
            if unwanted & watch.mask and fds.get(fd) is watch:
                self.poller.set_mask(watch, watch.mask & ~unwanted, hangup=unwanted == fired)

    def add_reader(self, fd: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the hub whenever ``fd`` is readable, until removed.

        RuntimeError if something already waits to read ``fd``.
        """
        self._add_callback(fd, READING, callback)

    def add_writer(self, fd: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the hub whenever ``fd`` is writable, until removed.

        RuntimeError if something already waits to write ``fd``.
        """
        self._add_callback(fd, WRITING, callback)

    def remove_reader(self, fd: int) -> None:
        """Take back ``add_reader(fd, ...)``; nothing if there is none."""
        self._remove_callback(fd, READING)

    def remove_writer(self, fd: int) -> None:
        """Take back ``add_writer(fd, ...)``; nothing if there is none."""
        self._remove_callback(fd, WRITING)

    def _add_callback(self, fd: int, side: int, callback: Callable[[], Any]) -> None:
        watch = self._fds.get(fd) or self._watch(fd)
        self._check_free(watch, side)
        watch.set_callback(side, callback)
        self.waiters += 1
        self.poller.set_mask(watch, watch.mask | SIDES[side][1])

    def _remove_callback(self, fd: int, side: int) -> None:
        watch = self._fds.get(fd)
        if watch is not None and watch.callback[side] is not None:
            watch.set_callback(side, None)
            self.waiters -= 1

    def forget_fd(self, fd: int) -> list[Any]:
        """Unregister ``fd`` before it is closed; return the greenlets waiting on it.

        Callbacks added with add_reader/add_writer are dropped. Most callers
        want ``close_fd()``, which also wakes those greenlets; this is for a
        descriptor handed elsewhere (``socket.detach()``) or a finalizer.
        """
        watch = self._fds.pop(fd, None)
        if watch is None:
            return []
        self.poller.forget(watch)
        waiters = [g for g in watch.waiter[:WAIT_NUMBER] if g is not None]
        self.waiters -= sum(callback is not None for callback in watch.callback)
        watch.waiter = [None, None, 0, 0]
        watch.callback = NO_CALLBACKS
        return waiters

    def close_fd(self, fd: int, exc: BaseException) -> None:
        """Forget ``fd`` and raise ``exc`` in every greenlet waiting on it (trio's
        ``notify_closing``).

        Call it just before closing the descriptor, with no wait in between: a
        reused descriptor number then never inherits a stale registration,
        and every waiter (but the caller) gets ``exc`` at its wait in the
        next iteration: the first waiter ``exc`` itself, a second (a reader
        and a writer) a ``copy.copy`` of it, so their tracebacks never mix.
        """
        current = getcurrent()
        for waiter in self.forget_fd(fd):
            if waiter is not current:
                self._hub.schedule_throw(waiter, exc)
                exc = copy.copy(exc)

    def close(self) -> None:
        """Close the poller; the registry is empty afterwards."""
        self._fds.clear()
        self.waiters = 0
        self.poller.close()

    def _watch(self, fd: int) -> FdWatch:
        watch = self._fds[fd] = FdWatch(fd)
        return watch

    @staticmethod
    def _check_free(watch: FdWatch, side: int) -> None:
        taken = watch.waiter[side] or watch.callback[side]
        if taken is not None:
            verb = VERB[side]
            raise RuntimeError(f"fd {watch.fd}: {taken!r} is already waiting to {verb} it"
                               f" (one {verb}er at a time)")

