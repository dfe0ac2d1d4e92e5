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
- Every change is one Lua script, so a claim and its announcement are atomic:
  a join claims the handle and appends the join line (with the ``Online``
  list) in one step; ``/nick`` likewise. Each script first reaps the nodes
  whose ``alive`` key has expired: their members' handles are freed and
  their "left" lines appended, by whichever node runs a script first.

One writer tasklet per node sends every script call, pipelined, on one
connection; one reader tasklet reads the stream on another. Both use
redis-py with ``CooperativeConnection``, whose socket comes from
``microthreads.net.socket``, so a Redis round trip parks one tasklet and the
hub goes on. When Redis cannot be reached, both retry with backoff (logged
once per outage); a request not sent within 10 s fails, and its member is
told ``Not delivered: the room is unavailable.`` A node cut off for longer
than the expiry disconnects its members (``Connection to the room was lost;
please reconnect.``): the others have seen them leave. A node whose members
vanished from Redis while it stayed in touch (Redis restarted empty) puts
them back in their join order; a member whose handle a newcomer took in the
gap is told and disconnected.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket as _std_socket
import unicodedata
from collections import deque

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection as _RedisConnection
from redis.retry import Retry

import microthreads
from microthreads.net import NetworkError
from microthreads.net import socket as cosocket

from .server import ChatServer, Member
from .text import check_handle, handle_key

log = logging.getLogger("chat.federation")

HEARTBEAT = 2.0         # seconds between a node's heartbeats
EXPIRY = 6.0            # a node silent this long is dead; its members leave
SEND_LIMIT = 10.0       # a line not in Redis by then: "Not delivered"
STREAM_BOUND = 10000    # XADD MAXLEN ~
BATCH = 512             # script calls per pipeline

UNAVAILABLE = "Not delivered: the room is unavailable."
LOST = "Connection to the room was lost; please reconnect."
MISSED = "Some lines were missed."


class CooperativeConnection(_RedisConnection):
    """redis-py's TCP Connection over ``microthreads.net.socket``.

    Only ``_connect`` changes: the socket it returns is the cooperative one,
    whose ``recv``/``sendall``/``connect`` park the calling tasklet and honour
    ``settimeout``, which is all redis-py's parser and writer use.
    """

    def _connect(self):
        sock = cosocket.create_connection((self.host, self.port),
                                          timeout=self.socket_connect_timeout)
        try:
            sock.setsockopt(cosocket.IPPROTO_TCP, cosocket.TCP_NODELAY, 1)
            if self.socket_keepalive:
                sock.setsockopt(cosocket.SOL_SOCKET, cosocket.SO_KEEPALIVE, 1)
                for option, value in self.socket_keepalive_options.items():
                    sock.setsockopt(cosocket.IPPROTO_TCP, option, value)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock


def redis_client(url):
    """A redis-py client on cooperative sockets, for one tasklet's use.

    redis-py's own retries are off (its backoff sleeps with ``time.sleep``,
    which would stop the hub): the writer and reader retry themselves.
    """
    if not url.startswith("redis://"):
        raise ValueError(f"--redis takes a redis://HOST:PORT/DB URL, not {url!r}")
    pool = redis.ConnectionPool.from_url(
        url, connection_class=CooperativeConnection, socket_timeout=5.0,
        socket_connect_timeout=2.0, socket_keepalive=True, decode_responses=True,
        retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)


# --------------------------------------------------------------------- scripts

