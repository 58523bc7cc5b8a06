-- Delete dead letters by id, and uncount each from its reason, in one step.
--
-- KEYS[1]  dead-letter stream    KEYS[2]  dead letters held per reason
-- ARGV     the letters' entry ids
-- Returns  how many were deleted (a letter gone meanwhile is not counted)
local deleted = 0
for _, id in ipairs(ARGV) do
  local letter = redis.call('XRANGE', KEYS[1], id, id)[1]
  if letter then
    redis.call('XDEL', KEYS[1], id)
    local reason = ''
    for i = 1, #letter[2] - 1, 2 do
      if letter[2][i] == 'reason' then reason = letter[2][i + 1] end
    end
    if redis.call('HINCRBY', KEYS[2], reason, -1) <= 0 then redis.call('HDEL', KEYS[2], reason) end
    deleted = deleted + 1
  end
end
return deleted
