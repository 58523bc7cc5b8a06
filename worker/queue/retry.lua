-- Take a job off its lane and schedule it to come back later, atomically:
-- the job is never both gone from the lane and absent from the retries.
--
-- KEYS[1]  the lane stream the job was read from
-- KEYS[2]  delayed retries zset (score: due time, server ms)
-- ARGV[1]  consumer group   ARGV[2]  the job's entry id
-- ARGV[3]  delay, ms
-- ARGV[4]  retry member: JSON {"fields": {...}, "job": "<id>"} (Queue.schedule_retry):
--          fields, the entry's fields as the job is to be sent again (attempts,
--          sent and enqueued already updated), all fetch.lua reads of it; job,
--          the job's id (the entry id if it has none), for whoever inspects
--          the set. There is no lane: a due member joins the retry lane,
--          whatever lane the job came from
-- KEYS[3]  the rate chart: requests sent per minute (hash, limiter/history.lua)
-- ARGV[5]  the slot (server µs) of the request this settles, '' if none left
-- ARGV[6]  minutes the chart keeps   ARGV[7]  the chart's TTL, ms
-- Returns  the due time, server ms
--
-- Runs with limiter/history.lua included ahead of it as note_sent(KEYS,
-- ARGV) (worker/limiter/scripts.py): a request that left and is to be
-- retried counts in its slot's minute in this same step. A chart write that
-- fails is caught: the retry is scheduled all the same.
if ARGV[5] ~= '' then pcall(note_sent, {KEYS[3]}, {ARGV[5], ARGV[6], ARGV[7]}) end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now_ms + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], string.format('%.0f', due), ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return due
