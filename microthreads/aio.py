"""Tasklets and asyncio on one thread and one loop.

An asyncio event loop drives this thread's hub: the hub's descriptor
(``Hub.fileno()``, readable when any descriptor the hub watches is ready or a
thread woke it) is watched with ``loop.add_reader``, its next deadline with
``loop.call_at``, and ready work with ``loop.call_soon``; each time one fires
the loop runs one hub iteration (``Hub.tick(0)``). Nothing polls: when neither
side has work the thread sleeps in the loop's selector.

Two ways in::

    microthreads.aio.run(main, *args)          # a new loop runs main as a tasklet

    async def app():                           # a loop that already runs
        hub_task = asyncio.create_task(microthreads.aio.serve_hub())
        ...

Crossing over:

* from a tasklet, ``await_(awaitable)`` parks the tasklet until the awaitable
  finishes, and returns its result or raises its exception;
* from a coroutine, ``await wait_tasklet(tasklet)`` (or ``await tasklet``)
  waits for a tasklet, and ``await to_tasklet(fn, *args)`` runs blocking-looking
  code in a new tasklet and waits for it.

What a kill or a cancellation reaches: a tasklet killed (or timed out) inside
``await_`` cancels what it awaits, as a cancelled asyncio task cancels the
future it awaits (``asyncio.shield`` keeps it running), and waits until that
is through, so nothing is left pending. A coroutine owns the tasklet it starts
with ``to_tasklet``: cancelling the coroutine kills it. A coroutine cancelled
inside ``wait_tasklet`` only stops waiting: it did not start that tasklet.

Noticing work that a coroutine hands to the hub: a coroutine that calls into
microthreads directly (``spawn``, ``Event.set``, ``Queue.put``) adds work to
the hub without any descriptor or timer firing. On the loops ``run()`` and
``new_event_loop()`` make, the driver checks the hub each time the loop is
about to sleep, so such work is always noticed. On other loops (uvloop, a
loop made elsewhere) call ``wake_hub()`` after such a call; ``to_tasklet``,
``wait_tasklet`` and ``await_`` do it themselves.

What a coroutine must not do: call a microthreads function that waits (a
``sleep``, ``Lock.acquire``, ``Connection.recv``). It would run the hub in the
loop's own callback, stopping the asyncio side until the wait is over. Wait
for tasklets with ``wait_tasklet`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import signal
import threading
import weakref
from asyncio import isfuture
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from .hub import Hub, get_hub
from .tasklet import Tasklet, getcurrent, spawn

__all__ = ["await_", "new_event_loop", "run", "serve_hub", "to_tasklet", "wait_tasklet",
           "wake_hub"]

T = TypeVar("T")

_local = threading.local()


class _Driver:
    """Drives one hub from one asyncio loop (at most one per thread).

    It keeps, at all times, one of: a ``call_soon`` tick (work is ready), a
    ``call_at`` tick at the hub's next deadline, or nothing (the hub waits on
    I/O only, which the ``add_reader`` watch on its descriptor covers).
    """

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.loop = loop
        self._soon: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._fd = hub.fileno()
        self.attached = False
        #: Set by run(): the loop is ours, so "asyncio has nothing left" can be told.
        self.owner: _Run | None = None

    def attach(self) -> None:
        if getattr(_local, "driver", None) is not None:
            raise RuntimeError("this thread's hub is already driven by an asyncio loop")
        self.loop.add_reader(self._fd, self.tick)
        _local.driver = self
        self.attached = True
        self.schedule()

    def detach(self) -> None:
        if not self.attached:
            return
        self.attached = False
        _local.driver = None
        self.loop.remove_reader(self._fd)
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._cancel_timer()

    def kick(self) -> None:
        """Run a hub iteration soon (in the loop's next round of callbacks)."""
        if self._soon is None and self.attached:
            self._soon = self.loop.call_soon(self.tick)

    def tick(self) -> None:
        """One hub iteration, then arrange for the next one."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if not self.attached:
            return
        self.hub.tick(0)
        self.schedule()

    def schedule(self) -> float | None:
        """Arrange the next tick from the hub's next deadline.

        Returns how many seconds the loop may sleep as far as the hub is
        concerned (None: no limit).
        """
        deadline = self.hub.next_deadline()
        if deadline is None:
            self._cancel_timer()
            return None
        wait = deadline - self.hub.clock()
        if wait <= 0:
            self._cancel_timer()
            self.kick()
            return 0.0
        if self._timer_deadline != deadline:
            self._cancel_timer()
            self._timer = self.loop.call_at(self.loop.time() + wait, self.tick)
            self._timer_deadline = deadline
        return wait

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_deadline = None

    def before_sleep(self, timeout: float | None, selector: _HubAwareSelector) -> float | None:
        """Called by the loop's selector just before it waits ``timeout``."""
        if not self.attached or timeout == 0:
            return timeout                     # the loop comes back at once anyway
        wait = self.schedule()
        if wait is None and timeout is None and self._asyncio_is_idle(selector) \
                and self.hub.detect_deadlock(self.owner.signal_handlers):  # type: ignore[union-attr]
            self.kick()                        # deliver the DeadlockErrors
            return 0.0
        if wait is not None and (timeout is None or wait < timeout):
            return wait
        return timeout

    def _asyncio_is_idle(self, selector: _HubAwareSelector) -> bool:
        """Under run(), with no timer or ready callback in the loop (the caller
        saw ``timeout`` None): no task but main's, no descriptor but the hub's
        and the loop's own wake-up pipe. Nothing asyncio-side can act."""
        owner = self.owner
        if owner is None or len(selector.get_map()) > 2:
            return False
        return all(task is owner.task or task.done() for task in asyncio.all_tasks(self.loop))


class _HubAwareSelector(selectors.BaseSelector):
    """A selector that lets the driver look at the hub before the loop sleeps.

    asyncio's selector loop calls ``select()`` once per round, after running
    every ready callback: the one moment when work a coroutine handed to the
    hub directly can be noticed without polling.
    """

    def __init__(self, inner: selectors.BaseSelector | None = None) -> None:
        self._inner = inner if inner is not None else selectors.DefaultSelector()
        self.driver: _Driver | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        driver = self.driver
        if driver is not None:
            timeout = driver.before_sleep(timeout, self)
        return self._inner.select(timeout)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


def _driver() -> _Driver:
    driver: _Driver | None = getattr(_local, "driver", None)
    if driver is None or not driver.attached:
        raise RuntimeError("no asyncio loop drives this thread's hub: start it with"
                           " microthreads.aio.run(main), or run microthreads.aio.serve_hub()"
                           " in the application's loop")
    return driver


def wake_hub() -> None:
    """From a coroutine: make the driving loop run a hub iteration soon.

    Needed only on loops other than asyncio's selector loop (uvloop), after
    calling into microthreads directly (``spawn``, ``Event.set``, ...).
    Raises RuntimeError when no loop drives this thread's hub.
    """
    _driver().kick()


#: Loops made by new_event_loop(), with the selector that lets the driver in.
_hub_aware: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _HubAwareSelector] = \
    weakref.WeakKeyDictionary()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio selector loop that checks the hub each time before it sleeps.

    ``run()`` uses it; pass it to ``asyncio.Runner(loop_factory=...)`` (or
    ``asyncio.run(..., loop_factory=...)`` on 3.12+) to give an application
    that calls ``serve_hub()`` the same guarantee: work a coroutine hands to
    the hub directly is always noticed.
    """
    selector = _HubAwareSelector()
    loop = asyncio.SelectorEventLoop(selector)
    _hub_aware[loop] = selector
    return loop


def _hooked_selector(loop: asyncio.AbstractEventLoop) -> _HubAwareSelector | None:
    return _hub_aware.get(loop)


@contextlib.contextmanager
def _driving(loop: asyncio.AbstractEventLoop, owner: _Run | None = None) -> Iterator[_Driver]:
    """This thread's hub driven by ``loop`` for the time of the block."""
    driver = _Driver(get_hub(), loop)
    driver.owner = owner
    selector = _hooked_selector(loop)
    driver.attach()
    if selector is not None:
        selector.driver = driver
    try:
        yield driver
    finally:
        if selector is not None:
            selector.driver = None
        driver.detach()


