"""The reader: the room's stream, read back in order, with its gaps noticed.

Two round trips bring the stream's entries: the writer's (each batch's
script reply carries the entries after the last one read, its own lines
included: see dispatch.lua), and the reader's blocking ``XREAD``, which
reads only while the writer is idle (a node whose members are quiet still
hears the others). Both hand their entries to ``Reader.take``, which hands
over each entry once, in the stream's order.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import microthreads

from .client import REDIS_DOWN, LazyClient
from .link import Outage, retry_backoff

#: Entries taken per XREAD: enough to drain a burst in one round trip.
READ_COUNT = 1000
#: After a read that brought entries, the next waits this long (seconds), so
#: that the lines said meanwhile come in one reply and reach each member here
#: with one send, not one per reply (a lone line is still read at once).
GATHER = 0.001
#: The reader reads once the writer has brought nothing for this long
#: (seconds): while this node's members talk, the writer's replies bring
#: every entry, and reading them again would only double the work (and the
#: sends to each member). Meanwhile it wakes once a QUIET at most, or after
#: WRITER_WAIT while a batch is in flight, and reads at once when the
#: writer left it an entry (``take``).
QUIET = 0.003
WRITER_WAIT = 0.1


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream id (``MS-SEQ``) as numbers, to compare."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Reader:
    """Reads ``stream`` on ``client`` (blocking ``XREAD``) in one tasklet
    (``run``) once the writer (``writer_idle``) has been idle for QUIET;
    ``take_reply`` is given what the writer's replies bring.

    Each entry goes to ``on_entry(fields)`` once, in the stream's order (the
    members here get what one reply brought as one batch, at the end of the
    hub's turn; see ``Audience``). An entry holds one line or several (``c``
    of them, joined by CRLF: the lines to everyone of one script run) and
    carries the number of its last line (``n``); when numbers are skipped
    (this node fell behind the stream's bound), ``on_gap()`` comes first,
    once per gap. A smaller number (Redis restarted empty) is taken as the
    new start. After a read that brought entries the next waits ``GATHER``.
    While Redis cannot be reached it retries with backoff (``outage`` logs
    it).
    """

    def __init__(self, client: LazyClient, stream: str, outage: Outage,
                 on_entry: Callable[[dict[str, str]], None],
                 on_gap: Callable[[], None],
                 ready: Callable[[dict[str, str]], bool] = lambda fields: True,
                 writer_idle: microthreads.Event | None = None) -> None:
        self._client = client
        self._stream = stream
        self.outage = outage
        self._on_entry = on_entry
        self._on_gap = on_gap
        self._ready = ready
        self._writer_idle = writer_idle
        #: The id of the newest entry handed over ('' before ``start``).
        self.last_id = ""
        self._last_key = (0, 0)
        self._last_n: int | None = None
        self._taking = False
        self._behind = False            # the writer left entries to the reader
        self._clock = microthreads.get_hub().clock
        self._writer_read_at = 0.0      # the hub clock at the writer's latest reply

    def start(self) -> None:
        """Read from after the stream's newest entry: the log so far goes to
        nobody, nobody is here yet. Raises one of REDIS_DOWN if Redis cannot
        be reached."""
        newest: Any = self._client.get().xrevrange(self._stream, count=1)
        self.last_id = newest[0][0] if newest else "0-0"
        self._last_key = entry_key(self.last_id)

    def take(self, entries: Sequence[tuple[str, dict[str, str]]], patient: bool = True) -> None:
        """Hand over those of ``entries`` (consecutive, in the stream's
        order) newer than ``last_id``. Not ``patient`` (the writer): stop
        short of an entry ``ready`` says would wait, and take nothing while
        the reader is handing over (it may be waiting in ``on_entry``)."""
        if self._taking:
            self._behind = True
            return
        self._taking = True
        try:
            for entry_id, fields in entries:
                key = entry_key(entry_id)
                if key <= self._last_key:
                    continue
                if not patient and not self._ready(fields):
                    self._behind = True
                    return
                self.last_id, self._last_key = entry_id, key
                n = int(fields.get("n", 0))     # its last line's number
                if self._last_n is not None and n - int(fields.get("c", 1)) > self._last_n:
                    self._on_gap()
                self._last_n = n                # smaller: Redis restarted empty; go on
                self._on_entry(fields)
        finally:
            self._taking = False

    def take_reply(self, entries: list[Any]) -> None:
        """``take`` for the entries of a script's reply (fields as a flat
        list), not patient: the writer must not wait."""
        self._writer_read_at = self._clock()
        self.take([(entry_id, dict(zip(flat[::2], flat[1::2], strict=False)))
                   for entry_id, flat in entries], patient=False)

    def run(self) -> None:
        """Read the entries after ``last_id`` until killed."""
        client, stream = self._client, self._stream
        backoff, idle, clock = retry_backoff(), self._writer_idle, self._clock
        while True:
            if idle is not None and not self._behind:
                # while the writer's replies bring the entries, wake once a
                # QUIET at most (not after every batch)
                quiet = self._writer_read_at + QUIET - clock()
                if quiet > 0:                       # it replied lately: it may again
                    microthreads.sleep(quiet)
                    continue
                if not idle.wait(WRITER_WAIT):      # a batch in flight: its reply brings them
                    continue
                if self._writer_read_at + QUIET > clock():    # which it just did
                    continue
            reply: Any
            try:
                reply = client.get().xread({stream: self.last_id}, count=READ_COUNT, block=1000)
            except REDIS_DOWN as exc:
                self.outage.begin(exc)
                backoff.wait()
                continue
            self.outage.end()
            backoff.reset()
            self._behind = False
            for _stream, entries in reply or ():
                self.take(entries)
            if reply:
                microthreads.sleep(GATHER)
