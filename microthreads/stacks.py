"""Reading parked stacks: what a blocked greenlet waits on, and who holds the hub.

This module imports nothing of the runtime (the hub imports it): it reads
frames and asks the hub only through ``Hub.activity()`` and ``thread_id``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from types import FrameType
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("microthreads")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_GREENLET_DIR = os.path.dirname(os.path.abspath(sys.modules["greenlet"].__file__ or "")) + os.sep

__all__ = ["Watchdog", "describe_holder", "describe_wait"]


def _is_ours(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or filename.startswith(_GREENLET_DIR)


def _frames(frame: FrameType | None) -> Iterator[FrameType]:
    """Innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def describe_wait(g: Any) -> str:
    """``<Tasklet 'x'> waits on Queue.get() at app.py:42``, from its parked stack.

    What it waits on is the outermost runtime call on the stack (the public
    API the user called); where is the user's frame that called it. The
    walk stops at the greenlet's bottom frame (a tasklet's ``run``, which
    has no caller): a tasklet spawned on the API itself waits "at its start".
    """
    what, where = "something", "an unknown place"
    api = None
    for frame in _frames(getattr(g, "gr_frame", None)):
        filename = os.path.abspath(frame.f_code.co_filename)
        if frame.f_back is None and _is_ours(filename):   # its bottom: the runner's run
            if api is not None:
                where = "its start (spawned on it directly)"
            break
        if _is_ours(filename):
            api = frame
            continue
        if api is not None:
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            break
    if api is not None:
        owner = api.f_locals.get("self")
        name = api.f_code.co_name
        if owner is None:
            what = f"{name}()"
        else:
            what = f"{type(owner).__name__}.{name}()"
            if hasattr(owner, "_hub") and hasattr(owner, "gr_frame"):   # a Tasklet
                what += f" on {owner!r}"
    label = repr(g) if hasattr(g, "_hub") else f"<main greenlet {id(g):#x}>"
    return f"{label} waits on {what} at {where}"


def describe_holder(frame: FrameType | None) -> tuple[str, str]:
    """Who runs ``frame`` (the hub thread's running frame) and its stack:
    ``("tasklet 'fetch'", '  File "app.py", line 5, in fetch\\n ...')``.

    The stack is outermost first and starts at the user's code: the
    runtime's own frames below it (the tasklet's runner, the hub's loop running
    a callback) are left out, unless there is no user frame at all. Who:
    the tasklet (by name) whose runner's ``run`` is the bottom frame, else the hub's
    own greenlet (a callback) or the thread's main greenlet.
    """
    frames = list(_frames(frame))[::-1]               # outermost first
    if not frames:
        return "nothing (no frame)", ""
    bottom = frames[0]
    ours = _is_ours(os.path.abspath(bottom.f_code.co_filename))
    owner: Any = bottom.f_locals.get("self") if ours else None
    owner = getattr(owner, "tasklet", None) or owner  # a runner greenlet: its tasklet
    if bottom.f_code.co_name == "run" and hasattr(owner, "gr_frame") and hasattr(owner, "_hub"):
        who = f"tasklet {owner.name!r}"
    elif bottom.f_code.co_name == "_main" and hasattr(owner, "greenlet"):
        who = "the hub's own greenlet (a callback)"
    else:
        who = "the thread's main greenlet"
    first = next((i for i, f in enumerate(frames)
                  if not _is_ours(os.path.abspath(f.f_code.co_filename))), 0)
    stack = traceback.StackSummary.extract((f, f.f_lineno) for f in frames[first:])
    return who, "".join(stack.format())


def _report(message: str) -> None:
    """A watchdog report: through logging if the ``microthreads`` logger has a
    handler (its own or an ancestor's), else printed to stderr as it is."""
    if log.hasHandlers():
        log.warning("%s", message)
    else:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


class Watchdog(threading.Thread):
    """A monitor thread that reports code holding the hub too long.

    Every ``threshold / 2`` seconds it checks whether the hub has resumed
    anything or polled since last time; if it has done neither for longer
    than ``threshold`` and is not waiting in its poll, the offender is
    reported once per stall: the tasklet that holds the hub, by name, and
    its stack from the user's frame on (``describe_holder``). The report is
    a warning of the ``microthreads`` logger when logging has a handler for
    it, else it is printed to stderr (as gevent's monitor thread prints).
    Between calls of ``run()`` or ``tick()`` the thread runs its own code:
    that is not watched.
    """

    def __init__(self, hub: Hub, threshold: float) -> None:
        super().__init__(name="microthreads-watchdog", daemon=True)
        self.hub = hub
        self.threshold = threshold
        self._stop_event = threading.Event()
        self.reports = 0

    def stop(self) -> None:
        """Ask the monitor thread to end (it does within half a threshold); idempotent."""
        self._stop_event.set()

    def run(self) -> None:
        """The monitor thread's loop (``threading.Thread.run``): every half
        threshold, report what holds the hub if it has not switched for a
        whole threshold, once per stall. Call ``start()``, not this.
        """
        hub = self.hub
        last = None
        stalled_since: float | None = None
        reported = False
        interval = self.threshold / 2
        while not self._stop_event.wait(interval):
            switches, in_poll, running = hub.activity()
            mark = (switches, in_poll)
            if mark != last or in_poll or not running:   # moving, or not running
                last, stalled_since, reported = mark, None, False
                continue
            if stalled_since is None:
                stalled_since = interval
                continue
            stalled_since += interval
            if stalled_since >= self.threshold and not reported:
                reported = True
                self.reports += 1
                who, stack = describe_holder(sys._current_frames().get(hub.thread_id))
                _report(f"microthreads watchdog: {who} has held the hub for over"
                        f" {self.threshold * 1000:.0f} ms, at:\n{stack.rstrip()}")
