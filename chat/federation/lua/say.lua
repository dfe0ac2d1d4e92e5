-- A: uid key text. A line from a member who still holds its handle. The
-- reply is a bare string, not a table: a batch holds many of these, and Redis
-- turns a string into its reply for a fraction of a table's cost.
if owner(A[2]) ~= A[1] then return 'gone' end
emit('b', A[3])
return 'ok'
