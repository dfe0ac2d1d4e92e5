-- The room's one script: prelude.lua, then each call's file as a function
-- (CALLS[name]), then the dispatch at the end (scripts.py puts them together).
--
-- Every key is declared and carries the room's hash tag, chat:{ROOM}:, so a
-- room lives on one Redis Cluster slot:
--   KEYS[1] log      the Stream: every line, numbered (fields n, c: see xadd)
--   KEYS[2] members  hash: handle key -> "seq TAB uid TAB handle"
--   KEYS[3] order    sorted set: handle by join order (seq): the Online list
--   KEYS[4] nodes    sorted set: node -> the Redis time (ms) it expires at
--   KEYS[5] n        the line counter
--   KEYS[6] seq      the join counter
--   KEYS[7] held     set: the handle keys this node holds (expires with it)
-- ARGV[1] the stream bound, ARGV[2] this node, ARGV[3] the expiry in ms,
-- ARGV[4] the id of the last entry this node has read ('': none to read);
-- then the calls, each as: name, count of its arguments, its arguments.
local LOG, MEMBERS, ORDER, NODES, N, SEQ, HELD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local BOUND, NODE, EXPIRY, READ_FROM = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local CALLS = {}

local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Appends one entry: n is the number of its last line, c how many lines it
-- holds when more than one (their texts joined by CRLF in d), u the member
-- it is for (a join's, a private line's).
local function xadd(kind, text, uid, count)
  local n = redis.call('INCRBY', N, count)
  local entry = {'XADD', LOG, 'MAXLEN', '~', BOUND, '*', 'n', n, 'k', kind, 'd', text}
  if count > 1 then entry[#entry + 1] = 'c'; entry[#entry + 1] = count end
  if uid then entry[#entry + 1] = 'u'; entry[#entry + 1] = uid end
  redis.call(unpack(entry))
end

-- Lines to everyone in a row (a batch of members' lines) wait here and go
-- as one entry, at most MERGE_BYTES of text (a line may be that long: the
-- bound's worst case stays 10000 lines' worth): one XADD, and one entry for
-- each reader to parse, per batch rather than per line. Any other entry,
-- and the end of the script (dispatch.lua), appends them first.
local MERGE_BYTES = 4096
local merged, merged_bytes = {}, 0

local function flush()
  if #merged == 0 then return end
  local count, text = #merged, table.concat(merged, '\r\n')
  merged, merged_bytes = {}, 0
  xadd('b', text, nil, count)
end

local function emit(kind, text, uid)
  if kind == 'b' then
    if merged_bytes + #text > MERGE_BYTES then flush() end
    merged[#merged + 1] = text
    merged_bytes = merged_bytes + #text + 2
    return
  end
  flush()
  xadd(kind, text, uid, 1)
end

local function parse(value)             -- seq, uid, handle
  local seq, uid, handle = string.match(value, '^(%d+)\t([^\t]*)\t(.*)$')
  return tonumber(seq), uid, handle
end

local function node_of(uid)
  return string.match(uid, '^(.*):[^:]*$')
end

local function hold(key, seq, uid, handle)
  redis.call('HSET', MEMBERS, key, seq .. '\t' .. uid .. '\t' .. handle)
  redis.call('ZADD', ORDER, seq, handle)
  redis.call('SADD', HELD, key)
  redis.call('PEXPIRE', HELD, EXPIRY * 2)
end

local function remove(key, announce)
  local value = redis.call('HGET', MEMBERS, key)
  if not value then return end
  local _, uid, handle = parse(value)
  redis.call('HDEL', MEMBERS, key)
  redis.call('ZREM', ORDER, handle)
  if node_of(uid) == NODE then redis.call('SREM', HELD, key) end
  if announce then emit('b', handle .. ' has left the chat.') end
end

-- Nodes whose heartbeat expired: their members leave, announced in join
-- order. (Their own held sets are not ours to touch: they expire.)
local function reap()
  local dead = redis.call('ZRANGEBYSCORE', NODES, '-inf', NOW)
  if #dead == 0 then return end
  local is_dead, gone = {}, {}
  for _, node in ipairs(dead) do is_dead[node] = true end
  local all = redis.call('HGETALL', MEMBERS)
  for i = 1, #all, 2 do
    local seq, uid = parse(all[i + 1])
    if is_dead[node_of(uid)] then gone[#gone + 1] = {seq, all[i]} end
  end
  table.sort(gone, function(a, b) return a[1] < b[1] end)
  for _, entry in ipairs(gone) do remove(entry[2], true) end
  redis.call('ZREM', NODES, unpack(dead))
end

-- Pushes this node's deadline back; returns it (the node keeps the latest
-- it was told: see heartbeat.lua).
local function alive()
  redis.call('ZADD', NODES, NOW + EXPIRY, NODE)
  if redis.call('EXISTS', HELD) == 1 then redis.call('PEXPIRE', HELD, EXPIRY * 2) end
  return NOW + EXPIRY
end

-- {count, handles...}: how many are online, and the handles from position
-- first (0-based) on, at most count of them, in join order.
local function online(first, count)
  local listed = redis.call('ZRANGE', ORDER, first, first + count - 1)
  table.insert(listed, 1, redis.call('ZCARD', ORDER))
  return listed
end

-- key -> uid, for the says of one run of says in a row: a member saying
-- several lines in one batch is looked up once (dispatch.lua empties it
-- before any other call, which could change who holds what).
local speakers = {}

local function owner(key)                -- uid holding key, or nil
  local value = redis.call('HGET', MEMBERS, key)
  if not value then return nil end
  local _, uid = parse(value)
  return uid
end