# Every script: KEYS[1] is the room's prefix, ARGV[1] the stream bound,
# ARGV[2] this node, ARGV[3] the expiry in ms; the rest is the script's own.
_PRELUDE = r"""
local P, BOUND, NODE, EXPIRY = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local MEMBERS = P .. 'members'

local function emit(kind, text, uid, online)
  local n = redis.call('INCR', P .. 'n')
  local fields = {'n', n, 'k', kind, 'd', text}
  if uid then fields[#fields + 1] = 'u'; fields[#fields + 1] = uid end
  if online then fields[#fields + 1] = 'o'; fields[#fields + 1] = online end
  return redis.call('XADD', P .. 'log', 'MAXLEN', '~', BOUND, '*', unpack(fields))
end

local function parse(value)             -- seq, uid, handle
  local seq, uid, handle = string.match(value, '^(%d+)\t([^\t]*)\t(.*)$')
  return tonumber(seq), uid, handle
end

local function node_of(uid)
  return string.match(uid, '^(.*):[^:]*$')
end

local function remove(key, announce)
  local value = redis.call('HGET', MEMBERS, key)
  if not value then return end
  local _, uid, handle = parse(value)
  redis.call('HDEL', MEMBERS, key)
  redis.call('SREM', P .. 'node:' .. node_of(uid), key)
  if announce then emit('b', handle .. ' has left the chat.') end
end

local function in_join_order(keys)
  local entries = {}
  for _, key in ipairs(keys) do
    local value = redis.call('HGET', MEMBERS, key)
    if value then entries[#entries + 1] = {parse(value), key} end
  end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  local sorted = {}
  for i, entry in ipairs(entries) do sorted[i] = entry[2] end
  return sorted
end

local function reap()                    -- nodes whose heartbeat expired
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'alive:' .. node) == 0 then
      for _, key in ipairs(in_join_order(redis.call('SMEMBERS', P .. 'node:' .. node))) do
        remove(key, true)
      end
      redis.call('DEL', P .. 'node:' .. node)
      redis.call('SREM', P .. 'nodes', node)
    end
  end
end

local function alive()
  redis.call('SET', P .. 'alive:' .. NODE, '1', 'PX', EXPIRY)
  redis.call('SADD', P .. 'nodes', NODE)
end

local function online()
  local all = redis.call('HGETALL', MEMBERS)
  local entries = {}
  for i = 1, #all, 2 do
    local seq, _, handle = parse(all[i + 1])
    entries[#entries + 1] = {seq, handle}
  end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  local handles = {}
  for i, entry in ipairs(entries) do handles[i] = entry[2] end
  return 'Online (' .. #handles .. '): ' .. table.concat(handles, ', ')
end

local function owner(key)                -- uid holding key, or nil
  local value = redis.call('HGET', MEMBERS, key)
  if not value then return nil end
  local _, uid = parse(value)
  return uid
end
"""

# ARGV[4..]: uid key handle. Claims key and announces the join, atomically.
_JOIN = _PRELUDE + r"""
reap(); alive()
local uid, key, handle = ARGV[4], ARGV[5], ARGV[6]
local holder = owner(key)
if holder == uid then                            -- a retried join that got through
  return {'ok', parse(redis.call('HGET', MEMBERS, key))}
end
if holder then return {'taken'} end
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', MEMBERS, key, seq .. '\t' .. uid .. '\t' .. handle)
redis.call('SADD', P .. 'node:' .. NODE, key)
emit('j', handle .. ' has joined the chat.', uid, online())
return {'ok', seq}
"""

# ARGV[4..]: uid key. Frees key if uid holds it, and announces the leave.
_LEAVE = _PRELUDE + r"""
if owner(ARGV[5]) == ARGV[4] then remove(ARGV[5], true) end
return {'ok'}
"""

# ARGV[4..]: uid key text. A line from a member who still holds its handle.
_SAY = _PRELUDE + r"""
if owner(ARGV[5]) ~= ARGV[4] then return {'gone'} end
emit('b', ARGV[6])
return {'ok'}
"""

# ARGV[4..]: uid key to_key text. Returns the recipient's handle.
_MSG = _PRELUDE + r"""
local uid, key, to_key, text = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local value = redis.call('HGET', MEMBERS, key)
if not value then return {'gone'} end
local _, from_uid, from = parse(value)
if from_uid ~= uid then return {'gone'} end
local to_value = redis.call('HGET', MEMBERS, to_key)
if not to_value then return {'nobody'} end
local _, to_uid, to = parse(to_value)
emit('p', '[private] ' .. from .. ': ' .. text, to_uid)
return {'ok', to}
"""

# ARGV[4..]: uid old_key new_key new_handle.
_NICK = _PRELUDE + r"""
reap(); alive()
local uid, old_key, new_key, new = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local value = redis.call('HGET', MEMBERS, old_key)
if not value then return {'gone'} end
local seq, holder, old = parse(value)
if holder ~= uid then return {'gone'} end
if new_key ~= old_key and redis.call('HEXISTS', MEMBERS, new_key) == 1 then
  return {'taken'}
end
if new == old then return {'same'} end
redis.call('HDEL', MEMBERS, old_key)
redis.call('SREM', P .. 'node:' .. NODE, old_key)
redis.call('HSET', MEMBERS, new_key, seq .. '\t' .. uid .. '\t' .. new)
redis.call('SADD', P .. 'node:' .. NODE, new_key)
emit('b', old .. ' is now known as ' .. new .. '.')
return {'ok'}
"""

