"""The run modes: who handed the hub greenlet control, and when it gets it back.

Code outside the hub greenlet (the main greenlet, a host loop) hands it
control in one of four modes; after each loop iteration the hub asks
``done()`` whether to hand control back:

- ``RUN_ALL`` (``Hub.run()``): when nothing is left;
- ``RUN_UNTIL`` (``Hub.run(tasklet)``): when that tasklet has finished;
- ``TICK`` (``Hub.tick(timeout)``): after one iteration, with "is anything left";
- ``SERVE`` (``Hub.park()`` outside a tasklet): never by itself: a wake-up
  for the parked caller resumes it directly, as it does a tasklet.

An exception for the caller (``Hub.interrupt``) ends any of them at once.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any, Callable

from greenlet import getcurrent

if TYPE_CHECKING:
    from .hub import Hub
    from .tasklet import Tasklet
    from .waker import Waker

log = logging.getLogger("microthreads")

TICK, RUN_UNTIL, RUN_ALL, SERVE = "tick", "run until", "run all", "serve"


class Handoff:
    """The caller that handed one hub greenlet control, and its run mode.

    ``mode`` is None, or one of the four while ``caller`` (the greenlet that
    handed control over) waits; ``target`` is RUN_UNTIL's tasklet and
    ``tick_timeout`` TICK's limit on its poll (None: none).
    """

    __slots__ = ("_greenlet", "_has_work", "_hub", "_waker", "caller", "mode", "target",
                 "tick_timeout")

    def __init__(self, hub: Hub, waker: Waker, has_work: Callable[[], bool]) -> None:
        self.mode: str | None = None
        self.target: Tasklet | None = None
        self.tick_timeout: float | None = 0
        self.caller: Any = None
        self._hub, self._waker, self._has_work = hub, waker, has_work
        self._greenlet = hub.greenlet

    def enter(self, mode: str, target: Tasklet | None = None,
              tick_timeout: float | None = 0) -> Any:
        """Hand control to the hub greenlet in ``mode`` and wait for it to come
        back; returns what ``hand_back`` sent (TICK: is anything left).

        Ctrl-C is the hub's meanwhile (``Waker.install_sigint``). RuntimeError
        from the hub greenlet itself (the hub never waits), from another OS
        thread, or while the hub already runs in this thread.
        """
        current = getcurrent()
        if current is self._greenlet:
            raise RuntimeError("the hub cannot wait: a callback or finish hook tried to block"
                               " (spawn a tasklet for blocking work)")
        self._hub.check_thread()
        if self.caller is not None:
            raise RuntimeError("the hub is already running in this thread")
        self.mode, self.target, self.tick_timeout = mode, target, tick_timeout
        self.caller = current
        restore = self._waker.install_sigint()
        try:
            return self._greenlet.switch()
        finally:
            self.caller = None
            self.mode = self.target = None
            if restore is not None:
                signal.signal(signal.SIGINT, restore)

    def done(self) -> bool:
        """From the hub greenlet, after an iteration: is it time to hand back?"""
        mode = self.mode
        if mode == TICK:
            return True
        if mode == RUN_UNTIL:
            assert self.target is not None
            return self.target.finished
        if mode == RUN_ALL:
            return not self._has_work()
        return False                       # SERVE: the parked caller is woken directly

    def hand_back(self) -> None:
        """From the hub greenlet: give control back to the caller, with "is
        anything left" (``tick()``'s answer)."""
        caller, self.caller = self.caller, None
        caller.switch(self._has_work())

    def throw_back(self, exc: BaseException) -> None:
        """From the hub greenlet: raise ``exc`` in the caller. With no caller
        (nobody handed control over) it is logged and the hub goes on."""
        caller, self.caller = self.caller, None
        if caller is None:
            log.warning("microthreads: %r with nobody to raise it to", exc)
            return
        if self.mode == SERVE:
            self._hub.cancel_wakeups(caller)   # its pending wake-ups are stale now
        caller.throw(exc)
