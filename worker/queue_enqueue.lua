-- Queue a batch of jobs on one lane, skipping any whose (campaign, phone)
-- is already queued or in flight, so a duplicate never costs a permit.
--
-- KEYS[1]  the lane stream     KEYS[2]  de-duplication set
-- ARGV[1]  the wire format version (the entry's field v)
-- ARGV[2]  the separator of a job's parts: one byte found in no part
-- ARGV[3]  the end of a job: another such byte
-- ARGV[4]  the jobs, each one's parts joined by the separator and followed
--          by the end: digest, id, campaign, phone, name, then any further
--          field name and value pairs; an empty name is left out
-- Returns  one character per job, in order: "1" queued, "0" a duplicate
--
-- The whole batch in one argument, rather than one per field of each job:
-- building, sending and parsing ten arguments per job was most of an
-- import's time, in the client and in here; one pattern match per job is
-- the cheapest way to take them apart again in Lua. The entry written is
-- the documented wire format, as a producer's own XADD would write it.
--
-- The set member and the stream entry are added together: a crash cannot
-- leave a number marked as queued with no job behind it.
local lane, pending, version = KEYS[1], KEYS[2], ARGV[1]
local sep, stop = ARGV[2], ARGV[3]
local gmatch = string.gmatch
-- The delimiters are control bytes or bytes above 0x7F: none is magic in a pattern.
local part = '([^' .. sep .. stop .. ']*)'
local job = part .. sep .. part .. sep .. part .. sep .. part .. sep .. part
  .. '([^' .. stop .. ']*)' .. stop
local extra = sep .. '([^' .. sep .. ']*)'
local out = {}
for digest, id, campaign, phone, name, rest in gmatch(ARGV[4], job) do
  if redis.call('SADD', pending, digest) == 1 then
    if rest == '' and name == '' then
      redis.call('XADD', lane, '*', 'v', version, 'id', id, 'campaign', campaign, 'phone', phone)
    elseif rest == '' then
      redis.call('XADD', lane, '*', 'v', version, 'id', id, 'campaign', campaign,
        'phone', phone, 'name', name)
    else
      local fields = {'v', version, 'id', id, 'campaign', campaign, 'phone', phone}
      if name ~= '' then
        fields[#fields + 1] = 'name'
        fields[#fields + 1] = name
      end
      for value in gmatch(rest, extra) do fields[#fields + 1] = value end
      redis.call('XADD', lane, '*', unpack(fields))
    end
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
return table.concat(out)
