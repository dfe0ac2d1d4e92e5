-- ARGV[4..]: (uid key handle seq)* this node's members. Refreshes the node,
-- reaps the dead, and makes Redis hold exactly these members for this node:
-- missing ones (Redis lost them) are put back with their join order (seq)
-- unless a newcomer took the handle (returned as conflicts); others are removed.
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
