"""The one non-blocking path: try the call; on "would block", wait for readiness and retry.

Every cooperative I/O operation of the package (``microthreads.net``'s
sockets, TLS sockets, Connections and servers; ``microthreads.subprocess``'s
pipes) keeps its descriptor non-blocking and is written the same way::

    try:
        return sock.recv(n)        # the fast path: no wait, no switch, no extra call
    except BlockingIOError:
        pass                       # (the wait below, outside the handler)
    return retry(hub, fd, READABLE, deadline, sock.recv, n)

The first attempt stays inline in the caller, so an operation whose system
call succeeds costs no call into this module; ``retry`` is the slow path:
wait until the descriptor is ready, try again, and repeat until the call
stops saying "would block" or the deadline passes. ``call`` is both steps
in one, for callers that are not a hot path. The wait is made outside any
``except`` block: a tasklet parked inside one keeps the exception and its
traceback alive for as long as it waits.

A deadline is absolute, on the hub's clock (``Hub.clock()``), None for no
limit: ``deadline_after`` makes one from a timeout, ``remaining`` turns it
back into seconds for an API that takes a timeout.

``EagerBudget`` is the other half of the same path: an operation that never
waits never lets the hub run, so after a budget's worth of them in a row the
tasklet yields once (the hub polling for I/O first), and a flooding peer
cannot starve the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from .hub import Hub

T = TypeVar("T")

#: ``retry``'s ``writable`` argument: wait for the descriptor to become readable ...
READABLE = False
#: ... or writable.
WRITABLE = True
#: Operations in a row that did not wait, after which a tasklet yields once
#: (``microthreads.net.Connection``'s budget, and a DatagramServer's reader's).
EAGER_BUDGET = 64

_NO_CLASSES: tuple[type[BaseException], ...] = ()


def deadline_after(hub: Hub, timeout: float | None) -> float | None:
    """The deadline ``timeout`` seconds from now on ``hub``'s clock; None for None."""
    return None if timeout is None else hub.clock() + timeout


def remaining(hub: Hub, deadline: float | None) -> float | None:
    """The seconds left until ``deadline`` (0.0 once it has passed); None for None."""
    return None if deadline is None else max(0.0, deadline - hub.clock())


def wait_ready(hub: Hub, fd: int, writable: bool, deadline: float | None,
               timeout_error: Callable[[str], BaseException] = TimeoutError,
               what: str = "timed out") -> None:
    """Park until ``fd`` is writable (``writable``) or readable, or has an error.

    Raises ``timeout_error(what)`` if the deadline passes first (a deadline
    already past still gets a zero-length wait: a descriptor ready by now
    passes). Raises what the wait raises: the exception ``hub.close_fd``
    hands a waiter when the descriptor is closed meanwhile, a kill, a
    ``Timeout``, RuntimeError when another tasklet already waits on that
    side of ``fd``.
    """
    wait = hub.wait_writable if writable else hub.wait_readable
    if deadline is None:
        wait(fd)
    elif not wait(fd, max(0.0, deadline - hub.clock())):
        raise timeout_error(what)


def retry(hub: Hub, fd: int, writable: bool, deadline: float | None,
          operation: Callable[..., T], *args: Any,
          timeout_error: Callable[[str], BaseException] = TimeoutError,
          what: str = "timed out",
          would_block: type[BaseException] | tuple[type[BaseException], ...] = BlockingIOError,
          wants_write: type[BaseException] | tuple[type[BaseException], ...] = _NO_CLASSES,
          budget: EagerBudget | None = None) -> T:
    """``operation(*args)`` once ``fd`` is ready, again while it says it would block.

    The slow path, called after a first attempt raised ``would_block``
    (default ``BlockingIOError``): waits for the side ``writable`` names
    (``wait_ready``), calls, and repeats until the call returns (its value
    is returned) or raises anything else (raised as it is). ``wants_write``:
    the "would block" exceptions after which the next wait is for writable,
    the others then waiting for readable (a TLS read may need to write);
    without it, every wait is on the side first named. ``budget`` is
    refilled: the caller waited. Timeouts and the wait's own exceptions as
    for ``wait_ready``.
    """
    if budget is not None:
        budget._left = budget.size                # refill(), inlined: the slow path is hot too
    wait = hub.wait_writable if writable else hub.wait_readable
    while True:
        if deadline is None:                      # wait_ready(), inlined
            wait(fd)
        elif not wait(fd, max(0.0, deadline - hub.clock())):
            raise timeout_error(what)
        try:
            return operation(*args)
        except would_block as exc:
            if wants_write:
                writable = isinstance(exc, wants_write)
                wait = hub.wait_writable if writable else hub.wait_readable


def call(hub: Hub, fd: int, writable: bool, deadline: float | None,
         operation: Callable[..., T], *args: Any,
         budget: EagerBudget | None = None) -> T:
    """``operation(*args)`` at once, then as ``retry`` if it raised BlockingIOError.

    For callers off the hot path (an extra Python call per operation);
    ``TimeoutError`` past the deadline.
    """
    try:
        return operation(*args)
    except BlockingIOError:
        pass
    return retry(hub, fd, writable, deadline, operation, *args, budget=budget)


class EagerBudget:
    """How many more operations a tasklet may do in a row without waiting.

    ``spend()`` as each operation begins, before it takes or sends anything,
    so a kill or Timeout raised in the yield loses nothing; ``refill()``
    after a wait (``retry`` does it). When the budget is spent the tasklet
    yields once, and the hub polls for I/O before it runs again
    (``Hub.poll_soon``), so the others' input gets in.
    """

    __slots__ = ("_hub", "_left", "size")

    def __init__(self, hub: Hub, size: int = EAGER_BUDGET) -> None:
        self._hub = hub
        self.size = size
        self._left = size

    def spend(self, cost: int = 1) -> None:
        """Count ``cost`` operations; if that spends the budget, yield once, then refill it."""
        self._left -= cost
        if self._left <= 0:
            self._left = self.size
            self._hub.poll_soon()
            self._hub.yield_now()

    def refill(self) -> None:
        """The tasklet waited: the next ``size`` operations run unbroken again."""
        self._left = self.size
