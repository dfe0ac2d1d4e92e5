"""The link: every script call to Redis, in order, pipelined on one connection.

One writer tasklet (``Link.run``) takes the queued calls in order, up to
``BATCH`` at a time, and sends them as one pipeline; each caller is woken
with its reply. While Redis cannot be reached it retries with backoff,
logged once per outage; a call not sent before its deadline fails with
``RoomUnavailable``. The link knows scripts and replies, nothing of members:
the room sets three hooks (``before_batch``, ``on_lost``, ``after_batch``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Sequence, Union

import microthreads

from .client import REDIS_DOWN

log = logging.getLogger("chat.federation")

SEND_LIMIT = 10.0       # a call not in Redis by then: RoomUnavailable
BATCH = 512             # script calls per pipeline

Args = Union[Sequence[Any], Callable[[], Sequence[Any]]]


class RoomUnavailable(Exception):
    """A request could not reach Redis within its time limit."""


class Backoff:
    """Waits between retries: 50 ms, doubling to 2 s; ``reset`` on success."""

    FIRST, CAP = 0.05, 2.0

    def __init__(self) -> None:
        self.delay = self.FIRST

    def wait(self) -> None:
        microthreads.sleep(self.delay)
        self.delay = min(self.delay * 2, self.CAP)

    def reset(self) -> None:
        self.delay = self.FIRST


class Outage:
    """Logs that ``who`` lost Redis once per outage, and its end once.

    ``on_end`` (if given) runs when contact is back.
    """

    def __init__(self, who: str, on_end: Callable[[], None] | None = None) -> None:
        self.who = who
        self.on_end = on_end
        self.down = False

    def begin(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning("room unavailable (%s): %s; retrying with backoff", self.who, exc)

    def end(self) -> None:
        if self.down:
            self.down = False
            log.warning("room available again (%s)", self.who)
            if self.on_end is not None:
                self.on_end()


class Request:
    """One script call: ``args`` may be a callable, evaluated each time the
    call is sent (a heartbeat's member list is then current)."""

    __slots__ = ("args", "deadline", "done", "error", "on_reply", "reply", "script")

    def __init__(self, script: Any, args: Args, deadline: float,
                 on_reply: Callable[[Any], None] | None = None) -> None:
        self.script = script
        self.args = args
        self.deadline = deadline
        self.on_reply = on_reply
        self.done = microthreads.Event()
        self.reply: Any = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """Wake the caller with ``error``, unless it has its answer already."""
        if not self.done.is_set():
            self.error = error
            self.done.set()


def _unavailable() -> RoomUnavailable:
    return RoomUnavailable("the room is unavailable")


class Link:
    """Script calls on ``client``, sent by one writer tasklet (``run``).

    Every call is made with ``keys`` and ``common`` (the arguments all
    scripts take) before its own arguments. Hooks, called in the writer:
    ``before_batch(now)`` before each pipeline, ``on_lost()`` when one fails
    to reach Redis (it is retried), ``after_batch(requests, sent)`` after
    one got its replies (``sent``: the hub clock when it went out), before
    the replies are handed over.
    """

    def __init__(self, client: Any, keys: Sequence[str], common: Sequence[Any]) -> None:
        self._client = client
        self._keys = list(keys)
        self._common = list(common)
        self._hub = microthreads.get_hub()
        self._queue: deque[Request] = deque()
        self._in_flight: Sequence[Request] = ()
        self._wake = microthreads.Event()
        self.outage = Outage("writer")
        self.before_batch: Callable[[float], None] = lambda now: None
        self.on_lost: Callable[[], None] = lambda: None
        self.after_batch: Callable[[Sequence[Request], float], None] = lambda batch, sent: None

    def call(self, script: Any, args: Args, limit: float = SEND_LIMIT,
             on_reply: Callable[[Any], None] | None = None, urgent: bool = False) -> Any:
        """Run ``script`` with ``args``; its reply (a list).

        ``urgent`` puts it first in the queue. ``on_reply`` runs in the
        writer, in order with the other replies. Waits at most ``limit``
        seconds (and one more for a reply on its way); raises RoomUnavailable
        after that, or when the link gives up on every call (``fail_all``).
        """
        request = Request(script, args, self._hub.clock() + limit, on_reply)
        if urgent:
            self._queue.appendleft(request)
        else:
            self._queue.append(request)
        self._wake.set()
        if not request.done.wait(limit + 1.0):     # sent, but no reply in time
            request.fail(_unavailable())
        if request.error is not None:
            raise request.error
        return request.reply

    def send(self, script: Any, args: Args, on_reply: Callable[[Any], None] | None = None,
             first: bool = False) -> None:
        """Queue ``script`` without waiting for it. ``first``: at the front of
        the queue, unless a call of the same script is there already."""
        request = Request(script, args, self._hub.clock() + SEND_LIMIT, on_reply)
        queue = self._queue
        if not first:
            queue.append(request)
        elif not queue or queue[0].script is not script:
            queue.appendleft(request)
        self._wake.set()

    def fail_all(self) -> None:
        """Fail every call queued or in flight with RoomUnavailable."""
        for request in self._in_flight:
            request.fail(_unavailable())
        while self._queue:
            self._queue.popleft().fail(_unavailable())

    def run(self) -> None:
        """The writer: send queued calls, in order, pipelined; retry while
        Redis is away. Runs until killed."""
        queue, clock = self._queue, self._hub.clock
        backoff = Backoff()
        while True:
            if not queue:
                self._wake.clear()
                self._wake.wait()
                continue
            sent = clock()
            self.before_batch(sent)
            batch = self._take(sent)
            if not batch:
                continue
            self._in_flight = batch
            try:
                replies = self._execute(batch)
            except REDIS_DOWN as exc:
                self._in_flight = ()
                # in order, at the front; not those given up on meanwhile
                queue.extendleft(reversed([r for r in batch if not r.done.is_set()]))
                self.on_lost()
                self.outage.begin(exc)
                backoff.wait()
                continue
            self._in_flight = ()
            self.outage.end()
            backoff.reset()
            self.after_batch(batch, sent)
            for request, reply in zip(batch, replies):
                if isinstance(reply, Exception):
                    log.error("room script failed: %s", reply)
                    request.fail(RoomUnavailable(str(reply)))
                    continue
                request.reply = reply
                if request.on_reply is not None:
                    request.on_reply(reply)
                request.done.set()

    def _take(self, now: float) -> list[Request]:
        """Up to BATCH calls from the queue; those past their deadline fail."""
        queue, batch = self._queue, []
        while queue and len(batch) < BATCH:
            request = queue.popleft()
            if request.done.is_set():          # given up on: the caller was told
                continue
            if request.deadline <= now:
                request.fail(_unavailable())
            else:
                batch.append(request)
        return batch

    def _execute(self, batch: Sequence[Request]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for request in batch:
            args = request.args() if callable(request.args) else request.args
            request.script(keys=self._keys, args=[*self._common, *args], client=pipe)
        return pipe.execute(raise_on_error=False)
