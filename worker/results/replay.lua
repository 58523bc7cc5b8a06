-- Replay one dead letter: queue it again as a new job and delete the letter,
-- in one step, so a letter is never both replayed and still listed (replayed
-- twice by the next `dlq replay`) nor deleted without its job queued.
--
-- KEYS[1]  the lane stream to queue on    KEYS[2]  dead-letter stream
-- KEYS[3]  de-duplication set            KEYS[4]  dead letters held per reason
-- ARGV[1]  the letter's entry id          ARGV[2]  de-duplication digest
-- ARGV[3 ..] the new job's field names and values
-- Returns one of
--   {'queued', entry id}   the job is queued and the letter deleted
--   {'pending'}            the same (campaign, phone) is already queued or in
--                          flight: the letter is deleted, no second job added
--   {'gone'}               the letter no longer exists (replayed or purged
--                          by someone else meanwhile): nothing done
--
-- The digest is added with the job, as in queue/enqueue.lua, so the worker
-- that records the new job's outcome releases it.
local letter = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])[1]
if not letter then return {'gone'} end
redis.call('XDEL', KEYS[2], ARGV[1])
local reason = ''
for i = 1, #letter[2] - 1, 2 do
  if letter[2][i] == 'reason' then reason = letter[2][i + 1] end
end
if redis.call('HINCRBY', KEYS[4], reason, -1) <= 0 then redis.call('HDEL', KEYS[4], reason) end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return {'pending'} end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
return {'queued', redis.call('XADD', KEYS[1], '*', unpack(fields))}
