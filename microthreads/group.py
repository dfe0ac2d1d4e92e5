"""Structured concurrency: Group (members end before the block does) and Pool."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError
from contextlib import closing
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from .errors import TaskletExit
from .hub import get_hub
from .result import AsyncResult
from .sync import Event, Queue, Semaphore
from .tasklet import Tasklet, killall, spawn

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Literal

    from typing_extensions import Self

T = TypeVar("T")

log = logging.getLogger("microthreads")

#: The group each member tasklet belongs to (one at most).
_OWNERS: WeakKeyDictionary[Tasklet, Group] = WeakKeyDictionary()


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

    def __init__(self) -> None:
        self._members: dict[Tasklet, None] = {}     # live members, in spawn order
        self._entered = False
        self._error: BaseException | None = None
        self._idle = Event()
        self._idle.set()

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tasklet:
        """Start ``fn(*args, **kwargs)`` in a new member tasklet; returns it."""
        return self.add(spawn(fn, *args, **kwargs))

    def add(self, tasklet: Tasklet) -> Tasklet:
        """Make an existing, live tasklet a member; returns it."""
        if tasklet.dead:
            return tasklet
        owner = _OWNERS.get(tasklet)
        if owner is None:
            _OWNERS[tasklet] = self
            tasklet.link(self._member_ended)     # counts as joining: the group reports
        elif owner is not self:
            raise ValueError(f"{tasklet!r} already belongs to another group")
        self._members[tasklet] = None
        self._idle.clear()
        return tasklet

    def _member_ended(self, tasklet: Tasklet) -> None:
        """A member's link: it has ended. In a ``with`` block the first error
        is kept for the block; outside one an error is reported as a tasklet
        nobody joined."""
        self._members.pop(tasklet, None)
        _OWNERS.pop(tasklet, None)
        exc = tasklet.exception
        if exc is not None and not self._entered:
            get_hub().report_error(tasklet, exc)
        elif exc is not None:
            if self._error is None:
                self._error = exc
                killall(list(self._members), block=False)
            else:
                log.error("Tasklet %r of a group failed after the group's first error:",
                          tasklet.name, exc_info=(type(exc), exc, exc.__traceback__))
        if not self._members:
            self._idle.set()

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Tasklet]:
        return iter(list(self._members))

    def __contains__(self, tasklet: object) -> bool:
        return tasklet in self._members

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until every member has ended; False if ``timeout`` passed first.

        With ``raise_error``, raise the first member error (in a ``with``).
        """
        done = self._idle.wait(timeout)
        if raise_error and self._error is not None:
            raise self._error
        return done

    def kill(self, exc: type[BaseException] | BaseException = TaskletExit, block: bool = True,
             timeout: float | None = None) -> None:
        """Kill every member; with ``block``, wait (at most ``timeout``) for them."""
        killall(list(self._members), exc, block=block, timeout=timeout)

    def __enter__(self) -> Self:
        self._entered = True
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} members={len(self._members)}>"


