"""Locks shared by tasklets and OS threads: what ``monkey.patch_thread()`` puts in
place of ``_thread``'s.

A ``HybridLock`` is a real lock (``_thread.allocate_lock()``, captured at
import, before any patching) and a line of waiters, guarded by a second real
lock that is held for a few lines and never across a wait:

- *Uncontended*: one non-blocking acquire of the real lock, whoever calls.
- *Contended*: the caller joins the line. A tasklet of this thread's hub parks
  (``hub.wait_for_thread``: the hub goes on, and counts the wait as work,
  since an OS thread may be what releases it). Any other caller (a plain
  thread, the hub's own greenlet, a thread without a hub) blocks on a real
  lock of its own, for real.
- ``release()`` with someone in line hands the lock to the first of them,
  whatever kind, and the real lock stays held: nobody arriving later can
  take it first. A tasklet's wake-up goes through ``call_soon_threadsafe`` of
  its hub, so a thread may release what a tasklet waits for.

``HybridRLock`` is reentrant per tasklet (its owner is the greenlet, not the
OS thread: two tasklets of one thread are two owners). The stdlib's
pure-Python ``threading.Condition``, ``Semaphore``, ``Event``, ``Barrier``
and ``queue.Queue`` are built on these locks and, once patched, cooperate
unmodified.
"""

from __future__ import annotations

import _thread
import warnings
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from greenlet import getcurrent

from .hub import current_hub
from .tasklet import getcurrent as current_tasklet
from .timeout import Timeout

if TYPE_CHECKING:
    from types import TracebackType

    from greenlet import greenlet

    from .hub import Hub

#: The real lock factory, whatever patching does later.
allocate_real_lock = _thread.allocate_lock
TIMEOUT_MAX = _thread.TIMEOUT_MAX
#: Greenlets inside ``waits_block_the_thread()``.
_blocking: set[Any] = set()


@contextmanager
def waits_block_the_thread() -> Iterator[None]:
    """Within the block, the calling tasklet's contended waits block its thread.

    For stdlib code that holds a real lock (one made before patching) across
    a wait on a hybrid one: parking there would let another tasklet of the
    thread block on that real lock, and the hub with it. ``Thread.start()``
    is such code (``concurrent.futures`` holds its module-level shutdown lock
    while a worker starts), and ``monkey.patch_thread()`` wraps it in this.
    """
    current = getcurrent()
    if current in _blocking:
        yield
        return
    _blocking.add(current)
    try:
        yield
    finally:
        _blocking.discard(current)


class _ThreadWaiter:
    """A blocked OS thread: it waits on a real lock of its own, released to hand over."""

    __slots__ = ("_gate",)

    def __init__(self) -> None:
        self._gate = allocate_real_lock()
        self._gate.acquire()

    def wait(self, timeout: float) -> bool:
        return self._gate.acquire(True, timeout)

    def grant(self) -> None:
        self._gate.release()


class _TaskletWaiter:
    """A parked tasklet: ``done`` (from ``hub.wait_for_thread``) wakes it from any thread."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: Callable[[], None] = _nothing

    def grant(self) -> None:
        self.done()


def _nothing() -> None:
    pass


def _check_arguments(blocking: bool, timeout: float) -> None:
    if not blocking and timeout != -1:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")


class _Lock:
    """What both locks share: the context manager and the stdlib's repr."""

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def _is_locked(self) -> bool:
        raise NotImplementedError

    def _describe(self) -> str:
        return ""

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "locked" if self._is_locked() else "unlocked"
        return (f"<{state} {type(self).__module__}.{type(self).__qualname__} object"
                f"{self._describe()} at {id(self):#x}>")


