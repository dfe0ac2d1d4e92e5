-- A: uid old_key new_key new_handle.
reap(); alive()
local uid, old_key, new_key, new = A[1], A[2], A[3], A[4]
local value = redis.call('HGET', MEMBERS, old_key)
if not value then return {'gone'} end
local seq, holder, old = parse(value)
if holder ~= uid then return {'gone'} end
if new_key ~= old_key and redis.call('HEXISTS', MEMBERS, new_key) == 1 then
  return {'taken'}
end
if new == old then return {'same'} end
remove(old_key, false)
hold(new_key, seq, uid, new)
emit('b', old .. ' is now known as ' .. new .. '.')
return {'ok'}
