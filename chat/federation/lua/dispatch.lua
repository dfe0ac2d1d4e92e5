-- ARGV[4..]: the calls, each as name, count of arguments, arguments; replies
-- with one reply per call, in order, after appending the lines still merged.
local replies, i = {}, 4
while i <= #ARGV do
  local name, count, args = ARGV[i], tonumber(ARGV[i + 1]), {}
  for j = 1, count do args[j] = ARGV[i + 1 + j] end
  replies[#replies + 1] = CALLS[name](args)
  i = i + 2 + count
end
flush()
return replies