class HybridLock(_Lock):
    """``threading.Lock`` for tasklets and OS threads alike, fair (first come, first served).

    ``acquire(blocking=True, timeout=-1)`` returns True when taken, False when
    not (``blocking=False``, or ``timeout`` seconds passed); -1 waits without a
    limit. A tasklet waits parked, a thread blocked. Bad arguments raise as
    the stdlib's lock does (ValueError, OverflowError, TypeError). A tasklet
    killed while it waits leaves the line without the lock (passed on if it
    had just been handed it). ``release()`` may come from anyone (as with
    ``threading.Lock``); RuntimeError if it is not locked. No DeadlockError:
    the hub cannot know whether a thread will release it. It cannot be
    subclassed (TypeError), as ``threading.Lock`` cannot.
    """

    __slots__ = ("__weakref__", "_guard", "_held", "_waiters")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("type 'HybridLock' is not an acceptable base type")

    def __init__(self) -> None:
        self._held = allocate_real_lock()        # locked while somebody owns this lock
        self._guard = allocate_real_lock()       # over _waiters, never held across a wait
        self._waiters: deque[_ThreadWaiter | _TaskletWaiter] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; see the class docstring for how each kind of caller waits."""
        if timeout != -1:
            _check_arguments(blocking, timeout)
        if self._held.acquire(False):
            return True
        if not blocking or timeout == 0:
            return False
        hub = current_hub()
        current = getcurrent()
        if hub is not None and current is not hub.greenlet and current not in _blocking:
            return self._park(hub, timeout)
        return self._block(timeout)

    def _enqueue(self, waiter: _ThreadWaiter | _TaskletWaiter) -> bool:
        """Join the line; False if the lock came free meanwhile (taken instead)."""
        with self._guard:
            if self._held.acquire(False):
                return False
            self._waiters.append(waiter)
            return True

    def _leave(self, waiter: _ThreadWaiter | _TaskletWaiter) -> bool:
        """Leave the line after a wait that ended early; True if handed the lock already."""
        with self._guard:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True
            return False

    def _block(self, timeout: float) -> bool:
        waiter = _ThreadWaiter()
        if not self._enqueue(waiter):
            return True
        try:
            if waiter.wait(timeout):
                return True
        except BaseException:                    # KeyboardInterrupt in the main thread
            if self._leave(waiter):
                self.release()
            raise
        return self._leave(waiter)

    def _park(self, hub: Hub, timeout: float) -> bool:
        waiter = _TaskletWaiter()
        free = False

        def arm(done: Callable[[], None]) -> None:
            nonlocal free
            waiter.done = done
            if not self._enqueue(waiter):
                free = True
                done()                           # taken: the wait ends next turn

        limit = Timeout(None if timeout == -1 else timeout)
        try:
            with limit:
                hub.wait_for_thread(arm)
            return True
        except BaseException as exc:
            if free:
                handed = True
            else:
                handed = self._leave(waiter)
                if not handed:
                    waiter.done()                # nobody will: the hub stops counting it
            if exc is limit:
                return handed
            if handed:
                self.release()
            raise

    def release(self) -> None:
        """Release it, handing it to the first waiter if any; RuntimeError if unlocked."""
        with self._guard:
            if self._waiters:
                self._waiters.popleft().grant()
            else:
                self._held.release()             # RuntimeError: release unlocked lock

    def locked(self) -> bool:
        """True while somebody holds it."""
        return self._held.locked()

    @property
    def waiting(self) -> int:
        """How many tasklets and threads wait in line now (diagnostics: it changes at once)."""
        return len(self._waiters)

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def _at_fork_reinit(self) -> None:
        """After fork() in the child (threading calls it): unlocked, nobody waiting."""
        self._held = allocate_real_lock()
        self._guard = allocate_real_lock()
        self._waiters = deque()

    def _is_locked(self) -> bool:
        return self._held.locked()


class HybridRLock(_Lock):
    """``threading.RLock`` over a HybridLock; its owner is the calling tasklet (or thread).

    The owner may acquire it again and must release it as often; another
    tasklet of the same OS thread is another owner and waits. ``release()``
    by a non-owner raises RuntimeError. It has the three private methods
    that ``threading.Condition`` calls on its lock, as the stdlib's RLock does,
    so a Condition over it waits and restores the recursion count.
    """

    __slots__ = ("__weakref__", "_block", "_count", "_owner")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:                       # as 3.13's RLock: accepted, deprecated
            warnings.warn("Passing arguments to RLock is deprecated and will be removed"
                          " in 3.15", DeprecationWarning, stacklevel=3)
        self._block = HybridLock()
        self._owner: greenlet | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take it, or count one more acquire by its owner; as ``HybridLock.acquire``."""
        me = current_tasklet()
        if self._owner is me:
            self._count += 1
            return True
        if not self._block.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        """Undo one acquire; the last one releases the lock. Owner only (RuntimeError)."""
        if self._owner is not current_tasklet() or not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def _is_owned(self) -> bool:
        return self._owner is current_tasklet()

    def _recursion_count(self) -> int:
        return self._count if self._owner is current_tasklet() else 0

    def _release_save(self) -> tuple[int, Any]:
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._owner = None
        self._count = 0
        self._block.release()
        return state

    def _acquire_restore(self, state: tuple[int, Any]) -> None:
        self._block.acquire()
        self._count, self._owner = state

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0

    def _is_locked(self) -> bool:
        return self._block.locked()

    def _describe(self) -> str:
        return f" owner={self._owner!r} count={self._count}"
