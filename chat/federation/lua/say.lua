-- A: uid key text. A line from a member who still holds its handle.
if owner(A[2]) ~= A[1] then return {'gone'} end
emit('b', A[3])
return {'ok'}
