"""The chat service: the 2007 fibra chat seed, reborn in straight-line style.

The seed's tasklets yielded ``network.receive`` and ``tasks.spawn``; here the
same parts read straight down: ``listener`` accepts, ``login`` asks for a
handle, ``chat`` reads lines and acts, the room (room.py) hands every line
to every member, and ``lost_conn`` (a finish hook) lets the room announce
whoever leaves, once, however they leave. PROTOCOL.md (shared with the
project) is the contract.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import microthreads
from microthreads.net import Connection, NetworkError, NotTLSError, StreamServer
from microthreads.nonblocking import deadline_after, remaining

from .limits import AddressLimits, address_key
from .room import Endpoint, LocalRoom, Member, Room, RoomError
from .terminal import Terminal
from .text import RateLimiter, check_handle, target_key

if TYPE_CHECKING:
    from microthreads.websocket import WebSocket

log = logging.getLogger("chat")

#: On /quit, how long the leaving member's pending output may take to go out.
QUIT_FLUSH = 1.0

#: The last line a member who typed /quit gets.
GOODBYE = "Goodbye."

#: TCP keepalive after ``--keepalive`` idle seconds: probes this far apart, this many.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_PROBES = 3

#: The answer to a valid handle from an address past its join rate (chat.limits),
#: with the whole seconds to wait.
TOO_MANY_LOGINS = "Too many logins from your address; wait {} second{}."

#: The answer, in the clear, to a client on the TLS port that does not speak TLS,
#: with the address it connected to.
NOT_TLS = ("This port speaks TLS: connect with `openssl s_client -quiet -connect {}:{}`"
           " or `ncat --ssl {} {}`.")


class ThrottledLog:
    """Info lines about refusals, at most ``rate`` a second (burst ``burst``):
    a flood of refusals cannot fill the log. Lines over the rate are
    counted, and the next line logged says how many were left out."""

    def __init__(self, clock: Callable[[], float], rate: float = 5.0,
                 burst: float = 20.0) -> None:
        self._clock = clock
        self._bucket = RateLimiter(rate, burst)
        self._skipped = 0

    def info(self, message: str, *args: object) -> None:
        """``log.info(message, *args)``, unless over the rate."""
        if not self._bucket.allow(self._clock()):
            self._skipped += 1
            return
        if self._skipped:
            message += " (%d such lines not logged before this one)"
            args = (*args, self._skipped)
            self._skipped = 0
        log.info(message, *args)

#: ``/word rest``: the word runs to the first whitespace (a space or a tab).
_COMMAND = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)


class Wire(Protocol):
    """What the server asks of a member's connection: a telnet ``Connection``,
    or a web member's ``WebLink`` (web.py)."""

    close_reason: str | None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queued output is sent, ``timeout`` seconds at most."""

    def close(self, reason: str | None = None) -> None:
        """Close it now; ``reason`` for the logs."""

    @property
    def peer(self) -> Any:
        """The peer's address."""


class Session(Endpoint, Protocol):
    """A member's transport as the server drives it: an ``Endpoint`` that also
    reads lines (``read_line``: clean text, None at the end) over its ``conn``.
    The telnet ``Terminal`` and the web page's ``WebTerminal`` are two."""

    @property
    def conn(self) -> Wire:
        """The connection under it."""

    def read_line(self) -> str | None:
        """The next line the member typed, clean; None once it is gone."""


@dataclass
class Options:
    """The server's settings, as the command line gives them (cli.py says
    what each means)."""

    host: str = "127.0.0.1"
    port: int = 1980
    max_clients: int = 10000
    rate: float = 20.0
    max_line: int = 4096
    login_timeout: float = 60.0
    max_backlog: int = 1 << 20
    stall_timeout: float = 30.0
    shutdown_flush: float = 2.0
    join_rate: float = 1.0         # logins a second per address, burst 10; 0 is off
    keepalive: int = 30            # idle seconds before TCP keepalive's first probe
    reuse_port: bool = False       # --workers: every worker listens on the same port
    tls: ssl.SSLContext | None = None   # an ssl.SSLContext: --tls-cert/--tls-key (None: plain TCP)
    web_port: int | None = None    # --web-port: the chat page and /ws (None: no web port)


