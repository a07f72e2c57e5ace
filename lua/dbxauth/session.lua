-- A session is what one configuration has and knows at run time, behind the read-only object
-- the user holds: the resolved attributes, the environment it was created in, its clock and
-- transport, and every piece of per-configuration state, each owned by one module:
--
--   s.creds      the resolved credentials             (chain.lua)
--   s.metadata   host metadata, fetched once          (discovery.lua, through ensure_metadata)
--   s.apps       app lookups, 60 s                    (apps.lua)
--   s.exchanges  exchanged-token sources by audience  (apps.lua)
--   s.app_calls  what app_request{ app = } reuses       (apps.lua)
--   s.urls, s.plain_headers, s.workspace_header  kept per path / Authorization  (request.lua)
--   s.ctx        the provider context                 (context.lua)
--
-- Nothing else is ever written onto a session after it is created, and nothing is written onto
-- the user's object at all. Modules reach the network only through send_once (one attempt) and
-- token_request (the token retry policy), so the User-Agent, timeouts and retries have one home.
local attributes = require "dbxauth.attributes"
local cache = require "dbxauth.cache"
local config = require "dbxauth.config"
local discovery = require "dbxauth.discovery"
local errors = require "dbxauth.errors"
local http = require "dbxauth.http"
local oauth = require "dbxauth.oauth"
local redact = require "dbxauth.redact"
local urls = require "dbxauth.url"
local useragent = require "dbxauth.useragent"

local _M = {}

local APP_TTL = 60
local DEFAULT_TIMEOUT = 60
local DEFAULT_RETRY_BUDGET = 300
local TOKEN_RETRY_BUDGET = 60

local Session = {}
Session.__index = Session
Session.__name = "dbxauth.session"
Session.__tostring = function() return "dbxauth.session" end

-- A name for the TLS world a transport lives in: discovery answers are shared only within one.
local scope_ids = setmetatable({}, { __mode = "k" })
local next_scope = 0

local function transport_scope(t)
  local id = scope_ids[t]
  if not id then
    next_scope = next_scope + 1
    id = "transport " .. next_scope
    scope_ids[t] = id
  end
  return id
end

-- state: config.resolve's result. env = { getenv, environ?, home, clock, transport, version, logger }
function _M.new(state, env)
  local v = state.values
  local s = setmetatable({
    state = state,
    values = v,
    getenv = env.getenv,
    environ = env.environ,   -- the replacement environment table, when one was given
    home = env.home,
    clock = env.clock,
    version = env.version,
    transport = env.transport,
    logger = env.logger,
    creds = nil, trying = nil, ua = nil,
    metadata = nil, metadata_done = false, host_type = nil, account = nil,
    policies = { api = {}, token = {} },
    -- request.lua's: base .. path by base and path; the headers of plain requests
    urls = { n = 0 }, plain_headers = { n = 0 }, workspace_header = nil,
    api_timeout = v.http_timeout_seconds or DEFAULT_TIMEOUT,   -- the attribute never changes
    apps = cache.new(APP_TTL),
    exchanges = {},
    app_calls = { n = 0 },
  }, Session)
  if env.transport then
    s.scope = transport_scope(env.transport)
    if env.logger then s.transport = require("dbxauth.httplog").wrap(env.transport, s, env.logger) end
  else
    s.scope = table.concat({ "ca=" .. tostring(v.ca_file or env.getenv("SSL_CERT_FILE") or ""),
      "verify=" .. tostring(not v.skip_verify), "max=" .. tostring(v.max_response_bytes or "") }, " ")
  end
  s.discovery_io = {
    scope = s.scope,
    send = function(req) return s:send_once(req) end,
    now = function() return s:now() end,
  }
  s.ctx = require("dbxauth.context").new(s)
  return s
end

