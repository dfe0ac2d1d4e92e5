-- ARGV[4..]: uid key text. A line from a member who still holds its handle.
if owner(ARGV[5]) ~= ARGV[4] then return {'gone'} end
emit('b', ARGV[6])
return {'ok'}
