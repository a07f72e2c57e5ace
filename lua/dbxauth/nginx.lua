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
--   lock_lease = 3          seconds the refresh lock outlives a worker that dies holding it; the
--                           holder renews it (a timer every lease/3) while its refresh runs
--   lock_timeout = 130      longest a refresh may keep renewing the lock: longer than any token
--                           request (timeouts and retries included)
--   ctx = { ... }           passed to dbxauth.config (env, home, clock)
--
-- How the token lives:
--   * The shared dict holds one entry per key: expiry, the time to refresh, the time until which
--     it may be used, and the Authorization value. Every worker and every request reads it; no
--     request ever fetches a token itself.
--   * Refreshes run in timers, under a lock taken with dict:add(): exactly one token request per
--     refresh across all workers. The lock is a short lease (lock_lease) that its holder renews
--     while the refresh runs: a worker killed mid-refresh holds up the others for at most the
--     lease, and waiting requests and the other workers' timers take the refresh over.
--     gw.init runs a per-worker timer that refreshes when the token enters its refresh-ahead
--     window, the last min(TTL/2, 20 min) of its life (at least 40 s for tokens that live 80 s
--     or more), so requests never wait for the token endpoint.
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
local sharedtoken = require "dbxauth.sharedtoken"
local cjson = require "cjson.safe"

local ngx = ngx
local shared = ngx.shared
local tostring, type, pairs = tostring, type, pairs
local concat, format = table.concat, string.format

local _M = { VERSION = dbxauth.VERSION }

local DEFAULT_DICT = "dbxauth"
local DEFAULT_WAIT = 5
local DEFAULT_BACKOFF_MAX = 30
local DEFAULT_LOCK_TIMEOUT = 130
local DEFAULT_LOCK_LEASE = 3
local CHECK_INTERVAL = 1         -- background timer: longest sleep between checks
local MIN_CHECK = 0.05           -- ... and shortest

local OPTION_TYPES = {
  profile = "string", config = "table", app = "string", audience = "string", scopes = "table",
  dict = "string", key = "string", wait = "number", backoff_max = "number", lock_timeout = "number",
  lock_lease = "number",
  ctx = "table",
}

---------------------------------------------------------------------------------------------
-- Targets: one per (worker, key), holding the options, the shared token and the lazily
-- created configuration.

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

local function now()
  ngx.update_time()
  return ngx.now()
