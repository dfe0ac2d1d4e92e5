-- A: uid key to_key text. Replies with the recipient's handle.
local uid, key, to_key, text = A[1], A[2], A[3], A[4]
local value = redis.call('HGET', MEMBERS, key)
if not value then return {'gone'} end
local _, from_uid, from = parse(value)
if from_uid ~= uid then return {'gone'} end
local to_value = redis.call('HGET', MEMBERS, to_key)
if not to_value then return {'nobody'} end
local _, to_uid, to = parse(to_value)
emit('p', '[private] ' .. from .. ': ' .. text, to_uid)
return {'ok', to}