function Session:get_transport()
  local t = self.transport
  if t then return t end
  local v = self.values
  t = require("dbxauth.transport").default {
    ca_file = v.ca_file or self.getenv("SSL_CERT_FILE"),
    skip_verify = v.skip_verify,
    max_body = v.max_response_bytes,
  }
  -- The request log (httplog.lua) wraps the transport: without a logger, requests pay nothing.
  if self.logger then t = require("dbxauth.httplog").wrap(t, self, self.logger) end
  self.transport = t
  return t
end

function Session:now()
  if self.clock then return self.clock() end
  local t = self.transport or self:get_transport()
  local f = t.now_function      -- the same clock as t:now(), one call less (transport/curl.lua)
  if f then return f() end
  return t:now()
end

-- Kept: it changes only when host metadata arrives (ensure_metadata forgets it then).
function Session:is_account()
  local a = self.account
  if a == nil then
    a = config.host_type(self.state, self.host_type) == "account"
    self.account = a
  end
  return a
end

function Session:scopes()
  return config.scopes(self.state)
end

function Session:timeout(override)
  return override or self.api_timeout
end

-- { kind = "api"|"token", budget, now } for http.send
-- One table per (kind, retry): the attributes it comes from never change.
function Session:retry_policy(kind, retry)
  local slot = retry == nil and 1 or (retry and 2 or 3)
  local by_kind = self.policies[kind]
  local p = by_kind[slot]
  if p then return p end
  local budget = self.values.retry_timeout_seconds or DEFAULT_RETRY_BUDGET
  if kind == "token" then budget = math.min(budget, TOKEN_RETRY_BUDGET) end
  p = { kind = kind, retry = retry, budget = budget, now = self.clock }
  by_kind[slot] = p
  return p
end

function Session:user_agent()
  local ua = self.ua
  if ua then return ua end
  ua = useragent.build(self.version, self.values.auth_type or self.trying, self.getenv)
  -- Kept only once the auth type is known; it is part of the string.
  if self.creds then self.ua = ua end
  return ua
end

-- One attempt, no retries (metadata and discovery are best effort or fall back).
function Session:send_once(req)
  req.timeout = req.timeout or self:timeout()
  req.headers = req.headers or {}
  req.headers["User-Agent"] = req.headers["User-Agent"] or self:user_agent()
  return self:get_transport():send(req)
end

-- A request with the retry policy of its kind; the response whatever its status | nil, err.
function Session:send(req, kind, retry)
  req.timeout = req.timeout or self:timeout()
  req.headers["User-Agent"] = req.headers["User-Agent"] or self:user_agent()
  return http.send(self:get_transport(), req, self:retry_policy(kind, retry))
end

local API_STATUS = http.API_STATUS

-- An API request (http_timeout_seconds and the User-Agent already in it): its first outcome is
-- nearly always final, and then no retry policy is looked at; otherwise http.send's retries.
function Session:send_api(req, retry)
  local t = self.transport or self:get_transport()
  local clock = t.now_function
  local start
  if clock then start = clock() else start = t:now() end
  local res, err = t:send(req)
  if res and not API_STATUS[res.status] then
    res.attempts = 1
    return res
  end
  return http.resume(t, req, self:retry_policy("api", retry), start, res, err)
end

