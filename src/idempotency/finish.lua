-- Completes or releases a keyed request, if ARGV[1] still owns its lock: a compare-and-set.
-- KEYS[1]: the in-flight lock; KEYS[2]: the finished record (see begin.lua).
-- ARGV: owner, action ("complete" | "release"), retention_us, lease_us, now_us ("" = server
-- TIME), encoded outcome (complete only).
-- Returns 1 when done, 0 when the owner no longer held the lock.

local lock = redis.call('GET', KEYS[1])
if not lock then return 0 end
local owner, fp, _, attempt = string.match(lock, '^(%S+) (%x+) (%d+) (%d+)$')
if owner ~= ARGV[1] then return 0 end

local function num(x) return string.format('%.0f', x) end
if ARGV[2] == 'release' then
  -- An ended lease, kept for a lease so the next attempt knows it is not the first.
  redis.call('SET', KEYS[1], owner .. ' ' .. fp .. ' 0 ' .. attempt, 'PX',
    math.max(1, math.ceil(tonumber(ARGV[4]) / 1000)))
  return 1
end

local now = now_us(ARGV[5])
redis.call('SET', KEYS[2], num(now) .. ' ' .. fp .. '\n' .. ARGV[6], 'PX',
  math.max(1, math.ceil(tonumber(ARGV[3]) / 1000)))
redis.call('DEL', KEYS[1])
return 1
