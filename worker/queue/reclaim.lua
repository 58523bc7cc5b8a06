-- Take over jobs held by consumers that went silent (a process that died),
-- by putting a copy back at the end of their lane, marked as possibly sent:
-- the dead holder may have reached the vendor before it died.
--
-- KEYS[1]  the lane stream
-- ARGV[1]  consumer group   ARGV[2]  this consumer's name
-- ARGV[3]  idle time after which a held job is taken over, ms
-- ARGV[4]  most jobs taken over per call
-- Returns  the number of jobs put back
--
-- The copy, the XACK and the XDEL happen in one step: a job is never lost
-- between its old entry and its new one.
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', tonumber(ARGV[4]))
local moved = 0
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  if fields then
    local copy, attempts = {}, 0
    for i = 1, #fields, 2 do
      local k, v = fields[i], fields[i + 1]
      if k == 'attempts' then
        attempts = tonumber(v) or 0
      elseif k ~= 'sent' then
        copy[#copy + 1] = k
        copy[#copy + 1] = v
      end
    end
    -- The holder died mid-attempt: that attempt counts, so a job that kills
    -- every worker that takes it cannot circulate for ever.
    copy[#copy + 1] = 'attempts'
    copy[#copy + 1] = tostring(attempts + 1)
    copy[#copy + 1] = 'sent'
    copy[#copy + 1] = '1'
    redis.call('XADD', KEYS[1], '*', unpack(copy))
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
return moved