class Pool(Group):
    """A Group that runs at most ``size`` members at once.

    ``spawn`` waits (cooperatively, in arrival order) while the pool is full.
    The ``multiprocessing.pool``/gevent verbs run functions in members and
    hand back their results: ``apply``, ``apply_async`` (an ``AsyncResult``),
    ``map``, ``imap`` (ordered, lazy), ``imap_unordered``. A function's
    exception is caught in its member (it is not logged, and it does not fail
    a ``with Pool()`` block) and raised where its result is read. A member
    killed before its function returned leaves ``CancelledError`` there.
    Calling these from a member of the same pool while it is full waits for
    a slot that only that member could free: a deadlock (``DeadlockError``).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("Pool size must be at least 1")
        super().__init__()
        self.size = size
        self._slots = Semaphore(size)

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tasklet:
        """Wait for a free slot, then start a member; returns the tasklet."""
        self._slots.acquire()
        return Group.add(self, spawn(fn, *args, **kwargs))

    def add(self, tasklet: Tasklet) -> Tasklet:
        """Wait for a free slot, then make a live tasklet a member; returns it."""
        self._slots.acquire()
        if tasklet.dead:
            self._slots.release()
            return tasklet
        return Group.add(self, tasklet)

    def _member_ended(self, tasklet: Tasklet) -> None:
        super()._member_ended(tasklet)
        self._slots.release()

    def free_count(self) -> int:
        """Slots free now."""
        return self._slots.value

    def full(self) -> bool:
        """True while every slot is taken (a spawn would wait)."""
        return self._slots.value == 0

    # ------------------------------------------------- results of functions

    def apply_async(self, fn: Callable[..., T], args: Iterable[Any] = (),
                    kwds: Mapping[str, Any] | None = None) -> AsyncResult[T]:
        """Run ``fn(*args, **kwds)`` in a member; return its ``AsyncResult`` at once.

        Waits for a free slot first (back-pressure: a full pool makes the
        caller wait, in arrival order). The result holds fn's return value or
        the ``Exception`` it raised; ``CancelledError`` if the member is killed
        first (``Pool.kill()``, or ``kill()`` on the member).
        """
        return self._start(fn, tuple(args), kwds)[1]

    def apply(self, fn: Callable[..., T], args: Iterable[Any] = (),
              kwds: Mapping[str, Any] | None = None) -> T:
        """Run ``fn(*args, **kwds)`` in a member and wait for it: its value, or its error."""
        return self.apply_async(fn, args, kwds).get()

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
        """``[fn(*args) for args in zip(*iterables)]``, at most ``size`` at once; in order.

        Reads the iterables as slots free up (at most ``size`` calls run, none
        wait queued). The first call to fail, in time, ends it: its error is
        raised here at once and the calls still running are killed.
        """
        values: dict[int, T] = {}
        with closing(self._finished(fn, zip(*iterables, strict=False), ordered=False)) as finished:
            for index, result in finished:
                values[index] = result.get()
        return [values[index] for index in range(len(values))]

    def imap(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """A lazy iterator over ``fn(*args)`` for ``args in zip(*iterables)``, in order.

        Nothing starts before the first ``next()``. Calls run ahead of the
        reader, at most ``size`` at once, and at most ``2 * size`` calls are
        running or finished but unread: a long or infinite iterable is read
        only as fast as the results are. A call's error is raised when its
        turn comes (the results before it are yielded first) and ends the
        iteration; closing the iterator early (or dropping it) kills the calls
        still running.
        """
        return self._values(fn, iterables, ordered=True)

    def imap_unordered(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> Iterator[T]:
        """As ``imap``, but each result is yielded as soon as its call finishes.

        An error is raised as soon as its call fails (in finishing order).
        """
        return self._values(fn, iterables, ordered=False)

    def _values(self, fn: Callable[..., T], iterables: tuple[Iterable[Any], ...],
                ordered: bool) -> Generator[T, None, None]:
        with closing(self._finished(fn, zip(*iterables, strict=False), ordered)) as finished:
            for _index, result in finished:
                yield result.get()

    def _start(self, fn: Callable[..., T], args: tuple[Any, ...],
               kwds: Mapping[str, Any] | None) -> tuple[Tasklet, AsyncResult[T]]:
        result: AsyncResult[T] = AsyncResult()
        tasklet = self.spawn(_call_into, result, fn, args, kwds or {})
        tasklet.name = getattr(fn, "__qualname__", None) or repr(fn)
        tasklet.on_finish(_cancel_unsettled, result, tasklet)
        return tasklet, result

    def _finished(self, fn: Callable[..., T], arguments: Iterable[tuple[Any, ...]],
                  ordered: bool) -> Generator[tuple[int, AsyncResult[T]], None, None]:
        """``(index, result)`` of each call once it has finished, in the order asked.

        Starts calls while a slot is free and fewer than ``2 * size`` are
        running or unread; waits for a slot only when none of its own runs
        (the pool may be full of others' members).
        """
        window = 2 * self.size
        done: Queue[tuple[int, AsyncResult[T]]] = Queue()   # in finishing order
        running: dict[int, Tasklet] = {}
        unread: dict[int, AsyncResult[T]] = {}   # finished ahead of their turn (ordered)
        source = enumerate(arguments)
        exhausted = False
        turn = 0                              # the next index to yield, when ordered
        try:
            while True:
                while not exhausted and len(running) + len(unread) < window and \
                        (not running or self.free_count()):
                    try:
                        index, args = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    tasklet, result = self._start(fn, args, None)
                    running[index] = tasklet
                    tasklet.on_finish(done.put_nowait, (index, result))
                if ordered and turn in unread:
                    yield turn, unread.pop(turn)
                    turn += 1
                    continue
                if not running:
                    return
                index, result = done.get()
                del running[index]
                if not ordered:
                    yield index, result
                elif index == turn:
                    yield index, result
                    turn += 1
                else:
                    unread[index] = result
        finally:
            killall(list(running.values()), block=False)


def _call_into(result: AsyncResult[T], fn: Callable[..., T], args: tuple[Any, ...],
               kwds: Mapping[str, Any]) -> None:
    """A Pool member's body: fn's value or Exception goes into ``result``, not the tasklet."""
    try:
        value = fn(*args, **kwds)
    except Exception as exc:
        result.set_exception(exc)
    else:
        result.set(value)


def _cancel_unsettled(result: AsyncResult[Any], tasklet: Tasklet) -> None:
    """A finish hook: a member that ended before settling its result was killed."""
    if not result.ready():
        result.set_exception(tasklet.exception or CancelledError(
            f"{tasklet!r} was killed before {tasklet.name} returned"))
