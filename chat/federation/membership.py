"""This node's membership in Redis: the heartbeat, and what it reconciles.

Every ``HEARTBEAT`` seconds the node refreshes its ``alive`` key (expiry
``EXPIRY``) and lists its members; Redis then holds exactly those for this
node (see ``lua/heartbeat.lua``). Redis restarted empty: the members are put
back in their join order, except one whose handle a newcomer took in the
gap, which is told and disconnected. Cut off from Redis for longer than the
expiry (less a margin for the trip), the node lets all its members go: the
others have seen them leave.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import microthreads

from ..room import Member
from .link import Link, Request, RoomUnavailable

log = logging.getLogger("chat.federation")

HEARTBEAT = 2.0         # seconds between a node's heartbeats
EXPIRY = 6.0            # a node silent this long is dead; its members leave
MARGIN = 0.5            # for the trip: cut off after EXPIRY - MARGIN

#: The calls that refresh this node's expiry.
_REFRESHING = frozenset(("join", "nick", "heartbeat"))


class Membership:
    """The members Redis holds for this node (``registered``, uid -> Member,
    in join order), kept true by a heartbeat tasklet (``run``).

    ``drop(member, text)`` tells one member ``text`` and disconnects it.
    The room passes the link's news on: ``check_contact`` before each
    batch, ``queue_heartbeat`` when one was lost, ``after_batch`` after
    its replies.
    """

    def __init__(self, link: Link, drop: Callable[[Member, str], None],
                 lost_text: str) -> None:
        self.registered: dict[str, Member] = {}
        self._link = link
        self._drop = drop
        self._lost_text = lost_text
        self._clock = microthreads.get_hub().clock
        # the hub clock when the last refreshing call that worked was sent
        # (Redis refreshed the expiry no earlier)
        self.last_contact = self._clock()
        # the latest deadline (Redis time, ms) a reply gave: a heartbeat that
        # runs after it with this node reaped is refused (heartbeat.lua)
        self.deadline = 0

    def run(self) -> None:
        """Every HEARTBEAT seconds: refresh this node in Redis, reconcile its
        members. Runs until killed."""
        while True:
            microthreads.sleep(HEARTBEAT)
            self.check_contact(self._clock())
            try:
                self._link.call("heartbeat", self._args, limit=HEARTBEAT, urgent=True,
                                on_reply=self._reply)
            except RoomUnavailable:
                pass

    def queue_heartbeat(self) -> None:
        """A heartbeat first in the queue (once): after an outage it puts back
        what Redis may have lost before any other call needs it."""
        self._link.send("heartbeat", self._args, on_reply=self._reply, first=True)

    def check_contact(self, now: float) -> None:
        """Cut off for longer than the expiry (less a margin for the trip)?
        Then the others have seen this node's members leave: let them go."""
        if now - self.last_contact > EXPIRY - MARGIN:
            self.drop_all(self._lost_text)

    def drop_all(self, text: str) -> None:
        """Fail every pending call (its member is told first), then tell every
        registered member ``text`` and disconnect it."""
        if self.registered:
            log.warning("cut off from the room for %gs or more: disconnecting %d members",
                        EXPIRY - MARGIN, len(self.registered))
        members, self.registered = list(self.registered.values()), {}
        if members:             # what waits to be sent will not be: say so first
            self._link.fail_all()
        for member in members:
            self._drop(member, text)

    def after_batch(self, batch: Sequence[Request], sent: float) -> None:
        """A batch sent at ``sent`` got its replies: one that refreshed this
        node's expiry is the latest contact."""
        if any(request.name in _REFRESHING for request in batch):
            self.last_contact = max(self.last_contact, sent)

    def _reply(self, reply: list[Any]) -> None:
        """In the writer, in order with the other replies of its pipeline."""
        if reply[0] == "expired":
            self.deadline = 0
            self.drop_all(self._lost_text)
            return
        self.deadline = int(reply[1])
        for uid in reply[2:]:
            member = self.registered.pop(uid, None)
            if member is not None:
                self._drop(member, f"Your handle {member.handle} was taken while the"
                                   " room was unavailable; please reconnect.")

    def _args(self) -> list[Any]:
        args: list[Any] = [self.deadline]
        for member in self.registered.values():
            args += (member.uid, member.key, member.handle, member.seq)
        return args
