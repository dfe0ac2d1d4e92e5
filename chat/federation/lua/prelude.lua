-- Shared by every script (prepended when the scripts are loaded).
-- KEYS[1] is the room's prefix, ARGV[1] the stream bound, ARGV[2] this node,
-- ARGV[3] the expiry in ms; the rest is the script's own.
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
