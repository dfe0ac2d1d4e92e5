"""A chat room shared by many processes through Redis (``python -m chat --redis URL``).

Every node (one ``python -m chat`` process) keeps its own members' sockets
and nothing else; the room lives in Redis, under keys that all carry the
room's hash tag, ``chat:{ROOM}:``, so on a Redis Cluster a room lives on one
slot (one master), and different rooms spread over the masters:

- ``log``: a Stream, the room's one log. Every line, a node's own members'
  too, is appended (``XADD ... MAXLEN ~``) and reaches members only when the
  node reads it back from the last id it saw (in the reply of the writer's
  next script run, or by a blocking ``XREAD`` while the writer is idle), so
  every member on every node sees one order. The lines to everyone that
  one script run appends in a row (a batch of members' lines) are one entry
  (``c`` of them joined by CRLF, 4 KB at most); each entry carries the
  number of its last line (``n``): a node that sees a gap (it fell behind
  the bound) tells its members ``Some lines were missed.``
- ``members``: a hash, handle key (``handle_key``: the case-folded UTS #39
  skeleton) -> ``seq TAB uid TAB handle``;
  ``seq`` (from the ``seq`` counter) is the join order, ``uid`` is
  ``NODE:N``. ``order`` holds the handles by join order (a sorted set): the
  Online line and ``/who`` read one page of it, not the whole hash.
  ``nodes`` is a sorted set of node -> the Redis time it expires at (6 s
  on, pushed back by its heartbeat every 2 s); ``held:NODE`` the keys a node
  holds (it expires with the node).
- Every call is a function of one Lua script (``lua/*.lua``, see
  ``scripts``) that declares all its keys, so a claim and its announcement
  are atomic: a join claims the handle and appends the join line in one
  step (its Online list goes back in the reply, to the joiner only);
  ``/nick`` likewise. Calls that change membership first reap the nodes
  that expired: their members' handles are freed and their "left" lines
  appended, by whichever node runs such a call first.

One concept a module:

- ``client``: redis-py on ``microthreads.net.socket`` (a Redis round trip
  parks one tasklet; the hub goes on): one Redis or a Redis Cluster,
  whichever the URL names.
- ``scripts``: the room's one Lua script, put together from ``lua/`` at start.
- ``link``: the writer tasklet: every call queued during one round trip
  goes in the next, as one EVALSHA, in order; a member's line does not wait
  for the previous one's reply. It retries with backoff while Redis is
  away (logged once per outage); a call not answered within 10 s fails.
- ``reader``: the stream read back: what the writer's replies bring, and a
  blocking ``XREAD`` on another connection while the writer is idle; each
  entry handed over once, a burst at a time, and gap detection.
- ``membership``: the heartbeat and what it reconciles. A node cut off for
  longer than the expiry disconnects its members (``Connection to the room
  was lost; please reconnect.``): the others have seen them leave. A node
  whose members vanished from Redis while it stayed in touch (Redis
  restarted empty) puts them back in their join order; a member whose
  handle a newcomer took in the gap is told and disconnected.
- ``room``: ``RedisRoom``, the ``chat.room.Room`` these make, which hands
  what is read back to this node's members.

This package's ``__init__`` imports nothing: the URL helpers are usable
without redis-py.
"""
