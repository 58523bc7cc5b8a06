-- Which jobs of a batch already have a terminal record: one call per batch
-- of a drain's import, instead of one HEXISTS round trip per row.
--
-- KEYS[1..n]  the jobs' status hashes
-- ARGV        none
-- Returns     a string of n characters, in KEYS order: '1' the job has
--             ended (its hash holds 'outcome'), '0' it has not
--
-- Read-only. A job found ended here is not queued again, which is what
-- keeps a re-run of a drain from sending a number twice.
local verdicts = {}
for i = 1, #KEYS do
  verdicts[i] = redis.call('HEXISTS', KEYS[i], 'outcome') == 1 and '1' or '0'
end
return table.concat(verdicts)
