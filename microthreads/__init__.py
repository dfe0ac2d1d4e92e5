"""microthreads: greenlet microthreads on one selectors hub per OS thread.

Code reads straight down (``line = conn.recv_line()``); when it would block,
the tasklet parks and the hub runs the others. See README.md and DESIGN.md.
"""

from . import hooks
from .debug import format_run_info
from .errors import DeadlockError, TaskletExit
from .group import Group, Pool
from .hub import Hub, get_hub
from .result import AsyncResult
from .sync import BoundedSemaphore, Channel, Empty, Event, Full, Lock, Queue, RLock, Semaphore
from .tasklet import Tasklet, getcurrent, joinall, killall, on_finish, run, spawn, spawn_later
from .threads import run_in_thread
from .timeout import Timeout, sleep, with_timeout

__version__ = "0.1.0"

__all__ = [
    "AsyncResult", "BoundedSemaphore", "Channel", "DeadlockError", "Empty", "Event", "Full",
    "Group", "Hub", "Lock", "Pool", "Queue", "RLock", "Semaphore", "Tasklet", "TaskletExit",
    "Timeout", "format_run_info", "get_hub", "getcurrent", "hooks", "joinall", "killall",
    "on_finish", "run", "run_in_thread", "sleep", "spawn", "spawn_later", "with_timeout",
]