_WHO = _PRELUDE + r"""
reap()
return {'ok', online()}
"""

# ARGV[4..]: (uid key handle seq)* this node's members. Refreshes the node,
# reaps the dead, and makes Redis hold exactly these members for this node:
# missing ones (Redis lost them) are put back with their join order (seq)
# unless a newcomer took the handle (returned as conflicts); others are removed.
_HEARTBEAT = _PRELUDE + r"""
local was_alive = redis.call('EXISTS', P .. 'alive:' .. NODE) == 1
local was_known = redis.call('SISMEMBER', P .. 'nodes', NODE) == 1
reap(); alive()
if was_known and not was_alive then return {'expired'} end
local listed, result = {}, {'ok'}
for i = 4, #ARGV, 4 do
  local uid, key, handle, seq = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  listed[uid] = key
  local holder = owner(key)
  if not holder then
    if tonumber(redis.call('GET', P .. 'seq') or '0') < seq then
      redis.call('SET', P .. 'seq', seq)       -- later joins come after it
    end
    redis.call('HSET', MEMBERS, key, seq .. '\t' .. uid .. '\t' .. handle)
    redis.call('SADD', P .. 'node:' .. NODE, key)
  elseif holder ~= uid then
    result[#result + 1] = uid
  end
end
for _, key in ipairs(redis.call('SMEMBERS', P .. 'node:' .. NODE)) do
  local holder = owner(key)
  if not holder then
    redis.call('SREM', P .. 'node:' .. NODE, key)
  elseif listed[holder] == nil then
    remove(key, true)                    -- a leave that never reached Redis
  elseif listed[holder] ~= key then
    remove(key, false)
  end
end
return result
"""

# This node stops: its members leave, announced, in join order.
_DEREGISTER = _PRELUDE + r"""
for _, key in ipairs(in_join_order(redis.call('SMEMBERS', P .. 'node:' .. NODE))) do
  remove(key, true)
end
redis.call('DEL', P .. 'node:' .. NODE, P .. 'alive:' .. NODE)
redis.call('SREM', P .. 'nodes', NODE)
return {'ok'}
"""


class RoomUnavailable(Exception):
    """A request could not reach Redis within its time limit."""


class _Request:
    """One script call for the writer: ``args`` may be a callable, evaluated
    each time the call is sent (the heartbeat's member list is then current)."""

    __slots__ = ("args", "deadline", "done", "error", "on_reply", "reply", "script")

    def __init__(self, script, args, deadline, on_reply=None):
        self.script = script
        self.args = args
        self.deadline = deadline
        self.on_reply = on_reply
        self.done = microthreads.Event()
        self.reply = None
        self.error = None


class FederatedMember(Member):
    __slots__ = ("joined", "seq", "tasklet", "uid")

    def __init__(self, handle, term, uid):
        super().__init__(handle, term)
        self.uid = uid
        self.seq = 0                           # its place in the join order
        self.tasklet = microthreads.getcurrent()
        self.joined = microthreads.Event()     # set when its join line is read back


