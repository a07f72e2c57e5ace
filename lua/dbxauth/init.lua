-- dbxauth: Databricks authentication for Lua.
--
--   local dbxauth = require "dbxauth"
--   local cfg, err = dbxauth.config{ profile = "dev" }        -- explicit > env > ~/.databrickscfg
--   local headers, err = cfg:authenticate()                   -- { Authorization = "Bearer ..." }
--   local res, err = cfg:request{ path = "/api/2.0/preview/scim/v2/Me" }
--
-- Attributes are resolved and validated when the configuration is created; credentials are
-- resolved on first use and memoised (decision D1).
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local providers = require "dbxauth.providers"
local discovery = require "dbxauth.discovery"
local oauth = require "dbxauth.oauth"
local http = require "dbxauth.http"
local apierror = require "dbxauth.apierror"
local useragent = require "dbxauth.useragent"
local cjson = require "cjson.safe"

local _M = { VERSION = "0.1.0" }

local DOCS = "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication"
local NO_CREDENTIALS = "default auth: cannot configure default credentials, please check " .. DOCS
  .. " to configure credentials for your preferred authentication method"

-- Options that are not Databricks attributes.
local EXTRA_OPTIONS = { transport = true }

local Config = {}
local methods = {}

Config.__name = "dbxauth.config"
Config.__index = function(self, k)
  local m = methods[k]
  if m ~= nil then return m end
  return rawget(self, "_state").values[k]
end
Config.__newindex = function()
  error("dbxauth.config objects are read-only; create a new one with dbxauth.config{...}", 2)
end

---------------------------------------------------------------------------------------------
-- Construction

local function make_getenv(ctx)
  if ctx.getenv then return ctx.getenv end
  if ctx.env then
    local env = ctx.env
    return function(name) return env[name] end
  end
  return os.getenv
end

-- ctx (optional, for embedding and tests): { env = { NAME = value } | getenv = fn, home = dir,
-- clock = fn -> seconds }. By default the process environment, $HOME and the real clock.
function _M.config(opts, ctx)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'config' (table expected, got " .. type(opts) .. ")", 2)
  end
  if ctx ~= nil and type(ctx) ~= "table" then
    error("bad argument #2 to 'config' (table expected, got " .. type(ctx) .. ")", 2)
  end
  ctx = ctx or {}
  local msg = config.check_options(opts, EXTRA_OPTIONS)
  if msg then error("bad argument #1 to 'config' (" .. msg .. ")", 2) end
  local attrs = {}
  for k, v in pairs(opts) do
    if not EXTRA_OPTIONS[k] then attrs[k] = v end
  end
  local getenv = make_getenv(ctx)
  local state, err = config.resolve(attrs, { getenv = getenv, home = ctx.home or getenv("HOME") })
  if not state then return nil, err end
  return setmetatable({
    _state = state,
    _getenv = getenv,
    _clock = ctx.clock,
    _home = ctx.home or getenv("HOME"),
    _transport = opts.transport,
    _creds = nil,
    _metadata_done = false,
  }, Config)
end

-- Raw attribute value by name (also for names that are methods, like `token`).
function methods:get(name)
  return self._state.values[name]
end

function methods:is_account()
  return config.host_type(self._state, self._host_type) == "account"
end

function methods:_now()
  if self._clock then return self._clock() end
  return self:_get_transport():now()
end

function methods:_scopes()
  return config.scopes(self._state)
end

function methods:_get_transport()
  local t = self._transport
  if t then return t end
  local v = self._state.values
  t = require("dbxauth.transport").default {
    ca_file = v.ca_file or self._getenv("SSL_CERT_FILE"),
    skip_verify = v.skip_verify,
    max_body = v.max_response_bytes,
  }
  rawset(self, "_transport", t)
  return t
end

---------------------------------------------------------------------------------------------
-- Sending

function methods:_timeout(override)
  return override or self._state.values.http_timeout_seconds or 60
end

function methods:_retry_budget(kind)
  local budget = self._state.values.retry_timeout_seconds or 300
  if kind == "token" then return math.min(budget, 60) end
  return budget
end

-- One attempt, no retries (metadata and discovery are best effort or fall back).
function methods:_send_once(req)
  req.timeout = req.timeout or self:_timeout()
  req.headers = req.headers or {}
  req.headers["User-Agent"] = req.headers["User-Agent"] or self:_user_agent()
  return self:_get_transport():send(req)
end

