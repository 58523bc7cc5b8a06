-- Decide whether this caller may generate a new token now (single flight).
--
-- KEYS[1]  token hash (fields: value, exp_ms, gen)
-- KEYS[2]  refresh lock            KEYS[3]  generation times zset (server ms): the budget
-- KEYS[4]  halted flag             KEYS[5]  budget-wait flag (reason, with a TTL)
-- ARGV[1]  the generation the caller saw fail or age (refresh only if still current)
-- ARGV[2]  lock owner id           ARGV[3]  lock TTL, ms
-- ARGV[4]  budget: generations allowed per window   ARGV[5]  budget window, ms
-- ARGV[6]  '1' if the vendor refused that token: it is marked so that no
--          process sends with it again, even while no new one can be made
-- Returns one of
--   {'current', gen}   another caller already replaced that token: use the new one
--   {'halted', reason} the account is halted: generate nothing
--   {'locked', ms}     someone is generating right now: wait for them
--   {'budget', ms}     the budget is spent for that long; the wait flag is set
--   {'go', used}       the caller holds the lock and the generation is charged
--
-- The budget is charged before the call, not after: a generation whose
-- answer we lost may still have counted at the vendor.
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return {'current', gen} end
if ARGV[6] == '1' and gen > 0 then redis.call('HSET', KEYS[1], 'rejected', '1') end

local halted = redis.call('GET', KEYS[4])
if halted then return {'halted', halted} end

local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then return {'locked', ttl} end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now_ms - window))
local used = redis.call('ZCARD', KEYS[3])
if used >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  local wait = math.max(tonumber(oldest[2]) + window - now_ms, 1)
  redis.call('SET', KEYS[5], 'token budget spent: ' .. used .. ' generations in the last '
             .. math.floor(window / 1000) .. ' s', 'PX', string.format('%.0f', wait))
  return {'budget', wait}
end

if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then
  return {'locked', tonumber(ARGV[3])}
end
-- One member per generation: the owner alone would let a process's second
-- generation overwrite its first, and the budget would never fill. The lock
-- keeps one owner's generations apart by at least a call, so time and owner
-- name each one.
local stamp = string.format('%.0f', now_ms)
redis.call('ZADD', KEYS[3], stamp, stamp .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[3], window)
return {'go', used + 1}
