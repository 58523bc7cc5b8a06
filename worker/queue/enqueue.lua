-- Queue a batch of jobs on one lane, skipping any whose (campaign, phone)
-- is already queued or in flight, so a duplicate never costs a permit, and
-- claiming each caller-supplied id for its (campaign, phone) and producer.
--
-- KEYS[1]  the lane stream     KEYS[2]  de-duplication set
-- KEYS[3 ..] the status hashes of the claimed ids, in the order of the jobs
--          that claim one
-- ARGV[1]  the wire format version (the entry's field v)
-- ARGV[2]  the separator of a job's parts: one byte found in no part
-- ARGV[3]  the end of a job: another such byte
-- ARGV[4]  the jobs, each one's parts joined by the separator and followed
--          by the end: digest, id, claim, campaign, phone, name, then any
--          further field name and value pairs; an empty name is left out;
--          claim is '1' for a caller's id (its status hash is the next of
--          KEYS[3 ..]) and '' for an id we made
-- ARGV[5]  the producer queueing them ('' for none)
-- ARGV[6]  how long a claim lasts, s (as long as a record is kept)
-- Returns  one character per job, in order: "1" queued, "0" a duplicate
--          (the number is queued already, or the id was queued by this same
--          producer for this same number, finished or not), "2" a conflict
--          (the id belongs to another number or another producer)
--
-- The whole batch in one argument, rather than one per field of each job:
-- building, sending and parsing ten arguments per job was most of an
-- import's time, in the client and in here; one pattern match per job is
-- the cheapest way to take them apart again in Lua. The entry written is
-- the documented wire format, as a producer's own XADD would write it.
--
-- The set member, the claim and the stream entry are added together: a crash
-- cannot leave a number marked as queued with no job behind it, and "this id
-- is finished" is decided in the same step as queueing it again.
local lane, pending, version = KEYS[1], KEYS[2], ARGV[1]
local sep, stop = ARGV[2], ARGV[3]
local owner, claim_ttl = ARGV[5], tonumber(ARGV[6])
local gmatch = string.gmatch
-- The delimiters are control bytes or bytes above 0x7F: none is magic in a pattern.
local part = '([^' .. sep .. stop .. ']*)'
local job = part .. sep .. part .. sep .. part .. sep .. part .. sep .. part .. sep .. part
  .. '([^' .. stop .. ']*)' .. stop
local extra = sep .. '([^' .. sep .. ']*)'
local claims = 2
local out = {}
for digest, id, claim, campaign, phone, name, rest in gmatch(ARGV[4], job) do
  local status = nil
  local verdict = nil
  if claim ~= '' then
    claims = claims + 1
    status = KEYS[claims]
    local held = redis.call('HMGET', status, 'digest', 'owner', 'outcome')
    if held[1] or held[3] then
      -- A record from before claims were kept has an outcome and no digest:
      -- its id stays finished, as it was.
      if (held[1] == digest or not held[1]) and (held[2] or '') == owner then
        verdict = '0'
      else
        verdict = '2'
      end
    end
  end
  if verdict == nil and redis.call('SADD', pending, digest) == 0 then verdict = '0' end
  if verdict == nil then
    if status then
      redis.call('HSET', status, 'digest', digest, 'owner', owner)
      redis.call('EXPIRE', status, claim_ttl)
    end
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
    verdict = '1'
  end
  out[#out + 1] = verdict
end
return table.concat(out)
