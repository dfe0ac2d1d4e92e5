"""Helpers for testing code built on microthreads: VirtualClock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hub import get_hub

if TYPE_CHECKING:
    from typing import Literal

    from .hub import Hub
    from .timers import Clock


class VirtualClock:
    """A clock for this thread's hub that jumps ahead when everything waits.

    ::

        with VirtualClock() as clock:
            microthreads.run(main)        # a 60 s timeout takes no real time
            assert clock.now() == 60.0

    Time starts at ``start`` and stands still while tasklets run. When no
    tasklet is ready, the hub first polls real I/O for up to
    ``autojump_threshold`` real seconds (0: just a poll) and, if nothing
    happened, jumps to the next timer's deadline. While a ``run_in_thread``
    job is at work, it waits for the thread in real time instead of jumping.
    The hub must have no pending timers when the clock is installed
    (RuntimeError), nor run on another VirtualClock already. It is a
    ``microthreads.timers.Clock``: ``Hub.set_clock()`` takes it as any other.
    """

    def __init__(self, start: float = 0.0, autojump_threshold: float = 0.0) -> None:
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        self._hub: Hub | None = None
        self._saved: Clock | None = None

    def now(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Virtual seconds until ``deadline`` (0 once due): the hub compares
        them with a tick's budget, then jumps instead of sleeping them."""
        return max(0.0, deadline - self._now)

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (timers due by then fire at the next tick)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds

    def jump_to(self, deadline: float) -> None:
        """Called by the hub when every tasklet waits: time moves to ``deadline``
        (never backwards)."""
        if deadline > self._now:
            self._now = deadline

    def __enter__(self) -> VirtualClock:
        hub = get_hub()
        if isinstance(hub.current_clock(), VirtualClock):
            raise RuntimeError("this hub already runs on a VirtualClock")
        self._saved = hub.set_clock(self)
        self._hub = hub
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        hub = self._hub
        if hub is not None and self._saved is not None:
            hub.set_clock(self._saved, keep_timers=True)
        self._hub = None
        return False
