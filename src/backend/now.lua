-- Prepended to every script: the decision time in microseconds since the UNIX epoch, from the
-- argument when the backend has a client clock (tests), else from the Redis server's clock, which
-- every app instance shares.
local function now_us(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
