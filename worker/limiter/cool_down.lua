-- Hold back every grant of an account until now + DURATION (server time).
-- Used when the vendor answers "rate limited" (someone else is using the
-- allowance) and after Redis lost the limiter's state.
--
-- KEYS[1]  cool-down key: server µs before which nothing is granted
-- ARGV[1]  duration, µs
-- Returns  the cool-down's end, server µs (never moved earlier by this call)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > until_us then return current end
redis.call('SET', KEYS[1], string.format('%.0f', until_us),
           'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1)
return until_us
