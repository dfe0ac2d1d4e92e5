"""Helpers for testing code built on microthreads: VirtualClock."""

from __future__ import annotations

from .hub import get_hub


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
    The hub must have no pending timers when the clock is installed.
    """

    def __init__(self, start=0.0, autojump_threshold=0.0):
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        self._hub = None
        self._saved = None

    def now(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    def advance(self, seconds):
        """Move time forward by hand (timers due by then fire at the next tick)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds

    def _wait_before_jump(self, hub, deadline):
        """Called by the hub instead of sleeping until ``deadline``."""
        if hub._threads_at_work:
            return None                      # a thread's end comes in real time
        if hub._fd_waiters:                  # 0: one poll that does not wait
            events = hub._poller.poll(self.autojump_threshold)
            if events:
                hub._dispatch_io(events)
                return 0
        if deadline > self._now:
            self._now = deadline
        return 0

    def __enter__(self):
        hub = get_hub()
        if len(hub._timers):
            raise RuntimeError("VirtualClock must be installed before any timer is set")
        if hub._autojump is not None:
            raise RuntimeError("this hub already runs on a VirtualClock")
        self._hub = hub
        self._saved = hub.clock
        hub.clock = self.now
        hub._autojump = self
        return self

    def __exit__(self, *exc_info):
        hub = self._hub
        hub.clock = self._saved
        hub._autojump = None
        self._hub = None
        return False
