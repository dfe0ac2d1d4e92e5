"""The chat service's input path: received bytes in, text fit to show others out.

Each connection's bytes go through these steps, in this order (PROTOCOL.md,
"Transport" and "Session"):

1. ``TelnetFilter.feed``: removes telnet IAC sequences and collects the
   refusals to send back (``IAC DO x`` gets ``IAC WONT x``).
2. ``LineSplitter.feed``: frames lines (``\\n``, ``\\r\\n`` or ``\\r\\0``) and
   enforces the line length limit.
3. ``decode``: UTF-8 with replacement; it never fails.
4. ``sanitize``: removes control characters, escape sequences and bidi controls.

after which the service strips the line, counts it against its
``RateLimiter``, and at login (or ``/nick``) validates it with ``check_handle``
(chat/handles.py, re-exported here).

Everything here is pure: no I/O, no clock (time is passed in), no tasklets, and
only the standard library. The two incremental filters carry their state
between chunks, so any split of a byte stream into chunks gives the same output
as the stream fed whole. They run once per received chunk for each of
thousands of connections, so the usual case (a chunk of plain text) is handled
by C-level ``bytes.find``, ``bytes.split`` and ``str.isprintable`` (and
precompiled regexes when there is something to remove), never by a Python
loop over bytes or characters.
"""

from __future__ import annotations

import re

from .handles import (  # the handle rules, re-exported: see handles.py
    HANDLE_INPUT_MAX,
    HANDLE_MAX,
    HANDLE_RULE,
    INVALID_HANDLE,
    check_handle,
    handle_key,
    target_key,
)

__all__ = [
    "HANDLE_INPUT_MAX",
    "HANDLE_MAX",
    "HANDLE_RULE",
    "INVALID_HANDLE",
    "TOO_LONG",
    "LineSplitter",
    "RateLimiter",
    "TelnetFilter",
    "check_handle",
    "decode",
    "handle_key",
    "sanitize",
    "target_key",
]


# --- 1. telnet --------------------------------------------------------------

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

# TelnetFilter states: what the bytes seen so far leave us waiting for.
_DATA = 0  # ordinary data
_COMMAND = 1  # the byte after an IAC
_OPTION = 2  # the option byte after IAC DO/DONT/WILL/WONT
_SUB = 3  # sub-negotiation content, up to IAC SE
_SUB_IAC = 4  # the byte after an IAC inside a sub-negotiation


