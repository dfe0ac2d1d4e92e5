-- ARGV[5..]: the calls, each as name, count of arguments, arguments. Replies
-- with the log's entries after READ_FROM (at most READ_COUNT of them, those
-- this batch appended included; an empty list when READ_FROM is ''), then one
-- reply per call, in order.
local READ_COUNT = 1000      -- as reader.py's READ_COUNT, for its XREAD
local replies, i = {}, 5
while i <= #ARGV do
  local name, count, args = ARGV[i], tonumber(ARGV[i + 1]), {}
  for j = 1, count do args[j] = ARGV[i + 1 + j] end
  if name ~= 'say' then speakers = {} end
  replies[#replies + 1] = CALLS[name](args)
  i = i + 2 + count
end
flush()
local entries = {}
if READ_FROM ~= '' then
  local read = redis.call('XREAD', 'COUNT', READ_COUNT, 'STREAMS', LOG, READ_FROM)
  if read then entries = read[1][2] end
end
table.insert(replies, 1, entries)
return replies
