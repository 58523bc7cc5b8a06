-- What became of a batch of a drain's rows: one call per batch of the
-- report, instead of two round trips per row.
--
-- KEYS[1]       the results stream
-- KEYS[2]       the drain's progress hash, with its duplicate marks
-- KEYS[3..n+2]  the status hashes of the batch's n jobs
-- ARGV[1..n]    the duplicate-mark field of each job's row, in KEYS order
-- Returns       6 strings per job, in KEYS order: outcome, finished_at
--               (server ms), reason, message, attempts, and '1' if the
--               job's results entry was read ('0' if trimmed or none).
--               outcome is 'deleted', 'already_deleted' or 'dead' for an
--               ended job, 'duplicate' for a row the queue refused as
--               already queued, '' for one not ended yet.
--
-- Read-only. The status hash points at the job's one results entry
-- (result_id); the entry holds the vendor's message and the attempts.
local out = {}
for i = 3, #KEYS do
  local state = redis.call('HMGET', KEYS[i], 'outcome', 'finished_at', 'result_id')
  local outcome, finished, result_id = state[1], state[2] or '', state[3]
  local reason, message, attempts, read = '', '', '', '0'
  if outcome and result_id then
    local entries = redis.call('XRANGE', KEYS[1], result_id, result_id, 'COUNT', 1)
    if entries[1] then
      local fields = entries[1][2]
      for j = 1, #fields, 2 do
        local name = fields[j]
        if name == 'reason' then reason = fields[j + 1]
        elseif name == 'message' then message = fields[j + 1]
        elseif name == 'attempts' then attempts = fields[j + 1]
        end
      end
      read = '1'
    end
  elseif not outcome then
    outcome = redis.call('HEXISTS', KEYS[2], ARGV[i - 2]) == 1 and 'duplicate' or ''
  end
  for _, value in ipairs({outcome or '', finished, reason, message, attempts, read}) do
    out[#out + 1] = value
  end
end
return out