class TelnetFilter:
    """Removes telnet IAC sequences from a connection's input, chunk by chunk.

    ``feed(data)`` returns ``(payload, replies)``. ``payload`` is ``data``
    without its IAC sequences: ``IAC IAC`` becomes the data byte 0xFF; a
    negotiation ``IAC DO|DONT|WILL|WONT x`` (three bytes), a sub-negotiation
    ``IAC SB ... IAC SE`` (whole, an ``IAC IAC`` inside it included) and any
    other two-byte command (``IAC IP``, ``IAC NOP``, ``IAC AYT``, ``IAC GA``,
    ...; also an IAC followed by a byte that is no command) are dropped.

    ``replies`` is what to send back: the server refuses every option each
    time it is offered, ``IAC DO x`` with ``IAC WONT x`` and ``IAC WILL x``
    with ``IAC DONT x``, and never answers ``WONT``/``DONT``, so no
    negotiation can loop (RFC 1143). This is what keeps telnet's Ctrl-C
    working: the client sends ``IAC IP IAC DO TIMING-MARK`` and shows nothing
    until it gets ``IAC WONT TIMING-MARK``.

    A sequence may be split over chunks at any byte: the state carries over,
    and the concatenated results are those of the stream fed whole. A chunk
    without a 0xFF byte, fed while no sequence is pending, is returned as it
    is (the same object, not a copy) with ``b""`` replies.

    Inside a sub-negotiation only ``IAC SE`` (its end) and ``IAC IAC`` (an
    escaped 0xFF) are expected; an IAC followed by anything else ends the
    sub-negotiation and is taken as an ordinary command, so a client that
    never closes its ``SB`` cannot mute itself (a later Ctrl-C is still
    answered). Sub-negotiation content is skipped, not kept: however long,
    it costs no memory. ``feed`` never raises on any input.
    """

    __slots__ = ("_state", "_verb")

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0  # DO, DONT, WILL or WONT while in _OPTION

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Return ``(payload, replies)`` for the next chunk; see the class."""
        state = self._state
        if state == _DATA and data.find(b"\xff") < 0:
            return data, b""
        payload = []
        replies = bytearray()
        i, end = 0, len(data)
        while i < end:
            if state == _DATA:
                j = data.find(b"\xff", i)
                if j < 0:
                    payload.append(data[i:])
                    break
                if j > i:
                    payload.append(data[i:j])
                state, i = _COMMAND, j + 1
            elif state == _SUB:  # skip to the next IAC
                j = data.find(b"\xff", i)
                if j < 0:
                    break
                state, i = _SUB_IAC, j + 1
            elif state == _COMMAND:
                byte = data[i]
                i += 1
                if byte == IAC:
                    payload.append(b"\xff")
                    state = _DATA
                elif WILL <= byte <= DONT:
                    self._verb, state = byte, _OPTION
                elif byte == SB:
                    state = _SUB
                else:  # a two-byte command
                    state = _DATA
            elif state == _OPTION:
                option = data[i]
                i += 1
                if self._verb == DO:
                    replies += bytes((IAC, WONT, option))
                elif self._verb == WILL:
                    replies += bytes((IAC, DONT, option))
                state = _DATA
            else:  # _SUB_IAC
                byte = data[i]
                if byte == SE:  # the end of the sub-negotiation
                    state, i = _DATA, i + 1
                elif byte == IAC:  # an escaped 0xFF, still inside
                    state, i = _SUB, i + 1
                else:  # a command: the sub-negotiation is over; read it as one
                    state = _COMMAND
        self._state = state
        return b"".join(payload), bytes(replies)


# --- 2. lines ---------------------------------------------------------------


class _TooLong:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = _TooLong()
"""``LineSplitter`` item: a line passed the limit; the rest of it is dropped."""


class LineSplitter:
    """Frames a connection's payload bytes into lines, chunk by chunk.

    ``feed(data)`` returns the items completed by this chunk, in input order.
    An item is either ``bytes``, one complete line without its line ending, or
    ``TOO_LONG``. A line ends at ``\\n``, and one ``\\r`` just before the
    ``\\n`` is dropped; a telnet ``\\r\\0`` ends a line too. Any other ``\\r``,
    and any ``\\0``, is part of the line (``sanitize`` removes them later).

    A line of more than ``limit`` bytes (its ending not counted) is never
    returned. Instead ``TOO_LONG`` is returned once, from the very feed in
    which the limit is passed, and input is dropped up to and including the
    next line ending (``\\n`` or ``\\r\\0``); then framing goes on.

    The ``\\r`` and the ``\\0`` or ``\\n`` after it may come in different
    chunks: a ``\\r`` that ends a chunk is held until the next byte tells what
    it is, and counts towards the limit only once it is known to be data. Any
    split of a stream into chunks gives the same items as the stream fed whole.

    ``feed(data, max_lines)`` frames at most ``max_lines`` items from the
    chunk; if more line endings follow, everything up to and including the
    last one in the chunk is dropped unframed (its lines are lost, and so is
    an unfinished line those bytes would have ended), ``dropped`` is set to
    the number of line endings dropped, and framing resumes after it. This
    is how a rate limit drops a flood: the lines it would refuse cost a few
    C-level searches, not a Python step each. Without ``max_lines`` (None)
    every line is framed and ``dropped`` is 0.

    Between feeds at most ``limit`` bytes of an unfinished line are kept, so
    memory held never exceeds the limit plus the chunk being fed.
    ``flush()``, at end of input, returns the unfinished line (``b""`` if
    there is none, or if it was too long; a ``\\r`` left pending at the very
    end is dropped as a line ending) and resets the splitter.
    Raises ValueError for a limit below 1; ``feed`` never raises.
    """

    __slots__ = ("_cr_pending", "_discarding", "_line", "dropped", "limit")

    def __init__(self, limit: int = 4096) -> None:
        if limit < 1:
            raise ValueError(f"line limit must be at least 1 byte, not {limit!r}")
        self.limit = limit
        # the unfinished line, at most `limit` bytes: bytes, b"" (shared) between
        # lines, where a bytearray of its own would be 56 B of every idle member
        self._line = b""
        self._discarding = False  # past the limit: dropping up to a line ending
        self._cr_pending = False  # the last byte fed was a \r, yet unexplained
        self.dropped = 0  # line endings the last feed dropped past max_lines

    def feed(self, data: bytes, max_lines: int | None = None) -> list[bytes | _TooLong]:
        """Return the items this chunk completes (at most ``max_lines``); see the class."""
        items: list[bytes | _TooLong] = []
        self.dropped = 0
        if self._cr_pending and data:
            self._cr_pending = False
            if data[0] == 0x0A or data[0] == 0x00:  # \r\n or \r\0: a line ending
                self._end_line(items, b"")
                data = data[1:]
            else:  # a \r alone is data
                self._extend(items, b"\r")
        if max_lines is not None:
            cut, resume = _line_ends(data, max(0, max_lines - len(items)))
            if resume > cut:  # line endings past the allowance: drop through the last
                self.dropped = data.count(b"\n", cut, resume) + data.count(b"\r\0", cut, resume)
                self._frame(items, data[:cut])
                self._line = b""  # the line in progress ended in what is dropped
                self._discarding = False
                data = data[resume:]
        self._frame(items, data)
        return items

    def _frame(self, items: list[bytes | _TooLong], data: bytes) -> None:
        """Append the items of ``data``, a chunk with no \r pending before it."""
        pieces = data.split(b"\n")
        tail = pieces.pop()  # after the last \n: an unfinished line
        for piece in pieces:
            if piece.endswith(b"\r"):
                piece = piece[:-1]
            if b"\r\0" in piece:
                *lines, piece = piece.split(b"\r\0")
                for line in lines:
                    self._end_line(items, line)
            self._end_line(items, piece)
        if b"\r\0" in tail:
            *lines, tail = tail.split(b"\r\0")
            for line in lines:
                self._end_line(items, line)
        if tail.endswith(b"\r"):
            self._cr_pending = True
            tail = tail[:-1]
        if tail:
            self._extend(items, tail)

    def flush(self) -> bytes:
        """Return the unfinished line at end of input and reset; see the class."""
        rest = b"" if self._discarding else self._line
        self._line = b""
        self._discarding = self._cr_pending = False
        return rest

    def _end_line(self, items: list[bytes | _TooLong], last: bytes) -> None:
        """A line ending came after `last`: finish the line, or the discarding."""
        if self._discarding:
            self._discarding = False
        elif len(self._line) + len(last) > self.limit:
            items.append(TOO_LONG)  # passed the limit in this very chunk
            self._line = b""
        elif self._line:
            items.append(self._line + last)
            self._line = b""
        else:
            items.append(last)

    def _extend(self, items: list[bytes | _TooLong], more: bytes) -> None:
        """Add data that does not end the line, unless past the limit."""
        if self._discarding:
            return
        if len(self._line) + len(more) > self.limit:
            items.append(TOO_LONG)
            self._line = b""
            self._discarding = True
        else:
            self._line += more


def _line_ends(data: bytes, count: int) -> tuple[int, int]:
    """Where the first ``count`` line endings of ``data`` end (0 for none; the
    end of the last one if there are fewer), and where its last one ends (0
    if it has none). A line ends at \n, or at \r\0 (a \r\n at its \n)."""
    nul = data.rfind(b"\r\0")
    last = max(data.rfind(b"\n") + 1, nul + 2 if nul >= 0 else 0)
    cut = 0
    for _ in range(count):
        if cut >= last:
            break
        end = data.find(b"\n", cut) + 1  # 0: no \n left
        if nul >= 0:
            nul = data.find(b"\r\0", cut)
            if nul >= 0 and (end == 0 or nul + 2 < end):
                end = nul + 2
        cut = end
    return cut, last


# --- 3. decoding ------------------------------------------------------------


def decode(line: bytes) -> str:
    """Decode UTF-8; each invalid sequence becomes U+FFFD. Never raises.

    Accepts any bytes-like object (bytes, bytearray, memoryview).
    """
    return str(line, "utf-8", "replace")


# --- 4. sanitizing ----------------------------------------------------------

# Removal is two passes. The first removes every escape sequence with its
# introducer (ESC, or a C1 CSI, OSC, DCS, SOS, PM or APC), leftmost first; each
# branch starts with a literal character so that the regex engine skips to the
# next introducer quickly. The second removes the control and bidi characters
# left. Whatever remains holds no ESC and no C1 character, so no sequence can
# be formed from it, and sanitizing again changes nothing.
_CSI_BODY = r"[\x20-\x3f]*[\x40-\x7e]?"  # parameter and intermediate bytes, final byte
_OSC_BODY = r"[^\x07\x18\x1a\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # up to BEL or ST
_STRING_BODY = r"[^\x18\x1a\x1b\x9c]*(?:\x1b\\|\x9c)?"  # up to ST
# A string body also stops, unterminated, at CAN, SUB or an ESC that starts no
# ST, as in terminals (that ESC then starts a sequence of its own); one that
# never ends runs to the end of the text.
_SEQUENCE = re.compile(
    "|".join(
        [
            rf"\x1b\[{_CSI_BODY}",  # CSI
            rf"\x1b\]{_OSC_BODY}",  # OSC
            rf"\x1b[PX^_]{_STRING_BODY}",  # DCS, SOS, PM, APC
            r"\x1b[\x20-\x2f]+[\x30-\x7e]?",  # nF: intermediate bytes, final byte
            r"\x1b[\x30-\x7e]?",  # Fp, Fe, Fs: two bytes; or an ESC introducing nothing
            rf"\x9b{_CSI_BODY}",  # C1 CSI
            rf"\x9d{_OSC_BODY}",  # C1 OSC
            rf"\x90{_STRING_BODY}",  # C1 DCS
            rf"\x98{_STRING_BODY}",  # C1 SOS
            rf"\x9e{_STRING_BODY}",  # C1 PM
            rf"\x9f{_STRING_BODY}",  # C1 APC
        ]
    )
)
# C0 but TAB, DEL, C1; LINE and PARAGRAPH SEPARATOR (line breaks to str.splitlines
# and to other Unicode-aware readers); bidi embeddings, overrides (U+202A-U+202E), isolates.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")


def sanitize(text: str) -> str:
    """Return `text` without anything that could act on another user's terminal.

    Removed (PROTOCOL.md, "Transport"): C0 control characters except TAB (so
    CR and LF too), DEL, C1 controls (U+0080 to U+009F); whole ECMA-48 escape
    sequences: CSI (``ESC [`` or U+009B, its parameter and intermediate bytes
    and final byte), OSC (``ESC ]`` or U+009D, up to BEL or ST), DCS, SOS,
    PM and APC (``ESC P``/``X``/``^``/``_`` or U+0090/0098/009E/009F, up to
    ST, which is ``ESC \\`` or U+009C), nF (ESC, bytes 0x20 to 0x2F, a final
    byte) and two-byte ``ESC`` Fp/Fe/Fs sequences; LINE SEPARATOR U+2028 and
    PARAGRAPH SEPARATOR U+2029 (a client splitting lines by Unicode's rules,
    as ``str.splitlines`` does, would take them for line breaks); and the
    bidi controls U+202A to U+202E and U+2066 to U+2069. A string sequence
    (OSC, DCS, SOS, PM, APC) left unterminated is removed to the end of the
    text; a CSI cut short loses what it had. Everything else, any printable character or TAB,
    is kept in order.

    The result holds none of the characters above; sanitize(sanitize(t)) ==
    sanitize(t). Text that is all printable is returned as it is, fast.
    """
    if text.isprintable():  # no Cc and no Cf character: nothing to remove
        return text
    if "\x1b" in text or not text.isascii():  # else there is no introducer
        text = _SEQUENCE.sub("", text)
    return _CONTROL.sub("", text)


# --- 6. flood control -------------------------------------------------------


class RateLimiter:
    """A token bucket: at most `rate` lines a second, in bursts of up to `burst`.

    The bucket starts full, holds at most `burst` tokens (default twice the
    rate, and at least 1, so any positive rate lets lines through) and fills
    at `rate` tokens a second. ``allow(now)`` takes one token and returns
    True, or returns False if none is left (the line is to be dropped).
    ``warn_due(now)`` returns True when the last ``allow`` refused and no
    warning was due in the second before, so a sender who goes on flooding is
    told at most once a second. ``now`` is in seconds on any monotonic clock
    (the hub's); a clock that steps back is taken as standing still.

    ``rate == 0`` means unlimited: ``allow`` is always True and ``warn_due``
    always False. Raises ValueError for a negative rate or a burst below 1.
    """

    __slots__ = ("_last", "_refused", "_tokens", "_warned_at", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate < 0:
            raise ValueError(f"rate must be 0 (unlimited) or more, not {rate!r}")
        if burst is None:
            burst = max(2.0 * rate, 1.0)
        elif burst < 1:
            raise ValueError(f"burst must be at least 1 line, not {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None  # when tokens were last counted
        self._refused = False  # the last allow() refused
        self._warned_at: float | None = None

    def allow(self, now: float) -> bool:
        """Take a token; False if there is none (the line is over the rate)."""
        if not self.rate:
            return True
        self._refill(now)
        self._refused = self._tokens < 1
        if self._refused:
            return False
        self._tokens -= 1
        return True

    def available(self, now: float) -> int | None:
        """How many lines ``allow`` would pass now, taking nothing (None: unlimited)."""
        if not self.rate:
            return None
        self._refill(now)
        return int(self._tokens)

    def wait(self, now: float) -> float:
        """Seconds until ``allow`` would pass a line (0: now, or unlimited)."""
        if not self.rate:
            return 0.0
        self._refill(now)
        return max(0.0, (1 - self._tokens) / self.rate)

    def refuse(self) -> None:
        """Record lines dropped unasked (past ``available``), as a refusing
        ``allow`` would, so that ``warn_due`` tells the sender."""
        self._refused = True

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None or now > last:
            if last is not None:
                self._tokens = min(self.burst, self._tokens + (now - last) * self.rate)
            self._last = now

    def warn_due(self, now: float) -> bool:
        """True if the last ``allow`` refused and the last warning is 1 s old or more."""
        if not self._refused:
            return False
        if self._warned_at is not None and now - self._warned_at < 1.0:
            return False
        self._warned_at = now
        return True
