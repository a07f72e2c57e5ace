-- Small time-bounded caches, and the process-wide ones that configurations share.
--
--   local c = cache.new(60)            -- entries live 60 s
--   c:set(key, value, now); c:get(key, now) --> value | nil; c:clear()
--   cache.shared("discovery")          -- one named cache table per process (per nginx worker)
--   cache.clear_shared()               -- forget everything every shared cache holds
--
-- Shared caches are keyed by everything that changes their answer (the discovery cache: the
-- host and the TLS settings or transport that reached it); the caller builds the key.
local _M = {}

local Cache = {}
Cache.__index = Cache
Cache.__name = "dbxauth.cache"

function _M.new(ttl)
  return setmetatable({ ttl = ttl, items = {} }, Cache)
end

function Cache:get(key, now)
  local hit = self.items[key]
  if hit and now - hit.at < self.ttl then return hit.value end
  return nil
end

function Cache:set(key, value, now)
  self.items[key] = { value = value, at = now }
end

function Cache:clear()
  self.items = {}
end

local shared = {}   -- name -> { ttl -> Cache }, process-wide

-- The process-wide cache `name`, created on first use with `ttl`.
function _M.shared(name, ttl)
  local c = shared[name]
  if not c then
    c = _M.new(ttl)
    shared[name] = c
  end
  return c
end

function _M.clear_shared()
  for _, c in pairs(shared) do c:clear() end
end

return _M
