-- A: uid key handle first count. Claims key and announces the join,
-- atomically; replies {'ok', seq, online(first, count), the node's deadline}
-- (the Online list goes to the joiner only, not into the log).
reap()
local deadline = alive()
local uid, key, handle = A[1], A[2], A[3]
local first, count = tonumber(A[4]), tonumber(A[5])
local holder = owner(key)
if holder == uid then                            -- a retried join that got through
  return {'ok', parse(redis.call('HGET', MEMBERS, key)), online(first, count), deadline}
end
if holder then return {'taken'} end
local seq = redis.call('INCR', SEQ)
hold(key, seq, uid, handle)
emit('j', handle .. ' has joined the chat.', uid)
return {'ok', seq, online(first, count), deadline}
