-- This node stops: its members leave, announced, in join order.
for _, key in ipairs(in_join_order(redis.call('SMEMBERS', P .. 'node:' .. NODE))) do
  remove(key, true)
end
redis.call('DEL', P .. 'node:' .. NODE, P .. 'alive:' .. NODE)
redis.call('SREM', P .. 'nodes', NODE)
return {'ok'}
