-- Record a job's terminal outcome and take it off its lane, in one step.
-- Idempotent by job id: a job that already has an outcome (delivered twice,
-- or taken over from a slow holder) is only acknowledged again.
--
-- KEYS[1]  the lane stream       KEYS[2]  results stream
-- KEYS[3]  dead-letter stream    KEYS[4]  the job's status hash
-- KEYS[5]  counters hash         KEYS[6]  de-duplication set
-- ARGV[1]  consumer group        ARGV[2]  the job's entry id ('' if none)
-- ARGV[3]  outcome: deleted | already_deleted | dead
-- ARGV[4]  de-duplication digest ('' if none)
-- ARGV[5]  status TTL, s         ARGV[6]  approximate cap of both streams
-- ARGV[7]  n: number of result fields; ARGV[8 .. 7+2n] their names and values;
--          then the dead letter's extra name/value pairs, when outcome is dead
-- Returns  1 if recorded now, 0 if the job already had its record
local function ack()
  if ARGV[2] ~= '' then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
  end
end

if redis.call('HEXISTS', KEYS[4], 'outcome') == 1 then
  ack()
  return 0
end

local t = redis.call('TIME')
local now_ms = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local n = tonumber(ARGV[7])
local result = {}
for i = 8, 7 + 2 * n do result[#result + 1] = ARGV[i] end
result[#result + 1] = 'finished_at'
result[#result + 1] = now_ms
local result_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(result))

if ARGV[3] == 'dead' then
  local letter = {}
  for i = 8, #ARGV do letter[#letter + 1] = ARGV[i] end
  letter[#letter + 1] = 'failed_at'
  letter[#letter + 1] = now_ms
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(letter))
end

redis.call('HSET', KEYS[4], 'outcome', ARGV[3], 'result_id', result_id, 'finished_at', now_ms)
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
if ARGV[4] ~= '' then redis.call('SREM', KEYS[6], ARGV[4]) end
ack()
return 1
