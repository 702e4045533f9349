-- Ends a resource's write lock, if ARGV[1] still holds it, applying the update first; or, for
-- "learn", records validators read from a response.
-- KEYS[1]: the lock, "OWNER LEASE_UNTIL_US"; KEYS[2]: the validators, "GENERATION TAG SECS".
-- ARGV: owner, action ("keep" | "set" | "forget" | "learn"), validators as "TAG SECS" (set,
-- learn), ttl_ms, the generation the read saw (learn), now_us ("" = server TIME).
-- Returns 1 when done, 0 when the owner no longer held the lock (or, for learn, when an update
-- holds the lock or completed since the read).

local current = redis.call('GET', KEYS[2])
local generation = 0
if current then
  generation = tonumber(string.match(current, '^(%d+) ') or '0')
end
local lock = redis.call('GET', KEYS[1])

if ARGV[2] == 'learn' then
  if lock then
    local untl = tonumber(string.match(lock, ' (%d+)$') or '0')
    if now_us(ARGV[6]) < untl then return 0 end
  end
  if generation ~= tonumber(ARGV[5]) then return 0 end
  redis.call('SET', KEYS[2], string.format('%.0f', generation) .. ' ' .. ARGV[3], 'PX', ARGV[4])
  return 1
end

if not lock or string.match(lock, '^(%S+) ') ~= ARGV[1] then return 0 end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[2], string.format('%.0f', generation + 1) .. ' ' .. ARGV[3], 'PX', ARGV[4])
elseif ARGV[2] == 'forget' then
  -- The generation outlives the validators, so a read that began before this update cannot
  -- bring them back.
  redis.call('SET', KEYS[2], string.format('%.0f', generation + 1) .. ' - -', 'PX', ARGV[4])
end
redis.call('DEL', KEYS[1])
return 1