end

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
  local tok
  tok, err = cfg:token()
  if not tok then return nil, err end
  -- Azure credentials send more than Authorization (the same cached tokens: no new request)
  local h = cfg:authenticate()
  if h and next(h, next(h)) ~= nil then
    local extra = {}
    for k, v in pairs(h) do
      if k ~= "Authorization" then extra[#extra + 1] = k .. ": " .. v end
    end
    table.sort(extra)
    tok.extra_headers = extra
  end
  return tok
end

local function log_failure(t, err, entry, delay)
  local left = entry and (entry.usable_until - now())
  ngx.log(ngx.ERR, "dbxauth: token refresh for ", t.label, " failed: [", tostring(err.code), "] ",
    tostring(err.message),
    left and left > 0 and format("; still serving the current token (usable for %.0f s)", left)
      or "; no valid token: requests get 503/502",
    format("; next attempt in %.1f s", delay))
end

-- Renews the refresh lock's lease (sharedtoken); a worker that is exiting stops renewing and
-- its lease runs out.
local function lease_timer(delay, fn)
  return ngx.timer.at(delay, function(premature)
    if not premature then fn() end
  end)
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
  t = { opts = copy(o), label = label_of(o), wait = o.wait or DEFAULT_WAIT }
  t.shared = sharedtoken.new {
    dict = dict, key = key, now = now, owner = ngx.worker.pid(),
    fetch = function() return fetch(t) end,
    lock_timeout = o.lock_timeout or DEFAULT_LOCK_TIMEOUT,
    lock_lease = o.lock_lease or DEFAULT_LOCK_LEASE,
    timer = lease_timer,
    backoff_max = o.backoff_max or DEFAULT_BACKOFF_MAX,
    log = function(err, entry, delay) log_failure(t, err, entry, delay) end,
  }
  targets[id] = t
  return t
end

---------------------------------------------------------------------------------------------
-- Refreshing

local function refresh_timer(premature, st)
  if premature then
    st:unlock()
    return
  end
  st:refresh_locked()
end

-- Start a refresh in a timer unless one is running or the backoff says wait. Never yields.
local function refresh_async(st, at)
  if st:in_backoff(at) or not st:lock() then return false end
  local ok, err = ngx.timer.at(0, refresh_timer, st)
  if not ok then
    st:unlock()
    ngx.log(ngx.ERR, "dbxauth: cannot start the token refresh timer: ", err)
    return false
  end
  return true
end

---------------------------------------------------------------------------------------------
-- Getting a usable token

-- The Authorization value (and the entry's other headers) | nil, status, code. Yields only when
-- there is no usable token.
local function authorization(t)
  local st = t.shared
  local entry = st:get()
  local at = ngx.now()
  if st:usable(entry, at) then
    if at >= entry.refresh_at then refresh_async(st, at) end
    return entry.header, entry.extra
  end
  at = now()
  if st:in_backoff(at) then return nil, st:failure() end
  local gen = st.dict:get(st.k_gen)
  refresh_async(st, at)
  local deadline = at + t.wait
  local step = 0.005
  while true do
    ngx.sleep(step)
    if step < 0.05 then step = step * 2 end
    entry = st:get()
    at = now()
    if st:usable(entry, at) then return entry.header, entry.extra end
    if st.dict:get(st.k_gen) ~= gen then
      -- an attempt finished without a usable token
      if st:in_backoff(at) then return nil, st:failure() end
      gen = st.dict:get(st.k_gen)
    end
    -- the lock is free again (an attempt ended, or its holder died and the lease ran out): go on
    refresh_async(st, at)
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

-- Refresh now if the shared token is due (lua-resty-lock's recipe, in this light thread):
-- { valid, expiry, ... } as status() | nil, err. Another worker's refresh in flight: not waited for.
function _M.refresh(o)
  local t = target(o, "refresh")
  local _, err = t.shared:refresh()
  if err then return nil, err end
  return t.shared:status()
end

local CREDENTIAL_HEADERS = { "X-Databricks-Azure-SP-Management-Token", "X-Databricks-Azure-Workspace-Resource-Id",
  "X-Databricks-GCP-SA-Access-Token" }

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

-- access_by_lua*: replace the client's Authorization with the shared Databricks token (and the
-- Azure credential headers with the credential's), or answer 502/503 JSON { error_code, message }
-- and log why (no secrets).
function _M.access(o)
  local ok, t = pcall(target, o, "access")
  if not ok then
    ngx.log(ngx.ERR, "dbxauth: gateway misconfigured: ", t)
    ngx.req.clear_header("Authorization")
    return respond_error(502, "config")
  end
  -- Credential headers are the gateway's alone: a client's own never go upstream.
  for _, name in ipairs(CREDENTIAL_HEADERS) do ngx.req.clear_header(name) end
  -- on success the second result is the credential's other headers (or nil), else the status
  local header, extra, code = authorization(t)
  if not header then
    ngx.req.clear_header("Authorization")
    if code == "timeout" then
      ngx.log(ngx.WARN, "dbxauth: no token for ", t.label, " within ", t.wait, " s (refresh still running)")
    end
    return respond_error(extra, code)
  end
  ngx.req.set_header("Authorization", header)
  if extra then
    for _, h in ipairs(extra) do ngx.req.set_header(h[1], h[2]) end
  end
end

-- init_worker_by_lua*: keep the token fresh in the background (one timer chain per worker;
-- the lock makes one of them do each refresh, and the second look under the lock makes the
-- others use its token).
function _M.init(o)
  local t = target(o, "init")
  if t.timer_started then return true end
  t.timer_started = true
  local st = t.shared
  local tick
  tick = function(premature)
    if premature then return end
    local at = now()
    local entry = st:get()
    if st:due(entry, at) and not st:in_backoff(at) and st:lock() then
      st:refresh_locked()
      at, entry = now(), st:get()
    end
    -- next check: when the backoff ends or the token becomes due, at least every second
    -- (while another worker holds the lock for a due token: every MIN_CHECK)
    local next_at = st.dict:get(st.k_next)
    local due
    if next_at and next_at > at then
      due = next_at
    else
      due = entry and entry.refresh_at or at
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
  return target(o, "status").shared:status()
end

return _M
