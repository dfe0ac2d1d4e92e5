-- A: uid key. Frees key if uid holds it, and announces the leave.
if owner(A[2]) == A[1] then remove(A[2], true) end
return {'ok'}
