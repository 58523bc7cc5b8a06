-- Hand the holder of a matured permit the next job, urgent lane first.
-- The permit is checked and, when no job can be sent on it, refunded here,
-- in the same atomic step, so a permit is never both unused and counted.
--
-- KEYS[1]  urgent lane stream     KEYS[2]  bulk lane stream
-- KEYS[3]  delayed retries zset   KEYS[4]  limiter slots zset
-- KEYS[5]  paused flag            KEYS[6]  halted flag
-- KEYS[7]  token hash (only its generation number is read)
-- ARGV[1]  consumer group         ARGV[2]  consumer name
-- ARGV[3]  permit id              ARGV[4]  the permit's slot, server µs
-- ARGV[5]  lateness tolerated, µs ARGV[6]  most delayed jobs promoted per call
-- Returns one of
--   {'job', lane, entry id, token generation, field, value, ...}
--                                                the permit is spent on it; the
--                                                generation lets the caller notice a
--                                                token replaced by another process
--                                                while it slept, before sending
--   {'early', µs to wait}                        too soon: sleep, call again
--   {'late'}                                     permit refunded: too late to be safe,
--                                                or no longer in the limiter
--   {'paused', reason}                           permit refunded
--   {'empty', urgent last id, bulk last id, next due ms or -1}   permit refunded
--
-- Why lateness matters: a permit is valid at its slot. Sent much later, it
-- would land in a later window that other permits already fill.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(ARGV[4])
if now < slot then return {'early', slot - now} end
-- A permit the limiter no longer holds was granted from state Redis has
-- since lost (a restart): the grants after it did not count it. Never use it.
if not redis.call('ZSCORE', KEYS[4], ARGV[3]) then return {'late'} end
if now - slot > tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {'late'}
end

local halted = redis.call('GET', KEYS[6])
if halted then
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {'paused', 'halted: ' .. halted}
end
local paused = redis.call('GET', KEYS[5])
if paused then
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {'paused', 'paused: ' .. paused}
end

-- Retries that are due rejoin their lane.
local now_ms = math.floor(now / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[6]))
for _, member in ipairs(due) do
  local retry = cjson.decode(member)
  local lane_key = KEYS[2]
  if retry.lane == 'urgent' then lane_key = KEYS[1] end
  local fields = {}
  for k, v in pairs(retry.fields) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('XADD', lane_key, '*', unpack(fields))
  redis.call('ZREM', KEYS[3], member)
end

local lanes = {{'urgent', KEYS[1]}, {'bulk', KEYS[2]}}
for _, lane in ipairs(lanes) do
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                         'STREAMS', lane[2], '>')
  if got then
    local entry = got[1][2][1]
    local gen = redis.call('HGET', KEYS[7], 'gen') or '0'
    local reply = {'job', lane[1], entry[1], gen}
    for _, v in ipairs(entry[2]) do reply[#reply + 1] = v end
    return reply
  end
end

redis.call('ZREM', KEYS[4], ARGV[3])
local function last_id(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end
local next_due = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local next_ms = -1
if next_due[2] then next_ms = tonumber(next_due[2]) end
return {'empty', last_id(KEYS[1]), last_id(KEYS[2]), next_ms}
