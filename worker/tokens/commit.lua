-- Store a freshly generated token as the account's current one.
--
-- KEYS[1]  token hash       KEYS[2]  refresh lock
-- ARGV[1]  lock owner id    ARGV[2]  the token
-- ARGV[3]  its expiry, epoch ms (from the JWT's exp)
-- Returns  the new generation number, or -1 if the lock was lost
--
-- Only the lock holder commits: had the lock expired and another caller
-- generated after us, ours would already be invalid at the vendor and
-- storing it would overwrite the valid one.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'exp_ms', ARGV[3],
           'issued_ms', string.format('%.0f', now_ms), 'rejected', '0')
redis.call('DEL', KEYS[2])
return gen
