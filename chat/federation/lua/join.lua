-- ARGV[4..]: uid key handle. Claims key and announces the join, atomically.
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
