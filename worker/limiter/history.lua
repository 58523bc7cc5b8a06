-- Count one request sent, in the minute of its permit's slot: the rate chart.
--
-- KEYS[1]  hash: minute index (slot µs // 60 s) -> requests sent in it
-- ARGV[1]  the permit's slot, µs, Redis clock
-- ARGV[2]  minutes kept, back from the current one (older fields are trimmed)
-- ARGV[3]  the hash's TTL, ms
-- Returns  the minute's count so far
--
-- Bucketed by the slot the limiter granted, not by when the answer came
-- back, so a minute never holds more than the limiter let through in it.
-- The common path is the one HINCRBY: the TTL and the trim only run when a
-- minute's field is new, which is at most once a minute while busy; the TTL
-- set then outlasts the kept minutes, so an idle account's hash expires.
local minute = math.floor(tonumber(ARGV[1]) / 60000000)
local count = redis.call('HINCRBY', KEYS[1], string.format('%d', minute), 1)
if count > 1 then return count end

local keep = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
if redis.call('HLEN', KEYS[1]) <= keep then return count end

-- Trimmed against the server's own clock, not the slot: a stray old slot
-- must not make the last hour look old. Fields from beyond the kept span
-- ahead are dropped too (no permit's slot is that far ahead of its send),
-- and so is anything that is not a minute index, so the hash stays bounded
-- whatever is written to it.
local t = redis.call('TIME')
local now = math.floor(tonumber(t[1]) / 60)
local stale = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local m = tonumber(field)
  if m == nil or m < now - keep or m > now + keep then
    stale[#stale + 1] = field
  end
end
for i = 1, #stale, 1000 do
  redis.call('HDEL', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
end
return count
