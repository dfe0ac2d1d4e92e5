"""The room: who is in the chat, and every line they say, in one order.

``ChatServer`` (server.py) owns sockets, logins and commands; it asks a
``Room`` for everything that concerns other members. Two rooms keep the
same promises:

- ``LocalRoom`` (here): the room lives in this process.
- ``RedisRoom`` (``chat.federation.room``): the room lives in Redis and is
  shared by many processes (``--redis``).

Either way, what a process delivers goes to the members it holds, through
one ``Audience``: the lines the room hands over during one hub turn are
joined into one piece and written once to every member, so a member with
nothing pending gets them with one non-blocking send.
"""

from __future__ import annotations

import itertools
import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Protocol

import microthreads
from microthreads.net import NetworkError

from .text import handle_key

log = logging.getLogger("chat")


class Endpoint(Protocol):
    """What a member types on, as the room sees it: something that receives
    lines and sends lines. The telnet ``Terminal`` (terminal.py) is one;
    another transport (a web page's) is another, and the room needs nothing
    else of it.

    ``deliver(data)`` queues lines already encoded (UTF-8, each ending in
    CRLF; one piece may hold many) on the member's bounded output and never
    waits; ``say(text)`` queues one line of the member's own (a reply),
    calling ``before_write`` first when it is set, so the room's pending
    lines go out before it. ``hang_up(text)`` tells the member ``text``
    and disconnects it; it may wait (1 s at most). ``deliver`` and ``say``
    raise ``NetworkError`` once the connection is gone (over its output
    bound: it is closed, and raises); the member's own tasklet then ends
    and leaves the room.
    """

    before_write: Callable[[], None] | None

    @property
    def deliver(self) -> Callable[[bytes], None]:
        """Queue lines already encoded (see above)."""

    def say(self, text: str) -> None:
        """Queue ``text`` as one line, after the room's pending lines."""

    def hang_up(self, text: str) -> None:
        """Tell ``text`` (flushed, bounded) and disconnect."""


class RoomError(Exception):
    """The room could not do what a member asked.

    ``str(exc)`` is what the member is to be told; empty when it has been
    told already (a member the room disconnected).
    """


class Member:
    """One logged-in person: a handle and the ``Endpoint`` it types on (``term``).

    ``uid`` names it to the room (unique among a room's members, past and
    present, within one process); ``seq`` is its place in the join order.
    """

    __slots__ = ("handle", "key", "seq", "term", "uid", "write")

    def __init__(self, handle: str, term: Endpoint, uid: str = "") -> None:
        self.handle = handle
        self.key = handle_key(handle)
        self.term = term
        self.uid = uid
        self.seq = 0
        self.write = term.deliver

    def deliver(self, data: bytes) -> None:
        """Hand encoded lines to its bounded output; over the bound, it is dropped."""
        try:
            self.write(data)
        except NetworkError:
            pass            # closed: its own tasklet wakes with the error and leaves

    def tell(self, text: str) -> None:
        """Say one line to this member alone; a closed connection is ignored
        (its own tasklet wakes with the error and leaves)."""
        try:
            self.term.say(text)
        except NetworkError:
            pass

    def __repr__(self) -> str:
        return f"<Member {self.handle!r}>"


