-- Appends one chained record to the audit stream, if the chain's head is where the writer
-- believes: a compare-and-set, so writers on many instances keep one chain.
-- KEYS[1]: the head, "SEQ HASH"; KEYS[2]: the stream; KEYS[3]: whose turn it is.
-- ARGV: the head expected ("" for an empty chain), the new head, seq, prev, hash, record, the
-- writer.
-- Returns {1, new head} when appended, {0, actual head} when another writer moved it, {2, actual
-- head} when another writer has the turn, {-1, ""} when the head key is gone from a stream that
-- has records.
--
-- The turn: a writer that loses the race claims the next append (for 1 s at most, in case it
-- goes away), and others wait for it. Without it, the instance that just appended always sends
-- its next append before the loser's retry arrives, and a busy instance starves a quiet one.
local head = redis.call('GET', KEYS[1]) or ''
if head == '' and redis.call('XLEN', KEYS[2]) > 0 then
  -- The head is gone but the stream is not: starting over would fork the chain.
  return {-1, ''}
end
local turn = redis.call('GET', KEYS[3])
if turn and turn ~= ARGV[7] then
  return {2, head}
end
if head ~= ARGV[1] then
  if not turn then
    redis.call('SET', KEYS[3], ARGV[7], 'PX', 1000)
  end
  return {0, head}
end
redis.call('XADD', KEYS[2], '*', 'seq', ARGV[3], 'prev', ARGV[4], 'hash', ARGV[5], 'record', ARGV[6])
redis.call('SET', KEYS[1], ARGV[2])
if turn then
  redis.call('DEL', KEYS[3])
end
return {1, ARGV[2]}