function methods:_user_agent()
  local ua = rawget(self, "_ua")
  if ua then return ua end
  ua = useragent.build(_M.VERSION, self._state.values.auth_type or self._trying, self._getenv)
  -- Cache only once the auth type is known; it is part of the string.
  if self._creds then rawset(self, "_ua", ua) end
  return ua
end

-- POST to a token endpoint with the token retry policy, then parse the response.
function methods:_token_call(req, what)
  req.timeout = self:_timeout()
  req.headers["User-Agent"] = self:_user_agent()
  local res, err = http.send(self:_get_transport(), req, { kind = "token", budget = self:_retry_budget("token") })
  if not res then return nil, err end
  local tok, perr = oauth.parse_token_response(res, self:_now(), what)
  if not tok and res.gave_up then perr.message = perr.message .. " (" .. res.gave_up .. ")" end
  return tok, perr
end

---------------------------------------------------------------------------------------------
-- Credentials

local function insecure_host(host)
  local h = host:match("^http://([^/]+)")
  if not h then return false end
  h = h:gsub(":%d+$", "")
  return not (h == "localhost" or h == "127.0.0.1" or h == "[::1]")
end

function methods:_host()
  local st = self._state
  local host = st.values.host
  if st.host_error then
    return nil, errors.new("config", st.host_error,
      { hint = "host must be a URL like https://<workspace>.cloud.databricks.com" })
  end
  if host and insecure_host(host) then
    return nil, errors.new("config", "host must use https:// (got " .. host .. ")", {
      hint = "plain HTTP would send credentials unencrypted; use https://" .. host:sub(8),
    })
  end
  return host
end

-- Host metadata fills only attributes the user left unset (notes §5.1).
local function apply_metadata(state, md)
  local v, src = state.values, state.sources
  local function fill(name, value)
    if value ~= nil and v[name] == nil then v[name], src[name] = value, "metadata" end
  end
  fill("account_id", md.account_id)
  fill("workspace_id", md.workspace_id)
  fill("cloud", md.cloud)
  local root = oauth.oidc_root(md, v.account_id)
  if root then fill("discovery_url", root .. "/.well-known/oauth-authorization-server") end
  if md.default_audience then
    fill("token_audience", md.default_audience)
  elseif not md.workspace_id then
    fill("token_audience", v.account_id)
  end
end

-- Once per config, before credentials are resolved.
function methods:_ensure_metadata()
  if self._metadata_done then return true end
  local host = self._state.values.host
  if not host then return true end
  local md, err = discovery.metadata(host, function(req) return self:_send_once(req) end,
    function() return self:_now() end)
  if err then return nil, err end
  rawset(self, "_metadata_done", true)
  if not md then return true end
  rawset(self, "_metadata", md)
  apply_metadata(self._state, md)
  if md.host_type then rawset(self, "_host_type", md.host_type:lower()) end
  return true
end

function methods:_oidc_endpoints()
  local st = self._state
  local v = st.values
  local explicit = st.sources.discovery_url ~= "metadata" and v.discovery_url or nil
  return discovery.endpoints({
    host = v.host,
    account_id = v.account_id,
    is_account = self:is_account(),
    discovery_url = explicit,
    metadata = self._metadata,
  }, function(req) return self:_send_once(req) end, function() return self:_now() end)
end

-- Wrap a token source as credentials; headers are built once per token.
function methods:_token_credentials(source)
  return {
    token = function() return source:token() end,
    headers = function()
      local tok, err = source:token()
      if not tok then return nil, err end
      local h = tok._header
      if not h then
        h = tok.token_type .. " " .. tok.access_token
        rawset(tok, "_header", h)
      end
      return { Authorization = h }
    end,
    source = source,
  }
end

local function chain_error(self, message, fields)
  return errors.new((fields and fields.code) or "config", config.with_suffix(message, self._state), fields)
end

-- Returns creds; or nil, err; or false when the provider found out it does not apply after all
-- (the databricks CLI saying OAuth is not configured for this host).
local function try_provider(self, p)
  rawset(self, "_trying", p.name)   -- token requests made while configuring carry auth/<name>
  local creds, err = p.configure(self)
  if creds == false then return false end
  if creds then
    -- Dry run, as the SDKs do: a provider that cannot produce headers is reported now.
    local h
    h, err = creds.headers()
    if h then return creds end
  end
  local fields = { code = err.code, status = err.status, hint = err.hint, cause = err,
                   oauth_error = err.oauth_error, error_code = err.error_code }
  return nil, chain_error(self, "default auth: " .. p.name .. ": " .. err.message, fields)
