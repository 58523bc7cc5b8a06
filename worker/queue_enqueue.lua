-- Queue a batch of jobs on one lane, skipping any whose (campaign, phone)
-- is already queued or in flight, so a duplicate never costs a permit.
--
-- KEYS[1]  the lane stream     KEYS[2]  de-duplication set
-- ARGV     for each job: digest, n, then n field names and values
-- Returns  for each job, its new entry id, or false when it was a duplicate
--
-- The set member and the stream entry are added together: a crash cannot
-- leave a number marked as queued with no job behind it.
local out = {}
local i = 1
while i <= #ARGV do
  local digest, n = ARGV[i], tonumber(ARGV[i + 1])
  local fields = {}
  for j = i + 2, i + 1 + 2 * n do fields[#fields + 1] = ARGV[j] end
  if redis.call('SADD', KEYS[2], digest) == 1 then
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
  else
    out[#out + 1] = false
  end
  i = i + 2 + 2 * n
end
return out
