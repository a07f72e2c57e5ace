-- One token shared by every process that shares a dict (nginx workers and ngx.shared.DICT),
-- refreshed by exactly one of them. Pure: the dict is anything with ngx.shared.DICT's get, set,
-- add, delete and incr, and the clock and the fetch come in, so the recipe runs (and is
-- tested) without nginx. dbxauth.nginx drives it from timers and request handlers.
--
--   local st = sharedtoken.new{ dict = d, key = "k", now = fn, fetch = fn -> token | nil, err,
--                               owner = pid, lock_lease = 3, lock_timeout = 130, backoff_max = 30,
--                               log = fn, timer = fn(delay, callback) -> ok, err }
--   st:get()      -> { expiry, refresh_at, usable_until, header, extra? } | nil   (cheap: parsed once)
--   st:usable(e, at), st:due(e, at)
--   st:refresh()  -> entry | nil, err, fetched   lua-resty-lock's recipe, one attempt
--
-- The refresh recipe is lua-resty-lock's dog-pile guard exactly: get -> lock -> get again ->
-- fetch -> set -> unlock. The second get matters: a worker that saw a due token and took the
-- lock after another worker's refresh finished must use that token, not fetch another.
-- Entries: "expiry refresh_at usable_until|<Authorization value>" (expiry 0: never expires), then
-- "\n<Name>: <value>" for each other header of the credential (tok.extra_headers: Azure's).
--
-- The lock is a lease: the dict key lives lock_lease seconds (3) and the holder renews it every
-- lease/3 through `timer` while its refresh runs, for at most lock_timeout seconds (130). A
-- holder that dies (a killed nginx worker) stops renewing, so its lock is gone within the lease
-- and another worker takes the refresh over; a long lock would leave every request without a
-- token for the lock's whole lifetime. Renewal and release touch only the holder's own lease
-- (its value is "<owner> <n>"). Without `timer` the lease is lock_timeout long, never renewed.
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local tokensource = require "dbxauth.tokensource"

local _M = {}

local NO_EXPIRY_RECHECK = 3600   -- tokens without expiry (PAT) are re-read from the config hourly
local FOREVER = 10 * 365 * 86400

-- Errors that retrying will not fix are answered 502; everything else 503.
local PERMANENT = { config = true, unauthenticated = true, permission_denied = true, invalid_request = true,
                    not_found = true, unsupported = true, insufficient_scopes = true, invalid_header = true,
                    tls = true }

local Shared = {}
Shared.__index = Shared
Shared.__name = "dbxauth.sharedtoken"
Shared.__tostring = function(s) return "dbxauth.sharedtoken(" .. s.key .. ")" end

function _M.new(o)
  local key = o.key
  return setmetatable({
    dict = o.dict, key = key, now = o.now, fetch = o.fetch, owner = o.owner or 1,
    lock_timeout = o.lock_timeout or 130, backoff_max = o.backoff_max or 30, log = o.log,
    lock_lease = o.lock_lease or 3, timer = o.timer,
    lease = nil, leases = 0,      -- our lock's value while we hold it, and how many we took
    k_tok = key .. "\0tok",
    k_lock = key .. "\0lock",
    k_next = key .. "\0next",     -- no attempt before this time (backoff after a failure)
    k_fails = key .. "\0fails",   -- consecutive failures
    k_err = key .. "\0err",       -- "503 code" | "502 code" of the last failure
    k_gen = key .. "\0gen",       -- completed attempts (waiters notice a failure by it)
    k_refreshes = key .. "\0refreshes",
    k_attempts = key .. "\0attempts",
    raw = nil, entry = nil,       -- last value read from the dict and its parsed form
  }, Shared)
end

function Shared:get()
  local raw = self.dict:get(self.k_tok)
  if raw == nil then return nil end
  if raw == self.raw then return self.entry end
  local e, r, u, header = raw:match("^(%S+) (%S+) (%S+)|(.*)$")
  local entry = e and { expiry = tonumber(e), refresh_at = tonumber(r), usable_until = tonumber(u), header = header }
  if entry and header:find("\n", 1, true) then
    entry.header = header:match("^[^\n]*")
    entry.extra = {}
    for name, v in header:gmatch("\n([^:\n]+): ([^\n]*)") do entry.extra[#entry.extra + 1] = { name, v } end
  end
  self.raw, self.entry = raw, entry
  return entry
end

function Shared:usable(entry, at)
  return entry ~= nil and at < entry.usable_until
end

-- Usable but in its refresh-ahead window (or not usable at all).
function Shared:due(entry, at)
  return entry == nil or at >= entry.refresh_at or at >= entry.usable_until
end

-- Store a token from the configuration; the entry | nil, err when it is unusable.
function Shared:store(tok)
  if type(tok) ~= "table" or type(tok.access_token) ~= "string" or tok.access_token == "" then
    return nil, errors.new("invalid_response", "the configuration returned no access token")
  end
  local header = headers.authorization(tok)
  if header:find("[%z\1-\31\127]") then
    return nil, errors.new("invalid_response", "the access token contains control characters")
  end
  -- The credential's other headers (Azure's management token, resource id), one per line after it.
  for _, line in ipairs(tok.extra_headers or {}) do
    local name, v = line:match("^([^:]+): (.*)$")
    if not name or headers.check(name, v) then
      return nil, errors.new("invalid_response", "a credential header cannot be sent")
    end
    header = header .. "\n" .. line
  end
  local at = self.now()
  local expiry, refresh_at, usable_until
  if type(tok.expiry) == "number" then
    expiry = tok.expiry
    local ttl = expiry - at
    if ttl <= 0 then
      return nil, errors.new("invalid_response", "the token endpoint returned a token that has already expired")
    end
    refresh_at = tokensource.refresh_at(expiry, at)
    usable_until = expiry - tokensource.margin_for(ttl)
  else
    expiry, refresh_at, usable_until = 0, at + NO_EXPIRY_RECHECK, at + FOREVER
  end
  local value = string.format("%.3f %.3f %.3f|%s", expiry, refresh_at, usable_until, header)
  local exptime = expiry == 0 and 0 or math.max(usable_until - at, 1) + 60
  local ok, err = self.dict:set(self.k_tok, value, exptime)
  if not ok then
    return nil, errors.new("internal", "cannot store the token in lua_shared_dict: " .. tostring(err)
      .. " (make the dict larger)")
  end
  return self:get()
end

function Shared:in_backoff(at)
  local next_at = self.dict:get(self.k_next)
  return next_at ~= nil and at < next_at
end

-- Renew our lease while we hold it and it is not older than lock_timeout: true when renewed.
function Shared:renew(lease)
  if lease == nil or self.lease ~= lease or self.dict:get(self.k_lock) ~= lease then return false end
  if self.now() - self.locked_at >= self.lock_timeout then return false end
  local d = self.dict
  if d.expire then
    d:expire(self.k_lock, self.lock_lease)       -- extends the key only if it still exists
  else
    d:set(self.k_lock, lease, self.lock_lease)
  end
  return true
end

local function keep_alive(self, lease)
  local interval = self.lock_lease / 3
  local function tick()
    -- not rescheduled (or not schedulable): the lease runs out by itself
    if self:renew(lease) then self.timer(interval, tick) end
  end
  self.timer(interval, tick)
end

-- true when this caller now holds the refresh lock. The lock expires by itself, so a worker
-- that dies holding it cannot wedge the refresh for longer than its lease (see the top).
function Shared:lock()
  local lease = tostring(self.owner) .. " " .. (self.leases + 1)
  local ttl = self.timer and self.lock_lease or self.lock_timeout
  if not self.dict:add(self.k_lock, lease, ttl) then return false end
  self.leases = self.leases + 1
  self.lease, self.locked_at = lease, self.now()
  if self.timer then keep_alive(self, lease) end
  return true
end

-- Releases our own lease (never one another worker took after ours ran out).
function Shared:unlock()
  local lease = self.lease
  self.lease = nil
  if lease ~= nil and self.dict:get(self.k_lock) == lease then self.dict:delete(self.k_lock) end
end

-- 503|502, code of the last failure
function Shared:failure()
  local e = self.dict:get(self.k_err)
  if not e then return 503, "unavailable" end
  local status, code = e:match("^(%d+) (.*)$")
  return tonumber(status) or 503, code
end

local function backoff(self, fails)
  local d = math.min(2 ^ (fails - 1), self.backoff_max)
  return d * (0.5 + math.random() * 0.5)
end

local function succeeded(self)
  local d = self.dict
  d:delete(self.k_fails)
  d:delete(self.k_next)
  d:delete(self.k_err)
  d:incr(self.k_refreshes, 1, 0)
end

local function failed(self, err, before)
  local d = self.dict
  err = errors.is(err) and err or errors.new("internal", tostring(err))
  local fails = d:incr(self.k_fails, 1, 0) or 1
  local delay = backoff(self, fails)
  d:set(self.k_next, self.now() + delay, delay + 1)
  d:set(self.k_err, (PERMANENT[err.code] and "502 " or "503 ") .. tostring(err.code))
  if self.log then self.log(err, before, delay) end
  return err
end

-- With the lock held: fetch, store, count. Returns entry | nil, err.
local function fetch_and_set(self)
  self.dict:incr(self.k_attempts, 1, 0)
  local before = self:get()
  local ok, tok, err = pcall(self.fetch)
  if not ok then
    err = errors.new("internal", "dbxauth.nginx: error while refreshing: " .. tostring(tok))
    tok = nil
  end
  local cur
  if tok then
    -- The configuration's own cache answered with the token we already have: nothing new.
    if before and type(tok.expiry) == "number" and before.expiry ~= 0 and tok.expiry <= before.expiry then
      err = errors.new("unavailable", "no newer token yet (the configuration kept its cached token after a "
        .. "failed early refresh)")
    else
      cur, err = self:store(tok)
    end
  end
  if cur then succeeded(self) else err = failed(self, err, before) end
  self.dict:incr(self.k_gen, 1, 0)
  return cur, err
end

-- With the lock already taken (refresh_async takes it before starting a timer).
function Shared:refresh_locked()
  local ok, cur, err, fetched = pcall(function()
    local entry = self:get()                       -- get again, under the lock
    if not self:due(entry, self.now()) then return entry, nil, false end
    local c, e = fetch_and_set(self)
    return c, e, true
  end)
  self:unlock()                                    -- on every path
  if not ok then error(cur, 0) end
  return cur, err, fetched
end

-- The whole recipe, one attempt: entry | nil, err, fetched (false: the lock was busy, or the
-- token was fresh after all).
function Shared:refresh()
  local entry = self:get()
  local at = self.now()
  if not self:due(entry, at) then return entry, nil, false end
  if self:in_backoff(at) then
    local status, code = self:failure()
    return nil, errors.new("unavailable", "token refresh is backing off after a failure (" .. tostring(code)
      .. ")", { status = status })
  end
  if not self:lock() then return nil, nil, false end
  return self:refresh_locked()
end

local function refreshing_owner(lease)
  if lease == nil then return false end
  local owner = tostring(lease):match("^(%S+)")
  return tonumber(owner) or owner
end

function Shared:status()
  local d = self.dict
  local entry = self:get()
  local at = self.now()
  return {
    valid = entry ~= nil and at < entry.usable_until,
    expiry = entry and entry.expiry ~= 0 and entry.expiry or nil,
    refresh_at = entry and entry.refresh_at,
    usable_until = entry and entry.usable_until,
    refreshes = d:get(self.k_refreshes) or 0,
    attempts = d:get(self.k_attempts) or 0,
    failures = d:get(self.k_fails) or 0,
    next_attempt = d:get(self.k_next),
    refreshing = refreshing_owner(d:get(self.k_lock)),   -- owner (pid) of the refresh now running
    last_error = d:get(self.k_err),
  }
end

return _M
