"""Cooperative synchronisation: Event, Lock, RLock, Semaphore, BoundedSemaphore,
Queue and Channel.

All of them are built on one FIFO of parked waiters. Waiters are served in
arrival order, and a release or a put hands the resource straight to the
first waiter (no barging: a tasklet arriving later cannot take it first). A
waiter that times out or is killed leaves the line without taking anything;
if it had already been handed something, that is passed on, never lost.
"""

from __future__ import annotations

import queue as _queue
from collections import deque
from threading import get_ident
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from greenlet import getcurrent

from .hub import get_hub
from .tasklet import getcurrent as current_tasklet
from .tasklet import tasklet_of

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from .hub import Hub

    # [greenlet (None: a value queued with nobody behind it), state, value]
    _Entry = list[Any]

T = TypeVar("T")

Empty = _queue.Empty
Full = _queue.Full

_WAITING, _HANDED, _CANCELLED = 0, 1, 2


class _WaitQueue:
    """Parked greenlets in arrival order; an entry is ``[greenlet, state, value]``.

    Leaving the line (timeout, kill) marks the entry cancelled in O(1); the
    wakers skip cancelled entries, and the line is compacted when cancelled
    entries pass half of it (as the timer heap does), so a million waits that
    time out on an object nobody signals hold no more than its live waiters.
    """

    __slots__ = ("_cancelled", "_entries", "_hub", "waiting")

    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()
        self._hub: Hub | None = None
        self.waiting = 0                     # live (not cancelled, not handed) entries
        self._cancelled = 0                  # cancelled entries still in _entries

    def wait(self, timeout: float | None = None, value: Any = None,
             give_back: Callable[[Any], object] | None = None) -> tuple[bool, Any]:
        """Park in line; return ``(handed, value)``.

        ``value`` travels with the entry (a Queue put's item, a Channel send's
        value). If the wait ends by an exception after the entry was handed
        something, ``give_back(value)`` passes it on before the exception
        propagates.
        """
        hub = self._hub = get_hub()
        entry = [getcurrent(), _WAITING, value]
        self._entries.append(entry)
        self.waiting += 1
        try:
            hub.park(timeout)
        except BaseException:
            if entry[1] == _HANDED and give_back is not None:
                give_back(entry[2])
            raise
        finally:
            if entry[1] == _WAITING:
                entry[1] = _CANCELLED
                self.waiting -= 1
                self._cancelled += 1
                if self._cancelled > 64 and self._cancelled * 2 > len(self._entries):
                    self._entries = deque(e for e in self._entries if e[1] == _WAITING)
                    self._cancelled = 0
        return entry[1] == _HANDED, entry[2]

    def pop(self) -> _Entry | None:
        """Take the first live entry out of line (marked handed), or None.

        The caller may set ``entry[2]`` and must then ``wake(entry)``.
        """
        entries = self._entries
        hub = self._hub                      # None: only values queued, nobody ever waited
        if entries and hub is not None and hub.thread_id != get_ident():   # before any change
            raise RuntimeError("a waiter of this object belongs to another thread's hub:"
                               " call it through hub.call_soon_threadsafe()")
        while entries:
            entry = entries.popleft()
            if entry[1] == _WAITING:
                entry[1] = _HANDED
                self.waiting -= 1
                return entry
            self._cancelled -= 1
        return None

    def wake(self, entry: _Entry) -> None:
        """Schedule the wake-up of a popped entry's greenlet."""
        hub = self._hub
        if entry[0] is not None and hub is not None:   # None: a value with nobody behind it
            hub.schedule_wakeup(entry[0])

    def hand_first(self, value: Any = None) -> bool:
        """Hand ``value`` to the first waiter and wake it; False if nobody waits."""
        entry = self.pop()
        if entry is None:
            return False
        entry[2] = value
        self.wake(entry)
        return True

    def append_value(self, value: Any) -> None:
        """Queue a value with nobody parked behind it (a Channel's redelivery)."""
        self._entries.appendleft([None, _WAITING, value])
        self.waiting += 1


