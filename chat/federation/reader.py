"""The reader: the room's stream, read back in order, with its gaps noticed."""

from __future__ import annotations

from typing import Callable

import microthreads

from .client import REDIS_DOWN, LazyClient
from .link import Backoff, Outage

#: Entries taken per XREAD: enough to drain a burst in one round trip.
READ_COUNT = 1000
#: After a read that brought entries, the next waits this long (seconds), so
#: that the lines said meanwhile come in one reply and reach each member here
#: with one send, not one per reply (a lone line is still read at once).
GATHER = 0.001


class Reader:
    """Reads ``stream`` on ``client`` (blocking ``XREAD``) in one tasklet (``run``).

    Each entry goes to ``on_entry(fields)``, in the stream's order, all
    that one XREAD brought without a pause (the members here get them as
    one batch, at the end of the hub's turn; see ``Audience``). An entry
    holds one line or several (``c`` of them, joined by CRLF: the lines to
    everyone of one script run) and carries the number of its last line
    (``n``); when numbers are skipped (this node fell
    behind the stream's bound), ``on_gap()`` comes first, once per gap. A
    smaller number (Redis restarted empty) is taken as the new start. After
    a read that brought entries the next waits ``GATHER``. While
    Redis cannot be reached it retries with backoff (``outage`` logs it).
    """

    def __init__(self, client: LazyClient, stream: str, outage: Outage,
                 on_entry: Callable[[dict[str, str]], None],
                 on_gap: Callable[[], None]) -> None:
        self._client = client
        self._stream = stream
        self.outage = outage
        self._on_entry = on_entry
        self._on_gap = on_gap

    def newest(self) -> str:
        """The id of the stream's newest entry (to read what comes after it);
        ``0-0`` if there is none or Redis cannot be reached (the log so far
        goes to nobody: nobody is here yet)."""
        try:
            newest = self._client.get().xrevrange(self._stream, count=1)
        except REDIS_DOWN as exc:
            self.outage.begin(exc)
            return "0-0"
        return newest[0][0] if newest else "0-0"

    def run(self, last_id: str) -> None:
        """Read the entries after ``last_id`` until killed."""
        client, stream = self._client, self._stream
        last_n, backoff = None, Backoff()
        while True:
            try:
                reply = client.get().xread({stream: last_id}, count=READ_COUNT, block=1000)
            except REDIS_DOWN as exc:
                self.outage.begin(exc)
                backoff.wait()
                continue
            self.outage.end()
            backoff.reset()
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    n = int(fields.get("n", 0))     # its last line's number
                    if last_n is not None and n - int(fields.get("c", 1)) > last_n:
                        self._on_gap()
                    last_n = n                 # smaller: Redis restarted empty; go on
                    self._on_entry(fields)
            if reply:
                microthreads.sleep(GATHER)
