-- A: (uid key handle seq)* this node's members. Refreshes the node, reaps
-- the dead, and makes Redis hold exactly these members for this node:
-- missing ones (Redis lost them) are put back with their join order (seq)
-- unless a newcomer took the handle (replied as conflicts); others are removed.
local expires = tonumber(redis.call('ZSCORE', NODES, NODE))
if expires and expires <= NOW then       -- the others have seen it die
  reap()
  redis.call('DEL', HELD)
  return {'expired'}
end
reap(); alive()
local listed, result = {}, {'ok'}
for i = 1, #A, 4 do
  local uid, key, handle, seq = A[i], A[i + 1], A[i + 2], tonumber(A[i + 3])
  listed[uid] = key
  local holder = owner(key)
  if not holder then
    if tonumber(redis.call('GET', SEQ) or '0') < seq then
      redis.call('SET', SEQ, seq)        -- later joins come after it
    end
    hold(key, seq, uid, handle)
  elseif holder ~= uid then
    result[#result + 1] = uid
  end
end
for _, key in ipairs(redis.call('SMEMBERS', HELD)) do
  local holder = owner(key)
  if not holder then
    redis.call('SREM', HELD, key)
  elseif listed[holder] == nil then
    remove(key, true)                    -- a leave that never reached Redis
  elseif listed[holder] ~= key then
    remove(key, false)
  end
end
return result
