-- Reserve the next permit of an account: the earliest slot at which one more
-- request keeps every limit ("at most LIMIT in any sliding window of WINDOW"),
-- and the pacing.
--
-- KEYS[1]  sorted set of granted slots: score = slot (server µs), member = permit id
-- KEYS[2]  cool-down: server µs before which nothing is granted (may be absent)
-- ARGV[1]  permit id (unique per request)
-- ARGV[2]  safety margin, µs, added to every limit's window
-- ARGV[3]  pacing burst (0: no pacing)   ARGV[4]  pacing refill interval, µs
-- ARGV[5]  how many of the latest slots the pacing looks at (the vendor's limit)
-- ARGV[6], ARGV[7], ...  pairs of (limit, window µs); the vendor's limit first
-- Returns  {slot µs, now µs}: the caller sleeps (slot - now) and then sends.
--
-- Invariant: slots are granted in non-decreasing order, and a slot is at
-- least WINDOW + margin after the LIMIT-th latest earlier slot, so no window
-- of length WINDOW + margin ever holds more than LIMIT slots. Time is the
-- Redis server's own (TIME), never a host's. Removing a slot (a refund)
-- keeps the invariant: a subset of a valid schedule is valid.
--
-- The pacing is a token bucket of BURST refilled one every INTERVAL: a slot
-- is at least (j - BURST + 1) * INTERVAL after the j-th latest slot, for
-- every j from BURST on, so any stretch of d holds at most BURST + d /
-- INTERVAL slots: a burst, then a steady pace. It only ever moves a slot
-- later, so it cannot weaken a limit; and since INTERVAL is the vendor's own
-- rate, without the margin, the vendor's widened window binds first in
-- steady state and the pacing costs no allowance. Past the vendor's LIMIT
-- latest slots the vendor's limit itself rules, so it looks no further.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local margin = tonumber(ARGV[2])

local slot = now
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then slot = math.max(slot, tonumber(latest[2])) end

local longest = 0
for i = 6, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1]) + margin
  if window > longest then longest = window end
  local nth = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
  if nth[2] then slot = math.max(slot, tonumber(nth[2]) + window) end
end

local burst = tonumber(ARGV[3])
if burst > 0 then
  local interval = tonumber(ARGV[4])
  local recent = redis.call('ZRANGE', KEYS[1], -tonumber(ARGV[5]), -1, 'WITHSCORES')
  local n = #recent / 2
  -- recent holds the n latest slots, oldest first: the j-th latest is at n - j + 1.
  for j = burst, n do
    local earliest = tonumber(recent[2 * (n - j + 1)]) + (j - burst + 1) * interval
    if earliest > slot then slot = earliest end
  end
end

local cool = redis.call('GET', KEYS[2])
if cool then slot = math.max(slot, tonumber(cool)) end

-- Slots older than the longest window can no longer constrain anything.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - longest))
redis.call('ZADD', KEYS[1], string.format('%.0f', slot), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + longest) / 1000) + 1000)
return {slot, now}
