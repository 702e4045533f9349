-- One rate-limit decision, atomically, in one round trip: a port of verdict.rs.
-- KEYS[1]: the bucket. KEYS[2] (optional): the caller's override, "ALGO COUNT PERIOD_US BURST".
-- ARGV: algo (0 GCRA, 1 sliding window), count, period_us, burst, cost, now_us ("" = server TIME).
-- Bucket state is one string: "g TAT" or "w PERIOD_US INDEX PREVIOUS CURRENT"; a state of the
-- other kind, or counted in windows of another length, counts as a fresh bucket.
-- Returns {allowed, remaining, reset_after_us, retry_after_us (-1: none), now_us,
--          algo, count, period_us, burst}: the last four are the quota that was applied.
-- Every number stays below 2^53, where Lua's doubles are exact (Quota::validate sees to it, and
-- an override that would break that is ignored).

local MAX_EXACT = 2 ^ 50
local algo, count, period, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local now = now_us(ARGV[6])

if KEYS[2] then
  local o = redis.call('GET', KEYS[2])
  if o then
    local a, c, p, b = string.match(o, '^([01]) (%d+) (%d+) (%d+)$')
    if a then
      a, c, p, b = tonumber(a), tonumber(c), tonumber(p), tonumber(b)
      -- The same checks as Quota::validate.
      if c >= 1 and b >= 1 and p >= c and p * math.max(c, b) < MAX_EXACT
          and math.ceil(p / c) * b < MAX_EXACT then
        algo, count, period, burst = a, c, p, b
      end
    end
  end
end

local function num(x) return string.format('%.0f', x) end
local function ttl_ms(us) return math.max(1, math.ceil(us / 1000)) end
local function reply(allowed, remaining, reset, retry)
  return {allowed, remaining, reset, retry, now, algo, count, period, burst}
end
local state = redis.call('GET', KEYS[1])

if algo == 0 then
  local t = math.ceil(period / count)
  local tau = t * burst
  local tat = 0
  if state then
    local s = string.match(state, '^g (%d+)$')
    if s then tat = tonumber(s) end
  end
  if tat < now then tat = now end
  if cost > burst then
    return reply(0, 0, tat - now, -1)
  end
  local new_tat = tat + t * cost
  local allow_at = math.max(0, new_tat - tau)
  if now < allow_at then
    return reply(0, 0, allow_at - now, allow_at - now)
  end
  if cost > 0 then
    redis.call('SET', KEYS[1], 'g ' .. num(new_tat), 'PX', ttl_ms(new_tat - now))
  end
  return reply(1, math.floor(math.max(0, now + tau - new_tat) / t), new_tat - now, -1)
end

local w = period
local index = math.floor(now / w)
local elapsed = now - index * w
local previous, current = 0, 0
if state then
  local sp, i, p, c = string.match(state, '^w (%d+) (%d+) (%d+) (%d+)$')
  if sp and tonumber(sp) == w then
    i, p, c = tonumber(i), tonumber(p), tonumber(c)
    if i > index then
      -- A clock behind the stored window: decide at its start; never move back.
      index, elapsed = i, 0
    end
    if i == index then
      previous, current = p, c
    elseif i + 1 == index then
      previous, current = c, 0
    end
  end
end
local function full_after(c)
  if c > 0 then return 2 * w - elapsed end
  if previous > 0 then return w - elapsed end
  return 0
end
if cost > count then
  return reply(0, 0, full_after(current), -1)
end
local weighted = previous * (w - elapsed)
local capacity = count * w

if weighted + (current + cost) * w <= capacity then
  current = current + cost
  redis.call('SET', KEYS[1], 'w ' .. num(w) .. ' ' .. num(index) .. ' ' .. num(previous) .. ' ' .. num(current),
    'PX', ttl_ms((index + 2) * w - now))
  return reply(1, math.floor(math.max(0, capacity - weighted - current * w) / w), full_after(current), -1)
end

local room = count - cost
local at = nil
if previous > 0 and current <= room then
  at = w - math.floor((room - current) * w / previous)
  if at >= w then at = nil end
end
local retry
if at then
  retry = at - elapsed
else
  local next_at = 0
  if current > 0 then next_at = math.max(0, w - math.floor(room * w / current)) end
  retry = w - elapsed + next_at
end
return reply(0, 0, retry, retry)