class Event:
    """A flag tasklets can wait for, as ``threading.Event``, cooperative."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters = _WaitQueue()

    def is_set(self) -> bool:
        """True while the flag is set."""
        return self._flag

    isSet = is_set

    def set(self) -> None:
        """Set the flag and wake every waiter, in arrival order. Never blocks."""
        self._flag = True
        while self._waiters.hand_first(True):
            pass

    def clear(self) -> None:
        """Unset the flag; later waiters wait again. Never blocks."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set; True, or False if ``timeout`` seconds passed.

        Returns at once if it is set. Raises DeadlockError if nothing could
        ever set it.
        """
        if self._flag:
            return True
        handed, _ = self._waiters.wait(timeout)
        return handed or self._flag

    def __repr__(self) -> str:
        return f"<Event {'set' if self._flag else 'unset'} waiters={self._waiters.waiting}>"


class Lock:
    """A mutual-exclusion lock, as ``threading.Lock``, cooperative and fair.

    ``release()`` hands the lock straight to the first waiter. Any tasklet
    may release it (as with threading.Lock).
    """

    def __init__(self) -> None:
        self._locked = False
        self._owner: Any = None          # a Tasklet, or a greenlet outside any
        self._waiters = _WaitQueue()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; return True if taken, False if not.

        blocking=False never waits. Otherwise waits behind earlier waiters
        (FIFO) at most ``timeout`` seconds (None or -1: no limit); False when
        time runs out. A tasklet killed while waiting leaves the queue without
        the lock. Raises DeadlockError if nothing could ever release it.
        """
        if not self._locked:
            self._locked = True
            self._owner = current_tasklet()
            return True
        if not blocking:
            return False
        if timeout is not None and timeout < 0:
            timeout = None
        handed, _ = self._waiters.wait(timeout, give_back=self._give_back)
        return handed

    def _give_back(self, _value: object) -> None:
        self.release()

    def release(self) -> None:
        """Release the lock, handing it to the first waiter if any.

        Raises RuntimeError if it is not locked.
        """
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        entry = self._waiters.pop()
        if entry is None:
            self._locked = False
            self._owner = None
        else:
            self._owner = tasklet_of(entry[0])
            self._waiters.wake(entry)

    def locked(self) -> bool:
        """True while some tasklet holds it."""
        return self._locked

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state = f"locked by {self._owner!r}" if self._locked else "unlocked"
        return f"<{type(self).__name__} {state} waiters={self._waiters.waiting}>"


class RLock(Lock):
    """A reentrant lock: its owner may acquire it again; release as often.

    Only the owner may release it (RuntimeError otherwise).
    """

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock (again, if the caller owns it); see ``Lock.acquire``."""
        if self._locked and self._owner is current_tasklet():
            self._count += 1
            return True
        taken = super().acquire(blocking, timeout)
        if taken:
            self._count = 1
        return taken

    def _give_back(self, _value: object) -> None:
        self._count = 1
        self._release_all()

    def release(self) -> None:
        """Undo one acquire; the last one hands the lock on. Owner only."""
        if not self._locked or self._owner is not current_tasklet():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._release_all()

    def _release_all(self) -> None:
        entry = self._waiters.pop()
        if entry is None:
            self._locked = False
            self._owner = None
            self._count = 0
        else:
            self._owner = tasklet_of(entry[0])
            self._count = 1
            self._waiters.wake(entry)


class Semaphore:
    """A counter of free places, as ``threading.Semaphore``, cooperative and fair."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._waiters = _WaitQueue()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one place; True if taken, False if not (non-blocking, or timed out).

        Waits behind earlier waiters (FIFO). Raises DeadlockError if nothing
        could ever release one.
        """
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            return False
        handed, _ = self._waiters.wait(timeout, give_back=self._give_back)
        return handed

    def _give_back(self, _value: object) -> None:
        self.release()

    def release(self, n: int = 1) -> None:
        """Free ``n`` places; each goes straight to the first waiter, if any."""
        for _ in range(n):
            self._check_release()
            if not self._waiters.hand_first():
                self._value += 1

    def _check_release(self) -> None:
        pass

    @property
    def value(self) -> int:
        """Free places now."""
        return self._value

    def locked(self) -> bool:
        """True while no place is free (an acquire would wait)."""
        return self._value == 0

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} value={self._value} waiters={self._waiters.waiting}>"


class BoundedSemaphore(Semaphore):
    """A Semaphore that raises ValueError when released more than acquired."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial = value

    def _check_release(self) -> None:
        if self._value >= self._initial:
            raise ValueError("BoundedSemaphore released too many times")


