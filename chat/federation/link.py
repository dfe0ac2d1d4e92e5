"""The link: every call to the room's script, in order, a batch per round trip.

One writer tasklet (``Link.run``) takes every call queued since its last
round trip (up to ``BATCH`` of them) and sends them as one EVALSHA of the
room's script, which runs them in order and replies with one reply each
(and the log's newest entries, for the reader: ``on_read``); then it goes
round again. So the lines a node's members say during one
round trip go to Redis together in the next, and a member does not wait
for its line's reply before saying the next one (``send``): one order (the
queue's), and one script run per batch, not per line.

Each call has a deadline (``SEND_LIMIT``): a call not answered by then
fails with ``RoomUnavailable``, whether it was still queued or already sent
(a hub timer watches the oldest deadline while calls are pending), so its
member is told within the limit even while Redis hangs. While Redis cannot
be reached the writer retries with backoff, logged once per outage, the
batch first, in order. The link knows calls and replies, nothing of
members: what it has to tell goes to the ``LinkListener`` it is made with
(the room), and each call is a ``Request``, which hears its own reply.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Callable, Protocol, Sequence

import microthreads

from ..backoff import Backoff
from .client import REDIS_DOWN, ScriptCaller

log = logging.getLogger("chat.federation")

SEND_LIMIT = 10.0       # a call not answered by then: RoomUnavailable
BATCH = 512             # calls per round trip
BATCH_BYTES = 1 << 20   # and about this many bytes of arguments

Args = Sequence[Any] | Callable[[], Sequence[Any]]


class RoomUnavailable(Exception):
    """A call could not reach Redis within its time limit."""


#: Waits between retries while Redis is away: 50 ms, doubling to 0.5 s. The cap
#: is short: a Redis Cluster failover must be over, and noticed, within the
#: expiry less a heartbeat (see membership.py), or the members go.
RETRY_FIRST, RETRY_CAP = 0.05, 0.5


def retry_backoff() -> Backoff:
    """The backoff of the writer's and the reader's retries."""
    return Backoff(RETRY_FIRST, RETRY_CAP)


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


class Request(ABC):
    """One call of the room's script, as the link sends it: ``name`` (a
    ``lua/NAME.lua``), ``arguments()`` evaluated each time it is sent, and
    the two ways it ends, called in the writer.

    ``succeed(reply)`` runs with its reply, in order with the other
    replies, whenever the reply comes, even after the call was given up on
    (what Redis did, it did); it may return a fresh Request, which the link
    sends again first (in order with the others a batch returned), behind
    the heartbeat that ``on_lost()`` may queue. ``fail(error)`` runs if the
    call is given up on before its reply (its deadline passed, the link
    gave up on everything); ``finished`` says either has happened.
    ``deadline`` (the hub clock) is set by the link as it queues the call.
    """

    __slots__ = ("deadline", "finished", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.deadline = 0.0
        self.finished = False

    @abstractmethod
    def arguments(self) -> Sequence[Any]:
        """The call's arguments, as it is sent now."""

    @abstractmethod
    def succeed(self, reply: Any) -> Request | None:
        """Its reply came; a Request to send again first, or None."""

    @abstractmethod
    def fail(self, error: BaseException) -> None:
        """Given up on before its reply: tell whoever waits. Once at most."""


class Call(Request):
    """A Request with ``args`` (a sequence, or a callable evaluated each time
    the call is sent: a heartbeat's member list is then current), and an
    ``on_reply(reply)`` to run with its reply. ``reply`` or ``error`` keep
    how it ended, and ``done`` (if given) is set then: ``Link.call`` waits
    on it."""

    __slots__ = ("args", "done", "error", "on_reply", "reply")

    def __init__(self, name: str, args: Args,
                 on_reply: Callable[[Any], None] | None = None,
                 done: microthreads.Event | None = None) -> None:
        super().__init__(name)
        self.args = args
        self.on_reply = on_reply
        self.done = done
        self.reply: Any = None
        self.error: BaseException | None = None

    def arguments(self) -> Sequence[Any]:
        args = self.args
        return args() if callable(args) else args

    def fail(self, error: BaseException) -> None:
        if self.finished:
            return
        self.finished = True
        self.error = error
        if self.done is not None:
            self.done.set()

    def succeed(self, reply: Any) -> None:
        self.reply = reply
        if self.on_reply is not None:
            self.on_reply(reply)
        if not self.finished:
            self.finished = True
            if self.done is not None:
                self.done.set()


class LinkListener(Protocol):
    """What a link tells the object it serves (the room), in the writer."""

    def before_batch(self, now: float) -> None:
        """A round trip is about to go, at ``now`` (the hub clock)."""

    def on_lost(self) -> None:
        """A round trip failed to reach Redis; its calls will go again."""

    def after_batch(self, batch: Sequence[Request], sent: float) -> None:
        """``batch``, sent at ``sent``, got its replies (not yet handed over)."""

    def read_from(self) -> str:
        """The stream id to read the log after, as a batch goes ('' reads nothing)."""

    def on_read(self, entries: list[Any]) -> None:
        """The log's entries a batch's script run read, after its replies."""


def _unavailable() -> RoomUnavailable:
    return RoomUnavailable("the room is unavailable")


