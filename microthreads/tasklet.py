"""Tasklets: greenlets the hub schedules, with spawn, join, kill and finish hooks."""

from __future__ import annotations

import logging
import sys
from contextvars import copy_context as _copy_context
from typing import TYPE_CHECKING, Any, Callable, Iterable

from greenlet import getcurrent as _getcurrent
from greenlet import greenlet

from . import hooks as _hooks
from .errors import TaskletExit
from .hub import TIMED_OUT, WAIT_STATE, get_hub

if TYPE_CHECKING:
    from collections.abc import Generator

    from .hub import Hub
    from .timers import Timer

log = logging.getLogger("microthreads")
_NO_KWARGS: dict[str, Any] = {}
# Tasklet._hooks once the finish hooks have run (compared by identity, never appended to)
_HOOKS_RAN: list[tuple[Callable[..., object], tuple[Any, ...]]] = []


class Tasklet(greenlet):
    """The handle on one microthread: a greenlet whose parent is the hub.

    Made by ``spawn()``; starts in the hub's next iteration. It runs in a copy
    of its spawner's ``contextvars`` context. When it ends (return, exception
    or kill) its finish hooks run once each, in order, in the hub's next
    iteration, then whoever joined it is woken.

    An exception that escapes it ends this tasklet only: it is kept
    (``exception``, re-raised by ``get()``) and reported once through
    ``logging`` when it dies, unless someone already waits in ``join``/``get``
    on it or a ``Group`` owns it.
    """

    __slots__ = ("_args", "_ended", "_exception", "_finished", "_fn", "_hooks", "_hub",
                 "_kwargs", "_links", "_name", "_start_timer", "_started", "_value",
                 *WAIT_STATE)          # the hub's wait state, set by Hub.start()

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None, hub: Hub | None = None) -> None:
        hub = hub or get_hub()
        greenlet.__init__(self, None, hub.greenlet)
        self.gr_context = _copy_context()
        self._fn = fn
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs or _NO_KWARGS
        self._hub = hub
        self._started = False
        self._ended = False           # dead: run() is over, or killed before it began
        self._finished = False        # dead and every hook and joiner has been served
        self._value: Any = None
        self._exception: BaseException | None = None
        # [(fn, args)] added by on_finish, made on demand
        self._hooks: list[tuple[Callable[..., object], tuple[Any, ...]]] | None = None
        self._links: list[Callable[[Tasklet], object]] | None = None  # joiners, run()
        self._start_timer: Timer | None = None
        self._name: str | None = None

    # ---------------------------------------------------------------- body

    def run(self, _value: object = None) -> None:
        """The tasklet's body, run by the hub once (greenlet's ``run``): calls the
        function, keeps its value or its error (``TaskletExit`` is a normal end)
        and finishes the tasklet. Not for users to call: ``spawn`` starts it.
        """
        self._started = True
        try:
            self._value = self._fn(*self._args, **self._kwargs)  # type: ignore[arg-type,misc]
        except TaskletExit:
            pass
        except BaseException as exc:  # kept on the tasklet, reported once
            self._exception = exc
        self._args = self._kwargs = None     # let them go; _fn stays for name and repr
        self._end()

    def _end(self) -> None:
        """The tasklet is dead: report, then schedule hooks for the next iteration."""
        self._ended = True
        hub = self._hub
        hub.retire(self)
        exc = self._exception
        if exc is not None:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                hub.interrupt(exc)            # raised to the caller of run()
            elif not self._links:
                hub.report_error(self, exc)
        hub.call_soon(self._finish)

    def _finish(self) -> None:
        """Runs on the hub: finish hooks in order, global hooks, then joiners."""
        hooks, self._hooks = self._hooks, _HOOKS_RAN
        if hooks:
            for fn, args in hooks:
                try:
                    fn(*args)
                except Exception:
                    log.exception("microthreads: finish hook %r of %r failed", fn, self)
        if _hooks.finish_hooks:
            _hooks.fire_finish(self)
        self._finished = True
        links, self._links = self._links, None
        if links:
            for link in links:
                link(self)

    # ---------------------------------------------------------- the handle

    @property
    def dead(self) -> bool:
        """True once it has ended (returned, raised, or was killed)."""
        return self._ended

    @property
    def finished(self) -> bool:
        """True once it has ended and its finish hooks and joiners have been served."""
        return self._finished

    @property
    def started(self) -> bool:
        """True once it has begun to run (or was killed before it could)."""
        return self._started

    @property
    def value(self) -> Any:
        """What the function returned; None until then, or if it failed or was killed."""
        return self._value

    @property
    def exception(self) -> BaseException | None:
        """The exception it ended with; None if it succeeded or was killed plainly."""
        return self._exception

    def successful(self) -> bool:
        """True if it is dead and ended without an exception (a plain kill counts)."""
        return self._ended and self._exception is None

    @property
    def name(self) -> str:
        """A label for logs and deadlock reports; settable. Default: the function's name."""
        if self._name is None:
            fn = self._fn
            self._name = getattr(fn, "__qualname__", None) or repr(fn)
        return self._name

    @name.setter
    def name(self, value: object) -> None:
        self._name = str(value)

    def __repr__(self) -> str:
        if self._ended:
            state = "dead" if self._exception is None else \
                f"failed with {type(self._exception).__name__}"
        elif not self._started:
            state = "not started"
        else:
            state = "running" if self is _getcurrent() else "waiting"
        return f"<Tasklet {self.name!r} {state}>"

    def on_finish(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` once when this tasklet ends, whatever the reason.

        Hooks run in the order added, each in the hub's next iteration after
        the death (never inside the dying tasklet's stack), before joiners are
        woken. Added after the end, it runs in the next iteration. A hook that
        raises is logged and the rest still run. Hooks run on the hub: they
        must not block (spawn a tasklet for blocking work).
        """
        hooks = self._hooks
        if hooks is _HOOKS_RAN:              # the hooks have run (or are running)
            self._hub.call_soon(fn, *args)
        elif hooks is None:
            self._hooks = [(fn, args)]
        else:
            hooks.append((fn, args))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until it has ended and its finish hooks have run.

        Returns True, or False if ``timeout`` seconds passed first. Never raises
        the tasklet's exception (``get()`` does).
        """
        if self._finished:
            return True
        hub = self._hub
        hub.check_thread()
        waiter = _getcurrent()
        if waiter is self:
            raise RuntimeError(f"{self!r} cannot join itself")

        def wake(_tasklet: Tasklet) -> None:
            hub.schedule_wakeup(waiter, True)

        self._link(wake)
        try:
            return hub.park(timeout) is not TIMED_OUT
        finally:
            self._unlink(wake)

    def link(self, fn: Callable[[Tasklet], object]) -> None:
        """Call ``fn(self)`` on the hub once it has ended and its finish hooks ran.

        Soon (the hub's next iteration) if that is so already. A link counts
        as joining: a tasklet linked when it dies does not report its error,
        whoever reads it does. Like hooks, ``fn`` runs on the hub and must not
        block. ``unlink(fn)`` takes it back.
        """
        if self._finished:
            self._hub.call_soon(fn, self)
        else:
            self._link(fn)

    def unlink(self, fn: Callable[[Tasklet], object]) -> None:
        """Take back a ``link(fn)`` that has not been called yet; else nothing."""
        self._unlink(fn)

    def _link(self, fn: Callable[[Tasklet], object]) -> None:
        """Call ``fn(self)`` after the finish hooks; counts as joining (no report)."""
        if self._links is None:
            self._links = [fn]
        else:
            self._links.append(fn)

    def _unlink(self, fn: Callable[[Tasklet], object]) -> None:
        if not self._finished and self._links and fn in self._links:
            self._links.remove(fn)

    def __await__(self) -> Generator[Any, None, Any]:
        """``await tasklet`` in a coroutine: ``microthreads.aio.wait_tasklet``."""
        # Only a loop that microthreads.aio drives can await a tasklet, so that
        # module is loaded by then: looked up, not imported, tasklet never
        # depends on aio (aio imports tasklet: no import circle).
        aio = sys.modules.get("microthreads.aio")
        if aio is None:
            raise RuntimeError("no asyncio loop drives this thread's hub: start it with"
                               " microthreads.aio.run(main)")
        return aio.wait_tasklet(self).__await__()  # type: ignore[no-any-return]

    def get(self, timeout: float | None = None) -> Any:
        """Wait for the result: return the value, or raise the exception it ended with.

        Raises ``Timeout`` if ``timeout`` seconds pass first. Re-raising does not
        report the error again.
        """
        if not self.join(timeout):
            from .timeout import Timeout
            raise Timeout(timeout)
        if self._exception is not None:
            raise self._exception
        return self._value

    def kill(self, exc: type[BaseException] | BaseException = TaskletExit, block: bool = True,
             timeout: float | None = None) -> None:
        """End the tasklet by raising ``exc`` (a class or instance) where it waits.

        A tasklet not yet started never runs (its finish hooks still do). One
        that waits anywhere (sleep, lock, queue, channel, socket) is resumed
        with ``exc``, which removes every wake-up it had registered. With the
        default ``TaskletExit`` it ends as a success with value None;
        ``kill(SomeError)`` ends it as failed with that error. ``block`` waits
        (at most ``timeout`` seconds) until it has ended. Killing a dead
        tasklet does nothing; killing yourself raises ``exc`` at once.
        """
        if self._ended:
            return
        hub = self._hub
        hub.check_thread()
        if isinstance(exc, type):
            exc = exc()
        if not self._started:
            self._started = True
            hub.cancel_wakeups(self)         # its start is now a stale wake-up
            if self._start_timer is not None:
                self._start_timer.cancel()
            if not isinstance(exc, TaskletExit):
                self._exception = exc
                if block:                    # the killer is told, as a joiner would be
                    self._link(_ignore)
            self._args = self._kwargs = None
            self._end()
            return
        if self is _getcurrent():
            raise exc
        hub.schedule_kill(self, exc)
        if block:
            self.join(timeout)


# ------------------------------------------------------------ module verbs


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tasklet:
    """Start ``fn(*args, **kwargs)`` in a new tasklet; returns at once.

    It begins in the hub's next iteration, after the tasklets already ready.
    """
    hub = get_hub()
    tasklet = Tasklet(fn, args, kwargs, hub)
    hub.start(tasklet)
    if _hooks.spawn_hooks:
        _hooks.fire_spawn(tasklet)
    return tasklet


def spawn_later(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tasklet:
    """Like ``spawn()``, but the tasklet starts ``seconds`` from now."""
    hub = get_hub()
    tasklet = Tasklet(fn, args, kwargs, hub)
    tasklet._start_timer = hub.start_later(seconds, tasklet)
    if _hooks.spawn_hooks:
        _hooks.fire_spawn(tasklet)
    return tasklet


def getcurrent() -> greenlet:
    """The running tasklet (or, outside any tasklet, the thread's main greenlet)."""
    return _getcurrent()


def on_finish(fn: Callable[..., object], *args: Any) -> None:
    """Add a finish hook to the current tasklet: ``fn(*args)`` once when it ends.

    The seed's ``tasks.on_finish``. Raises RuntimeError outside a tasklet.
    """
    current = _getcurrent()
    if not isinstance(current, Tasklet):
        raise RuntimeError("on_finish() must be called from inside a tasklet")
    current.on_finish(fn, *args)


def run(fn: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
    """Run the hub until ``fn(*args, **kwargs)`` returns; return its value or raise.

    ``fn`` runs in a new tasklet (whose finish hooks have run when this
    returns). With no ``fn``, runs until nothing is left: no tasklet, timer,
    watched descriptor or thread job. Tasklets blocked on something nobody
    can provide get ``DeadlockError`` instead of hanging. Ctrl-C raises
    ``KeyboardInterrupt`` here and leaves the hub usable: ``run()`` again
    goes on. Not re-entrant: calling it from inside a tasklet raises
    RuntimeError.
    """
    hub = get_hub()
    if fn is None:
        hub.run()
        return None
    current = _getcurrent()
    if current.parent is hub.greenlet:
        raise RuntimeError("microthreads.run() is not re-entrant: it was called from inside"
                           " a tasklet (spawn() and join() instead)")
    tasklet = spawn(fn, *args, **kwargs)
    tasklet._link(_ignore)                   # its error is raised here, not logged
    hub.run(tasklet)
    if tasklet._exception is not None:
        raise tasklet._exception
    return tasklet._value


def _ignore(_tasklet: Tasklet) -> None:
    pass


def joinall(tasklets: Iterable[Tasklet], timeout: float | None = None,
            raise_error: bool = False) -> list[Tasklet]:
    """Wait until every tasklet has ended; return the list of those that did.

    Waits at most ``timeout`` seconds (None: no limit). With ``raise_error``,
    the first failure is raised as soon as it is seen (the others keep
    running). Waiting here counts as joining: their errors are not logged.
    """
    tasklets = list(tasklets)  # read once
    if raise_error:
        _raise_first_failure(tasklets)
    pending = [tasklet for tasklet in tasklets if not tasklet._finished]
    if pending:
        hub = get_hub()
        hub.check_thread()
        waiter = _getcurrent()
        left = len(pending)

        def wake(tasklet: Tasklet) -> None:  # O(1) per end: 10,000 joined cost no rescans
            nonlocal left
            left -= 1
            if not left or (raise_error and tasklet._exception is not None):
                hub.schedule_wakeup(waiter)

        for tasklet in pending:
            tasklet._link(wake)
        try:
            hub.park(timeout)
        finally:
            for tasklet in pending:
                tasklet._unlink(wake)
    if raise_error:
        _raise_first_failure(tasklets)
    return [tasklet for tasklet in tasklets if tasklet._finished]


def _raise_first_failure(tasklets: Iterable[Tasklet]) -> None:
    for tasklet in tasklets:
        if tasklet._ended and tasklet._exception is not None:
            raise tasklet._exception


def killall(tasklets: Iterable[Tasklet],
            exc: type[BaseException] | BaseException = TaskletExit, block: bool = True,
            timeout: float | None = None) -> None:
    """Kill every tasklet (all at once); with ``block``, wait for them to end."""
    tasklets = list(tasklets)  # read once
    for tasklet in tasklets:
        tasklet.kill(exc, block=False)
    if block:
        joinall(tasklets, timeout)