async def serve_hub() -> None:
    """Drive this thread's hub from the running asyncio loop until cancelled.

    ``asyncio.create_task(serve_hub())`` in an application that already runs
    asyncio; cancel the task to stop (tasklets still parked stay parked, and
    ``run()`` or another ``serve_hub()`` can go on with them later). Raises
    RuntimeError if the hub is already driven. On a loop made by ``run()``
    work that coroutines hand the hub directly is noticed before each sleep;
    elsewhere see ``wake_hub()``.
    """
    loop = asyncio.get_running_loop()
    with _driving(loop):
        await loop.create_future()              # until cancelled


def await_(awaitable: Awaitable[T]) -> T:
    """From a tasklet: wait for ``awaitable`` on the driving loop; its result.

    A coroutine becomes an asyncio task (in the tasklet's ``contextvars``
    context); a future or task is awaited as it is. The tasklet parks and
    the hub and the loop go on. Raises what the awaitable raised
    (``asyncio.CancelledError`` if it was cancelled). When the tasklet is
    killed or a ``Timeout`` fires while it waits, the task is cancelled and
    waited for before the kill or Timeout goes on, so nothing is left
    pending. Raises RuntimeError outside a tasklet, or when no asyncio loop
    drives the hub (see ``run()``).
    """
    driver: _Driver | None = getattr(_local, "driver", None)
    if driver is None or not driver.attached:
        driver = _driver()                      # raises, naming aio.run
    current = getcurrent()
    if not isinstance(current, Tasklet):
        raise RuntimeError("microthreads.aio.await_() must be called from a tasklet;"
                           " a coroutine uses `await` directly")
    if isfuture(awaitable):
        future: asyncio.Future[T] = awaitable
    else:
        future = asyncio.ensure_future(awaitable, loop=driver.loop)
    if not future.done():
        try:
            _park_until_done(driver, current, future)
        except BaseException:                  # a kill or a Timeout: cancel, wait, go on
            if not future.done():
                future.cancel()
                with contextlib.suppress(BaseException):   # a second kill: the first goes on
                    _park_until_done(driver, current, future)
            raise
    return future.result()


