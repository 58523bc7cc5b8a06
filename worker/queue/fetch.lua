-- Hand the holder of a matured permit the next job: urgent first, then
-- retries within their share of the allowance, then bulk, then any retry.
-- The permit is checked and, when no job can be sent on it, refunded here,
-- in the same atomic step, so a permit is never both unused and counted.
--
-- KEYS[1]  urgent lane stream     KEYS[2]  retry lane stream
-- KEYS[3]  bulk lane stream       KEYS[4]  delayed retries zset (score: due, server ms)
-- KEYS[5]  limiter slots zset     KEYS[6]  permits spent on retries zset
-- KEYS[7]  paused flag            KEYS[8]  halted flag
-- KEYS[9]  token hash (only its generation number is read)
-- KEYS[10] the limiter's cool-down (for the next permit)
-- ARGV[1]  consumer group         ARGV[2]  consumer name
-- ARGV[3]  permit id              ARGV[4]  the permit's slot, server µs
-- ARGV[5]  lateness tolerated, µs ARGV[6]  most delayed jobs promoted per call
-- ARGV[7]  retries allowed per window while fresh work waits
-- ARGV[8]  that window, µs
-- ARGV[9]  the id of the caller's next permit ('' for none)
-- ARGV[10] '1': reserve the next permit after a job too, not only after 'late'
-- ARGV[11], ...  limiter/acquire.lua's arguments after the permit id
-- Returns one of
--   {'job', lane, entry id, token generation, next slot µs, now µs, field, value, ...}
--            the permit is spent on it; the generation lets the caller notice
--            a token replaced by another process while it slept, before sending;
--            the next permit's slot and grant time, -1 -1 if none was reserved
--   {'early', µs to wait}      too soon: sleep, call again
--   {'late', next slot µs, now µs}   permit refunded: too late to be safe, or
--                              no longer in the limiter; the next permit, if asked
--   {'paused', reason}         permit refunded
--   {'empty', last ids of urgent, retry, bulk, next due ms or -1}   permit refunded
--
-- Why lateness matters: a permit is valid at its slot. Sent much later, it
-- would land in a later window that other permits already fill.
--
-- The next permit: a dispatcher that hands a job over asks for its next
-- permit at once, and one whose permit came late asks for another. Both are
-- reserved here, by limiter/acquire.lua included ahead of this script as
-- acquire(KEYS, ARGV) (worker/limiter/scripts.py): the same schedule and
-- the same rules as a permit asked for on its own, without the round trip.
local function next_permit()
  if ARGV[9] == '' then return {-1, -1} end
  local args = {ARGV[9]}
  for i = 11, #ARGV do args[#args + 1] = ARGV[i] end
  return acquire({KEYS[5], KEYS[10]}, args)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(ARGV[4])
if now < slot then return {'early', slot - now} end
-- A permit the limiter no longer holds was granted from state Redis has
-- since lost (a restart): the grants after it did not count it. Never use it.
if not redis.call('ZSCORE', KEYS[5], ARGV[3]) then
  local again = next_permit()
  return {'late', again[1], again[2]}
end
if now - slot > tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[5], ARGV[3])
  local again = next_permit()
  return {'late', again[1], again[2]}
end

local halted = redis.call('GET', KEYS[8])
if halted then
  redis.call('ZREM', KEYS[5], ARGV[3])
  return {'paused', 'halted: ' .. halted}
end
local paused = redis.call('GET', KEYS[7])
if paused then
  redis.call('ZREM', KEYS[5], ARGV[3])
  return {'paused', 'paused: ' .. paused}
end

-- Retries that are due join the retry lane.
local now_ms = math.floor(now / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[6]))
for _, member in ipairs(due) do
  local retry = cjson.decode(member)
  local fields = {}
  for k, v in pairs(retry.fields) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('XADD', KEYS[2], '*', unpack(fields))
  redis.call('ZREM', KEYS[4], member)
end

local function take(lane, key)
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                         'STREAMS', key, '>')
  if not got then return nil end
  local entry = got[1][2][1]
  if lane == 'retry' then
    redis.call('ZADD', KEYS[6], string.format('%.0f', slot), ARGV[3])
    redis.call('PEXPIRE', KEYS[6], math.ceil(tonumber(ARGV[8]) / 1000) + 1000)
  end
  local reply = {'job', lane, entry[1], redis.call('HGET', KEYS[9], 'gen') or '0', -1, -1}
  if ARGV[10] == '1' then
    local again = next_permit()
    reply[5], reply[6] = again[1], again[2]
  end
  for _, v in ipairs(entry[2]) do reply[#reply + 1] = v end
  return reply
end

local job = take('urgent', KEYS[1])
if job then return job end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', string.format('(%.0f', now - tonumber(ARGV[8])))
if redis.call('ZCARD', KEYS[6]) < tonumber(ARGV[7]) then
  job = take('retry', KEYS[2])
  if job then return job end
end
-- A flood of failures must not starve fresh work: past their share,
-- retries wait until the bulk lane is empty too.
job = take('bulk', KEYS[3]) or take('retry', KEYS[2])
if job then return job end

redis.call('ZREM', KEYS[5], ARGV[3])
local function last_id(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end
local next_due = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local next_ms = -1
if next_due[2] then next_ms = tonumber(next_due[2]) end
return {'empty', last_id(KEYS[1]), last_id(KEYS[2]), last_id(KEYS[3]), next_ms}
