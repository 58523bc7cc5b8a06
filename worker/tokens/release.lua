-- Let go of the refresh lock, if this caller still holds it.
--
-- KEYS[1]  refresh lock
-- ARGV[1]  lock owner id
-- ARGV[2]  0 to release now, or ms to keep holding it: after a failed
--          generation the lock stays taken for the back-off, so the other
--          processes wait with us instead of each trying (and each spending
--          the vendor's 10-per-hour budget).
-- Returns  1 if released or extended, 0 if the lock was not ours
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
else
  redis.call('DEL', KEYS[1])
end
return 1
