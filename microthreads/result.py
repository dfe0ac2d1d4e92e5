"""AsyncResult: a one-shot slot for a value or an exception, waited for cooperatively."""

from __future__ import annotations

from concurrent.futures import InvalidStateError
from typing import Generic, TypeVar

from .sync import Event
from .timeout import Timeout

T = TypeVar("T")


class AsyncResult(Generic[T]):
    """A result that will be set once, by one tasklet, and read by any number.

    ::

        result = AsyncResult()
        spawn(lambda: result.set(compute()))
        print(result.get(timeout=5))      # parks until set; Timeout after 5 s

    As gevent's ``AsyncResult`` and ``concurrent.futures.Future``: ``set()``
    or ``set_exception()`` settles it, once (a second attempt raises
    ``concurrent.futures.InvalidStateError`` and changes nothing); every
    reader parked in ``get()``/``wait()`` is woken in arrival order. Setting
    never blocks. ``get()`` returns the value or raises the exception (each
    time it is called); on timeout it raises ``microthreads.Timeout``, as
    ``Tasklet.get`` does. ``wait()`` returns a bool, as ``Event.wait`` and
    ``Tasklet.join`` do (gevent's returns the value). A reader that nothing
    could ever wake gets ``DeadlockError`` naming ``AsyncResult.get()``. It
    belongs to one hub: settle it from another OS thread through
    ``hub.call_soon_threadsafe(result.set, value)``.
    """

    __slots__ = ("_event", "_exception", "_value")

    def __init__(self) -> None:
        self._event = Event()
        self._value: T | None = None
        self._exception: BaseException | None = None

    # ------------------------------------------------------------ settling

    def set(self, value: T | None = None) -> None:
        """Settle it with ``value`` and wake every reader. InvalidStateError if settled."""
        self._check_unset()
        self._value = value
        self._event.set()

    def set_exception(self, exc: BaseException) -> None:
        """Settle it with ``exc`` (an instance), raised to every reader of ``get()``.

        InvalidStateError if it is already settled; TypeError for a non-exception.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"set_exception() needs an exception instance, not {exc!r}")
        self._check_unset()
        self._exception = exc
        self._event.set()

    def _check_unset(self) -> None:
        if self._event.is_set():
            raise InvalidStateError(f"{self!r} is already settled")

    # ------------------------------------------------------------- reading

    def ready(self) -> bool:
        """True once settled (with a value or an exception)."""
        return self._event.is_set()

    def successful(self) -> bool:
        """True once settled with a value; False while unsettled or if it holds an exception."""
        return self._event.is_set() and self._exception is None

    @property
    def value(self) -> T | None:
        """The value it was set with; None while unsettled or if it holds an exception."""
        return self._value

    @property
    def exception(self) -> BaseException | None:
        """The exception it was settled with; None while unsettled or if it holds a value."""
        return self._exception

    def wait(self, timeout: float | None = None) -> bool:
        """Park until settled; True, or False if ``timeout`` seconds passed first.

        Never raises the held exception. Returns at once when settled.
        """
        return self._event.wait(timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Park until settled; return the value or raise the held exception.

        Raises ``Timeout(timeout)`` if ``timeout`` seconds pass first, or at
        once with ``block=False`` when it is not settled yet.
        """
        if not self._event.is_set() and (not block or not self._event.wait(timeout)):
            raise Timeout(timeout if block else 0)
        if self._exception is not None:
            raise self._exception
        return self._value  # type: ignore[return-value]  # set() stored a T (or None as T)

    def get_nowait(self) -> T:
        """``get(block=False)``: the value, the held exception, or Timeout at once."""
        return self.get(block=False)

    def __repr__(self) -> str:
        if not self._event.is_set():
            state = "unset"
        elif self._exception is not None:
            state = f"exception={self._exception!r}"
        else:
            state = f"value={self._value!r}"
        return f"<AsyncResult {state}>"
