"""Timers: callbacks due at an absolute deadline, kept in a heap with lazy
deletion; and the clock protocol those deadlines are measured on."""

from __future__ import annotations

import heapq
import logging
import time
from itertools import count
from typing import Any, Callable, Protocol

__all__ = ["Clock", "MonotonicClock", "Timer", "TimerHeap"]

log = logging.getLogger("microthreads")


class _TimedOut:
    """The value ``park(timeout)`` returns when its time ran out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


#: What ``Hub.park(timeout)`` returns when its timer fired first.
TIMED_OUT = _TimedOut()


class Clock(Protocol):
    """What a hub's clock provides (trio's ``Clock`` is the model).

    ``now()``: absolute seconds, never going backwards. The hub's timers are
    deadlines on it, ``Hub.clock`` is its ``now``.
    ``deadline_to_sleep_time(deadline)``: how many real seconds the hub may
    sleep in its poll waiting for ``deadline`` (0 once it is due).
    ``autojump_threshold``: None for a clock that only moves by itself; else
    the clock may jump: when every tasklet waits for a deadline and a poll of
    at most this many real seconds brought nothing (and no thread job runs,
    whose end comes in real time), the hub calls ``jump_to(deadline)``
    instead of sleeping (``microthreads.testing.VirtualClock``).
    """

    def now(self) -> float:
        """Absolute seconds, never going backwards; the hub's timers are deadlines on it."""
        ...

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds the hub may sleep in its poll waiting for ``deadline``; 0 once due."""
        ...

    @property
    def autojump_threshold(self) -> float | None:
        """None for a clock that only moves by itself; else the real seconds of an
        idle poll after which the hub calls ``jump_to`` instead of sleeping."""
        ...

    def jump_to(self, deadline: float) -> None:
        """Move the clock to ``deadline`` (only a clock with an ``autojump_threshold``)."""
        ...


class MonotonicClock:
    """The default clock: ``time.monotonic``, which never jumps."""

    __slots__ = ()

    #: It never jumps.
    autojump_threshold = None
    now = staticmethod(time.monotonic)

    @staticmethod
    def deadline_to_sleep_time(deadline: float, _now: Callable[[], float] = time.monotonic
                               ) -> float:
        """Real seconds until ``deadline``; 0 once it is due."""
        wait = deadline - _now()
        return wait if wait > 0 else 0.0

    def jump_to(self, deadline: float) -> None:
        """Real time cannot be moved: RuntimeError."""
        raise RuntimeError("the monotonic clock cannot jump")


class Timer:
    """A callback due at an absolute ``deadline`` on the hub's clock.

    Made by ``Hub.call_at``/``call_later``. ``cancel()`` is O(1): the entry
    stays in the heap, marked dead, and is dropped when it reaches the top or
    when dead entries outnumber live ones.
    """

    __slots__ = ("_heap", "active", "args", "callback", "deadline")

    def __init__(self, heap: TimerHeap, deadline: float, callback: Callable[..., Any],
                 args: tuple[Any, ...]) -> None:
        self._heap = heap
        self.deadline = deadline
        self.callback = callback
        self.args = args
        self.active = True

    def cancel(self) -> None:
        """It will not fire; idempotent, and a no-op once it has fired."""
        if self.active:
            self.active = False
            self._heap.cancelled()

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Timer at {self.deadline:.6f} {self.callback!r} {state}>"


class TimerHeap:
    """A binary heap of timers with lazy deletion.

    Pushing and popping cost O(log n); a cancelled timer costs nothing until
    it surfaces, and the heap is compacted when dead entries pass half of it,
    so 100,000 cancelled timeouts cannot pile up. Timers due at the same
    deadline fire in the order they were made.
    """

    __slots__ = ("_dead", "_order", "heap")

    def __init__(self) -> None:
        #: (deadline, seq, timer) entries, a heap; others only read ``heap[0][0]``.
        self.heap: list[tuple[float, int, Timer]] = []
        self._order = count()                  # keeps FIFO order on equal deadlines
        self._dead = 0

    def __len__(self) -> int:
        """The number of live (not cancelled, not fired) timers."""
        return len(self.heap) - self._dead

    def add(self, deadline: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> Timer:
        """A new live Timer for ``callback(*args)`` at ``deadline``."""
        timer = Timer(self, deadline, callback, args)
        heapq.heappush(self.heap, (deadline, next(self._order), timer))
        return timer

    def cancelled(self) -> None:
        """Count one dead entry (Timer.cancel); compact when they pass half."""
        self._dead += 1
        heap = self.heap
        if self._dead > 64 and self._dead * 2 > len(heap):
            self.heap = [entry for entry in heap if entry[2].active]
            heapq.heapify(self.heap)
            self._dead = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self.heap
        while heap:
            timer = heap[0][2]
            if timer.active:
                return timer.deadline
            heapq.heappop(heap)
            self._dead -= 1
        return None

    def fire_due(self, now: float) -> None:
        """Call every live timer due at ``now``, earliest first (ties: oldest
        first); a callback's exception is logged and the rest still fire."""
        heap = self.heap
        if not heap or heap[0][0] > now:
            return
        while True:
            timer = self.pop_due(now)
            if timer is None:
                return
            try:
                timer.callback(*timer.args)
            except Exception:
                log.exception("microthreads: callback %r failed", timer.callback)

    def pop_due(self, now: float) -> Timer | None:
        """Remove and return the next live timer due at ``now``, or None."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.active:
                timer.active = False
                return timer
            self._dead -= 1
        return None