class ChatServer:
    """One chat room on one listening socket.

    Everything that concerns other members goes through ``room`` (a
    ``LocalRoom`` unless one is given: see room.py); the server owns the
    sockets, the logins and the commands.
    """

    def __init__(self, options: Options | None = None, room: Room | None = None) -> None:
        self.options = options or Options()
        self.room: Room = room if room is not None else LocalRoom()
        self.limits = AddressLimits(self.options.rate, self.options.join_rate)
        self.closing = False
        self.server: StreamServer | None = None
        self.web: Any = None        # the web port's WSGIServer (chat/web.py), if any
        self.web_members: dict[Any, None] = {}   # the WebLinks of web connections, an ordered set
        self._stop_early = False   # shutdown asked while the room was opening
        #: Refused logins and members over their rate, logged at a bounded rate.
        self.refusals = ThrottledLog(microthreads.get_hub().clock)
        # Bound once, shared by every member (a bound method or closure per
        # member is ~100-200 B of its idle memory): the finish hooks and on_flood.
        self._release = self.release_limiter
        self._lost_conn = self.lost_conn
        self._on_flood = self._flooding
        self.commands: dict[str, tuple[Callable[[Member, str], bool | None], str]] = {
            "quit": (self.cmd_quit, "/quit - leave the chat"),
            "who": (self.cmd_who, "/who [page] - list who is online"),
            "me": (self.cmd_me, "/me <action> - act, e.g. /me waves"),
            "msg": (self.cmd_msg, "/msg <handle> <text> - a private message"),
            "nick": (self.cmd_nick, "/nick <handle> - change your handle"),
            "help": (self.cmd_help, "/help - this list"),
        }

    # ------------------------------------------------------------ the seed

    def listener(self) -> None:
        """Open the room, then accept connections until shutdown; one tasklet
        each runs ``login``. The room is closed however this ends."""
        o = self.options
        try:
            self.room.open()
            if self._stop_early:        # SIGTERM while the room was opening
                return
            self.server = StreamServer(
                (o.host, o.port), self.login, max_connections=o.max_clients,
                refuse=self.refuse, max_output=o.max_backlog, on_full="close",
                stall_timeout=o.stall_timeout, reuse_port=o.reuse_port, ssl=o.tls,
                on_handshake_error=self.tls_refused)
            self.server.start()
            if o.web_port is not None:
                from . import web
                self.web = web.serve(self, o.host, o.web_port, ssl=o.tls, reuse_port=o.reuse_port)
                log.info("chat page on %s://%s:%d/", "https" if o.tls else "http", o.host,
                         self.web.address[1])
            log.info("chat listening on %s:%d%s (max clients %d, rate %s lines/s, max line"
                     " %d bytes, login timeout %gs, max backlog %d bytes)", o.host,
                     self.server.address[1], " over TLS" if o.tls else "", o.max_clients,
                     o.rate or "unlimited", o.max_line, o.login_timeout, o.max_backlog)
            self.server.serve_forever()
        finally:
            self.room.close()

    def refuse(self, conn: Connection) -> None:
        """The answer to a connection over ``--max-clients``."""
        conn.sendall(b"Server is full, try again later.\r\n")

    def tls_refused(self, conn: Connection, error: NetworkError) -> None:
        """A connection whose TLS handshake failed (before the close): a
        plaintext client is told in the clear how to connect (``NOT_TLS``);
        either is logged, throttled, with the peer and the reason."""
        if isinstance(error, NotTLSError):
            host, port = conn.socket.getsockname()[:2]     # the address it dialed
            error.answer((NOT_TLS.format(f"[{host}]" if ":" in host else host, port, host,
                                         port) + "\r\n").encode())
        self.refusals.info("%s", error)                     # it names the peer

    def login(self, conn: Connection) -> None:
        """A telnet member: its terminal over ``conn``, then ``enter``."""
        o = self.options       # a silent peer: dropped after ~keepalive + 15 s, or the stall limit
        conn.set_keepalive(o.keepalive, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES,
                           user_timeout=o.stall_timeout)
        address, limiter = self._line_limiter(conn.peer)
        term = Terminal(conn, max_line=o.max_line, limiter=limiter, rate=0,
                        clock=microthreads.get_hub().clock)
        term.on_flood = self._on_flood
        self.enter(term, address)

    def web_session(self, ws: WebSocket) -> None:
        """A web member (chat/web.py): its terminal over the WebSocket ``ws``,
        then ``enter``, as for telnet; over ``--max-clients`` (telnet and web
        connections together), ``Server is full, try again later.``"""
        from .web import WebTerminal
        o = self.options
        held = len(self.server.connections if self.server else ()) + len(self.web_members)
        if self.closing or held >= o.max_clients:
            try:
                ws.send("Server is shutting down." if self.closing else
                        "Server is full, try again later.")
            except NetworkError:
                pass
            ws.close(1013 if not self.closing else 1001)
            return
        address, limiter = self._line_limiter(ws.peer)
        term = WebTerminal(ws, max_line=o.max_line, limiter=limiter,
                           clock=microthreads.get_hub().clock)
        term.on_flood = self._on_flood
        self.web_members[term.conn] = None
        try:
            self.enter(term, address)
        finally:
            del self.web_members[term.conn]
            term.conn.close()

    def _flooding(self, conn: Wire) -> None:
        """A member was told it sends too fast: log it (throttled)."""
        self.refusals.info("%s: over its rate (--rate %g): lines dropped", _peer(conn),
                           self.options.rate)

    def _line_limiter(self, peer: Any) -> tuple[str, RateLimiter | None]:
        """The address key of ``peer`` and the line limiter its connection uses
        (a reconnect's is kept: chat.limits); given back when this tasklet ends."""
        clock = microthreads.get_hub().clock
        address = address_key(peer)
        limiter = self.limits.line_limiter(address, clock())
        if limiter is not None:                 # (None: no --rate, nothing to give back)
            microthreads.on_finish(self._release, address, limiter)
        return address, limiter

    def release_limiter(self, address: str, limiter: RateLimiter) -> None:
        """Finish hook of a connection's tasklet: its line limiter goes back to
        ``limits`` (kept for the next connection from ``address``)."""
        self.limits.release(address, limiter, microthreads.get_hub().clock())

    def enter(self, term: Session, address: str) -> None:
        """Ask for a handle until a valid, free one comes; then chat. ``term``
        is the member's transport: a telnet ``Terminal`` or a ``WebTerminal``."""
        o = self.options
        conn = term.conn
        clock = microthreads.get_hub().clock
        member = None
        try:
            with microthreads.Timeout(o.login_timeout):
                while member is None:
                    term.say("What is your handle?")
                    line = term.read_line()
                    if line is None:
                        return
                    handle, error = check_handle(line)
                    if error:
                        term.say(error)
                        self.refusals.info("%s: login refused: %s", _peer(conn), error)
                        continue
                    assert handle is not None           # valid: no error
                    if not self.limits.allow_join(address, clock()):
                        wait = max(1, math.ceil(self.limits.join_wait(address, clock())))
                        term.say(TOO_MANY_LOGINS.format(wait, "" if wait == 1 else "s"))
                        self.refusals.info("%s: login refused: too many logins from %s",
                                           _peer(conn), address)
                        continue
                    member = self.room.claim(handle, term)
                    if member is None:
                        term.say("That handle is already taken.")
                        self.refusals.info("%s: login refused: %r is taken", _peer(conn),
                                           handle)
        except microthreads.Timeout:
            term.say("Login timed out.")
            conn.flush(1.0)
            log.info("%s: login timed out", _peer(conn))
            return
        except RoomError as exc:
            term.say(str(exc))
            conn.flush(1.0)
            return
        microthreads.on_finish(self._lost_conn, member, conn)    # once, however it ends
        if self.closing:            # too late: nobody joins a room that is closing
            term.say("Server is shutting down.")
            conn.flush(self.options.shutdown_flush)
            return
        self._join(member, conn)
        self.chat(member, term)

    def _join(self, member: Member, conn: Wire) -> None:
        """``member`` joins the room, logged. (Its own call: logging's findCaller
        makes a frame object of the caller, which would otherwise be ``enter``'s,
        kept as long as the member stays, ~300 B each.)"""
        self.room.join(member)
        log.info("%s joined from %s (%d online here)", member.handle, _peer(conn),
                 len(self.room.audience))

    def chat(self, member: Member, term: Session) -> None:
        """Read ``member``'s lines from ``term`` and act on each, until
        ``/quit`` or the connection ends (a NetworkError propagates)."""
        conn = term.conn
        room = self.room
        try:                                   # read_line is a plain call, not a generator:
            while (line := term.read_line()) is not None:  # the parked stack stays shallow
                if not line or self.closing:    # nothing new once "shutting down" is out
                    continue
                try:
                    if not line.startswith("/"):
                        room.publish(member, f"{member.handle} says: {line}")
                    elif line.startswith("//"):       # IRC's way to say a line with a "/"
                        room.publish(member, f"{member.handle} says: {line[1:]}")
                    elif self.command(member, line) is False:
                        conn.close_reason = "quit"
                        term.say(GOODBYE)          # after its own last lines
                        conn.flush(QUIT_FLUSH)
                        return
                except RoomError as exc:
                    if str(exc):
                        term.say(str(exc))
            conn.close_reason = conn.close_reason or "closed by peer"
        except NetworkError as exc:                        # reset, dropped as slow, ...
            conn.close_reason = conn.close_reason or f"connection lost: {exc}"
            raise

    def lost_conn(self, member: Member, conn: Wire) -> None:
        """Finish hook of a member's tasklet: the room frees the handle and
        tells the others."""
        self.room.leave(member)
        log.info("%s left (%s; %d online here)", member.handle,
                 conn.close_reason or "error", len(self.room.audience))

    # ------------------------------------------------------------ commands

    def command(self, member: Member, line: str) -> bool | None:
        """Dispatch ``/word rest``; returns False to end the session."""
        match = _COMMAND.match(line)
        assert match is not None                # any line starting with "/"
        word, rest = match.groups()
        entry = self.commands.get(word.lower())
        if entry is None:
            member.term.say(f"Unknown command: /{word}. Type /help for a list.")
            return True
        return entry[0](member, rest.strip())

    def cmd_quit(self, member: Member, rest: str) -> bool:
        """/quit: end the session."""
        return False

    def cmd_who(self, member: Member, rest: str) -> None:
        """/who [page]: the Online line, a page of it."""
        page = int(rest) if rest.isascii() and rest.isdigit() and int(rest) > 0 else None
        if rest and page is None:
            member.term.say("Usage: /who [page]")
            return
        member.term.say(self.room.who(member, page or 1))

    def cmd_me(self, member: Member, rest: str) -> None:
        """/me action: ``* handle action`` to everyone."""
        if not rest:
            member.term.say("Usage: /me <action>")
            return
        self.room.publish(member, f"* {member.handle} {rest}")

    def cmd_msg(self, member: Member, rest: str) -> None:
        """/msg to text: a private message."""
        words = rest.split(None, 1)             # rest is stripped: both are non-empty
        if len(words) < 2:
            member.term.say("Usage: /msg <handle> <text>")
            return
        to, text = words
        to_key = target_key(to)                 # None: longer than any handle
        target = None if to_key is None else self.room.message(member, to_key, text)
        if target is None:
            member.term.say(f"No such user: {to}")
            return
        member.term.say(f"[private to {target}] {text}")

    def cmd_nick(self, member: Member, rest: str) -> None:
        """/nick handle: change handle, under the login rules."""
        handle, error = check_handle(rest)
        if error:
            member.term.say(error)
            return
        assert handle is not None               # valid: no error
        old = member.handle
        if not self.room.rename(member, handle):
            member.term.say("That handle is already taken.")
        elif member.handle != old:
            log.info("%s is now known as %s", old, member.handle)

    def cmd_help(self, member: Member, rest: str) -> None:
        """/help: the list of commands."""
        member.term.say("Commands:")
        for _function, usage in self.commands.values():
            member.term.say(usage)

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Close the room, tell every member, flush (bounded), close every
        socket, stop serving."""
        if self.server is None:     # still opening the room: do not start serving
            self._stop_early = True
            return
        if self.closing:
            return
        self.closing = True
        log.info("shutting down: %d members", len(self.room.audience))
        if self.server.listener is not None:    # no newcomer from here on
            self.server.listener.close()
        self.room.close()           # a shared room: the others see them leave now
        self.room.announce("Server is shutting down.")
        self.room.flush()
        hub = microthreads.get_hub()
        deadline = deadline_after(hub, self.options.shutdown_flush)
        for conn in list(self.server.connections.values()):
            try:
                conn.flush(remaining(hub, deadline))
            except (NetworkError, OSError):
                pass
            conn.close("server shutting down")
        for link in list(self.web_members):
            try:
                link.flush(remaining(hub, deadline))
            except (NetworkError, OSError):
                pass
            link.close("server shutting down")
        if self.web is not None:
            self.web.stop()
        self.server.stop()


def _peer(conn: Wire) -> str:
    peer = conn.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