class Queue(Generic[T]):
    """A FIFO queue, as ``queue.Queue``, cooperative and fair.

    ``maxsize`` <= 0 means unbounded. Getters and putters are served in
    arrival order; a put hands its item straight to the first waiting getter.
    ``Queue[int]()`` types its items.
    """

    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._getters = _WaitQueue()
        self._putters = _WaitQueue()
        self._unfinished = 0
        self._all_done = Event()
        self._all_done.set()

    def qsize(self) -> int:
        """Items in the queue now (not counting those of waiting putters)."""
        return len(self._items)

    def empty(self) -> bool:
        """True if a get() now would wait."""
        return not self._items

    def full(self) -> bool:
        """True if a put() now would wait (never, when unbounded)."""
        return 0 < self.maxsize <= len(self._items)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; wait while the queue is full.

        ``block=False`` (or ``timeout`` running out) raises ``Full`` instead of
        waiting. Raises DeadlockError if nothing could ever make room.
        """
        if self._getters.waiting:
            self._add_unfinished()
            self._hand_to_getter(item)
            return
        if not self.full():
            self._add_unfinished()
            self._items.append(item)
            return
        if block:                            # get() counts the item when it takes it in
            handed, _ = self._putters.wait(timeout, value=item)
            if handed:
                return
        raise Full

    def put_nowait(self, item: T) -> None:
        """``put(item, block=False)``: raises ``Full`` rather than wait."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the oldest item; wait while the queue is empty.

        ``block=False`` (or ``timeout`` running out) raises ``Empty`` instead
        of waiting. Raises DeadlockError if nothing could ever put one.
        """
        if self._items:
            item = self._items.popleft()
            entry = self._putters.pop()
            if entry is not None:            # room now: take the first putter's item
                self._add_unfinished()
                self._items.append(entry[2])
                self._putters.wake(entry)
            return item
        if block:
            handed, handed_item = self._getters.wait(timeout, give_back=self._hand_to_getter)
            if handed:
                return handed_item      # type: ignore[no-any-return]  # a put()'s T
        raise Empty

    def get_nowait(self) -> T:
        """``get(block=False)``: raises ``Empty`` rather than wait."""
        return self.get(block=False)

    def _hand_to_getter(self, item: T) -> None:
        if not self._getters.hand_first(item):
            self._items.appendleft(item)     # a getter left with it: it goes first again

    def _add_unfinished(self) -> None:
        self._unfinished += 1
        self._all_done.clear()

    def task_done(self) -> None:
        """Mark one got item as processed (for ``join()``)."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished:
            self._all_done.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item put has been marked ``task_done()``; True, or
        False if ``timeout`` seconds passed first."""
        return self._all_done.wait(timeout)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"<Queue size={len(self._items)} maxsize={self.maxsize}"
                f" getters={self._getters.waiting} putters={self._putters.waiting}>")


class Channel(Generic[T]):
    """A Stackless-style rendezvous: ``send(x)`` meets ``receive()``.

    ``send`` blocks until a receiver takes the value; ``receive`` blocks until
    a sender offers one. Both sides are served in arrival order. ``balance``
    is the number of waiting senders minus waiting receivers. ``Channel[str]()``
    types its values.
    """

    def __init__(self) -> None:
        self._senders = _WaitQueue()
        self._receivers = _WaitQueue()

    @property
    def balance(self) -> int:
        """Waiting senders minus waiting receivers."""
        return self._senders.waiting - self._receivers.waiting

    def send(self, value: T) -> None:
        """Give ``value`` to a receiver, waiting until one takes it."""
        if self._receivers.hand_first(value):
            return
        self._senders.wait(value=value)

    def receive(self) -> T:
        """Take a value from a sender, waiting until one offers it."""
        entry = self._senders.pop()
        if entry is not None:
            self._senders.wake(entry)
            return entry[2]             # type: ignore[no-any-return]  # a send()'s T
        _, value = self._receivers.wait(give_back=self._redeliver)
        return value                    # type: ignore[no-any-return]  # a send()'s T

    def _redeliver(self, value: T) -> None:
        """A receiver was handed ``value`` but died before taking it."""
        if not self._receivers.hand_first(value):
            self._senders.append_value(value)

    def __iter__(self) -> Iterator[T]:
        while True:
            yield self.receive()

    def __repr__(self) -> str:
        return f"<Channel balance={self.balance}>"
