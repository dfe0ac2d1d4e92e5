"""Structured concurrency: Group (members end before the block does) and Pool."""

from __future__ import annotations

import logging

from .errors import TaskletExit
from .sync import Event, Semaphore
from .tasklet import killall, spawn

log = logging.getLogger("microthreads")


class Group:
    """A set of tasklets that end together.

    ::

        with Group() as g:
            g.spawn(fetch, a)
            g.spawn(fetch, b)
        # here every member has ended

    Leaving the ``with`` block waits until every member has ended. If a
    member raises, the other members are killed and that first error is
    raised from the ``with`` as it was (later errors are logged). If the body
    raises, the members are killed and the body's error propagates. Members'
    errors are not logged at their death while the group is in a ``with``
    block: the group re-raises them. The body itself is not interrupted by a
    member's failure; the error surfaces when it reaches the end of the block.

    Outside a ``with`` block a Group is a plain set of tasklets with
    ``join()`` and ``kill()``.
    """

    def __init__(self):
        self._members = {}            # live members, in spawn order
        self._entered = False
        self._error = None
        self._idle = Event()
        self._idle.set()

    def spawn(self, fn, *args, **kwargs):
        """Start ``fn(*args, **kwargs)`` in a new member tasklet; returns it."""
        return self.add(spawn(fn, *args, **kwargs))

    def add(self, tasklet):
        """Make an existing, live tasklet a member; returns it."""
        if tasklet.dead:
            return tasklet
        if tasklet._group is not None and tasklet._group is not self:
            raise ValueError(f"{tasklet!r} already belongs to another group")
        tasklet._group = self
        self._members[tasklet] = None
        self._idle.clear()
        return tasklet

    def _member_ended(self, tasklet):
        self._members.pop(tasklet, None)
        exc = tasklet._exception
        if exc is not None and self._entered:
            if self._error is None:
                self._error = exc
                killall(list(self._members), block=False)
            else:
                log.error("Tasklet %r of a group failed after the group's first error:",
                          tasklet.name, exc_info=(type(exc), exc, exc.__traceback__))
        if not self._members:
            self._idle.set()

    def __len__(self):
        return len(self._members)

    def __iter__(self):
        return iter(list(self._members))

    def __contains__(self, tasklet):
        return tasklet in self._members

    def join(self, timeout=None, raise_error=False) -> bool:
        """Wait until every member has ended; False if ``timeout`` passed first.

        With ``raise_error``, raise the first member error (in a ``with``).
        """
        done = self._idle.wait(timeout)
        if raise_error and self._error is not None:
            raise self._error
        return done

    def kill(self, exc=TaskletExit, block=True, timeout=None):
        """Kill every member; with ``block``, wait (at most ``timeout``) for them."""
        killall(list(self._members), exc, block=block, timeout=timeout)

    def __enter__(self):
        self._entered = True
        return self

    def __exit__(self, typ, value, tb):
        try:
            if value is not None:
                self.kill()
                return False
            self._idle.wait()
        except BaseException:
            self.kill()
            raise
        finally:
            self._entered = False
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return False

    def __repr__(self):
        return f"<{type(self).__name__} members={len(self._members)}>"


class Pool(Group):
    """A Group that runs at most ``size`` members at once.

    ``spawn`` waits (cooperatively, in arrival order) while the pool is full.
    """

    def __init__(self, size):
        if size < 1:
            raise ValueError("Pool size must be at least 1")
        super().__init__()
        self.size = size
        self._slots = Semaphore(size)

    def spawn(self, fn, *args, **kwargs):
        """Wait for a free slot, then start a member; returns the tasklet."""
        self._slots.acquire()
        return Group.add(self, spawn(fn, *args, **kwargs))

    def add(self, tasklet):
        """Wait for a free slot, then make a live tasklet a member; returns it."""
        self._slots.acquire()
        if tasklet.dead:
            self._slots.release()
            return tasklet
        return Group.add(self, tasklet)

    def _member_ended(self, tasklet):
        super()._member_ended(tasklet)
        self._slots.release()

    def free_count(self) -> int:
        """Slots free now."""
        return self._slots.value

    def full(self) -> bool:
        return self._slots.value == 0
