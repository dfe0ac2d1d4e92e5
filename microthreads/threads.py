"""Blocking work off the hub: run_in_thread, on a bounded pool of OS threads.

The pool starts a worker thread when a call finds none idle (at most
``MAX_WORKERS``), and a worker that has waited ``IDLE_SECONDS`` without work
exits: a burst of name lookups leaves no thread behind once it is over (a
test suite that counts threads sees them go). Its queue and locks are the
interpreter's own C objects, taken when this module is imported, so they
stay real whatever ``monkey.patch_thread()`` replaces later.
"""

from __future__ import annotations

import atexit
import os
import threading
from _queue import Empty, SimpleQueue
from _thread import allocate_lock
from typing import Any, Callable, Generic, TypeVar

from .env import env_number
from .hub import get_hub

T = TypeVar("T")

#: How many worker threads at most (shared by every hub of the process).
MAX_WORKERS = int(env_number("MICROTHREADS_THREADS", "worker threads", integer=True) or 0) \
    or min(32, (os.cpu_count() or 1) + 4)
_idle = env_number("MICROTHREADS_THREAD_IDLE", "seconds a worker thread waits idle")
#: How long an idle worker thread waits for work before it exits (seconds; read at
#: each wait, so setting it takes effect at once; env ``MICROTHREADS_THREAD_IDLE``).
IDLE_SECONDS: float = 5.0 if _idle is None else _idle


class _Job(Generic[T]):
    """One call: run in a worker, then ``done()`` tells the waiting tasklet's hub."""

    __slots__ = ("args", "done", "error", "fn", "kwargs", "value")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any],
                 done: Callable[[], None]) -> None:
        self.fn, self.args, self.kwargs, self.done = fn, args, kwargs, done
        self.value: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:          # raised in the tasklet, by result()
            self.error = exc
        finally:
            self.fn = self.args = self.kwargs = None  # type: ignore[assignment]  # done
            self.done()

    def result(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None      # no cycle through its traceback
            raise error
        return self.value  # type: ignore[return-value]  # set by run()


class _Pool:
    """Worker threads started on demand, each leaving after IDLE_SECONDS without work.

    ``_spare`` is the number of workers waiting for work, less the jobs queued
    for them: below 0, a job has nobody and a worker starts (under the bound).
    """

    def __init__(self) -> None:
        self._jobs: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._lock = allocate_lock()
        self._spare = 0
        self._workers: set[threading.Thread] = set()
        self._made = 0                        # for the threads' names

    def submit(self, job: _Job[Any]) -> None:
        with self._lock:
            self._jobs.put(job)
            self._spare -= 1
            if self._spare < 0 and len(self._workers) < MAX_WORKERS:
                self._spare += 1
                self._made += 1
                worker = threading.Thread(target=self._work, daemon=True,
                                          name=f"microthreads-worker_{self._made}")
                self._workers.add(worker)
                worker.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                # Python 3.10's get(timeout=0) can block for good (its timeout, recomputed
                # after a wake that found the queue empty, goes negative: "no limit")
                job = self._jobs.get(timeout=IDLE_SECONDS) if IDLE_SECONDS > 0 else \
                    self._jobs.get(block=False)
            except Empty:
                with self._lock:              # a job put meanwhile is taken, not left
                    if self._jobs.empty():
                        self._spare -= 1
                        self._workers.discard(me)
                        return
                continue
            if job is None:                   # shutdown()
                return
            try:
                job.run()
            except BaseException:             # its hub could not be told (gone): not ours
                with self._lock:
                    self._workers.discard(me)
                raise
            del job
            with self._lock:
                self._spare += 1

    def shutdown(self) -> None:
        """At exit: idle workers leave now, busy ones finish their call first."""
        with self._lock:
            workers = list(self._workers)
            for _ in workers:
                self._jobs.put(None)
        for worker in workers:
            worker.join()


_pool = _Pool()
atexit.register(lambda: _pool.shutdown())


def _forget_pool_after_fork() -> None:
    global _pool
    _pool = _Pool()                           # the parent's workers do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def make_pool() -> None:
    """Nothing left to do: the pool's queue and locks were taken, real, at import.

    Kept for ``monkey.patch_thread()``, which calls it before it patches.
    """


def run_in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking ``fn(*args, **kwargs)`` in a worker thread; return its value.

    The calling tasklet waits; the hub goes on serving the others. fn's
    exception is raised here. The pool is bounded (``MAX_WORKERS`` threads,
    env ``MICROTHREADS_THREADS``): extra calls queue for a thread; a thread
    idle for ``IDLE_SECONDS`` exits. If the tasklet is killed (or times out)
    while waiting, the thread still runs fn to its end and the result is
    dropped. DNS, file I/O and CPU-heavy work belong here: the hub must
    never block.
    """
    hub = get_hub()
    job: _Job[T] | None = None

    def submit(done: Callable[[], None]) -> None:
        nonlocal job
        job = _Job(fn, args, kwargs, done)
        _pool.submit(job)

    hub.wait_for_thread(submit)
    assert job is not None
    return job.result()
