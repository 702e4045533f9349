-- Counts one call by a caller to a deprecated version on a day, in one round trip.
-- KEYS[1]: the day's hash of caller to calls. ARGV: caller, most callers kept, TTL in seconds.
-- Past the cap, new callers are counted together as "(others)": a spray of callers cannot grow
-- the hash without bound.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], '(others)', 1)
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
