"""Seeing inside: format_run_info, deadlock descriptions, the blocked-hub watchdog."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback

from greenlet import getcurrent

log = logging.getLogger("microthreads")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_GREENLET_DIR = os.path.dirname(os.path.abspath(sys.modules["greenlet"].__file__)) + os.sep


def _is_ours(filename):
    return filename.startswith(_PACKAGE_DIR) or filename.startswith(_GREENLET_DIR)


def _frames(frame):
    """Innermost first."""
    while frame is not None:
        yield frame
        frame = frame.f_back


def describe_wait(g) -> str:
    """``<Tasklet 'x'> waits on Queue.get() at app.py:42``, from its parked stack.

    What it waits on is the outermost runtime call on the stack (the public
    API the user called); where is the user's frame that called it.
    """
    from .tasklet import Tasklet
    what, where = "something", "an unknown place"
    frames = list(_frames(getattr(g, "gr_frame", None)))
    api = None
    for frame in frames:
        if frame.f_code is Tasklet.run.__code__:   # its bottom: spawn(queue.get) has no caller
            if api is not None:
                where = "its start (spawned on it directly)"
            break
        filename = os.path.abspath(frame.f_code.co_filename)
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


def format_run_info(hub=None) -> str:
    """Every live tasklet of this thread's hub: name, state and stack.

    For debugging a hang: print it, or log it from a signal handler.
    """
    from .hub import get_hub
    hub = hub or get_hub()
    lines = [repr(hub)]
    current = getcurrent()
    for tasklet in sorted(hub._live, key=lambda t: t.name):
        lines.append(f"{tasklet!r}")
        frame = tasklet.gr_frame if tasklet is not current else sys._getframe(1)
        if frame is not None:
            stack = traceback.format_stack(frame)
            lines.extend("  " + line.rstrip().replace("\n", "\n  ") for line in stack)
        elif not tasklet.started:
            lines.append(f"  not started: {tasklet._fn!r}")
    return "\n".join(lines)


class Watchdog(threading.Thread):
    """A monitor thread that logs the stack of code holding the hub too long.

    Every ``threshold / 2`` seconds it checks whether the hub has resumed
    anything or polled since last time; if it has done neither for longer
    than ``threshold`` and is not waiting in its poll, the offender's stack
    (the hub thread's running frame) is logged once per stall. Between
    ``run()``s or ``tick()``s the thread runs its own code: that is not watched.
    """

    def __init__(self, hub, threshold):
        super().__init__(name="microthreads-watchdog", daemon=True)
        self.hub = hub
        self.threshold = threshold
        self._stop_event = threading.Event()
        self.reports = 0

    def stop(self):
        self._stop_event.set()

    def run(self):
        hub = self.hub
        last = None
        stalled_since = None
        reported = False
        interval = self.threshold / 2
        while not self._stop_event.wait(interval):
            mark = (hub._switches, hub._in_poll)
            if mark != last or hub._in_poll or hub._caller is None:   # moving, or not running
                last, stalled_since, reported = mark, None, False
                continue
            if stalled_since is None:
                stalled_since = interval
                continue
            stalled_since += interval
            if stalled_since >= self.threshold and not reported:
                reported = True
                self.reports += 1
                frame = sys._current_frames().get(hub._thread_id)
                stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
                log.warning("microthreads watchdog: the hub has been held for over %.0f ms by:\n%s",
                            self.threshold * 1000, stack)
