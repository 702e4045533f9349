-- Begins a keyed request atomically, in one round trip.
-- KEYS[1]: the in-flight lock, "OWNER FINGERPRINT LEASE_UNTIL_US ATTEMPT".
-- KEYS[2]: the finished record, "COMPLETED_US FINGERPRINT\n" followed by the encoded outcome.
-- ARGV: owner, fingerprint (hex), lease_us, retention_us, now_us ("" = server TIME).
-- Returns {0, attempt} started, {1, lease_left_us} in flight, {2} mismatch, {3, record} finished.
-- Leases and retention are judged by the stored times (so a manual clock works); the key TTLs
-- only reclaim memory, and are never shorter than the stored times.

local now = now_us(ARGV[5])
local lease = tonumber(ARGV[3])
local function num(x) return string.format('%.0f', x) end

local record = redis.call('GET', KEYS[2])
if record then
  local done, fp = string.match(record, '^(%d+) (%x+)\n')
  if done and now - tonumber(done) < tonumber(ARGV[4]) then
    if fp ~= ARGV[2] then return {2} end
    return {3, record}
  end
  redis.call('DEL', KEYS[2])
end

local attempt = 1
local lock = redis.call('GET', KEYS[1])
if lock then
  local _, fp, untl, n = string.match(lock, '^(%S+) (%x+) (%d+) (%d+)$')
  if untl then
    if now < tonumber(untl) then
      if fp ~= ARGV[2] then return {2} end
      return {1, tonumber(untl) - now}
    end
    attempt = tonumber(n) + 1
  end
end

-- The key lives twice the lease, so an ended lock still counts attempts for a while.
local value = ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. num(now + lease) .. ' ' .. num(attempt)
local ttl_ms = math.max(1, math.ceil(lease / 500))
if lock then
  redis.call('SET', KEYS[1], value, 'PX', ttl_ms)
else
  redis.call('SET', KEYS[1], value, 'NX', 'PX', ttl_ms)
end
return {0, attempt}
