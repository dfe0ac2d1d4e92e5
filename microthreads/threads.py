"""Blocking work off the hub: run_in_thread, on a bounded pool of OS threads."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .env import env_number
from .hub import get_hub

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
#: How many worker threads at most (shared by every hub of the process).
MAX_WORKERS = int(env_number("MICROTHREADS_THREADS", "worker threads", integer=True) or 0) \
    or min(32, (os.cpu_count() or 1) + 4)


def make_pool() -> None:
    """Make the worker pool now (its threads start on demand): its queue and locks
    are then the real ones whatever ``monkey.patch_thread()`` replaces later."""
    _get_executor()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="microthreads-worker")
        return _executor


def run_in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``fn(*args, **kwargs)`` in a worker thread; return its value.

    The calling tasklet waits; the hub goes on serving the others. fn's
    exception is raised here. The pool is bounded (``MAX_WORKERS`` threads,
    env ``MICROTHREADS_THREADS``): extra calls queue for a thread. If the
    tasklet is killed (or times out) while waiting, the thread still runs fn
    to its end and the result is dropped. DNS, file I/O and CPU-heavy work
    belong here: the hub must never block.
    """
    future = _get_executor().submit(fn, *args, **kwargs)
    get_hub().wait_for_thread(lambda done: future.add_done_callback(lambda _future: done()))
    return future.result()