class Audience:
    """The members this process delivers to, and the lines pending for them.

    ``broadcast`` never yields: lines join one batch, which goes to every
    member at the hub's next turn (``flush``), or sooner, before any member's
    own line is written (``add`` makes ``flush`` the terminal's
    ``before_write``), so nothing overtakes it. One order for everyone here.

    Joins are batched too: a member added during a turn gets, with that
    turn's batch, only the lines from its own join on, and a line ``tell``
    hands it in its place among them (its ``Online`` line after its own join
    line, before later joiners'). So a crowd logging in within one turn
    costs one write per member, not one per member per join.
    """

    __slots__ = ("_batch", "_flush_due", "_flusher", "_hub", "_members", "_own")

    def __init__(self) -> None:
        self._hub = microthreads.get_hub()
        self._members: dict[Member, None] = {}     # an ordered set: join order
        self._batch: list[bytes] = []
        # members whose share of the batch is not all of it: the batch position
        # where their share begins, then (position, line) for each line for them alone
        self._own: dict[Member, list[Any]] = {}
        self._flush_due = False
        self._flusher = self.flush       # every member's before_write: bound once

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def add(self, member: Member) -> None:
        """From now on ``member`` gets every broadcast; what is pending is not its."""
        self._members[member] = None
        self._own[member] = [len(self._batch)]
        member.term.before_write = self._flusher

    def discard(self, member: Member) -> None:
        """``member`` gets nothing more (nothing if it was not here)."""
        self._members.pop(member, None)
        self._own.pop(member, None)

    def tell(self, member: Member, text: str) -> None:
        """Queue one line for ``member`` alone, after every line pending for
        it and before any broadcast after this call; it goes out with this
        turn's batch. Ignored if ``member`` is not here."""
        if member not in self._members:
            return
        own = self._own.get(member)
        if own is None:
            own = self._own[member] = [0]
        own.append((len(self._batch), text.encode("utf-8", "replace") + b"\r\n"))
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            self._hub.call_soon(self.flush)

    def broadcast(self, text: str) -> None:
        """Queue one line for every member; it goes out with this turn's batch.

        A member whose backlog passes its bound is disconnected (and its own
        tasklet announces it leaving).
        """
        self._batch.append(text.encode("utf-8", "replace") + b"\r\n")
        self._flush_soon()

    def flush(self) -> None:
        """Deliver the pending lines to every member now, one piece each: the
        whole batch, or a joiner's share of it with its own lines in place."""
        self._flush_due = False
        batch, own = self._batch, self._own
        if not batch and not own:
            return
        self._batch, self._own = [], {}           # what delivering adds waits a turn
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if not own:                               # the usual turn: no joiner, nothing own
            for member in list(self._members):
                member.deliver(data)
            return
        for member in list(self._members):
            share = own.get(member)
            if share is None:
                if data:
                    member.deliver(data)
            else:
                member.deliver(_share(batch, share))


def _share(batch: list[bytes], share: list[Any]) -> bytes:
    """``batch`` from ``share[0]`` on, with each ``(position, line)`` of
    ``share[1:]`` before the batch line at that position."""
    parts, at = [], share[0]
    for position, line in share[1:]:
        parts += batch[at:position]
        parts.append(line)
        at = position
    parts += batch[at:]
    return b"".join(parts)


class Room(ABC):
    """What a chat server asks of the room it serves.

    Every method is called from a member's own tasklet (``open`` and
    ``close`` from the listener's and the shutdown's), names the member it
    acts for, and keeps these promises:

    - Every member sees the room's lines (joins, leaves, renames, what
      members say) in one order, the same for every member, including its
      own lines: a line reaches its sender the way it reaches the others.
    - A handle belongs to at most one member at a time (compared after
      ``handle_key``: casefolded).
    - The room delivers to the members it holds (``audience``): the server
      writes only replies to one member's own commands.

    Methods that talk to another process may wait; they raise ``RoomError``
    when the room cannot be reached in time.
    """

    #: The members this process holds and delivers to.
    audience: Audience

    @abstractmethod
    def open(self) -> None:
        """Before the first login; may wait (a shared room connects)."""

    @abstractmethod
    def close(self) -> None:
        """At shutdown, before the members are told and disconnected.

        Idempotent. Afterwards nothing is published; ``leave`` is silent.
        """

    @abstractmethod
    def claim(self, handle: str, term: Endpoint) -> Member | None:
        """A new member holding ``handle``, or None if it is taken.

        Whatever happens next, the caller must ``leave`` the member it got
        (a finish hook): that frees the handle.
        """

    @abstractmethod
    def join(self, member: Member) -> None:
        """Announce ``member`` (``X has joined the chat.`` to everyone, it too)
        and tell it the Online line; from here on it gets every line."""

    @abstractmethod
    def publish(self, member: Member, line: str) -> None:
        """``line`` (as everyone will read it) from ``member``, to everyone."""

    @abstractmethod
    def leave(self, member: Member) -> None:
        """``member`` is gone: free its handle, and if it had joined and the
        room is open, tell the others ``X has left the chat.``. Never waits."""

    @abstractmethod
    def who(self, member: Member, page: int = 1) -> str:
        """The Online line: ``Online (N): a, b`` in join order, at most
        ONLINE_SHOWN handles: page ``page`` (from 1) of them."""

    @abstractmethod
    def message(self, member: Member, to_key: str, text: str) -> str | None:
        """Tell the member whose handle key is ``to_key``
        ``[private] FROM: text``; its handle, or None if there is nobody."""

    @abstractmethod
    def rename(self, member: Member, handle: str) -> bool:
        """Give ``member`` the valid ``handle`` and tell everyone
        ``OLD is now known as NEW.`` (nothing if it is the same handle);
        False if another member holds it."""

    def announce(self, text: str) -> None:
        """A line from the server to the members this process holds."""
        self.audience.broadcast(text)

    def flush(self) -> None:
        """Hand this process's pending lines to its members now."""
        self.audience.flush()


