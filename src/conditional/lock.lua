-- Takes a resource's write lock and reads its validators, in one round trip.
-- KEYS[1]: the lock, "OWNER LEASE_UNTIL_US"; KEYS[2]: the validators (see store.rs).
-- ARGV: owner, lease_us, now_us ("" = server TIME).
-- Returns {1, validators or false} when taken, {0, lease_left_us, validators or false} when
-- another holds it.
-- The lease is judged by the stored time (so a manual clock works); the TTL only reclaims memory.

local now = now_us(ARGV[3])
local lease = tonumber(ARGV[2])
local lock = redis.call('GET', KEYS[1])
if lock then
  local untl = tonumber(string.match(lock, ' (%d+)$') or '0')
  if now < untl then
    return {0, untl - now, redis.call('GET', KEYS[2])}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. string.format('%.0f', now + lease), 'PX',
  math.max(1, math.ceil(lease / 500)))
return {1, redis.call('GET', KEYS[2])}
