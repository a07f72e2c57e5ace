-- dbxauth: Databricks authentication for Lua. This file is the facade: it shows the whole API
-- of the module and of the configuration object a user holds, checks arguments (raising for
-- programming errors, at the caller's level), and hands each call to the module that owns it.
--
--   local dbxauth = require "dbxauth"
--   local cfg, err = dbxauth.config{ profile = "dev" }        -- explicit > env > ~/.databrickscfg
--   local headers, err = cfg:authenticate()                   -- { Authorization = "Bearer ..." }
--   local res, err = cfg:request{ path = "/api/2.0/preview/scim/v2/Me" }
--
-- Attributes are resolved and validated when the configuration is created (config.lua);
-- credentials are resolved on first use and kept (chain.lua, decision D1). Everything a
-- configuration holds at run time lives in its session (session.lua); the object the user
-- holds is read-only and has no fields of its own.
local apps = require "dbxauth.apps"
local batch = require "dbxauth.batch"
local cache = require "dbxauth.cache"
local chain = require "dbxauth.chain"
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local request = require "dbxauth.request"
local session = require "dbxauth.session"
local u2m = require "dbxauth.u2m"

local _M = { VERSION = "0.1.0" }

-- Options that are not Databricks attributes.
local EXTRA_OPTIONS = { transport = true }

local sessions = setmetatable({}, { __mode = "k" })   -- config object -> its session
local methods = {}

-- Each configuration object gets its own metatable, whose __index is a table: the methods,
-- then (through that table's own __index) the attribute values. Method lookups are then plain
-- table reads, with no function call in between (a cached authenticate() is a few hundred
-- machine instructions; a lookup function would add a third to that).
local function read_only()
  error("dbxauth.config objects are read-only; create a new one with dbxauth.config{...}", 2)
end
-- Attribute values with secrets masked.
local function describe(self)
  return "dbxauth.config(" .. config.describe_values(sessions[self].state) .. ")"
end

local function new_object(s)
  local view = setmetatable({}, { __index = s.values })
  for k, m in pairs(methods) do view[k] = m end
  local cfg = setmetatable({}, { __name = "dbxauth.config", __index = view, __newindex = read_only,
                                 __tostring = describe })
  sessions[cfg] = s
  return cfg
end

local function argerror(n, fname, msg)
  error("bad argument #" .. n .. " to '" .. fname .. "' (" .. msg .. ")", 3)
end

-- nil, or why v is not a table (nil allowed when optional)
local function not_table(v, optional)
  if (v == nil and optional) or type(v) == "table" then return nil end
  return "table expected, got " .. type(v)
end

-- nil, or why p is not a table with these string fields
local function not_fields(p, fields)
  local ok = type(p) == "table"
  for _, f in ipairs(fields) do ok = ok and type(p[f]) == "string" end
  if ok then return nil end
  return "table with " .. table.concat(fields, ", ") .. " expected"
end

local function make_getenv(ctx)
  if ctx.getenv then return ctx.getenv end
  if ctx.env then
    local env = ctx.env
    return function(name) return env[name] end
  end
  return os.getenv
end

---------------------------------------------------------------------------------------------
-- The module

-- opts: attributes (config.lua's table) plus `transport`. ctx (optional, for embedding and
-- tests): { env = { NAME = value } | getenv = fn, home = dir, clock = fn -> seconds,
-- logger = fn(entry) }; by default the process environment, $HOME, the real clock and no log.
-- The logger receives an entry for every request and response, secrets redacted (httplog.lua).
function _M.config(opts, ctx)
  if opts == nil then opts = {} end
  local bad = not_table(opts) or config.check_options(opts, EXTRA_OPTIONS)
  if bad then argerror(1, "config", bad) end
  bad = not_table(ctx, true)
  if not bad and ctx and ctx.logger ~= nil and type(ctx.logger) ~= "function" then
    bad = "logger must be a function, got " .. type(ctx.logger)
  end
  if bad then argerror(2, "config", bad) end
  ctx = ctx or {}
  local attrs = {}
  for k, v in pairs(opts) do
    if not EXTRA_OPTIONS[k] then attrs[k] = v end
  end
  local getenv = make_getenv(ctx)
  local home = ctx.home or getenv("HOME")
  local state, err = config.resolve(attrs, { getenv = getenv, home = home })
  if not state then return nil, err end
  return new_object(session.new(state, { getenv = getenv, home = home, clock = ctx.clock,
                                          transport = opts.transport, version = _M.VERSION,
                                          logger = ctx.logger,
                                          environ = not ctx.getenv and ctx.env or nil }))
end

-- A PKCE verifier and its S256 challenge: { verifier, challenge } (seed 004).
_M.pkce = u2m.pkce

-- Forget what every configuration in this process shares: discovery results, CLI versions.
_M.clear_caches = cache.clear_shared
_M.clear_discovery_cache = cache.clear_shared   -- the 0.1.0 name

_M.errors = errors

---------------------------------------------------------------------------------------------
-- Attributes

-- Raw attribute value by name (also for names that are methods, like `token`).
function methods:get(name)
  return sessions[self].values[name]
end

function methods:is_account()
  return sessions[self]:is_account()
end

-- Every set attribute with where it came from, secrets masked:
-- { config_file, attributes = { { name, value, source, env }, ... } }
function methods:describe()
  return config.describe(sessions[self].state)
end

---------------------------------------------------------------------------------------------
-- Credentials (chain.lua)

-- { Authorization = "<type> <token>", ... } | nil, err (Azure credentials add their headers).
-- A copy: what the caller does to it never reaches the credentials' own table.
function methods:authenticate()
  local s = sessions[self]
  local creds = s.creds
  if not creds then
    local err
    creds, err = s:credentials()
    if not creds then return nil, err end
  end
  local h, err = creds.headers()
  if not h then return nil, err end
  -- Single-header credentials hand out a watched table (tokensource.credentials: a change makes
  -- the next call build a fresh one); the Azure and Google ones a table of their own: a copy.
  if creds.authorization then return h end
  local out = {}
  for k, v in pairs(h) do out[k] = v end
  return out
end

-- { access_token, token_type, expiry, scopes } | nil, err. opts.force_refresh: a new token
-- now (OAuth credentials), as `databricks auth token --force-refresh` does.
function methods:token(opts)
  local bad = not_table(opts, true)
  if bad then argerror(1, "token", bad) end
  return chain.token(sessions[self], opts)
end

-- Forget every cached token of this configuration (its own and the exchanged ones), e.g.
-- after a server rejected one; the next call fetches anew.
function methods:invalidate()
  sessions[self]:invalidate()
end

---------------------------------------------------------------------------------------------
-- REST calls (request.lua)

-- r = { method, path, query, headers, json | body, timeout, retry } -> response | nil, err
function methods:request(r)
  local bad, json = request.check(r)
  if bad then argerror(1, "request", bad) end
  return request.api(sessions[self], r, json)
end

---------------------------------------------------------------------------------------------
-- Databricks Apps (apps.lua)

function methods:app(name)
  if type(name) ~= "string" then argerror(1, "app", "string expected, got " .. type(name)) end
  return apps.app(sessions[self], name)
end

-- p = { audience, scopes }
function methods:exchange(p)
  local bad = not_table(p, true)
  if bad then argerror(1, "exchange", bad) end
  if p and p.audience ~= nil and type(p.audience) ~= "string" then
    argerror(1, "exchange", "audience must be a string")
  end
  return apps.exchange(sessions[self], p)
end

-- p = { app | audience, scopes }
function methods:app_token(p)
  local bad = not_table(p)
  if bad then argerror(1, "app_token", bad) end
  for _, k in ipairs { "app", "audience" } do
    if p[k] ~= nil and type(p[k]) ~= "string" then argerror(1, "app_token", k .. " must be a string") end
  end
  return apps.app_token(sessions[self], p)
end

-- r = a request table plus app = <name> | url = <https origin>, scopes, audience
function methods:app_request(r)
  local bad, json = request.check(r, apps.EXTRA_KEYS)
  if bad then argerror(1, "app_request", bad) end
  if (r.app == nil) == (r.url == nil) then
    argerror(1, "app_request", "give app = <name> or url = <https url>")
  end
  return apps.app_request(sessions[self], r, json)
end

---------------------------------------------------------------------------------------------
-- Concurrent calls (batch.lua)

-- list = { r, ... } as cfg:request takes them; opts = { concurrency = 8, timeout = seconds }
-- -> responses, errs, failed (responses[i] | false, errs[i] | false, in the order of list)
function methods:request_all(list, opts)
  local bad, n, jsons = batch.check(list, opts)
  if bad then argerror(n, "request_all", bad) end
  return batch.request_all(sessions[self], list, opts, jsons)
end

-- The same for cfg:app_request's tables (app = <name> | url = <https url>, scopes, audience)
function methods:app_request_all(list, opts)
  local bad, n, jsons = batch.check(list, opts, "app")
  if bad then argerror(n, "app_request_all", bad) end
  return batch.app_request_all(sessions[self], list, opts, jsons)
end

---------------------------------------------------------------------------------------------
-- User login (u2m.lua)

-- p = { redirect_uri, challenge, scopes, state } -> url, state | nil, err
function methods:authorize_url(p)
  local bad = not_fields(p, { "redirect_uri", "challenge" })
  if bad then argerror(1, "authorize_url", bad) end
  return u2m.authorize_url(sessions[self].ctx, p)
end

-- p = { code, verifier, redirect_uri } -> token | nil, err
function methods:exchange_code(p)
  local bad = not_fields(p, { "code", "verifier", "redirect_uri" })
  if bad then argerror(1, "exchange_code", bad) end
  return u2m.exchange_code(sessions[self].ctx, p)
end

-- p = { refresh_token } -> token | nil, err
function methods:refresh(p)
  local bad = not_fields(p, { "refresh_token" })
  if bad then argerror(1, "refresh", bad) end
  return u2m.refresh(sessions[self].ctx, p.refresh_token)
end

-- The browser login: opts = { timeout (seconds), open = fn(url), print_url, scopes, cache_keys,
-- stderr = fn(text), read = fn() -> pasted line (headless: no listener) } -> token (also
-- written to the CLI's token cache) | nil, err
function methods:login(opts)
  local bad = not_table(opts, true)
  local t = opts and opts.timeout
  if not bad and t ~= nil and not (type(t) == "number" and t > 0 and t < math.huge) then
    bad = "timeout must be a positive number of seconds"
  end
  if not bad and opts and opts.read ~= nil and type(opts.read) ~= "function" then
    bad = "read must be a function"
  end
  if bad then argerror(1, "login", bad) end
  local s = sessions[self]
  local ok, err = s:prepare()
  if not ok then return nil, err end
  return u2m.login(s.ctx, opts)
end

-- The cached login of this configuration (refreshed when due), never a browser:
-- token | nil, err | false (no cache entry). opts = { force_refresh }
function methods:cached_token(opts)
  local bad = not_table(opts, true)
  if bad then argerror(1, "cached_token", bad) end
  local s = sessions[self]
  local ok, err = s:prepare()
  if not ok then return nil, err end
  return u2m.cached_token(s.ctx, opts)
end

-- The token-cache keys this configuration reads, most specific first.
function methods:cache_keys()
  return u2m.cache_keys(sessions[self].ctx)
end

return _M