end

-- auth_type names one provider: only that one is tried, and its failure is the answer.
function methods:_forced_credentials(forced)
  local p = providers.BY_NAME[forced]
  if not p then
    if providers.FOREIGN[forced] then
      return nil, chain_error(self, forced .. " auth: not supported by dbxauth", {
        hint = "dbxauth supports " .. table.concat(providers.names(), ", "),
      })
    end
    return nil, chain_error(self, 'default auth: auth type "' .. forced .. '" not found, please check '
      .. DOCS .. " for a list of supported auth types")
  end
  if not p.applies(self) then
    return nil, chain_error(self, forced .. " auth: not configured")
  end
  local creds, err = try_provider(self, p)
  if creds == false then return nil, chain_error(self, forced .. " auth: not configured") end
  if not creds then return nil, err end
  return self:_use_credentials(p, creds)
end

-- The default chain: the first provider that applies decides; its errors are reported.
function methods:_chain_credentials()
  for _, p in ipairs(providers.CHAIN) do
    if p.applies(self) then
      local creds, err = try_provider(self, p)
      if creds then return self:_use_credentials(p, creds) end
      if creds == nil then return nil, err end
    end
  end
  return nil, chain_error(self, NO_CREDENTIALS, {
    hint = "set host with a token, username and password, or client_id and client_secret "
      .. "(arguments, DATABRICKS_* environment variables or a ~/.databrickscfg profile)",
  })
end

function methods:_resolve_credentials()
  local _, herr = self:_host()
  if herr then return nil, herr end
  local ok, merr = self:_ensure_metadata()
  if not ok then return nil, merr end
  local forced = self._state.values.auth_type
  if forced then return self:_forced_credentials(forced) end
  return self:_chain_credentials()
end

function methods:_use_credentials(p, creds)
  self._state.values.auth_type = p.name
  if not self._state.sources.auth_type then self._state.sources.auth_type = "resolved" end
  rawset(self, "_creds", creds)
  return creds
end

function methods:_credentials()
  local creds = self._creds
  if creds then return creds end
  return self:_resolve_credentials()
end

-- { Authorization = "<type> <token>" } | nil, err
function methods:authenticate()
  local creds = self._creds
  if not creds then
    local err
    creds, err = self:_resolve_credentials()
    if not creds then return nil, err end
  end
  return creds.headers()
end

-- { access_token, token_type, expiry, scopes } | nil, err
-- opts.force_refresh: get a new token now (OAuth credentials), as `databricks auth token
-- --force-refresh` does.
function methods:token(opts)
  local creds, err = self:_credentials()
  if not creds then return nil, err end
  if opts and opts.force_refresh then
    if creds.force_refresh then return creds.force_refresh() end
    if creds.source then creds.source:invalidate() end
  end
  return creds.token()
end

-- Forget every cached token of this configuration (its own and the exchanged ones), e.g.
-- after a server rejected one; the next call fetches anew.
function methods:invalidate()
  local creds = self._creds
  if creds and creds.source then creds.source:invalidate() end
  local exchanges = rawget(self, "_exchanges")
  for _, source in pairs(exchanges or {}) do source:invalidate() end
end

---------------------------------------------------------------------------------------------
-- Requests

