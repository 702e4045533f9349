-- Ends a resource's write lock, if ARGV[1] still holds it, applying the update first.
-- KEYS[1]: the lock; KEYS[2]: the validators.
-- ARGV: owner, action ("keep" | "set" | "forget"), validators (set), ttl_ms (set).
-- Returns 1 when done, 0 when the owner no longer held the lock.
-- "learn" (no lock): ARGV: "", "learn", validators, ttl_ms; ignored while a lock is held.

local lock = redis.call('GET', KEYS[1])
if ARGV[2] == 'learn' then
  if lock then return 0 end
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return 1
end
if not lock or string.match(lock, '^(%S+) ') ~= ARGV[1] then return 0 end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
elseif ARGV[2] == 'forget' then
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[1])
return 1
