-- ARGV[4..]: uid key. Frees key if uid holds it, and announces the leave.
if owner(ARGV[5]) == ARGV[4] then remove(ARGV[5], true) end
return {'ok'}
