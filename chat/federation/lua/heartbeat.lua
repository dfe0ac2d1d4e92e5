-- A: known, then (uid key handle seq)* this node's members. known: the
-- latest deadline (Redis ms) a join's or a heartbeat's reply gave the node,
-- 0 before any. Refreshes the node, reaps the dead, and makes Redis hold
-- exactly these members for this node: missing ones (Redis lost them) are
-- put back with their join order (seq) unless a newcomer took the handle
-- (replied, after the new deadline, as conflicts); others are removed.
local expires, known = tonumber(redis.call('ZSCORE', NODES, NODE)), tonumber(A[1])
-- Past its deadline, the others have seen it die (or will: reaped). Not
-- listed and past the deadline it knows: it was reaped, and this heartbeat
-- (sent before, run after: Redis hung with it queued) must not bring its
-- members back. (Redis restarted empty is the other way not to be listed:
-- then a heartbeat comes within 2 s of the last, before known passes.)
if (expires and expires <= NOW) or (not expires and known > 0 and known <= NOW) then
  reap()
  redis.call('DEL', HELD)
  return {'expired'}
end
reap()
local listed, result = {}, {'ok', alive()}
for i = 2, #A, 4 do
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
