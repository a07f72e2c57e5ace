-- dbxauth in nginx (ngx_lua): one Databricks token shared by every worker, refreshed ahead of
-- expiry by exactly one worker, and a gateway that puts it on proxied requests.
--
--   lua_shared_dict dbxauth 1m;
--   init_worker_by_lua_block { require("dbxauth.nginx").init{ app = "my-app" } }
--   location / {
--     access_by_lua_block { require("dbxauth.nginx").access{ app = "my-app" } }
--     proxy_pass https://my-app-1234567890.aws.databricksapps.com;
--   }
--
-- Options (the same table for init, access, authorization and status):
--   profile = "name"        a ~/.databrickscfg profile, or
--   config = { ... }        dbxauth.config options (host, client_id, client_secret, token, ...);
--                           neither: DATABRICKS_* from the environment (nginx `env` directives)
--   app = "name"            a token for this Databricks App (cfg:app_token: OAuth tokens as they
--   audience = "..."        are, a PAT exchanged for the app's audience), or for this audience;
--   scopes = { ... }        neither: the configuration's own token (cfg:token())
--   dict = "dbxauth"        the lua_shared_dict holding the token, locks and state
--   key = "..."             store key; by default derived from profile, host, client_id, app,
--                           audience and scopes (never from a secret). Set it when two gateways
--                           differ only in a secret.
--   wait = 5                seconds a request waits for a token when there is no valid one
--   backoff_max = 30        cap of the exponential backoff after a failed refresh (from 1 s)
--   lock_timeout = 130      lifetime of the refresh lock: longer than any token request
--                           (timeouts and retries included); frees it if a worker dies holding it
--   ctx = { ... }           passed to dbxauth.config (env, home, clock)
--
-- How the token lives:
--   * The shared dict holds one entry per key: expiry, the time to refresh, the time until which
--     it may be used, and the Authorization value. Every worker and every request reads it; no
--     request ever fetches a token itself.
--   * Refreshes run in timers, under a lock taken with dict:add(): exactly one token request per
--     refresh across all workers. gw.init runs a per-worker timer that refreshes when the token
--     enters its refresh-ahead window, the last min(TTL/2, 20 min) of its life (at least 40 s
--     for tokens that live 80 s or more), so requests never wait for the token endpoint.
--     Without gw.init the first request that sees a due token starts the refresh in a timer.
--   * A token is used until expiry - min(40 s, TTL/5). With no usable token a request starts a
--     refresh (if none is running) and polls the dict for up to `wait` seconds.
--   * A failed refresh keeps the current token, backs off exponentially (1 s .. backoff_max, with
--     jitter) and retries; the error is logged once per attempt without secrets. While there is
--     no usable token and the last attempt failed, requests get 503 (or 502 for errors that
--     retrying will not fix: bad credentials, configuration) at once instead of waiting.
--   * The dbxauth configuration object (and its transport) is created lazily in each worker, in
--     the refresh timer: cosockets exist there, and nothing is carried across fork.
local dbxauth = require "dbxauth"
local errors = require "dbxauth.errors"
local cjson = require "cjson.safe"

local ngx = ngx
local shared = ngx.shared
local tostring, tonumber, type, pairs = tostring, tonumber, type, pairs
local concat, format, find, match = table.concat, string.format, string.find, string.match

local _M = { VERSION = dbxauth.VERSION }

local DEFAULT_DICT = "dbxauth"
local DEFAULT_WAIT = 5
local DEFAULT_BACKOFF_MAX = 30
local DEFAULT_LOCK_TIMEOUT = 130
local CHECK_INTERVAL = 1         -- background timer: longest sleep between checks
local MIN_CHECK = 0.05           -- ... and shortest
local MAX_STALE = 20 * 60
local USE_MARGIN = 40
local NO_EXPIRY_RECHECK = 3600   -- tokens without expiry (PAT) are re-read from the config hourly

local OPTION_TYPES = {
  profile = "string", config = "table", app = "string", audience = "string", scopes = "table",
  dict = "string", key = "string", wait = "number", backoff_max = "number", lock_timeout = "number",
  ctx = "table",
}

-- Errors that retrying will not fix are answered 502; everything else 503.
local PERMANENT = { config = true, unauthenticated = true, permission_denied = true, invalid_request = true,
                    not_found = true, unsupported = true, insufficient_scopes = true, invalid_header = true,
                    tls = true }

---------------------------------------------------------------------------------------------
-- Targets: one per (worker, key), holding the options and the lazily created configuration.

local targets = {}

local function check_options(o, fname)
  if type(o) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (table expected, got " .. type(o) .. ")", 3)
  end
  for k, v in pairs(o) do
    local want = OPTION_TYPES[k]
    if not want then error("bad argument #1 to '" .. fname .. "' (unknown option \"" .. tostring(k) .. "\")", 3) end
    if type(v) ~= want then
      error("bad argument #1 to '" .. fname .. "' (option \"" .. k .. "\" must be a " .. want .. ")", 3)
    end
  end
  if o.profile and o.config then
    error("bad argument #1 to '" .. fname .. "' (give profile or config, not both)", 3)
  end
  if o.app and o.audience then
    error("bad argument #1 to '" .. fname .. "' (give app or audience, not both)", 3)
  end
end

-- The store key: what identifies the token, never a secret.
local function key_of(o)
  if o.key then return o.key end
  local c = o.config
  local parts = {
    o.profile or "",
    c and tostring(c.profile or "") or "",
    c and tostring(c.host or "") or "",
    c and tostring(c.client_id or "") or "",
    c and tostring(c.account_id or "") or "",
    c and tostring(c.auth_type or "") or "",
    o.app or "",
    o.audience or "",
    o.scopes and concat(o.scopes, " ") or "",
  }
  return concat(parts, "|")
end

local function label_of(o)
  local what = o.app and ("app " .. o.app) or o.audience and ("audience " .. o.audience) or "token"
  local src = o.profile and ("profile " .. o.profile)
    or (o.config and o.config.profile and ("profile " .. tostring(o.config.profile)))
    or (o.config and o.config.host and tostring(o.config.host)) or "environment"
  return what .. " (" .. src .. ")"
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

local function target(o, fname)
  local dict_name = o.dict or DEFAULT_DICT
  local key = key_of(o)
  local id = dict_name .. "\0" .. key
  local t = targets[id]
  if t then return t end
  check_options(o, fname)
  local dict = shared[dict_name]
  if not dict then
    error("dbxauth.nginx: lua_shared_dict " .. dict_name .. " is not defined; add `lua_shared_dict "
      .. dict_name .. " 1m;` to the http block", 3)
  end
  t = {
    opts = copy(o),
    dict = dict,
    label = label_of(o),
    k_tok = key .. "\0tok",       -- "expiry refresh_at usable_until|<Authorization value>"
    k_lock = key .. "\0lock",
    k_next = key .. "\0next",     -- no attempt before this time (backoff after a failure)
    k_fails = key .. "\0fails",   -- consecutive failures
    k_err = key .. "\0err",       -- "503 code" | "502 code" of the last failure
    k_gen = key .. "\0gen",       -- completed attempts (waiters notice a failure by it)
    k_refreshes = key .. "\0refreshes",
    k_attempts = key .. "\0attempts",
    wait = o.wait or DEFAULT_WAIT,
    backoff_max = o.backoff_max or DEFAULT_BACKOFF_MAX,
    lock_timeout = o.lock_timeout or DEFAULT_LOCK_TIMEOUT,
    raw = nil, tok = nil,         -- last value read from the dict and its parsed form
  }
  targets[id] = t
  return t
end

---------------------------------------------------------------------------------------------
-- The stored token

-- { expiry, refresh_at, usable_until, header } of the stored token, or nil
local function stored(t)
  local raw = t.dict:get(t.k_tok)
  if raw == nil then return nil end
  if raw == t.raw then return t.tok end
  local e, r, u, header = match(raw, "^(%S+) (%S+) (%S+)|(.*)$")
  local tok = e and { expiry = tonumber(e), refresh_at = tonumber(r), usable_until = tonumber(u), header = header }
  t.raw, t.tok = raw, tok
  return tok
end

local function now()
  ngx.update_time()
  return ngx.now()
end

-- Returns the stored form, or nil, err when the token is unusable.
local function store(t, tok)
  if type(tok) ~= "table" or type(tok.access_token) ~= "string" or tok.access_token == "" then
    return nil, errors.new("invalid_response", "the configuration returned no access token")
  end
  local ttype = tok.token_type
  if type(ttype) ~= "string" or ttype == "" then ttype = "Bearer" end
  -- normalise "bearer" (some IdPs) to the canonical scheme name
  if ttype:lower() == "bearer" then ttype = "Bearer" end
  local header = ttype .. " " .. tok.access_token
  if find(header, "[%z\1-\31\127]") then
    return nil, errors.new("invalid_response", "the access token contains control characters")
  end
  local at = now()
  local expiry, refresh_at, usable_until
  if type(tok.expiry) == "number" then
    expiry = tok.expiry
    local ttl = expiry - at
    if ttl <= 0 then
      return nil, errors.new("invalid_response", "the token endpoint returned a token that has already expired")
    end
    refresh_at = expiry - math.min(ttl / 2, MAX_STALE)
    usable_until = expiry - math.min(USE_MARGIN, ttl / 5)
  else
    expiry = 0                                   -- never expires (PAT); re-read occasionally
    refresh_at = at + NO_EXPIRY_RECHECK
    usable_until = at + 10 * 365 * 86400
  end
  local value = format("%.3f %.3f %.3f|%s", expiry, refresh_at, usable_until, header)
  local exptime = math.max(usable_until - at, 1) + 60
  if expiry == 0 then exptime = 0 end
  local ok, err = t.dict:set(t.k_tok, value, exptime)
  if not ok then
    return nil, errors.new("internal", "cannot store the token in lua_shared_dict: " .. tostring(err)
      .. " (make the dict larger)")
  end
  return stored(t)
end

---------------------------------------------------------------------------------------------
-- Refreshing

local function config_of(t)
  local cfg = t.cfg
  if cfg then return cfg end
  local o = t.opts
  local copts = o.config and copy(o.config) or {}
  if o.profile then copts.profile = o.profile end
  local err
  cfg, err = dbxauth.config(copts, o.ctx)
  if not cfg then return nil, err end
  t.cfg = cfg
  return cfg
end

-- One token from the configuration: one token request when its own cache holds nothing newer
-- than the shared token (it refreshes in the same window), none for a PAT.
local function fetch(t)
  local cfg, err = config_of(t)
  if not cfg then return nil, err end
  local o = t.opts
  if o.app or o.audience then
    return cfg:app_token { app = o.app, audience = o.audience, scopes = o.scopes }
  end
  return cfg:token()
end

local function backoff(t, fails)
  local d = math.min(2 ^ (fails - 1), t.backoff_max)
  return d * (0.5 + math.random() * 0.5)
end

local function log_failure(t, err, tok, delay)
  local left = tok and (tok.usable_until - now())
  ngx.log(ngx.ERR, "dbxauth: token refresh for ", t.label, " failed: [", tostring(err.code), "] ",
    tostring(err.message),
    left and left > 0 and format("; still serving the current token (usable for %.0f s)", left)
      or "; no valid token: requests get 503/502",
    format("; next attempt in %.1f s", delay))
end

-- Runs with the lock held (in a timer); always releases it.
local function refresh_locked(t)
  local dict = t.dict
  dict:incr(t.k_attempts, 1, 0)
  local before = stored(t)
  local ok, tok, err = pcall(fetch, t)
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
      cur, err = store(t, tok)
    end
  end
  if cur then
    dict:delete(t.k_fails)
    dict:delete(t.k_next)
    dict:delete(t.k_err)
    dict:incr(t.k_refreshes, 1, 0)
  else
    err = errors.is(err) and err or errors.new("internal", tostring(err))
    local fails = dict:incr(t.k_fails, 1, 0) or 1
    local delay = backoff(t, fails)
    dict:set(t.k_next, now() + delay, delay + 1)
    dict:set(t.k_err, (PERMANENT[err.code] and "502 " or "503 ") .. tostring(err.code))
    log_failure(t, err, before, delay)
  end
  dict:incr(t.k_gen, 1, 0)
  dict:delete(t.k_lock)
  return cur, err
end

local function in_backoff(t, at)
  local next_at = t.dict:get(t.k_next)
  return next_at ~= nil and at < next_at
end

-- Take the lock; true when this caller now owns the refresh.
local function lock(t)
  return t.dict:add(t.k_lock, ngx.worker.pid(), t.lock_timeout) and true or false
end

local function refresh_timer(premature, t)
  if premature then
    t.dict:delete(t.k_lock)
    return
  end
  refresh_locked(t)
end

-- Start a refresh in a timer unless one is running or the backoff says wait. Never yields.
local function refresh_async(t, at)
  if in_backoff(t, at) or not lock(t) then return false end
  local ok, err = ngx.timer.at(0, refresh_timer, t)
  if not ok then
    t.dict:delete(t.k_lock)
    ngx.log(ngx.ERR, "dbxauth: cannot start the token refresh timer: ", err)
    return false
  end
  return true
end

---------------------------------------------------------------------------------------------
-- Getting a usable token

local function failure_status(t)
  local e = t.dict:get(t.k_err)
  if not e then return 503, "unavailable" end
  local status, code = match(e, "^(%d+) (.*)$")
  return tonumber(status) or 503, code
end

-- The Authorization value | nil, status, code. Yields only when there is no usable token.
local function authorization(t)
  local tok = stored(t)
  local at = ngx.now()
  if tok and at < tok.usable_until then
    if at >= tok.refresh_at then refresh_async(t, at) end
    return tok.header
  end
  at = now()
  if in_backoff(t, at) then
    local status, code = failure_status(t)
    return nil, status, code
  end
  local gen = t.dict:get(t.k_gen)
  refresh_async(t, at)
  local deadline = at + t.wait
  local step = 0.005
  while true do
    ngx.sleep(step)
    if step < 0.05 then step = step * 2 end
    tok = stored(t)
    at = now()
    if tok and at < tok.usable_until then return tok.header end
    if t.dict:get(t.k_gen) ~= gen then
      -- an attempt finished without a usable token
      if in_backoff(t, at) then
        local status, code = failure_status(t)
        return nil, status, code
      end
      gen = t.dict:get(t.k_gen)
      refresh_async(t, at)
    end
    if at >= deadline then return nil, 503, "timeout" end
  end
end

---------------------------------------------------------------------------------------------
-- Public API

-- The Authorization header value for the options' token ("Bearer ...") | nil, err.
-- For content handlers that call Databricks themselves (rewrite/access/content/timer phases).
function _M.authorization(o)
  local t = target(o, "authorization")
  local header, status, code = authorization(t)
  if header then return header end
  return nil, errors.new(code == "timeout" and "timeout" or "unavailable",
    "no Databricks token available for " .. t.label .. " (" .. tostring(code) .. ")", { status = status })
end

local MESSAGES = {
  [502] = "The gateway could not authenticate to Databricks; see the gateway's error log.",
  [503] = "The gateway has no valid Databricks token right now; try again later.",
}

local function respond_error(status, code)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["Retry-After"] = status == 503 and "1" or nil
  ngx.print(cjson.encode {
    error_code = status == 503 and "TEMPORARILY_UNAVAILABLE" or "BAD_GATEWAY",
    message = MESSAGES[status] .. (code and (" (" .. code .. ")") or ""),
  })
  return ngx.exit(status)
end

-- access_by_lua*: replace the client's Authorization with the shared Databricks token, or
-- answer 502/503 JSON { error_code, message } and log why (no secrets).
function _M.access(o)
  local ok, t = pcall(target, o, "access")
  if not ok then
    ngx.log(ngx.ERR, "dbxauth: gateway misconfigured: ", t)
    ngx.req.clear_header("Authorization")
    return respond_error(502, "config")
  end
  local header, status, code = authorization(t)
  if not header then
    ngx.req.clear_header("Authorization")
    if code == "timeout" then
      ngx.log(ngx.WARN, "dbxauth: no token for ", t.label, " within ", t.wait, " s (refresh still running)")
    end
    return respond_error(status, code)
  end
  ngx.req.set_header("Authorization", header)
end

-- init_worker_by_lua*: keep the token fresh in the background (one timer chain per worker;
-- the lock makes one of them do each refresh).
function _M.init(o)
  local t = target(o, "init")
  if t.timer_started then return true end
  t.timer_started = true
  local tick
  tick = function(premature)
    if premature then return end
    local at = now()
    local tok = stored(t)
    if (not tok or at >= tok.refresh_at or at >= tok.usable_until) and not in_backoff(t, at) and lock(t) then
      refresh_locked(t)
      at, tok = now(), stored(t)
    end
    -- next check: when the backoff ends or the token becomes due, at least every second
    -- (while another worker holds the lock for a due token: every MIN_CHECK)
    local next_at = t.dict:get(t.k_next)
    local due
    if next_at and next_at > at then
      due = next_at
    else
      due = tok and tok.refresh_at or at
    end
    local delay = math.max(MIN_CHECK, math.min(due - at, CHECK_INTERVAL))
    local ok, err = ngx.timer.at(delay, tick)
    if not ok and err ~= "process exiting" then
      ngx.log(ngx.ERR, "dbxauth: cannot schedule the token refresh timer: ", err)
      t.timer_started = false
    end
  end
  local ok, err = ngx.timer.at(0, tick)
  if not ok then
    t.timer_started = false
    return nil, err
  end
  return true
end

-- State of the shared token, for health checks and tests. Never contains the token.
function _M.status(o)
  local t = target(o, "status")
  local d = t.dict
  local tok = stored(t)
  local at = now()
  return {
    valid = tok ~= nil and at < tok.usable_until,
    expiry = tok and tok.expiry ~= 0 and tok.expiry or nil,
    refresh_at = tok and tok.refresh_at,
    usable_until = tok and tok.usable_until,
    refreshes = d:get(t.k_refreshes) or 0,
    attempts = d:get(t.k_attempts) or 0,
    failures = d:get(t.k_fails) or 0,
    next_attempt = d:get(t.k_next),
    refreshing = d:get(t.k_lock) or false,   -- pid of the worker refreshing now
    last_error = d:get(t.k_err),
  }
end

return _M
