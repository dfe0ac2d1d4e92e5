-- A: first count. {'ok', online(first, count)}: one page of the Online list.
reap()
return {'ok', online(tonumber(A[1]), tonumber(A[2]))}