class Link:
    """Calls of ``script`` on ``client`` (a ``LazyClient``), sent by one
    writer tasklet (``run``).

    Every batch is one EVALSHA with ``keys`` and ``common`` (the arguments
    every call shares) before the calls; ``listener`` hears of each round
    trip (see ``LinkListener``). ``idle`` is set while nothing is queued or
    in flight.
    """

    def __init__(self, client: Any, script: Any, keys: Sequence[str],
                 common: Sequence[Any], listener: LinkListener) -> None:
        self._call = ScriptCaller(client, script, keys)
        self._common = list(common)
        self._listener = listener
        self._hub = microthreads.get_hub()
        self._queue: deque[Request] = deque()
        self._in_flight: Sequence[Request] = ()
        self._wake = microthreads.Event()
        self._watch: Any = None             # the hub timer at the oldest pending deadline
        self._watch_at = 0.0                # ... and that deadline
        self._retries: list[Request] = []   # from this batch's replies: to go again, first
        self.outage = Outage("writer")
        self.idle = microthreads.Event()

    def call(self, name: str, args: Args, limit: float = SEND_LIMIT,
             on_reply: Callable[[Any], None] | None = None, urgent: bool = False) -> Any:
        """Run call ``name`` with ``args`` and wait for its reply (a list).

        ``urgent`` puts it first in the queue. ``on_reply`` runs in the
        writer, in order with the other replies. Raises RoomUnavailable if
        no reply came within ``limit`` seconds, or when the link gives up on
        every call (``fail_all``).
        """
        request = Call(name, args, on_reply, microthreads.Event())
        self._enqueue(request, urgent, limit)
        assert request.done is not None
        request.done.wait()                 # set by the reply, or a failure in time
        if request.error is not None:
            raise request.error
        return request.reply

    def send(self, name: str, args: Args, on_reply: Callable[[Any], None] | None = None,
             first: bool = False) -> None:
        """Queue call ``name`` without waiting for it (see Call). ``first``:
        at the front of the queue, unless a call of the same name is there
        already."""
        if first and self._queue and self._queue[0].name == name:
            return
        self.submit(Call(name, args, on_reply), first)

    def submit(self, request: Request, first: bool = False) -> None:
        """Queue ``request`` without waiting for it; its deadline is now
        SEND_LIMIT away. ``first``: at the front of the queue."""
        self._enqueue(request, first, SEND_LIMIT)

    def _enqueue(self, request: Request, first: bool, limit: float) -> None:
        request.deadline = self._hub.clock() + limit
        if first:
            self._queue.appendleft(request)
        else:
            self._queue.append(request)
        self._wake.set()
        self._watch_until(request.deadline)

    def _requeue_retries(self) -> None:
        retries, self._retries = self._retries, []
        self._queue.extendleft(reversed(retries))
        self._listener.on_lost()
        self._watch_until(retries[0].deadline)

    def _watch_until(self, deadline: float) -> None:
        """Have ``_expire`` run by ``deadline`` (a call may have a shorter
        limit than those queued before it: a heartbeat's, a deregister's)."""
        if self._watch is not None:
            if self._watch_at <= deadline:
                return
            self._watch.cancel()
        self._watch, self._watch_at = self._hub.call_at(deadline, self._expire), deadline

    def fail_all(self) -> None:
        """Fail every call queued or in flight with RoomUnavailable."""
        for request in self._in_flight:
            request.fail(_unavailable())
        while self._queue:
            self._queue.popleft().fail(_unavailable())

    def _expire(self) -> None:
        """On the hub, at the oldest deadline: fail every call past its own
        (queued, or sent and unanswered); watch the next one."""
        self._watch = None
        now, oldest = self._hub.clock(), None
        for request in (*self._in_flight, *self._queue):
            if request.finished:
                continue
            if request.deadline <= now:
                request.fail(_unavailable())
            elif oldest is None or request.deadline < oldest:
                oldest = request.deadline
        if oldest is not None:
            self._watch_until(oldest)

    def run(self) -> None:
        """The writer: send queued calls, in order, a batch per round trip;
        retry while Redis is away. Runs until killed."""
        queue, clock, listener = self._queue, self._hub.clock, self._listener
        backoff = retry_backoff()
        while True:
            if not queue:
                self._wake.clear()
                self.idle.set()
                self._wake.wait()
                self.idle.clear()
                continue
            sent = clock()
            listener.before_batch(sent)
            batch, argv = self._take()
            if not batch:
                continue
            self._in_flight = batch
            try:
                replies = self._execute(argv)
            except REDIS_DOWN as exc:
                self._in_flight = ()
                # in order, at the front; not those given up on meanwhile
                queue.extendleft(reversed([r for r in batch if not r.finished]))
                listener.on_lost()
                self.outage.begin(exc)
                backoff.wait()
                continue
            except Exception as exc:    # a script error: our bug; the calls fail, not the writer
                self._in_flight = ()
                log.error("room script failed: %s", exc)
                for request in batch:
                    request.fail(RoomUnavailable(str(exc)))
                continue
            self._in_flight = ()
            self.outage.end()
            backoff.reset()
            listener.after_batch(batch, sent)
            for request, reply in zip(batch, replies[1:], strict=False):
                again = request.succeed(reply)
                if again is not None:
                    again.deadline = clock() + SEND_LIMIT
                    self._retries.append(again)
            listener.on_read(replies[0])
            if self._retries:
                self._requeue_retries()

    def _take(self) -> tuple[list[Request], list[Any]]:
        """The calls to send now, up to BATCH (and about BATCH_BYTES of
        arguments) from the queue, those given up on left out (the caller
        was told: what it asked is not done); and the script's ARGV for them."""
        queue, argv = self._queue, [*self._common, self._listener.read_from()]
        batch: list[Request] = []
        size = 0
        while queue and len(batch) < BATCH and size < BATCH_BYTES:
            request = queue.popleft()
            if request.finished:
                continue
            args = request.arguments()
            argv += (request.name, len(args), *args)
            for arg in args:
                if arg.__class__ is str:
                    size += len(arg)
            batch.append(request)
        return batch, argv

    def _execute(self, argv: list[Any]) -> list[Any]:
        """One EVALSHA for the whole batch: what it read, then one reply per call."""
        replies: list[Any] = self._call(argv)
        return replies