class FederatedChatServer(ChatServer):
    """A ChatServer whose room is a Redis Stream shared with other nodes.

    Membership and every line go through Redis; ``self.members`` holds only
    this node's members (by uid), to which the reader hands what it reads.
    """

    def __init__(self, options, url, room="lobby", stream_bound=None):
        super().__init__(options)
        self.url = url
        self.room = room
        self.stream_bound = stream_bound or STREAM_BOUND
        self.prefix = f"chat:{{{room}}}:"
        self.node = f"{_std_socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._uids = itertools.count(1)
        self._local = {}            # uid -> FederatedMember: joining or joined here
        self._registered = {}       # uid -> FederatedMember: joined in Redis, in join order
        self._by_tasklet = {}       # member tasklet -> its FederatedMember
        self._queue = deque()
        self._in_flight = ()        # the batch the writer is sending
        self._wake = microthreads.Event()
        self._writer_client = redis_client(url)
        self._reader_client = redis_client(url)
        self._scripts = {name: self._writer_client.register_script(text) for name, text in (
            ("join", _JOIN), ("leave", _LEAVE), ("say", _SAY), ("msg", _MSG),
            ("nick", _NICK), ("who", _WHO), ("heartbeat", _HEARTBEAT),
            ("deregister", _DEREGISTER))}
        # scripts that refresh this node's expiry, and the hub clock when the
        # last one that worked was sent (Redis refreshed it no earlier)
        self._refreshing = {self._scripts[name] for name in ("join", "nick", "heartbeat")}
        self._last_heartbeat = None
        self._outage = {}           # "writer"/"reader" -> True while Redis is unreachable
        self._tasklets = []
        self._stop_early = False

    # ------------------------------------------------------------ lifetime

    def listener(self):
        self._last_heartbeat = self._hub.clock()
        try:        # before anyone can join: a newcomer's join line comes after it
            newest = self._reader_client.xrevrange(self.prefix + "log", count=1)
            start = newest[0][0] if newest else "0-0"
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._note_outage("reader", exc)
            start = "0-0"       # the log so far goes to nobody: nobody is here yet
        if self._stop_early:    # SIGTERM while that round trip was under way
            return
        for fn, args, name in ((self._writer, (), "redis writer"),
                               (self._reader, (start,), "redis reader"),
                               (self._heartbeat, (), "redis heartbeat")):
            tasklet = microthreads.spawn(fn, *args)
            tasklet.name = name
            self._tasklets.append(tasklet)
        log.info("node %s of room %r on %s", self.node, self.room, _redacted(self.url))
        try:
            super().listener()
        finally:
            for tasklet in self._tasklets:
                tasklet.kill(block=False)

    def shutdown(self):
        if self.server is None:     # still starting: do not start serving
            self._stop_early = True
            return
        if self.closing:
            return
        self.closing = True
        for tasklet in self._tasklets:      # no more heartbeats, nor lines from the room
            if tasklet.name != "redis writer":
                tasklet.kill(block=False)
        self._registered = {}
        try:        # the others see this node's members leave now, not after the expiry
            self._call("deregister", (), limit=1.0)
        except RoomUnavailable:
            log.warning("could not deregister from the room; the others will see"
                        " this node's members leave after %gs", EXPIRY)
        self.closing = False
        super().shutdown()

    # ------------------------------------------------------------ the writer

    def _call(self, name, args, limit=SEND_LIMIT, on_reply=None, urgent=False):
        """Run script ``name`` through the writer; its reply (a list).

        Waits at most ``limit`` seconds; raises RoomUnavailable after that.
        """
        request = _Request(self._scripts[name], args, self._hub.clock() + limit, on_reply)
        if urgent:
            self._queue.appendleft(request)
        else:
            self._queue.append(request)
        self._wake.set()
        if not request.done.wait(limit + 1.0):     # sent, but no reply in time
            _fail(request, RoomUnavailable("the room is unavailable"))
        if request.error is not None:
            raise request.error
        return request.reply

    def _send(self, name, args, on_reply=None):
        """Queue script ``name`` without waiting for it."""
        self._queue.append(_Request(self._scripts[name], args,
                                    self._hub.clock() + SEND_LIMIT, on_reply))
        self._wake.set()

    def _writer(self):
        """Send queued script calls, in order, pipelined; retry while Redis is away."""
        queue, client, clock = self._queue, self._writer_client, self._hub.clock
        backoff = 0.05
        while True:
            if not queue:
                self._wake.clear()
                self._wake.wait()
                continue
            sent = clock()
            self._check_contact(sent)
            batch = []
            while queue and len(batch) < BATCH:
                request = queue.popleft()
                if request.done.is_set():          # given up on: the member was told
                    continue
                if request.deadline <= sent:
                    _fail(request, RoomUnavailable("the room is unavailable"))
                else:
                    batch.append(request)
            if not batch:
                continue
            self._in_flight = batch
            try:
                pipe = client.pipeline(transaction=False)
                for request in batch:
                    args = request.args() if callable(request.args) else request.args
                    request.script(keys=[self.prefix],
                                   args=[self.stream_bound, self.node, int(EXPIRY * 1000), *args],
                                   client=pipe)
                replies = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._in_flight = ()
                # in order, at the front; not those given up on meanwhile
                queue.extendleft(reversed([r for r in batch if not r.done.is_set()]))
                self._queue_heartbeat()
                self._note_outage("writer", exc)
                microthreads.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._in_flight = ()
            self._note_recovery("writer")
            backoff = 0.05
            if any(request.script in self._refreshing for request in batch):
                self._last_heartbeat = max(self._last_heartbeat, sent)
            for request, reply in zip(batch, replies):
                if isinstance(reply, Exception):
                    log.error("room script failed: %s", reply)
                    _fail(request, RoomUnavailable(str(reply)))
                    continue
                request.reply = reply
                if request.on_reply is not None:
                    request.on_reply(reply)
                request.done.set()

    def _note_outage(self, who, exc):
        if not self._outage.get(who):
            self._outage[who] = True
            log.warning("room unavailable (%s): %s; retrying with backoff", who, exc)

    def _note_recovery(self, who):
        if self._outage.get(who):
            self._outage[who] = False
            log.warning("room available again (%s)", who)
            if who == "reader":
                self._queue_heartbeat()

    # ------------------------------------------------------------ the reader

    def _reader(self, last_id):
        """Read the stream after ``last_id``; hand each line to the members."""
        client, stream = self._reader_client, self.prefix + "log"
        last_n, backoff = None, 0.05
        while True:
            try:
                reply = client.xread({stream: last_id}, count=1000, block=1000)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._note_outage("reader", exc)
                microthreads.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._note_recovery("reader")
            backoff = 0.05
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    n = int(fields.get("n", 0))
                    if last_n is not None and n > last_n + 1:
                        ChatServer.broadcast(self, MISSED)
                    last_n = n                 # smaller: Redis restarted empty; go on
                    self._deliver(fields)

    def _deliver(self, fields):
        kind, text = fields.get("k"), fields.get("d", "")
        if kind == "b":
            ChatServer.broadcast(self, text)
        elif kind == "j":
            member = self._local.get(fields.get("u"))
            if member is None or member.joined.is_set():
                ChatServer.broadcast(self, text)
                return
            self.flush_broadcasts()              # lines before the join: not its
            self.members[member.uid] = member
            member.term.before_write = self.flush_broadcasts
            ChatServer.broadcast(self, text)
            try:
                member.term.say(fields.get("o", ""))
            except NetworkError:
                pass
            member.joined.set()
        elif kind == "p":
            member = self.members.get(fields.get("u"))
            if member is not None:
                try:
                    member.term.say(text)
                except NetworkError:
                    pass

    # ------------------------------------------------------------ the heartbeat

    def _heartbeat(self):
        """Every HEARTBEAT seconds: refresh this node in Redis, reconcile its members.

        Cut off for longer than the expiry (less a margin for the trip), the
        node lets its members go: the others have seen them leave.
        """
        while True:
            microthreads.sleep(HEARTBEAT)
            self._check_contact(self._hub.clock())
            try:
                self._call("heartbeat", self._heartbeat_args, limit=HEARTBEAT, urgent=True,
                           on_reply=self._heartbeat_reply)
            except RoomUnavailable:
                pass

    def _queue_heartbeat(self):
        """A heartbeat first in the queue (once): after an outage it puts back
        what Redis may have lost before any other call needs it."""
        queue = self._queue
        if queue and queue[0].script is self._scripts["heartbeat"]:
            return
        queue.appendleft(_Request(self._scripts["heartbeat"], self._heartbeat_args,
                                  self._hub.clock() + SEND_LIMIT, self._heartbeat_reply))
        self._wake.set()

    def _heartbeat_reply(self, reply):
        """In the writer, in order with the other replies of its pipeline."""
        if reply[0] == "expired":
            self._drop_all(LOST)
        for uid in reply[1:]:
            member = self._registered.pop(uid, None)
            if member is not None:
                self._drop(member, f"Your handle {member.handle} was taken while the"
                                   " room was unavailable; please reconnect.")

    def _check_contact(self, now):
        """Cut off for longer than the expiry (less a margin for the trip)? Then
        the others have seen this node's members leave: let them go."""
        if now - self._last_heartbeat > EXPIRY - 0.5:
            self._drop_all(LOST)

    def _heartbeat_args(self):
        args = []
        for member in self._registered.values():
            args += (member.uid, member.key, member.handle, member.seq)
        return args

    def _drop_all(self, text):
        if self._registered:
            log.warning("cut off from the room for %gs or more: disconnecting %d members",
                        EXPIRY - 0.5, len(self._registered))
        members, self._registered = list(self._registered.values()), {}
        if members:             # what waits to be sent will not be: say so first
            for request in self._in_flight:
                _fail(request, RoomUnavailable("the room is unavailable"))
            while self._queue:
                _fail(self._queue.popleft(), RoomUnavailable("the room is unavailable"))
        for member in members:
            self._drop(member, text)

    def _drop(self, member, text):
        """Tell one member ``text`` and disconnect it (flushed, bounded)."""
        self.members.pop(member.uid, None)
        conn = member.term.conn
        conn.close_reason = text

        def close():
            try:
                member.term.say(text)
                conn.flush(1.0)
            except (NetworkError, OSError):
                pass
            conn.close(text)
        microthreads.spawn(close)

    # ------------------------------------------------------------ the chat

    def claim_handle(self, handle, term):
        """Claim ``handle`` in Redis and append the join line, atomically."""
        me = microthreads.getcurrent()
        member = self._by_tasklet.get(me)
        if member is None:
            member = FederatedMember(handle, term, f"{self.node}:{next(self._uids)}")
            self._by_tasklet[me] = member
            self._local[member.uid] = member
            microthreads.on_finish(self.lost_conn, member)      # once, however it ends
        member.handle, member.key = handle, handle_key(handle)

        def joined(reply):
            if reply[0] == "ok":
                member.seq = int(reply[1])
                self._registered[member.uid] = member

        try:
            reply = self._call("join", (member.uid, member.key, handle), on_reply=joined)
        except RoomUnavailable:
            term.say(UNAVAILABLE)
            term.conn.flush(1.0)
            raise NetworkError("the room is unavailable") from None
        return reply[0] == "ok"

    def join(self, handle, term):
        member = self._by_tasklet[microthreads.getcurrent()]
        term.before_write = self.flush_broadcasts
        member.joined.wait(SEND_LIMIT)            # until its join line is read back
        log.info("%s joined from %s", handle, _peer(term.conn))
        return member

    def broadcast(self, text):
        """A member's line: into the room's stream; the reader delivers it."""
        member = self._by_tasklet.get(microthreads.getcurrent())
        if member is None or self.closing:
            ChatServer.broadcast(self, text)
            return
        self._member_call(member, "say", lambda: (member.uid, member.key, text))

    def _member_call(self, member, name, args, on_reply=None):
        """Script ``name`` for a member; its reply, or None when it could not be
        done (the member has been told why)."""
        try:
            reply = self._call(name, args, on_reply=on_reply)
            if reply[0] == "gone":      # Redis restarted empty? a heartbeat puts it back
                self._queue_heartbeat()
                reply = self._call(name, args, on_reply=on_reply)
        except RoomUnavailable:
            member.term.say(UNAVAILABLE)
            return None
        if reply[0] == "gone":
            self._drop(member, LOST)
            return None
        return reply

    def lost_conn(self, member):
        """Finish hook: forget the member here; Redis frees the handle and
        appends the "left" line (a leave that cannot reach Redis is made good
        by the next heartbeat, which lists only the members still here)."""
        self.members.pop(member.uid, None)
        self._local.pop(member.uid, None)
        self._by_tasklet.pop(member.tasklet, None)
        log.info("%s left (%s)", member.handle, member.term.conn.close_reason or "error")
        if self.closing:
            return

        def leave_args():
            self._registered.pop(member.uid, None)     # as it is sent: heartbeats agree
            return (member.uid, member.key)
        self._send("leave", leave_args)

    def cmd_who(self, member, rest):
        try:
            reply = self._call("who", ())
        except RoomUnavailable:
            member.term.say(UNAVAILABLE)
            return
        member.term.say(reply[1])

    def cmd_msg(self, member, rest):
        words = rest.split(None, 1)
        if len(words) < 2:
            member.term.say("Usage: /msg <handle> <text>")
            return
        to, text = words
        to_key = handle_key(unicodedata.normalize("NFC", to))
        reply = self._member_call(member, "msg", lambda: (member.uid, member.key, to_key, text))
        if reply is None:
            return
        if reply[0] == "nobody":
            member.term.say(f"No such user: {to}")
        else:
            member.term.say(f"[private to {reply[1]}] {text}")

    def cmd_nick(self, member, rest):
        handle, error = check_handle(rest)
        if error:
            member.term.say(error)
            return
        key, old = handle_key(handle), member.handle

        def renamed(reply):
            if reply[0] == "ok":
                member.handle, member.key = handle, key

        reply = self._member_call(member, "nick", lambda: (member.uid, member.key, key, handle),
                                  on_reply=renamed)
        if reply is None:
            return
        if reply[0] == "taken":
            member.term.say("That handle is already taken.")
        elif reply[0] == "ok":
            log.info("%s is now known as %s", old, handle)


def _fail(request, error):
    if not request.done.is_set():
        request.error = error
        request.done.set()


def _peer(conn):
    peer = conn.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _redacted(url):
    """The URL without a password, for the log."""
    _head, sep, tail = url.rpartition("@")
    return f"redis://***@{tail}" if sep else url
