"""microthreads: greenlet microthreads on one selectors hub per OS thread.

Code reads straight down (``line = conn.recv_line()``); when it would block,
the tasklet parks and the hub runs the others. See README.md and DESIGN.md.

The submodules that bring in more than the core (``aio``: asyncio;
``monkey``; ``net``; ``subprocess``; ``testing``) are imported on first use
of the attribute (``microthreads.subprocess.run(...)`` after a plain
``import microthreads``), so importing the package patches nothing, starts
nothing and imports no asyncio.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import hooks
from .debug import format_run_info
from .errors import DeadlockError, NeverRanWarning, TaskletExit
from .group import Group, Pool
from .hub import Hub, get_hub
from .result import AsyncResult
from .sync import BoundedSemaphore, Channel, Empty, Event, Full, Lock, Queue, RLock, Semaphore
from .tasklet import Tasklet, getcurrent, joinall, killall, on_finish, run, spawn, spawn_later
from .threads import run_in_thread
from .timeout import Timeout, sleep, with_timeout

__version__ = "0.1.0"

#: The submodules that ``microthreads.NAME`` imports on first use (PEP 562).
_LAZY_SUBMODULES = frozenset({"aio", "monkey", "net", "subprocess", "testing"})


def __getattr__(name: str) -> ModuleType:
    """``microthreads.aio``, ``.monkey``, ``.net``, ``.subprocess``, ``.testing``:
    the submodule, imported now if it was not yet (importing it patches and
    starts nothing). Any other unknown name raises AttributeError."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily imported submodules among them."""
    return sorted(set(globals()) | _LAZY_SUBMODULES)


__all__ = [
    "AsyncResult", "BoundedSemaphore", "Channel", "DeadlockError", "Empty", "Event", "Full",
    "Group", "Hub", "Lock", "NeverRanWarning", "Pool", "Queue", "RLock", "Semaphore",
    "Tasklet", "TaskletExit", "Timeout", "format_run_info", "get_hub", "getcurrent", "hooks",
    "joinall", "killall", "on_finish", "run", "run_in_thread", "sleep", "spawn",
    "spawn_later", "with_timeout",
]
