"""A deadlock's verdict: who gets DeadlockError, in which order, saying what.

The hub decides when (phase 2a of a loop turn, or ``Hub.detect_deadlock``
for a host loop): nothing it knows of could wake a tasklet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Reversible

from .errors import DeadlockError
from .stacks import describe_wait

if TYPE_CHECKING:
    from .hub import Hub
    from .tasklet import Tasklet


def schedule_errors(hub: Hub, live: Reversible[Tasklet], caller: Any) -> bool:
    """Schedule a DeadlockError naming every blocked wait in each tasklet of
    ``live`` (spawn order) that started and has not ended and, through
    ``hub.interrupt``, for ``caller`` (a greenlet parked in the hub outside a
    tasklet; None if none); False, scheduling nothing, if nobody is blocked.

    The newest tasklets get theirs first, ``caller`` last: a joiner is
    usually older than what it joins, so the joined one dies while still
    joined (not reported as "nobody joined it") and the joiner reports the
    deadlock once.
    """
    blocked: list[Any] = [t for t in reversed(live) if t.started and not t.dead]
    if caller is not None:
        blocked.append(caller)
    if not blocked:
        return False
    message = "nothing left can wake these tasklets:\n" + "\n".join(
        "  " + describe_wait(g) for g in reversed(blocked))
    for g in blocked:
        if g is not caller:
            hub.schedule_throw(g, DeadlockError(message))
    if caller is not None:
        hub.call_soon(hub.interrupt, DeadlockError(message))
    return True
