"""Seeing inside: format_run_info, deadlock descriptions, the blocked-hub watchdog."""

from __future__ import annotations

import inspect
import traceback

from greenlet import getcurrent

from .hub import Hub, get_hub
from .stacks import Watchdog, describe_wait

__all__ = ["Watchdog", "describe_wait", "format_run_info"]


def format_run_info(hub: Hub | None = None) -> str:
    """Every live tasklet of this thread's hub: name, state and stack.

    For debugging a hang: print it, or log it from a signal handler.
    """
    hub = hub or get_hub()
    lines = [repr(hub)]
    current = getcurrent()
    here = inspect.currentframe()
    caller = here.f_back if here is not None else None
    for tasklet in sorted(hub.live_tasklets(), key=lambda t: t.name):
        lines.append(f"{tasklet!r}")
        frame = tasklet.gr_frame if tasklet is not current else caller
        if frame is not None:
            stack = traceback.format_stack(frame)
            lines.extend("  " + line.rstrip().replace("\n", "\n  ") for line in stack)
        elif not tasklet.started:
            lines.append(f"  not started: {tasklet._fn!r}")
    return "\n".join(lines)
