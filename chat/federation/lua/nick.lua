-- ARGV[4..]: uid old_key new_key new_handle.
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
