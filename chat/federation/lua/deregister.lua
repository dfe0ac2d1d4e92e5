-- This node stops: its members leave, announced, in join order.
local gone = {}
for _, key in ipairs(redis.call('SMEMBERS', HELD)) do
  local value = redis.call('HGET', MEMBERS, key)
  if value then gone[#gone + 1] = {parse(value), key} end
end
table.sort(gone, function(a, b) return a[1] < b[1] end)
for _, entry in ipairs(gone) do remove(entry[2], true) end
redis.call('DEL', HELD)
redis.call('ZREM', NODES, NODE)
return {'ok'}