-- Every secret value of the configuration (sensitive attributes, the credentials providers read
-- from the environment), plus those `req` carries (redact.lua).
function Session:secrets(req)
  local list = {}
  for _, a in ipairs(attributes.LIST) do
    local v = a.sensitive and self.values[a.name]
    if type(v) == "string" then list[#list + 1] = v end
  end
  for _, name in ipairs(require("dbxauth.chain").SECRET_ENV) do
    local v = self.getenv(name)
    if type(v) == "string" and v ~= "" then list[#list + 1] = v end
  end
  if req then redact.of_request(req, list) end
  return list
end

-- err with every secret the configuration holds (and `req` carried) masked.
function Session:redact(err, req)
  return redact.error(err, self:secrets(req))
end

-- POST to a token endpoint with the token retry policy, then parse the response (with `parse`,
-- same signature as oauth.parse_token_response, for endpoints of another shape: Entra ID, IMDS).
-- The token endpoint's error text is outside text: it may echo the code, verifier or secret.
function Session:token_request(req, what, parse)
  local res, err = self:send(req, "token")
  if not res then return nil, err end
  local tok, perr = (parse or oauth.parse_token_response)(res, self:now(), what)
  if tok then return tok end
  if res.gave_up then perr.message = perr.message .. " (" .. res.gave_up .. ")" end
  return nil, self:redact(perr, req)
end

-- The host, or nil, err when it is malformed or plain HTTP off loopback.
function Session:check_host()
  local st = self.state
  local host = st.values.host
  if st.host_error then
    return nil, errors.new("config", st.host_error,
      { hint = "host must be a URL like https://<workspace>.cloud.databricks.com" })
  end
  if host and urls.plain_http_off_loopback(host) then
    return nil, errors.new("config", "host must use https:// (got " .. host .. ")", {
      hint = "plain HTTP would send credentials unencrypted; use https://" .. host:sub(8),
    })
  end
  return host
end

-- Once per session, before credentials are resolved: host metadata fills unset attributes.
function Session:ensure_metadata()
  if self.metadata_done then return true end
  local host = self.values.host
  if not host then return true end
  local md, err = discovery.metadata(self.discovery_io, host)
  if err then return nil, err end
  self.metadata_done = true
  if not md then return true end
  self.metadata = md
  discovery.apply(self.state, md)
  if md.host_type then self.host_type, self.account = md.host_type:lower(), nil end
  return true
end

-- The check every flow makes before its first request.
function Session:prepare()
  local _, err = self:check_host()
  if err then return nil, err end
  return self:ensure_metadata()
end

-- An unset host found by a provider (Azure: the workspace of azure_workspace_resource_id), then
-- checked and prepared like a configured one. true | nil, err
function Session:set_host(raw)
  local canonical, why = require("dbxauth.host").normalize(raw)
  if not canonical then return nil, errors.new("config", "resolve host: " .. tostring(why)) end
  local st = self.state
  st.values.host, st.sources.host = canonical, "resolved"
  self.metadata_done, self.account, self.ua = false, nil, nil
  return self:prepare()
end

-- nil, or the error for an explicit discovery_url we must not fetch: its endpoints receive the
-- client secret, so it must be https (plain http only on loopback), without user:password@.
local function discovery_url_error(u)
  local p, why = urls.parse(u)
  if not p then
    return errors.new("config", "discovery_url is not a usable URL: " .. why,
      { hint = "discovery_url is the OIDC discovery document, like https://<host>/oidc/.well-known/"
        .. "oauth-authorization-server" })
  end
  if urls.plain_http_off_loopback(u) then
    return errors.new("config", "discovery_url must use https:// (got http://" .. p.authority .. ")",
      { hint = "plain HTTP would send the client secret unencrypted; use https://" })
  end
end

function Session:endpoints()
  local st = self.state
  local v = st.values
  local explicit = st.sources.discovery_url ~= "metadata" and v.discovery_url or nil
  if explicit then
    local bad = discovery_url_error(explicit)
    if bad then return nil, bad end
  end
  return discovery.endpoints(self.discovery_io, {
    host = v.host,
    account_id = v.account_id,
    is_account = self:is_account(),
    discovery_url = explicit,
    metadata = self.metadata,
  })
end

-- The credentials, resolved on first use and kept (decision D1).
function Session:credentials()
  local creds = self.creds
  if creds then return creds end
  return require("dbxauth.chain").resolve(self)
end

-- Forget every cached token (its own and the exchanged ones); the next call fetches anew.
function Session:invalidate()
  local creds = self.creds
  if creds and creds.source then creds.source:invalidate() end
  for _, source in pairs(self.exchanges) do source:invalidate() end
end

-- "message. Config: ... Env: ..." as a config error (or fields.code).
function Session:config_error(message, fields)
  return errors.new((fields and fields.code) or "config", config.with_suffix(message, self.state), fields)
end

return _M
