"""A chat room shared by many processes through Redis (``python -m chat --redis URL``).

Every node (one ``python -m chat`` process) keeps its own members' sockets
and nothing else; the room lives in Redis, under keys prefixed
``chat:{ROOM}:``:

- ``log``: a Stream, the room's one log. Every line, a node's own members'
  too, is appended (``XADD ... MAXLEN ~``) and reaches members only when the
  node's reader reads it back (blocking ``XREAD`` from the last id it saw),
  so every member on every node sees one order. Each entry carries a line
  number (``n``): a node that sees a gap (it fell behind the bound) tells its
  members ``Some lines were missed.``
- ``members``: a hash, handle key (casefolded) -> ``seq TAB uid TAB handle``;
  ``seq`` (from the ``seq`` counter) is the join order, ``uid`` is
  ``NODE:N``. ``node:NODE`` is the set of keys a node holds, ``nodes`` the
  set of nodes, and ``alive:NODE`` a key with a 6 s expiry that the node's
  heartbeat refreshes every 2 s.
- Every change is one Lua script (``lua/*.lua``), so a claim and its
  announcement are atomic: a join claims the handle and appends the join
  line (with the ``Online`` list) in one step; ``/nick`` likewise. Each
  script first reaps the nodes whose ``alive`` key has expired: their
  members' handles are freed and their "left" lines appended, by whichever
  node runs a script first.

One concept a module:

- ``client``: redis-py on ``microthreads.net.socket`` (a Redis round trip
  parks one tasklet; the hub goes on), and the URL rules (``redact``).
- ``scripts``: the Lua scripts, loaded from ``lua/`` at start.
- ``link``: the writer tasklet, which sends every script call, pipelined,
  in order, on one connection, retrying with backoff while Redis is away
  (logged once per outage); a call not sent within 10 s fails.
- ``reader``: the reader tasklet: blocking ``XREAD`` on another connection,
  and gap detection.
- ``membership``: the heartbeat and what it reconciles. A node cut off for
  longer than the expiry disconnects its members (``Connection to the room
  was lost; please reconnect.``): the others have seen them leave. A node
  whose members vanished from Redis while it stayed in touch (Redis
  restarted empty) puts them back in their join order; a member whose
  handle a newcomer took in the gap is told and disconnected.
- ``room``: ``RedisRoom``, the ``chat.room.Room`` these make, which hands
  what the reader reads to this node's members.

This package's ``__init__`` imports nothing: the URL helpers are usable
without redis-py.
"""
