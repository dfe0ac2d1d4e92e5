"""Time limits: Timeout, sleep, with_timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

from greenlet import getcurrent

from .hub import get_hub, sleep

__all__ = ["Timeout", "sleep", "with_timeout"]

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Literal

    from greenlet import greenlet
    from typing_extensions import Self

    from .hub import Hub
    from .timers import Timer

T = TypeVar("T")
D = TypeVar("D")


class Timeout(BaseException):
    """A time limit on the tasklet that sets it.

    As a context manager::

        with Timeout(5):
            line = conn.recv_line()     # raises Timeout here after 5 s

    or with ``start()``/``cancel()``. When the time runs out, ``exception`` is
    raised where the tasklet waits: None raises this Timeout itself; a class
    is instantiated; an instance is raised as it is. Leaving the block (or
    ``cancel()``) disarms it: a Timeout whose block has exited never fires.
    Nested timeouts each raise their own instance, so ``except Timeout as t:
    if t is mine`` tells them apart. It derives from ``BaseException`` (as
    ``TaskletExit`` does), so ``except Exception`` cannot swallow it.
    ``seconds=None`` never fires.
    """

    def __init__(self, seconds: float | None = None,
                 exception: type[BaseException] | BaseException | None = None) -> None:
        BaseException.__init__(self, seconds)
        self.seconds = seconds
        self.exception = exception
        self._timer: Timer | None = None

    def start(self) -> Self:
        """Arm it for the current tasklet; returns self. Starting twice is an error."""
        if self._timer is not None and self._timer.active:
            raise RuntimeError(f"{self!r} is already started")
        if self.seconds is None:
            return self
        hub = get_hub()
        target = getcurrent()
        # a tasklet's runner greenlet runs others after it: fire only in this one
        self._timer = hub.call_later(self.seconds, self._fire, hub, target,
                                     getattr(target, "tasklet", None))
        return self

    @classmethod
    def start_new(cls, seconds: float | None = None,
                  exception: type[BaseException] | BaseException | None = None) -> Self:
        """Make a Timeout and start it."""
        return cls(seconds, exception).start()

    def _fire(self, hub: Hub, target: greenlet, tasklet: object) -> None:
        if tasklet is not None and getattr(target, "tasklet", None) is not tasklet:
            return                        # that tasklet has ended
        exc = self.exception
        if exc is None:
            hub.throw_now(target, self)
        else:
            hub.throw_now(target, exc() if isinstance(exc, type) else exc)

    @property
    def pending(self) -> bool:
        """True while armed and not yet fired."""
        return self._timer is not None and self._timer.active

    def cancel(self) -> None:
        """Disarm it; it will not fire. Idempotent."""
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self.cancel()
        return False

    def __str__(self) -> str:
        if self.seconds is None:
            return "timeout"
        return f"{self.seconds:g} second{'s' if self.seconds != 1 else ''}"

    def __repr__(self) -> str:
        state = "pending" if self.pending else "idle"
        return f"<Timeout seconds={self.seconds} {state}>"


_unset: Any = object()


@overload
def with_timeout(seconds: float | None, fn: Callable[..., T], *args: Any, timeout_value: D,
                 **kwargs: Any) -> T | D: ...
@overload
def with_timeout(seconds: float | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...
def with_timeout(seconds: float | None, fn: Callable[..., Any], *args: Any,
                 timeout_value: Any = _unset, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` with a time limit.

    Returns what fn returns; when time runs out, returns ``timeout_value`` if
    one was given, or raises the ``Timeout``.
    """
    timeout = Timeout(seconds).start()
    try:
        return fn(*args, **kwargs)
    except Timeout as exc:
        if exc is timeout and timeout_value is not _unset:
            return timeout_value
        raise
    finally:
        timeout.cancel()
