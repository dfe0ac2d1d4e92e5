-- A: uid key text. A line from a member who still holds its handle. The
-- reply is a bare string, not a table: a batch holds many of these, and Redis
-- turns a string into its reply for a fraction of a table's cost.
local uid, key = A[1], A[2]
if speakers[key] ~= uid then
  if owner(key) ~= uid then return 'gone' end
  speakers[key] = uid
end
emit('b', A[3])
return 'ok'
