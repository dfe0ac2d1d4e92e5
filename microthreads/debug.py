"""Seeing inside: format_run_info, deadlock descriptions, the blocked-hub watchdog,
and the warning at exit for tasklets that never ran.

Importing it (``import microthreads`` does) registers ``warn_never_ran`` with
``atexit``: at the interpreter's exit it looks at the main thread's hub, if
one was made, and warns (``NeverRanWarning``) when that hub never ran
although tasklets were spawned on it.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import traceback
import warnings
from typing import Any

from .errors import NeverRanWarning
from .hub import Hub, current_hub, get_hub
from .stacks import Watchdog, describe_wait
from .tasklet import getcurrent

__all__ = ["Watchdog", "describe_wait", "format_run_info", "warn_never_ran"]


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
            lines.append(f"  not started: {_function(tasklet)!r}")
    return "\n".join(lines)


def _function(tasklet: Any) -> Any:
    """The function ``tasklet`` was spawned on."""
    return tasklet._fn


#: How many tasklets the warning at exit names; the rest are counted.
NAMED_AT_EXIT = 5


def warn_never_ran(hub: Hub | None = None) -> bool:
    """``NeverRanWarning`` if ``hub`` (default: this thread's, never made
    here) never ran anything although tasklets were spawned on it; True if
    it warned. Called at interpreter exit (atexit) for the main thread.

    A hub that ran at all (``run()`` or ``tick()`` resumed a tasklet) is
    not warned about: a program that ran and then stopped early (Ctrl-C, an
    error, ``sys.exit``) has said why already. The warning's location is the
    function the first such tasklet was spawned on.
    """
    hub = hub if hub is not None else current_hub()
    if hub is None or hub.activity()[0]:
        return False
    never = [t for t in hub.live_tasklets() if not t.started]
    if not never:
        return False
    names = ", ".join(repr(t.name) for t in never[:NAMED_AT_EXIT])
    if len(never) > NAMED_AT_EXIT:
        names += f" and {len(never) - NAMED_AT_EXIT} more"
    count = f"{len(never)} tasklet{'s were' if len(never) > 1 else ' was'}"
    message = (f"{count} spawned but never ran ({names}): the program ended without running"
               " the hub; call microthreads.run() (it returns when they are done)")
    fn = _function(never[0])
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(inspect.unwrap(fn), "__code__", None)
    filename, lineno = (code.co_filename, code.co_firstlineno) if code else ("<unknown>", 0)
    warnings.warn_explicit(NeverRanWarning(message), NeverRanWarning, filename, lineno)
    return True


atexit.register(warn_never_ran)
