-- Reserve the next permit of an account: the earliest slot at which one more
-- request keeps every limit ("at most LIMIT in any sliding window of WINDOW").
--
-- KEYS[1]  sorted set of granted slots: score = slot (server µs), member = permit id
-- KEYS[2]  cool-down: server µs before which nothing is granted (may be absent)
-- ARGV[1]  permit id (unique per request)
-- ARGV[2], ARGV[3], ARGV[4], ...  triples of (limit, window µs, margin µs):
--          the vendor's limit first, with the safety margin that widens its
--          window; then the customer's caps; then the pacing (margin 0)
-- Returns  {slot µs, now µs}: the caller sleeps (slot - now) and then sends.
--
-- Invariant: slots are granted in non-decreasing order, and a slot is at
-- least WINDOW + margin after the LIMIT-th latest earlier slot, so no window
-- of length WINDOW + margin ever holds more than LIMIT slots. The pacing is
-- one more such limit (a burst, in the time the allowance's rate refills
-- it), so it only ever moves a slot later. Time is the
-- Redis server's own (TIME), never a host's. Removing a slot (a refund)
-- keeps the invariant: a subset of a valid schedule is valid.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local slot = now
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if latest[2] then slot = math.max(slot, tonumber(latest[2])) end

local longest = 0
for i = 2, #ARGV, 3 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1]) + tonumber(ARGV[i + 2])
  if window > longest then longest = window end
  local nth = redis.call('ZRANGE', KEYS[1], -limit, -limit, 'WITHSCORES')
  if nth[2] then slot = math.max(slot, tonumber(nth[2]) + window) end
end

local cool = redis.call('GET', KEYS[2])
if cool then slot = math.max(slot, tonumber(cool)) end

-- Slots older than the longest window can no longer constrain anything.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - longest))
redis.call('ZADD', KEYS[1], string.format('%.0f', slot), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + longest) / 1000) + 1000)
return {slot, now}
