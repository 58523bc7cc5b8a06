-- Forget the consumers of a lane that hold no job and have long been silent.
-- Every worker process that ever ran leaves its consumer behind in the
-- group; with pods coming and going the list would only grow.
--
-- KEYS[1]  the lane stream
-- ARGV[1]  consumer group
-- ARGV[2]  idle time, ms, beyond which a consumer holding nothing is forgotten
-- Returns  the number of consumers forgotten
--
-- Atomic on purpose: XGROUP DELCONSUMER drops the consumer's pending jobs
-- with it, so the "holds nothing" check and the removal must not be split.
-- A live consumer removed here is simply created again by its next read.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local forgotten = 0
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    forgotten = forgotten + 1
  end
end
return forgotten
