-- A worker says it is alive for an account, or (TTL 0) that it has stopped.
--
-- KEYS[1]  the account's workers sorted set
-- ARGV[1]  the worker's consumer name
-- ARGV[2]  ms it counts as alive from now (0: it stopped, remove it)
-- ARGV[3]  ms after its expiry a silent worker's entry is removed
--
-- Scores are expiry times on the Redis server's clock, so whoever counts the
-- live workers needs no clock of its own and no knowledge of their settings.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) <= 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
-- An account nobody works on any more leaves no key behind.
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
