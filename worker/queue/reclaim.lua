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
--
-- The copy keeps the job's age: a job without an `enqueued` field is dated
-- by its entry id, and the copy's id is the take-over's time, so the old
-- entry's time is written into `enqueued` (as a retry writes it, in
-- pool/settle.py), and the record's enqueued_at stays the original enqueue.
-- Only a time the parser accepts is written (jobs.py: MIN_EPOCH_MS to
-- MAX_EPOCH_MS); an entry id outside them (one a producer chose, such as
-- 1-1) leaves the copy dated by its own id, as before.
local MIN_EPOCH_MS, MAX_EPOCH_MS = 946684800000, 7258118400000
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', tonumber(ARGV[4]))
local moved = 0
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  if fields then
    local copy, attempts, dated = {}, 0, false
    for i = 1, #fields, 2 do
      local k, v = fields[i], fields[i + 1]
      if k == 'attempts' then
        attempts = tonumber(v) or 0
      elseif k ~= 'sent' then
        if k == 'enqueued' then dated = true end
        copy[#copy + 1] = k
        copy[#copy + 1] = v
      end
    end
    if not dated then
      local ms = string.match(id, '^(%d+)%-')
      local n = tonumber(ms or '')
      if n and n >= MIN_EPOCH_MS and n <= MAX_EPOCH_MS then
        copy[#copy + 1] = 'enqueued'
        copy[#copy + 1] = ms
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
