"""RedisRoom: the ``chat.room.Room`` whose room lives in Redis.

A member's line is appended to the room's stream by a script (through the
link) and reaches members only when this node's reader reads it back: its
sender too, so every member on every node sees one order. ``audience``
holds the members who joined on this node (their join line read back).
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
from typing import Any, Callable, Sequence

import microthreads
from microthreads.net import NetworkError

from ..room import Audience, Member, Room, RoomError
from ..text import handle_key
from . import scripts, url
from .client import redis_client
from .link import SEND_LIMIT, Link, Outage, RoomUnavailable
from .membership import EXPIRY, Membership
from .reader import Reader

log = logging.getLogger("chat.federation")

STREAM_BOUND = 10000    # XADD MAXLEN ~

UNAVAILABLE = "Not delivered: the room is unavailable."
LOST = "Connection to the room was lost; please reconnect."
MISSED = "Some lines were missed."


class RedisRoom(Room):
    """Room ``name`` in the Redis at ``redis_url``, shared with other nodes.

    Raises ValueError for a URL it cannot use, ImportError without redis-py,
    OSError if the Lua scripts are not installed.
    """

    def __init__(self, redis_url: str, name: str = "lobby",
                 stream_bound: int | None = None) -> None:
        self.audience = Audience()
        self.url = redis_url
        self.name = name
        self.node = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        prefix = f"chat:{{{name}}}:"
        self.closed = False
        self._uids = itertools.count(1)
        self._here: dict[str, Member] = {}          # uid -> claimed here, not yet left
        self._joins: dict[str, microthreads.Event] = {}   # uid -> set when its join is read
        self._writer: Any = None                    # the link's tasklet, once open
        self._others: list[Any] = []                # the reader's and the heartbeat's
        writer_client = redis_client(redis_url)
        self._scripts = scripts.load(writer_client)
        self._link = Link(writer_client, [prefix],
                          [stream_bound or STREAM_BOUND, self.node, int(EXPIRY * 1000)])
        self._membership = Membership(self._link, self._scripts, self._drop, LOST)
        self._reader = Reader(redis_client(redis_url), prefix + "log",
                              Outage("reader", on_end=self._membership.queue_heartbeat),
                              on_entry=self._deliver, on_gap=self._missed)

    # ------------------------------------------------------------ lifetime

    def open(self) -> None:
        """Find where to read from, then start the writer, the reader and the
        heartbeat; before anyone can join, so a join line comes after."""
        self._membership.last_contact = microthreads.get_hub().clock()
        start = self._reader.newest()
        self._writer = _spawn("redis writer", self._link.run)
        self._others = [_spawn("redis reader", self._reader.run, start),
                        _spawn("redis heartbeat", self._membership.run)]
        log.info("node %s of room %r on %s", self.node, self.name, url.redact(self.url))

    def close(self) -> None:
        """Stop reading and heartbeating, deregister (the others see this
        node's members leave now, not after the expiry; 1 s at most), then
        stop the writer: what it still holds fails."""
        if self.closed:
            return
        self.closed = True
        for tasklet in self._others:
            tasklet.kill(block=False)
        self._membership.registered = {}
        if self._writer is not None:
            try:
                self._link.call(self._scripts["deregister"], (), limit=1.0)
            except RoomUnavailable:
                log.warning("could not deregister from the room; the others will see"
                            " this node's members leave after %gs", EXPIRY)
            self._writer.kill(block=False)
        self._link.fail_all()

    # ------------------------------------------------------------ members

    def claim(self, handle: str, term: Any) -> Member | None:
        """Claim ``handle`` in Redis and append the join line, atomically."""
        member = Member(handle, term, f"{self.node}:{next(self._uids)}")
        self._here[member.uid] = member
        self._joins[member.uid] = microthreads.Event()

        def joined(reply: list[Any]) -> None:
            if reply[0] == "ok" and member.uid in self._here:
                member.seq = int(reply[1])
                self._membership.registered[member.uid] = member

        try:
            reply = self._link.call(self._scripts["join"], (member.uid, member.key, handle),
                                    on_reply=joined)
        except RoomUnavailable:
            self.leave(member)          # in case it got through after all
            raise RoomError(UNAVAILABLE) from None
        if reply[0] != "ok":
            self._forget(member)
            return None
        return member

    def join(self, member: Member) -> None:
        member.term.before_write = self.audience.flush
        self._joins[member.uid].wait(SEND_LIMIT)     # until its join line is read back

    def publish(self, member: Member, line: str) -> None:
        self._member_call(member, "say", lambda: (member.uid, member.key, line))

    def leave(self, member: Member) -> None:
        """Forget the member here; Redis frees the handle and appends the
        "left" line (a leave that cannot reach Redis is made good by the next
        heartbeat, which lists only the members still here)."""
        self._forget(member)
        self.audience.discard(member)
        if self.closed:
            return

        def leave_args() -> tuple[str, str]:
            self._membership.registered.pop(member.uid, None)   # as it is sent: heartbeats agree
            return (member.uid, member.key)
        self._link.send(self._scripts["leave"], leave_args)

    def who(self, member: Member) -> str:
        try:
            reply = self._link.call(self._scripts["who"], ())
        except RoomUnavailable:
            raise RoomError(UNAVAILABLE) from None
        return reply[1]

    def message(self, member: Member, to_key: str, text: str) -> str | None:
        reply = self._member_call(member, "msg",
                                  lambda: (member.uid, member.key, to_key, text))
        return None if reply[0] == "nobody" else reply[1]

    def rename(self, member: Member, handle: str) -> bool:
        key = handle_key(handle)

        def renamed(reply: list[Any]) -> None:
            if reply[0] == "ok":
                member.handle, member.key = handle, key

        reply = self._member_call(member, "nick",
                                  lambda: (member.uid, member.key, key, handle),
                                  on_reply=renamed)
        return reply[0] != "taken"

    def _member_call(self, member: Member, name: str, args: Callable[[], Sequence[Any]],
                     on_reply: Callable[[Any], None] | None = None) -> list[Any]:
        """Script ``name`` for ``member``; its reply. Raises RoomError when it
        could not be done (the member is disconnected if Redis no longer
        knows it)."""
        script = self._scripts[name]
        try:
            reply = self._link.call(script, args, on_reply=on_reply)
            if reply[0] == "gone":      # Redis restarted empty? a heartbeat puts it back
                self._membership.queue_heartbeat()
                reply = self._link.call(script, args, on_reply=on_reply)
        except RoomUnavailable:
            raise RoomError(UNAVAILABLE) from None
        if reply[0] == "gone":
            self._drop(member, LOST)
            raise RoomError("")
        return reply

    def _forget(self, member: Member) -> None:
        self._here.pop(member.uid, None)
        self._joins.pop(member.uid, None)

    def _drop(self, member: Member, text: str) -> None:
        """Tell one member ``text`` and disconnect it (flushed, bounded)."""
        self.audience.discard(member)
        conn = member.term.conn
        conn.close_reason = text

        def close() -> None:
            try:
                member.term.say(text)
                conn.flush(1.0)
            except (NetworkError, OSError):
                pass
            conn.close(text)
        microthreads.spawn(close)

    # ------------------------------------------------------------ the reader's lines

    def _deliver(self, fields: dict[str, str]) -> None:
        """One entry of the stream, to the members here it concerns."""
        kind, text = fields.get("k"), fields.get("d", "")
        if kind == "b":
            self.audience.broadcast(text)
        elif kind == "j":
            uid = fields.get("u", "")
            member, joined = self._here.get(uid), self._joins.get(uid)
            if member is None or joined is None or joined.is_set():
                self.audience.broadcast(text)
                return
            self.audience.add(member)            # lines before the join: not its
            self.audience.broadcast(text)
            self.audience.tell(member, fields.get("o", ""))   # in its place, batched
            joined.set()
        elif kind == "p":
            member = self._here.get(fields.get("u", ""))
            if member is not None and member in self.audience:
                member.tell(text)

    def _missed(self) -> None:
        self.audience.broadcast(MISSED)


def _spawn(name: str, body: Callable[..., None], *args: Any) -> Any:
    tasklet = microthreads.spawn(body, *args)
    tasklet.name = name
    return tasklet