class LocalRoom(Room):
    """The room, in this process: every member's line goes straight to the
    audience, so one order is the order of the calls."""

    def __init__(self) -> None:
        self.audience = Audience()
        self.members: dict[str, Member] = {}      # handle key -> Member, in join order
        self.closed = False
        self._listing: str | None = ""            # "a, b": the handles in join order; None:
                                                  # to be made again (after a leave, a rename)

    def open(self) -> None:
        """Nothing to connect to: the room is here."""

    def close(self) -> None:
        self.closed = True

    def claim(self, handle: str, term: Endpoint) -> Member | None:
        if handle_key(handle) in self.members:
            return None
        return Member(handle, term)

    def join(self, member: Member) -> None:
        self.audience.add(member)                  # lines before the join: not its
        self.members[member.key] = member
        if len(self.members) > ONLINE_SHOWN:      # past one page: who() pages, uncached
            self._listing = None
        elif self._listing is not None:           # the Online line grows by one handle
            self._listing = f"{self._listing}, {member.handle}" if self._listing \
                else member.handle
        self.audience.broadcast(f"{member.handle} has joined the chat.")
        self.audience.tell(member, self.who(member))  # batched: no flush per join

    def publish(self, member: Member, line: str) -> None:
        self.audience.broadcast(line)

    def leave(self, member: Member) -> None:
        if member not in self.audience:
            return                                 # never joined
        self.audience.discard(member)
        if self.members.get(member.key) is member:
            del self.members[member.key]
            self._listing = None
        if not self.closed:
            self.audience.broadcast(f"{member.handle} has left the chat.")

    def who(self, member: Member, page: int = 1) -> str:
        if page == 1 and len(self.members) <= ONLINE_SHOWN:     # the usual case: cached
            if self._listing is None:
                self._listing = ", ".join(m.handle for m in self.members.values())
            return f"Online ({len(self.members)}): {self._listing}"
        first = (page - 1) * ONLINE_SHOWN
        members = itertools.islice(self.members.values(), first, first + ONLINE_SHOWN)
        return online_line((m.handle for m in members), len(self.members), first)

    def message(self, member: Member, to_key: str, text: str) -> str | None:
        target = self.members.get(to_key)
        if target is None:
            return None
        target.tell(f"[private] {member.handle}: {text}")
        return target.handle

    def rename(self, member: Member, handle: str) -> bool:
        key = handle_key(handle)
        holder = self.members.get(key)
        if holder is not None and holder is not member:
            return False
        old = member.handle
        if handle == old:
            return True
        # keep join order: rebuild the dict with the new key in the same place
        self.members = {(key if k == member.key else k): m for k, m in self.members.items()}
        member.handle, member.key = handle, key
        self._listing = None
        self.audience.broadcast(f"{old} is now known as {handle}.")
        return True


#: The Online line lists at most this many handles; ``/who N`` shows page N.
ONLINE_SHOWN = 100


def online_line(handles: Iterable[str], total: int | None = None, first: int = 0) -> str:
    """``Online (N): a, b``: ``handles``, in join order, the members from
    position ``first`` (0-based) of ``total`` (default: as many as given).
    When more follow: ``..., and M more (/who P)``, P the next page."""
    listed = list(handles)
    total = first + len(listed) if total is None else total
    head = f"Online ({total})" if first == 0 else f"Online ({total}), from {first + 1}"
    line = f"{head}: {', '.join(listed)}"
    rest = total - first - len(listed)
    if rest > 0:
        line += f", and {rest} more (/who {first // ONLINE_SHOWN + 2})"
    return line
