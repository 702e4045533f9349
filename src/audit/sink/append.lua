-- Appends one chained record to the audit stream, if the chain's head is where the writer
-- believes: a compare-and-set, so writers on many instances keep one chain.
-- KEYS[1]: the head, "SEQ HASH"; KEYS[2]: the stream.
-- ARGV: the head expected ("" for an empty chain), the new head, seq, prev, hash, record.
-- Returns {1, new head} when appended, {0, actual head} when another writer moved it, {-1, ""}
-- when the head key is gone from a stream that has records.
local head = redis.call('GET', KEYS[1]) or ''
if head == '' and redis.call('XLEN', KEYS[2]) > 0 then
  -- The head is gone but the stream is not: starting over would fork the chain.
  return {-1, ''}
end
if head ~= ARGV[1] then
  return {0, head}
end
redis.call('XADD', KEYS[2], '*', 'seq', ARGV[3], 'prev', ARGV[4], 'hash', ARGV[5], 'record', ARGV[6])
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
