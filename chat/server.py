"""The chat service: the 2007 fibra chat seed, reborn in straight-line style.

The seed's tasklets yielded ``network.receive`` and ``tasks.spawn``; here the
same parts read straight down: ``listener`` accepts, ``login`` asks for a
handle, ``chat`` reads lines and acts, ``broadcast`` hands a line to every
member, and ``lost_conn`` (a finish hook) announces whoever leaves, once,
however they leave. PROTOCOL.md (shared with the project) is the contract.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

import microthreads
from microthreads.net import NetworkError, StreamServer

from .terminal import Terminal
from .text import check_handle, handle_key

log = logging.getLogger("chat")

#: On /quit, how long the leaving member's pending output may take to go out.
QUIT_FLUSH = 1.0

#: ``/word rest``: the word runs to the first whitespace (a space or a tab).
_COMMAND = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 1980
    max_clients: int = 10000
    rate: float = 20.0
    max_line: int = 4096
    login_timeout: float = 60.0
    max_backlog: int = 1 << 20
    stall_timeout: float = 30.0
    shutdown_flush: float = 2.0
    reuse_port: bool = False       # --workers: every worker listens on the same port
    tls: object = None             # an ssl.SSLContext: --tls-cert/--tls-key (None: plain TCP)


class Member:
    """One logged-in person: a handle and the terminal it types on."""

    __slots__ = ("handle", "key", "term", "write")

    def __init__(self, handle, term):
        self.handle = handle
        self.key = handle_key(handle)
        self.term = term
        self.write = term.conn.write

    def deliver(self, data):
        """Hand encoded lines to its bounded output; over the bound, it is dropped."""
        try:
            self.write(data)
        except NetworkError:
            pass            # closed: its own tasklet wakes with the error and leaves

    def __repr__(self):
        return f"<Member {self.handle!r}>"


class ChatServer:
    """One chat room on one listening socket."""

    def __init__(self, options=None):
        self.options = options or Options()
        self.members = {}          # handle key -> Member, in join order
        self._batch = []           # encoded lines broadcast since the last flush
        self._hub = microthreads.get_hub()
        self.closing = False
        self.server = None
        self.commands = {
            "quit": (self.cmd_quit, "/quit - leave the chat"),
            "who": (self.cmd_who, "/who - list who is online"),
            "me": (self.cmd_me, "/me <action> - act, e.g. /me waves"),
            "msg": (self.cmd_msg, "/msg <handle> <text> - a private message"),
            "nick": (self.cmd_nick, "/nick <handle> - change your handle"),
            "help": (self.cmd_help, "/help - this list"),
        }

    # ------------------------------------------------------------ the seed

    def listener(self):
        """Accept connections until shutdown; one tasklet each runs ``login``."""
        o = self.options
        self.server = StreamServer(
            (o.host, o.port), self.login, max_connections=o.max_clients, refuse=self.refuse,
            max_output=o.max_backlog, on_full="close", stall_timeout=o.stall_timeout,
            reuse_port=o.reuse_port, ssl=o.tls)
        self.server.start()
        log.info("chat listening on %s:%d%s (max clients %d, rate %s lines/s, max line %d"
                 " bytes, login timeout %gs, max backlog %d bytes)", o.host,
                 self.server.address[1], " over TLS" if o.tls else "", o.max_clients,
                 o.rate or "unlimited", o.max_line, o.login_timeout, o.max_backlog)
        self.server.serve_forever()

    def refuse(self, conn):
        conn.sendall(b"Server is full, try again later.\r\n")

    def login(self, conn):
        """Ask for a handle until a valid, free one comes; then chat."""
        conn.set_keepalive()
        o = self.options
        term = Terminal(conn, max_line=o.max_line, rate=o.rate,
                        clock=microthreads.get_hub().clock)
        handle = None
        try:
            with microthreads.Timeout(o.login_timeout):
                while handle is None:
                    term.say("What is your handle?")
                    line = term.read_line()
                    if line is None:
                        return
                    handle, error = check_handle(line)
                    if error:
                        term.say(error)
                    elif not self.claim_handle(handle, term):
                        term.say("That handle is already taken.")
                        handle = None
        except microthreads.Timeout:
            term.say("Login timed out.")
            conn.flush(1.0)
            log.info("%s: login timed out", _peer(conn))
            return
        if self.closing:            # too late: nobody joins a room that is closing
            term.say("Server is shutting down.")
            conn.flush(self.options.shutdown_flush)
            return
        self.chat(self.join(handle, term))

    def claim_handle(self, handle, term):
        """True if ``handle`` is free (compared after casefold); a federated room
        claims it atomically here."""
        return handle_key(handle) not in self.members

    def join(self, handle, term):
        self.flush_broadcasts()                            # lines before the join: not its
        member = Member(handle, term)
        term.before_write = self.flush_broadcasts
        self.members[member.key] = member
        microthreads.on_finish(self.lost_conn, member)      # once, however it ends
        self.broadcast(f"{handle} has joined the chat.")
        term.say(self.online_line())
        log.info("%s joined from %s (%d online)", handle, _peer(term.conn), len(self.members))
        return member

    def chat(self, member):
        conn = member.term.conn
        read_line = member.term.read_line      # a plain call, not a generator: an idle
        try:                                   # member's parked stack stays shallow
            while (line := read_line()) is not None:
                if not line or self.closing:    # nothing new once "shutting down" is out
                    continue
                if line.startswith("/"):
                    if self.command(member, line) is False:
                        conn.close_reason = "quit"
                        self.flush_broadcasts()    # its own last lines reach it too
                        conn.flush(QUIT_FLUSH)
                        return
                else:
                    self.broadcast(f"{member.handle} says: {line}")
            conn.close_reason = conn.close_reason or "closed by peer"
        except NetworkError as exc:                        # reset, dropped as slow, ...
            conn.close_reason = conn.close_reason or f"connection lost: {exc}"
            raise

    def broadcast(self, text):
        """Hand one line to every member, never yielding: one order for everyone.

        The line is encoded once and joins the room's pending batch; at the
        hub's next turn (or before any member's own line is written, so
        nothing overtakes it) the batch goes to every member's bounded output
        as one piece: a member with nothing pending gets it with one
        non-blocking send, however many lines were broadcast meanwhile. A
        member whose backlog passes its bound is disconnected (and announced
        as leaving by its own tasklet).
        """
        batch = self._batch
        batch.append(text.encode("utf-8", "replace") + b"\r\n")
        if len(batch) == 1:
            self._hub.call_soon(self.flush_broadcasts)

    def flush_broadcasts(self):
        """Deliver the pending broadcast lines to every member now."""
        batch = self._batch
        if not batch:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        batch.clear()
        for member in list(self.members.values()):
            member.deliver(data)

    def lost_conn(self, member):
        """Finish hook of a member's tasklet: free the handle, tell the others."""
        if self.members.get(member.key) is member:
            del self.members[member.key]
        log.info("%s left (%s; %d online)", member.handle,
                 member.term.conn.close_reason or "error", len(self.members))
        if not self.closing:
            self.broadcast(f"{member.handle} has left the chat.")

    # ------------------------------------------------------------ commands

    def command(self, member, line):
        """Dispatch ``/word rest``; returns False to end the session."""
        word, rest = _COMMAND.match(line).groups()
        entry = self.commands.get(word.lower())
        if entry is None:
            member.term.say(f"Unknown command: /{word}. Type /help for a list.")
            return True
        return entry[0](member, rest.strip())

    def cmd_quit(self, member, rest):
        return False

    def cmd_who(self, member, rest):
        member.term.say(self.online_line())

    def cmd_me(self, member, rest):
        if not rest:
            member.term.say("Usage: /me <action>")
            return
        self.broadcast(f"* {member.handle} {rest}")

    def cmd_msg(self, member, rest):
        words = rest.split(None, 1)             # rest is stripped: both are non-empty
        if len(words) < 2:
            member.term.say("Usage: /msg <handle> <text>")
            return
        to, text = words
        # handles are kept in NFC (check_handle), so compare <to> in NFC too
        target = self.members.get(handle_key(unicodedata.normalize("NFC", to)))
        if target is None:
            member.term.say(f"No such user: {to}")
            return
        try:
            target.term.say(f"[private] {member.handle}: {text}")
        except NetworkError:
            pass            # dropped as slow: its own tasklet announces it
        member.term.say(f"[private to {target.handle}] {text}")

    def cmd_nick(self, member, rest):
        handle, error = check_handle(rest)
        if error:
            member.term.say(error)
            return
        key = handle_key(handle)
        if key in self.members and self.members[key] is not member:
            member.term.say("That handle is already taken.")
            return
        old = member.handle
        if handle == old:
            return
        # keep join order: rebuild the dict with the new key in the same place
        self.members = {(key if k == member.key else k): m for k, m in self.members.items()}
        member.handle, member.key = handle, key
        self.broadcast(f"{old} is now known as {handle}.")
        log.info("%s is now known as %s", old, handle)

    def cmd_help(self, member, rest):
        member.term.say("Commands:")
        for _function, usage in self.commands.values():
            member.term.say(usage)

    def online_line(self):
        handles = [m.handle for m in self.members.values()]
        return f"Online ({len(handles)}): {', '.join(handles)}"

    # ------------------------------------------------------------ shutdown

    def shutdown(self):
        """Tell every member, flush (bounded), close every socket, stop serving."""
        if self.closing or self.server is None:
            return
        self.closing = True
        log.info("shutting down: %d members", len(self.members))
        self.server.listener.close()
        self.broadcast("Server is shutting down.")
        self.flush_broadcasts()
        hub = microthreads.get_hub()
        deadline = hub.clock() + self.options.shutdown_flush
        for conn in list(self.server.connections.values()):
            try:
                conn.flush(max(0.0, deadline - hub.clock()))
            except (NetworkError, OSError):
                pass
            conn.close("server shutting down")
        self.server.stop()


def _peer(conn):
    peer = conn.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