local Response = {}
Response.__index = Response
Response.__name = "dbxauth.response"
Response.__tostring = function(r)
  return string.format("dbxauth.response(%d, %d bytes)", r.status, #r.body)
end

function Response:json()
  local v, err = cjson.decode(self.body)
  if v == nil then
    return nil, errors.new("invalid_json", "the response body is not valid JSON: " .. tostring(err),
      { status = self.status })
  end
  return v
end

local function encode_query(query)
  local core = require "dbxauth.core"
  local keys = {}
  for k in pairs(query) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = query[k]
    local list = type(v) == "table" and v or { v }
    for _, item in ipairs(list) do
      parts[#parts + 1] = core.url_encode(tostring(k)) .. "=" .. core.url_encode(tostring(item))
    end
  end
  return table.concat(parts, "&")
end

local function check_header(name, value)
  if type(name) ~= "string" or not name:match("^[!#$%%&'*+.^_`|~%w-]+$") then
    return "invalid header name"
  end
  if type(value) ~= "string" then
    return 'header "' .. name .. '" must be a string'
  end
  if value:find("[\r\n%z]") then
    return 'header "' .. name .. '" contains CR, LF or NUL'
  end
  return nil
end

local REQUEST_KEYS = { method = "string", path = "string", query = "table", headers = "table",
  json = true, body = "string", timeout = "number", retry = "boolean" }

local function check_request(r, extra_keys)
  if type(r) ~= "table" then
    return "table expected, got " .. type(r)
  end
  for k, v in pairs(r) do
    local want = REQUEST_KEYS[k] or (extra_keys and extra_keys[k])
    if not want then return 'unknown request field "' .. tostring(k) .. '"' end
    if want ~= true and type(v) ~= want then
      return 'request field "' .. k .. '" must be a ' .. want .. ", got " .. type(v)
    end
  end
  if r.path == nil then return 'request field "path" is required' end
  if r.json ~= nil and r.body ~= nil then return "give json or body, not both" end
  return nil
end

-- Encode r.json (raising for values JSON cannot hold: a programming error) or take r.body.
local function request_body(r, headers, level)
  if r.json == nil then return r.body end
  local encoded, jerr = cjson.encode(r.json)
  if not encoded then error("bad argument #1 to 'request' (json: " .. tostring(jerr) .. ")", level + 1) end
  headers["Content-Type"] = headers["Content-Type"] or "application/json"
  return encoded
end

-- Check a request table as the public methods take it; raises for programming errors.
function methods:_check_request(r, name, extra_keys)
  local bad = check_request(r, extra_keys)
  if bad then error("bad argument #1 to '" .. name .. "' (" .. bad .. ")", 3) end
end

-- Send r (path, query, headers, json|body, method, timeout, retry) to base .. r.path with the
-- given Authorization value. Returns the response whatever its status, or nil, err.
function methods:_api_call(base, r, authorization, extra)
  if r.path:sub(1, 1) ~= "/" then
    return nil, errors.new("invalid_request", 'path must start with "/" (got "' .. r.path .. '")')
  end
  local headers = { Accept = "application/json" }
  for k, v in pairs(r.headers or {}) do
    local hbad = check_header(k, v)
    if hbad then return nil, errors.new("invalid_header", hbad) end
    headers[k] = v
  end
  for k, v in pairs(extra or {}) do
    if headers[k] == nil then headers[k] = v end
  end
  headers.Authorization = authorization
  headers["User-Agent"] = headers["User-Agent"] or self:_user_agent()
  local body = request_body(r, headers, 3)
  local url = base .. r.path
  if r.query and next(r.query) then
    url = url .. (r.path:find("?", 1, true) and "&" or "?") .. encode_query(r.query)
  end
  local req = { method = (r.method or "GET"):upper(), url = url, headers = headers, body = body,
                timeout = self:_timeout(r.timeout) }
  local res, err = http.send(self:_get_transport(), req,
    { kind = "api", retry = r.retry, budget = self:_retry_budget("api") })
  if not res then return nil, err end
  return setmetatable(res, Response)
end

-- The error for a non-2xx response (kept as err.response).
function methods:_status_error(res, method, path)
  local err = apierror.from_response(res, { response = res, method = method, path = path })
  if res.gave_up then err.message = err.message .. " (" .. res.gave_up .. ")" end
  return err
end

-- r = { method, path, query, headers, json | body, timeout, retry } -> response | nil, err
function methods:request(r)
  self:_check_request(r, "request")
  local auth, err = self:authenticate()
  if not auth then return nil, err end
  local v = self._state.values
  local extra
  if v.workspace_id and not self:is_account() then
    extra = { ["X-Databricks-Workspace-Id"] = v.workspace_id }
  end
  local res
  res, err = self:_api_call(v.host, r, auth.Authorization, extra)
  if not res then return nil, err end
  if res.status >= 200 and res.status <= 299 then return res end
  return nil, self:_status_error(res, (r.method or "GET"):upper(), r.path)
end

require("dbxauth.apps").install(methods)
require("dbxauth.u2m").install(methods, _M)

---------------------------------------------------------------------------------------------
-- Printing: attribute values with secrets masked.

Config.__tostring = function(self)
  local st = self._state
  local parts = {}
  for _, a in ipairs(config.ATTRIBUTES) do
    local val = st.values[a.name]
    if val ~= nil then
      if a.sensitive then
        val = "***"
      elseif type(val) == "table" then
        val = table.concat(val, ",")
      end
      parts[#parts + 1] = a.name .. "=" .. tostring(val)
    end
  end
  return "dbxauth.config(" .. table.concat(parts, ", ") .. ")"
end

_M.clear_discovery_cache = discovery.clear
_M.errors = errors

return _M
