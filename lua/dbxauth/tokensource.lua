-- A cached token with refresh-ahead (decisions D14, D15):
--   * a token is expired when now >= expiry - 40 s (a fifth of its lifetime for tokens that
--     live less than 200 s, so short-lived tokens are still reused); then a refresh must succeed;
--   * in the stale window, the last min(TTL/2, 20 min) before expiry, a refresh is attempted
--     and on failure the still-valid token is returned, with no new attempt for 60 s;
--   * one refresh at a time: a caller arriving while a refresh is in flight (possible only
--     with transports that yield, as in nginx) waits for it through the `wait` hook, or gets
--     the still-valid token.
-- There are no threads here; `fetch` does the I/O and `now` is injected.
local headers = require "dbxauth.headers"

local huge = math.huge

local _M = {}

-- The lifetime rules, in one place (the nginx store and the U2M cache use them too).
local EXPIRY_MARGIN = 40
local MAX_STALE = 20 * 60
local COOLDOWN = 60
_M.EXPIRY_MARGIN, _M.MAX_STALE, _M.COOLDOWN = EXPIRY_MARGIN, MAX_STALE, COOLDOWN
-- The Databricks CLI refreshes a cached login when less than this is left.
_M.CLI_REFRESH_AHEAD = 300

-- Seconds before expiry at which a token of `ttl` seconds stops being used.
function _M.margin_for(ttl)
  return math.min(EXPIRY_MARGIN, math.max(0, ttl) / 5)
end

-- When a token of this expiry, seen at `now`, enters its refresh-ahead window.
function _M.refresh_at(expiry, now)
  return expiry - math.min((expiry - now) / 2, MAX_STALE)
end

-- A token whose issue time is unknown (a cache file's) is usable until expiry - 40 s.
function _M.fresh(tok, now)
  return tok ~= nil and (tok.expiry == nil or now < tok.expiry - EXPIRY_MARGIN)
end

local Source = {}
Source.__index = Source
Source.__name = "dbxauth.tokensource"
Source.__tostring = function(s)
  return "dbxauth.tokensource(" .. (s.tok and "cached" or "empty") .. ")"
end

-- opts.fetch() -> token | nil, err   (token: { access_token, expiry = epoch seconds | nil, ... })
-- opts.now() -> seconds; opts.wait(source) optional, blocks until the in-flight refresh ends
function _M.new(opts)
  return setmetatable({ fetch = opts.fetch, now = opts.now, wait = opts.wait,
                        tok = nil, stale_at = nil, cooldown_until = 0, refreshing = false,
                        fresh_until = -huge }, Source)
end

local function margin(tok, now)
  if not tok.expiry then return 0 end
  return _M.margin_for(tok.expiry - now)
end

local function expired(self, now)
  local tok = self.tok
  return tok.expiry ~= nil and now >= tok.expiry - self.margin
end

local function stale_at(tok, now)
  if not tok.expiry then return nil end
  return _M.refresh_at(tok.expiry, now)
end

-- Until when token() may hand out tok with no other check: before it goes stale and before it
-- expires (the fast path of every cached call; the rules themselves are below).
local function fresh_until(tok, stale, m)
  local t = stale or huge
  if tok.expiry and tok.expiry - m < t then t = tok.expiry - m end
  return t
end

local function install(self, tok, now)
  local stale, m = stale_at(tok, now), margin(tok, now)
  self.tok, self.stale_at, self.margin, self.fresh_until = tok, stale, m, fresh_until(tok, stale, m)
end

local function refresh(self)
  self.refreshing = true
  local ok, tok, err = pcall(self.fetch)
  self.refreshing = false
  if not ok then error(tok, 0) end
  if tok then
    local now = self.now()
    local old = self.tok
    if old and old.expiry and tok.expiry and old.expiry >= tok.expiry then
      -- No newer token (a source that hands back what it has, like a shared cache file, or a
      -- slower refresh finishing after a newer one): keep the current one, ask again later.
      self.cooldown_until = now + COOLDOWN
      if old.expiry == tok.expiry then self.tok = tok end
    else
      install(self, tok, now)
      self.cooldown_until = 0
    end
  end
  return tok, err
end

-- Install a token obtained elsewhere (a forced refresh).
function Source:set(tok)
  install(self, tok, self.now())
  self.cooldown_until = 0
end

-- The rules for a token that is not simply fresh (or for none at all).
local function token_slow(self, tok, now)
  if tok and not expired(self, now) then
    if not self.stale_at or now < self.stale_at or now < self.cooldown_until or self.refreshing then
      return tok
    end
    local _, err = refresh(self)
    if err then self.cooldown_until = self.now() + COOLDOWN end
    return self.tok
  end
  if self.refreshing then
    if self.wait then
      self.wait(self)
      if self.tok and not expired(self, self.now()) then return self.tok end
    end
  end
  local fresh, err = refresh(self)
  if not fresh then return nil, err end
  return self.tok
end

function Source:token()
  local tok, now = self.tok, self.now()
  if tok and now < self.fresh_until then return tok end
  return token_slow(self, tok, now)
end

-- Forget the cached token (e.g. after the server rejected it).
function Source:invalidate()
  self.tok, self.stale_at, self.fresh_until = nil, nil, -huge
end

-- Credentials over a token source: what the chain hands out. The Authorization value is
-- built once per token, and so is the headers table: handed out again until someone changes it
-- (headers.cached's rule, inline here: a cached call is one clock read and two comparisons).
-- authorization() is the value alone, for dbxauth's own requests.
function _M.credentials(source)
  local last, header, current
  local watch = {}
  watch.__newindex = function(t, k, v)
    setmetatable(t, nil)
    if t == current then current = nil end
    t[k] = v
  end
  local function authorization()
    local tok, err = source:token()
    if not tok then return nil, err end
    if tok ~= last then last, header = tok, headers.authorization(tok) end
    return header
  end
  return {
    source = source,
    token = function() return source:token() end,
    authorization = authorization,
    headers = function()
      local tok, h = source.tok, current
      -- the fast path of Source:token, inline: a fresh token whose table is already built
      if not (tok ~= nil and tok == last and source.now() < source.fresh_until) then
        local err
        h, err = authorization()
        if not h then return nil, err end
        h = current
      end
      if h and h.Authorization == header then return h end
      h = setmetatable({ Authorization = header }, watch)
      current = h
      return h
    end,
  }
end

return _M
