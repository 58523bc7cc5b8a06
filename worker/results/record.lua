-- Record a job's terminal outcome and take it off its lane, in one step.
-- Idempotent by job id: a job that already has an outcome (delivered twice,
-- or taken over from a slow holder) is only acknowledged again.
--
-- KEYS[1]  the lane stream       KEYS[2]  results stream
-- KEYS[3]  dead-letter stream    KEYS[4]  status hash of the id the entry names
-- KEYS[5]  counters hash         KEYS[6]  de-duplication set
-- KEYS[7]  status hash of the entry's own id (lane@entry id)
-- KEYS[8]  dead letters held per reason (hash)
-- KEYS[9]  the rate chart: requests sent per minute (hash, limiter/history.lua)
-- ARGV[1]  consumer group        ARGV[2]  the job's entry id ('' if none)
-- ARGV[3]  outcome: deleted | already_deleted | dead
-- ARGV[4]  de-duplication digest of the entry's (campaign, phone) ('' if none)
-- ARGV[5]  status TTL, s         ARGV[6]  approximate cap of both streams
-- ARGV[7]  the entry's own id, used when the named id is another number's
-- ARGV[8]  n: number of result fields
-- ARGV[9]  the slot (server µs) of the request this settles, '' if none left
-- ARGV[10] minutes the chart keeps   ARGV[11] the chart's TTL, ms
-- ARGV[12 .. 11+2n] the result fields' names and values, job_id first; then
--          the dead letter's extra name/value pairs, when outcome is dead
-- Returns  1 if recorded now, 0 if the job already had its record
--
-- Runs with limiter/history.lua included ahead of it as note_sent(KEYS,
-- ARGV) (worker/limiter/scripts.py): a request that left counts in its
-- slot's minute in this same step, whether or not the job already had its
-- record (it left all the same). The chart is a view: a write to it that
-- fails (a wrong type under its key) is caught, and fails no record.
--
-- The dead-letter stream is capped exactly at ARGV[6], oldest first, and
-- every letter added or trimmed is counted in KEYS[8] in the same step, so
-- the per-reason counts always equal the letters held.
--
-- Invariants: a record is written only under an id the entry owns. An id
-- belongs to the (campaign, phone) that claimed it first, at enqueue (a
-- caller's id) or here (an id nobody claimed); an entry naming an id that
-- another number holds is recorded under its own id, lane@entry, which no
-- producer can send (the '@'). And the entry's digest is released however
-- it ends, so no number stays marked as queued after its job.
local function letter_reason(pairs)
  for i = 1, #pairs - 1, 2 do
    if pairs[i] == 'reason' then return pairs[i + 1] end
  end
  return ''
end

local function forget_letter(counts, reason)
  if redis.call('HINCRBY', counts, reason, -1) <= 0 then redis.call('HDEL', counts, reason) end
end

if ARGV[9] ~= '' then pcall(note_sent, {KEYS[9]}, {ARGV[9], ARGV[10], ARGV[11]}) end

local status = KEYS[4]
local fields = {}
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
local claimed = redis.call('HGET', status, 'digest')
if claimed and claimed ~= '' and claimed ~= ARGV[4] then
  status = KEYS[7]
  fields[2] = ARGV[7]
end

local function release_and_ack()
  if ARGV[4] ~= '' then redis.call('SREM', KEYS[6], ARGV[4]) end
  if ARGV[2] ~= '' then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
  end
end

if redis.call('HEXISTS', status, 'outcome') == 1 then
  release_and_ack()
  return 0
end

local t = redis.call('TIME')
local now_ms = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local n = tonumber(ARGV[8])
local result = {}
for i = 1, 2 * n do result[i] = fields[i] end
result[#result + 1] = 'finished_at'
result[#result + 1] = now_ms
local result_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(result))

if ARGV[3] == 'dead' then
  fields[#fields + 1] = 'failed_at'
  fields[#fields + 1] = now_ms
  redis.call('XADD', KEYS[3], '*', unpack(fields))
  redis.call('HINCRBY', KEYS[8], letter_reason(fields), 1)
  -- At most a page per call: a lowered cap is reached over the next letters.
  local over = redis.call('XLEN', KEYS[3]) - tonumber(ARGV[6])
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', math.min(over, 100))) do
      redis.call('XDEL', KEYS[3], entry[1])
      forget_letter(KEYS[8], letter_reason(entry[2]))
    end
  end
end

redis.call('HSET', status, 'outcome', ARGV[3], 'result_id', result_id, 'finished_at', now_ms)
if ARGV[4] ~= '' then redis.call('HSET', status, 'digest', ARGV[4]) end
redis.call('EXPIRE', status, tonumber(ARGV[5]))
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
release_and_ack()
return 1
