-- The stored token and the account's halt, with the time of the server that
-- holds them: on Redis Cluster another node's clock would not do, and a
-- pipelined TIME has no key to be routed by.
--
-- KEYS[1]  token hash
-- KEYS[2]  halted key
-- Returns  {seconds, micros, halt reason or '', {field, value, ...} of the token}
local t = redis.call('TIME')
return {t[1], t[2], redis.call('GET', KEYS[2]) or '', redis.call('HGETALL', KEYS[1])}