def _park_until_done(driver: _Driver, current: Tasklet, future: asyncio.Future[Any]) -> None:
    """Park ``current`` until ``future`` is done; a kill leaves it waiting no more."""
    hub = driver.hub
    waiting = True

    def done(_future: asyncio.Future[Any]) -> None:
        if waiting:                            # not if the tasklet stopped waiting
            hub.schedule_wakeup(current)
            driver.tick()                      # resume it now, not a loop round later

    future.add_done_callback(done)
    try:
        hub.park()
    except BaseException:
        waiting = False
        future.remove_done_callback(done)
        raise


async def wait_tasklet(tasklet: Tasklet) -> Any:
    """From a coroutine: wait until ``tasklet`` ends; its value, or raise its error.

    ``await tasklet`` does the same. Waiting counts as joining: the tasklet's
    error is raised here and not reported again. Cancelling the waiting
    coroutine only stops the wait: the tasklet is not this coroutine's to
    kill. Raises RuntimeError when no asyncio loop drives the tasklet's hub.
    """
    driver = _driver()
    future = driver.loop.create_future()

    def finished(_tasklet: Tasklet) -> None:
        if not future.done():
            future.set_result(None)

    tasklet.link(finished)                     # called soon if it has finished already
    driver.kick()
    try:
        await future
    finally:
        tasklet.unlink(finished)
    if tasklet.exception is not None:
        raise tasklet.exception
    return tasklet.value


async def to_tasklet(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """From a coroutine: run ``fn(*args, **kwargs)`` in a new tasklet; its result.

    The asyncio counterpart of ``asyncio.to_thread`` for blocking-looking
    microthreads code. The coroutine owns that tasklet: cancelling it kills
    the tasklet (and waits until it has ended) before the cancellation goes on.
    """
    driver = _driver()
    tasklet = spawn(fn, *args, **kwargs)
    driver.kick()
    try:
        return await wait_tasklet(tasklet)   # type: ignore[no-any-return]
    except asyncio.CancelledError:
        if not tasklet.dead:
            tasklet.kill(block=False)
            driver.kick()
            await asyncio.shield(wait_tasklet(tasklet))
        raise


def run(main: Callable[..., T], *args: Any, use_uvloop: bool = False, debug: bool = False,
        **kwargs: Any) -> T:
    """Run ``main(*args, **kwargs)`` as a tasklet, the hub driven by a new asyncio loop.

    Returns main's value or raises its exception once it has ended (its
    finish hooks included); asyncio tasks still pending then are cancelled,
    as ``asyncio.run`` does. ``use_uvloop`` runs uvloop's loop (ImportError
    if it is not installed); the default is asyncio's selector loop, on
    which work a coroutine hands to the hub is always noticed. Tasklets
    blocked on something nothing can provide, while the asyncio side has no
    task, timer or descriptor that could still act, get ``DeadlockError``
    as under ``microthreads.run()``. As ``asyncio.Runner`` does, a first
    Ctrl-C cancels main (its tasklet is killed, its ``finally`` blocks run)
    and is raised as KeyboardInterrupt; a second one is raised at once. Not
    re-entrant: raises RuntimeError from inside a tasklet or a running loop.
    """
    if isinstance(getcurrent(), Tasklet):
        raise RuntimeError("microthreads.aio.run() was called from inside a tasklet"
                           " (use await_() there)")
    factory: Callable[[], asyncio.AbstractEventLoop]
    if use_uvloop:
        import uvloop
        factory = uvloop.new_event_loop
    else:
        factory = new_event_loop
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.set_debug(debug)
        state = _Run()
        state.task = loop.create_task(_main(state, main, args, kwargs))
        with state.sigint_cancels_main(loop):
            return loop.run_until_complete(state.task)  # type: ignore[no-any-return]  # main's T
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class _Run:
    """What run() knows of its own loop: main's task and the SIGINT handler."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.signal_handlers: tuple[Callable[..., Any], ...] = ()
        self.interrupted = False

    @contextlib.contextmanager
    def sigint_cancels_main(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        task = self.task
        assert task is not None

        def on_sigint(signum: int, frame: object) -> None:
            if self.interrupted or task.done():
                raise KeyboardInterrupt
            self.interrupted = True
            loop.call_soon_threadsafe(task.cancel)

        restore = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            restore = signal.signal(signal.SIGINT, on_sigint)
            self.signal_handlers = (on_sigint,)
        try:
            yield
        except asyncio.CancelledError:
            if self.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            if restore is not None:
                signal.signal(signal.SIGINT, restore)


async def _main(state: _Run, main: Callable[..., T], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> T:
    with _driving(asyncio.get_running_loop(), owner=state):
        return await to_tasklet(main, *args, **kwargs)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending and let them finish, as asyncio.run does."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
