"""Backoff: how long to wait before the next retry, doubling to a cap.

One helper for every retry loop of the chat: the federation's writer and
reader (Redis away: 50 ms doubling to 0.5 s) and the ``--workers``
supervisor (a worker that died: 1 s doubling to 30 s). Each loop decides
what counts as a success (``reset``); the waits are the hub's
(``microthreads.sleep``), never ``time.sleep``.
"""

from __future__ import annotations

import microthreads


class Backoff:
    """Waits of ``first`` seconds, twice as long after each, up to ``cap``.

    ``next()`` is the wait to make now (and doubles the one after it);
    ``wait()`` sleeps it in the calling tasklet; ``reset()`` starts over
    from ``first``. Raises ValueError unless ``0 < first <= cap``.
    """

    __slots__ = ("cap", "delay", "first")

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"a backoff needs 0 < first <= cap, not {first!r}, {cap!r}")
        self.first = first
        self.cap = cap
        #: The wait ``next()`` returns next.
        self.delay = first

    def next(self) -> float:
        """The wait to make now; the one after it is twice as long (up to the cap)."""
        delay = self.delay
        self.delay = min(delay * 2, self.cap)
        return delay

    def wait(self) -> None:
        """Sleep ``next()`` seconds in the calling tasklet (the hub goes on)."""
        microthreads.sleep(self.next())

    def reset(self) -> None:
        """It worked: the next wait is ``first`` again."""
        self.delay = self.first
