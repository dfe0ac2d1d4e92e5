"""Terminal: a telnet/netcat user's side of one Connection, as text lines.

Input passes, in order, through telnet option refusal and IAC removal, line
framing with a length limit, UTF-8 decoding with replacement, removal of
control, escape and bidi characters, and the per-member rate limit. Output
is UTF-8 lines ending in CRLF, queued on the connection's bounded output.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from microthreads.net import Connection, NetworkError

from .text import TOO_LONG, LineSplitter, RateLimiter, TelnetFilter, decode, sanitize

READ_SIZE = 16384
#: The warning to a member over its rate (lines dropped), once a second at most.
TOO_FAST = "You are sending too fast; slow down."
#: Seconds ``hang_up`` lets the last line take to go out.
HANG_UP_FLUSH = 1.0
#: A pending item: lines after the ones before it were dropped over the rate.
_OVER_RATE = object()
#: ``_pending`` between reads: shared and never added to (an empty list of
#: its own would be 56 B more per idle member).
_NO_ITEMS: list[Any] = []


class Terminal:
    """Lines in and out of one connection.

    ``read_line()`` returns the next line a person typed, as clean text
    (possibly empty), or None at EOF. ``say(text)`` sends one line.
    """

    __slots__ = ("_clock", "_limiter", "_lines", "_pending", "_telnet", "before_write", "conn",
                 "deliver", "max_line", "on_flood")

    def __init__(self, conn: Connection, *, max_line: int = 4096, rate: float = 20.0,
                 clock: Callable[[], float], limiter: RateLimiter | None = None) -> None:
        self.conn = conn
        #: Queue encoded lines on the connection's bounded output (the room's batches).
        self.deliver = conn.write
        self.max_line = max_line
        self._telnet = TelnetFilter()
        self._lines = LineSplitter(max_line)
        self._pending: list[Any] = _NO_ITEMS
        if limiter is None and rate:
            limiter = RateLimiter(rate)
        self._limiter = limiter         # given: one kept per address (chat.limits)
        self._clock = clock
        #: Called before each write of this terminal's own lines (the room
        #: flushes its pending broadcast first, so every line keeps its order).
        self.before_write: Callable[[], None] | None = None
        #: Called with ``conn`` when the member is told it sends too fast (once
        #: a second at most): the server logs it.
        self.on_flood: Callable[[Any], None] | None = None

    def say(self, text: str) -> None:
        """Queue ``text`` as one line; never blocks (a backlog over the bound
        closes the connection and raises NetworkError)."""
        self.send_raw(text.encode("utf-8", "replace") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Queue ``data`` as it is (after the room's pending lines); never blocks."""
        if self.before_write is not None:
            self.before_write()
        self.conn.write(data)

    def _flooding(self) -> None:
        self.say(TOO_FAST)
        if self.on_flood is not None:
            self.on_flood(self.conn)

    def hang_up(self, text: str) -> None:
        """Tell ``text`` and disconnect: see ``say_and_close``."""
        say_and_close(self, text)

    def read_line(self) -> str | None:
        """The next line, filtered and stripped; None at EOF.

        An overlong line is answered with ``Line too long (limit N bytes).``
        and skipped; lines over the rate limit are dropped, with a warning at
        most once a second: once the bucket is empty, the rest of a read is
        dropped through its last line ending without being framed. Work on
        the items of a read (each line, each telnet command) is charged to
        the connection's eager budget, so a read packed with thousands of
        them yields to the other tasklets like thousands of reads would.
        Raises NetworkError if the connection fails.
        """
        while True:
            pending = self._pending              # the items of one read, last first
            while pending:
                self.conn.charge(1)              # a flood of short lines yields too
                item = pending.pop()
                if item is TOO_LONG:
                    self.say(f"Line too long (limit {self.max_line} bytes).")
                    continue
                if item is _OVER_RATE:           # after the lines that passed
                    over = self._limiter
                    assert over is not None      # only a limiter drops lines
                    over.refuse()
                    if over.warn_due(self._clock()):
                        self._flooding()
                    continue
                if self._limiter is not None:
                    now = self._clock()
                    if not self._limiter.allow(now):
                        if self._limiter.warn_due(now):
                            self._flooding()
                        continue
                return sanitize(decode(item)).strip()
            self._pending = pending = _NO_ITEMS  # (the read waits: hold no empty list)
            data = self.conn.recv(READ_SIZE)
            if not data:
                rest = self._lines.flush()
                if rest:
                    self._pending = [rest]
                    continue
                return None
            payload, replies = self._telnet.feed(data)
            if payload is not data:              # telnet commands: a Python step each
                self.conn.charge(data.count(b"\xff"))
            if replies:
                self.send_raw(replies)
            if payload:
                self._pending = self._items(payload)

    def _items(self, payload: bytes) -> list[Any]:
        """The items of ``payload``, last first: lines framed up to the rate's
        allowance, then ``_OVER_RATE`` if lines past it were dropped."""
        limiter = self._limiter
        allowance = None if limiter is None else limiter.available(self._clock())
        items: list[Any] = self._lines.feed(payload, allowance)
        if self._lines.dropped:                  # past the rate: dropped unread
            items.append(_OVER_RATE)
        items.reverse()
        return items

    def __iter__(self) -> Iterator[str]:
        """Lines until EOF; a NetworkError propagates (the session ends with it)."""
        while True:
            line = self.read_line()
            if line is None:
                return
            yield line


def say_and_close(term: Any, text: str) -> None:
    """``term.say(text)``, let it go out (1 s at most), close ``term.conn``
    with ``text`` as its reason: a member's ``hang_up``, for every transport.
    Waits; a connection already gone is only closed."""
    conn = term.conn
    conn.close_reason = text
    try:
        term.say(text)
        conn.flush(HANG_UP_FLUSH)
    except (NetworkError, OSError):
        pass
    conn.close(text)
