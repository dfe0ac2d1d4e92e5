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

from ..room import ONLINE_SHOWN, Audience, Endpoint, Member, Room, RoomError, online_line
from ..text import handle_key
from . import scripts, url
from .client import REDIS_DOWN, LazyClient
from .link import SEND_LIMIT, Link, Outage, Request, RoomUnavailable
from .membership import EXPIRY, Membership
from .reader import Reader

log = logging.getLogger("chat.federation")

STREAM_BOUND = 10000    # XADD MAXLEN ~
#: A member's lines sent and not yet answered, at most; its next one waits.
MAX_UNANSWERED = 64

UNAVAILABLE = "Not delivered: the room is unavailable."
#: The answer to a login the room could not take in time (its handle is not held).
LOGIN_UNAVAILABLE = "Cannot log in now: the room is unavailable; try again later."
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
        self._joins: dict[str, _Joining] = {}       # uid -> its join, until read back
        self._unanswered: dict[str, microthreads.Semaphore] = {}   # uid -> lines in flight
        self._writer: Any = None                    # the link's tasklet, once open
        self._others: list[Any] = []                # the reader's and the heartbeat's
        # the room listens to its link (see "the link's news" below), and
        # passes the news on to the membership and the reader
        self._link = Link(LazyClient(redis_url), scripts.load(), scripts.keys(prefix, self.node),
                          [stream_bound or STREAM_BOUND, self.node, int(EXPIRY * 1000)],
                          listener=self)
        self._membership = Membership(self._link, self.drop, LOST)
        self._reader = Reader(LazyClient(redis_url), prefix + "log",
                              Outage("reader", on_end=self._membership.queue_heartbeat),
                              on_entry=self._deliver, on_gap=self._missed,
                              ready=self._ready, writer_idle=self._link.idle)

    # ------------------------------------------------------------ lifetime

    def open(self) -> None:
        """Find where to read from, then start the writer, the reader and the
        heartbeat; before anyone can join, so a join line comes after.

        Fails fast: raises RoomError naming the Redis (its password left
        out) if it cannot be reached now. Once open, an outage is retried.
        """
        self._membership.last_contact = microthreads.get_hub().clock()
        try:
            self._reader.start()
        except REDIS_DOWN as exc:
            raise RoomError(f"cannot reach the room's Redis at {url.redact(self.url)}: {exc}"
                            " (is it running? is --redis right?)") from None
        self._writer = _spawn("redis writer", self._link.run)
        self._others = [_spawn("redis reader", self._reader.run),
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
                self._link.call("deregister", (), limit=1.0)
            except RoomUnavailable:
                log.warning("could not deregister from the room; the others will see"
                            " this node's members leave after %gs", EXPIRY)
            self._writer.kill(block=False)
        self._link.fail_all()

    # ------------------------------------------------------------ members

    def claim(self, handle: str, term: Endpoint) -> Member | None:
        """Claim ``handle`` in Redis and append the join line, atomically.

        The reply brings the Online list as it was at the join (to this
        member only; the log's join entry does not carry it).
        """
        member = Member(handle, term, f"{self.node}:{next(self._uids)}")
        joining = _Joining()
        self._here[member.uid] = member
        self._joins[member.uid] = joining

        def joined(reply: list[Any]) -> None:
            if reply[0] == "ok" and member.uid in self._here:
                member.seq = int(reply[1])
                self._membership.deadline = int(reply[3])
                self._membership.registered[member.uid] = member
                joining.online = _online(reply[2])
            joining.replied.set()

        try:
            reply = self._link.call("join", (member.uid, member.key, handle, 0, ONLINE_SHOWN),
                                    on_reply=joined)
        except RoomUnavailable:
            self.leave(member)          # in case it got through after all
            raise RoomError(LOGIN_UNAVAILABLE) from None
        if reply[0] != "ok":
            self._forget(member)
            return None
        return member

    def join(self, member: Member) -> None:
        member.term.before_write = self.audience.flush
        joining = self._joins.get(member.uid)
        if joining is not None:
            joining.read.wait(SEND_LIMIT)       # until its join line is read back

    def publish(self, member: Member, line: str) -> None:
        """Queue ``line`` for Redis and return: the member's next line does
        not wait for this one's round trip (up to MAX_UNANSWERED of them).
        A line not in Redis within SEND_LIMIT: the member is told
        UNAVAILABLE; Redis no longer knowing the member (restarted empty):
        a heartbeat puts it back and the line goes again, once."""
        unanswered = self._unanswered.get(member.uid)
        if unanswered is None:
            unanswered = self._unanswered[member.uid] = microthreads.Semaphore(MAX_UNANSWERED)
        unanswered.acquire()
        self._link.submit(_Say(self, member, line, unanswered))

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
        self._link.send("leave", leave_args)

    def who(self, member: Member, page: int = 1) -> str:
        first = (page - 1) * ONLINE_SHOWN
        try:
            reply = self._link.call("who", (first, ONLINE_SHOWN))
        except RoomUnavailable:
            raise RoomError(UNAVAILABLE) from None
        return _online(reply[1], first)

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
        return bool(reply[0] != "taken")

    def _member_call(self, member: Member, name: str, args: Callable[[], Sequence[Any]],
                     on_reply: Callable[[Any], None] | None = None) -> list[Any]:
        """Script ``name`` for ``member``; its reply. Raises RoomError when it
        could not be done (the member is disconnected if Redis no longer
        knows it)."""
        try:
            reply = self._link.call(name, args, on_reply=on_reply)
            if reply[0] == "gone":      # Redis restarted empty? a heartbeat puts it back
                self._membership.queue_heartbeat()
                reply = self._link.call(name, args, on_reply=on_reply)
        except RoomUnavailable:
            raise RoomError(UNAVAILABLE) from None
        if reply[0] == "gone":
            self.drop(member, LOST)
            raise RoomError("")
        result: list[Any] = reply
        return result

    def _forget(self, member: Member) -> None:
        self._here.pop(member.uid, None)
        self._unanswered.pop(member.uid, None)
        joining = self._joins.pop(member.uid, None)
        if joining is not None:                 # a reader waiting for its reply: go on
            joining.replied.set()

    def drop(self, member: Member, text: str) -> None:
        """Tell one member ``text`` and disconnect it (flushed, 1 s at most,
        in a tasklet of its own); its own tasklet then leaves. Never waits."""
        self.audience.discard(member)
        microthreads.spawn(member.term.hang_up, text)

    # ------------------------------------------------------------ the link's news

    def before_batch(self, now: float) -> None:
        """The link is about to send a batch: cut off too long, the members go."""
        self._membership.check_contact(now)

    def on_lost(self) -> None:
        """A batch did not reach Redis: a heartbeat goes first when it is back."""
        self._membership.queue_heartbeat()

    def after_batch(self, batch: Sequence[Request], sent: float) -> None:
        """A batch got its replies: the membership notes the contact."""
        self._membership.after_batch(batch, sent)

    def read_from(self) -> str:
        """Where each batch's script run reads the log from: after the last
        entry read ('' once closed: nothing)."""
        return "" if self.closed else self._reader.last_id

    def on_read(self, entries: list[Any]) -> None:
        """The log's entries a batch brought: to the reader."""
        self._reader.take_reply(entries)

    # ------------------------------------------------------------ the reader's lines

    def _deliver(self, fields: dict[str, str]) -> None:
        """One entry of the stream, to the members here it concerns."""
        kind, text = fields.get("k"), fields.get("d", "")
        if kind == "b":
            self.audience.broadcast(text)
        elif kind == "j":
            uid = fields.get("u", "")
            member, joining = self._here.get(uid), self._joins.get(uid)
            if member is None or joining is None or joining.read.is_set():
                self.audience.broadcast(text)
                return
            # its Online list comes in the join's reply, on the writer's
            # connection: already on its way (the join ran), so wait for it
            joining.replied.wait(SEND_LIMIT)
            if self._joins.get(uid) is not joining:    # it left meanwhile
                self.audience.broadcast(text)
                return
            self.audience.add(member)            # lines before the join: not its
            self.audience.broadcast(text)
            if joining.online is not None:
                self.audience.tell(member, joining.online)   # in its place, batched
            joining.read.set()
        elif kind == "p":
            member = self._here.get(fields.get("u", ""))
            if member is not None and member in self.audience:
                member.tell(text)

    def _ready(self, fields: dict[str, str]) -> bool:
        """Whether ``_deliver`` can take this entry without waiting (a join
        of this node's whose reply has not come: only the reader waits)."""
        if fields.get("k") != "j":
            return True
        joining = self._joins.get(fields.get("u", ""))
        return joining is None or joining.replied.is_set() or joining.read.is_set()

    def _missed(self) -> None:
        self.audience.broadcast(MISSED)


class _Joining:
    """A member's join on its way: ``replied`` when the join's reply (with
    its ``online`` line) has come, ``read`` when the reader has read its join
    line back."""

    __slots__ = ("online", "read", "replied")

    def __init__(self) -> None:
        self.online: str | None = None
        self.replied = microthreads.Event()
        self.read = microthreads.Event()


class _Say(Request):
    """One line said by a member, on its way to Redis (``RedisRoom.publish``):
    its own call of the script, one object per line."""

    __slots__ = ("again", "line", "member", "room", "unanswered")

    def __init__(self, room: RedisRoom, member: Member, line: str,
                 unanswered: microthreads.Semaphore | None, again: bool = True) -> None:
        super().__init__("say")
        self.room = room
        self.member = member
        self.line = line
        self.unanswered = unanswered
        self.again = again

    def arguments(self) -> tuple[str, str, str]:
        member = self.member                        # its key as it is now: after a /nick
        return (member.uid, member.key, self.line)

    def _answered(self) -> None:
        if self.unanswered is not None:             # once, a reply or a failure
            self.unanswered.release()
            self.unanswered = None

    def succeed(self, reply: str) -> _Say | None:
        self.finished = True
        if reply != "gone":
            self._answered()
        elif self.again:    # Redis restarted empty? a heartbeat puts it back first
            again = _Say(self.room, self.member, self.line, self.unanswered, again=False)
            self.unanswered = None                  # the retry answers for it
            return again
        else:
            self._answered()
            self.room.drop(self.member, LOST)
        return None

    def fail(self, error: BaseException) -> None:
        if self.finished:
            return
        self.finished = True
        self._answered()
        self.member.tell(UNAVAILABLE)


def _online(listed: list[Any], first: int = 0) -> str:
    """The Online line from the script's ``{count, handles...}``."""
    return online_line(listed[1:], total=int(listed[0]), first=first)


def _spawn(name: str, body: Callable[..., None], *args: Any) -> Any:
    tasklet = microthreads.spawn(body, *args)
    tasklet.name = name
    return tasklet
