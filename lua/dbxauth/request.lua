-- REST calls: the request table users write, checked and turned into a transport request; the
-- response object; the error for a non-2xx status. Used by cfg:request (the workspace or
-- account API) and by the Apps calls (an app's own URL).
--
--   request.check(r, extra_keys)             -> nil | why (the facade raises with it)
--   request.call(s, base, r, authorization, extra_headers) -> response (any status) | nil, err
--   request.api(s, r)                        -> response (2xx) | nil, err
--   request.status_error(res, method, path)  -> the error object for a non-2xx response
local apierror = require "dbxauth.apierror"
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local cjson = require "cjson.safe"

local _M = {}

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

_M.Response = Response

local REQUEST_KEYS = { method = "string", path = "string", query = "table", headers = "table",
  json = true, body = "string", timeout = "number", retry = "boolean" }

-- nil, or why r is not a request table (a programming error: the caller raises). When r is
-- fine and has json, the second result is its encoding (for call/api: encoded once).
function _M.check(r, extra_keys)
  if type(r) ~= "table" then
    return "table expected, got " .. type(r)
  end
  for k, v in next, r do
    local want = REQUEST_KEYS[k] or (extra_keys and extra_keys[k])
    if not want then return 'unknown request field "' .. tostring(k) .. '"' end
    if want ~= true and type(v) ~= want then
      return 'request field "' .. k .. '" must be a ' .. want .. ", got " .. type(v)
    end
  end
  if r.path == nil then return 'request field "path" is required' end
  if r.json ~= nil and r.body ~= nil then return "give json or body, not both" end
  if r.json ~= nil then
    local body, jerr = cjson.encode(r.json)
    if jerr then return "json: " .. tostring(jerr) end
    return nil, body
  end
  return nil
end

local function encode_query(query)
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

-- Header names are case-insensitive: the ones dbxauth also sets are kept under one spelling, so
-- exactly one of each reaches the server whatever case the caller used.
local CANONICAL = { accept = "Accept", ["content-type"] = "Content-Type", ["user-agent"] = "User-Agent" }

-- Headers a credential sets besides Authorization (Azure's management token and workspace
-- resource id, Google's service-account token): when the credential sets one, its value
-- replaces the caller's.
local CREDENTIAL = { ["x-databricks-azure-sp-management-token"] = true,
                     ["x-databricks-azure-workspace-resource-id"] = true,
                     ["x-databricks-gcp-sa-access-token"] = true }

-- The caller's headers over the defaults; the configured credential is the only Authorization.
local function merge_headers(user, authorization, extra)
  local h = { Accept = "application/json" }
  local seen = {}
  if user then
    for k, v in pairs(user) do
      local bad = headers.check(k, v)
      if bad then return nil, errors.new("invalid_header", bad) end
      local lk = k:lower()
      if seen[lk] then
        return nil, errors.new("invalid_header", 'header "' .. lk .. '" is given twice (header names are '
          .. "case-insensitive)")
      end
      local key = CANONICAL[lk] or k
      seen[lk] = key
      if lk ~= "authorization" then h[key] = v end
    end
  end
  if extra then
    for k, v in pairs(extra) do
      local lk = k:lower()
      local prev = seen[lk]
      if not prev then
        h[k] = v
      elseif CREDENTIAL[lk] then
        h[prev] = nil   -- the credential's value, under one spelling
        h[k] = v
      end
    end
  end
  h.Authorization = authorization
  return h
end

-- `extra` plus the credential's headers other than Authorization (creds.headers() -> auth), or
-- `extra` itself when Authorization is all there is (every auth type but the Azure ones). The
-- merged table is kept per auth table: providers hand out the same one while their tokens last.
local merged = setmetatable({}, { __mode = "k" })
local function with_credential(auth, extra)
  if auth == nil then return extra end
  local k = next(auth)
  if next(auth, k) == nil then return extra end
  local m = merged[auth]
  if m and m.base == extra then return m.headers end
  local h = {}
  for name, v in pairs(extra or {}) do h[name] = v end
  for name, v in pairs(auth) do
    if name ~= "Authorization" then h[name] = v end
  end
  merged[auth] = { base = extra, headers = h }
  return h
end

local byte = string.byte
local SLASH = byte("/")
-- r.method as sent; upper() only for a spelling not seen here
local METHODS = {}
for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS" } do
  METHODS[m], METHODS[m:lower()] = m, m
end
local function method_of(r)
  local m = r.method
  if m == nil then return "GET" end
  return METHODS[m] or m:upper()
end
_M.method_of = method_of
_M.METHODS = METHODS

-- base .. path, kept per session for the paths it calls (at most MAX_URLS, then forgotten).
local MAX_URLS = 256
local function url_of(s, base, path)
  local cache = s.urls
  local byb = cache[base]
  if not byb then
    if cache.n >= MAX_URLS then
      cache = { n = 0 }
      s.urls = cache
    end
    byb = {}
    cache[base] = byb
  end
  local url = byb[path]
  if url then return url end
  url = base .. path
  if cache.n < MAX_URLS then
    byb[path] = url
    cache.n = cache.n + 1
  end
  return url
end

-- The headers of a request without headers or json of its own: the defaults, `extra`, the
-- User-Agent and this Authorization, in one table kept per (extra, Authorization) while they
-- stay the same (the transports only read headers). At most MAX_PLAIN are kept: tokens change.
local MAX_PLAIN = 8
local NO_EXTRA = {}
local function plain_headers(s, authorization, extra)
  local cache = s.plain_headers
  if cache.n >= MAX_PLAIN then
    cache = { n = 0 }
    s.plain_headers = cache
  end
  local by = cache[extra or NO_EXTRA]
  if not by then
    by = {}
    cache[extra or NO_EXTRA] = by
  end
  local h = merge_headers(nil, authorization, extra)
  h["User-Agent"] = s:user_agent()
  by[authorization] = h
  cache.n = cache.n + 1
  return h
end

-- Send r (path, query, headers, json|body, method, timeout, retry) to base .. r.path with the
-- given Authorization value. Returns the response whatever its status, or nil, err. json: r.json
-- already encoded (check's second result), else it is encoded here.
function _M.call(s, base, r, authorization, extra, json)
  local path = r.path
  if byte(path, 1) ~= SLASH then
    return nil, errors.new("invalid_request", 'path must start with "/" (got "' .. path .. '")')
  end
  local h
  local body = r.body
  if r.headers == nil and r.json == nil then
    local by = s.plain_headers[extra or NO_EXTRA]
    h = by and by[authorization] or plain_headers(s, authorization, extra)
  else
    local herr
    h, herr = merge_headers(r.headers, authorization, extra)
    if not h then return nil, herr end
    if r.json ~= nil then
      body = json or cjson.encode(r.json)
      h["Content-Type"] = h["Content-Type"] or "application/json"
    end
    h["User-Agent"] = h["User-Agent"] or s:user_agent()
  end
  local byb = s.urls[base]
  local url = byb and byb[path] or url_of(s, base, path)
  local query = r.query
  if query and next(query) then
    url = url .. (path:find("?", 1, true) and "&" or "?") .. encode_query(query)
  end
  local m = r.method
  if m == nil then m = "GET" else m = METHODS[m] or m:upper() end
  local res, err = s:send_api({ method = m, url = url, headers = h, body = body,
                                timeout = r.timeout or s.api_timeout }, r.retry)
  if not res then return nil, err end
  return setmetatable(res, Response)
end

-- The error for a non-2xx response (kept as err.response).
function _M.status_error(res, method, path)
  local err = apierror.from_response(res, { response = res, method = method, path = path })
  if res.gave_up then err.message = err.message .. " (" .. res.gave_up .. ")" end
  return err
end

local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, PUT = true, DELETE = true }

local function retry_allowed(r)
  if r.retry ~= nil then return r.retry end
  return IDEMPOTENT[(r.method or "GET"):upper()] == true
end

-- The credential for one request: its Authorization value, plus the headers table of
-- credentials that send more than Authorization (Azure, Google; nil for the others, whose
-- authorization() is the fast path) | nil, err
local function credential_of(creds)
  local a = creds.authorization
  if a then return a() end
  local h, err = creds.headers()
  if not h then return nil, err end
  return h.Authorization, h
end

-- The workspace id header on workspace hosts (one table, kept), else nil.
local function workspace_header(s)
  local id = s.values.workspace_id
  if not id or s:is_account() then return nil end
  local extra = s.workspace_header
  if not extra or extra["X-Databricks-Workspace-Id"] ~= id then
    extra = { ["X-Databricks-Workspace-Id"] = id }
    s.workspace_header = extra
  end
  return extra
end
_M.workspace_header = workspace_header

-- cfg:request: the configuration's credentials, its host, the workspace id header on
-- workspace hosts; 2xx responses only, everything else as an error. json: check's second result.
function _M.api(s, r, json)
  local creds, err = s.creds
  if not creds then
    creds, err = s:credentials()
    if not creds then return nil, err end
  end
  local auth, h = credential_of(creds)
  if not auth then return nil, h end
  local v = s.values
  local extra
  local id = v.workspace_id
  if id then
    local account = s.account
    if account == nil then account = s:is_account() end
    if not account then
      extra = s.workspace_header
      if not extra or extra["X-Databricks-Workspace-Id"] ~= id then extra = workspace_header(s) end
    end
  end
  local host = v.host
  local res
  res, err = _M.call(s, host, r, auth, with_credential(h, extra), json)
  if not res then return nil, err end
  local status = res.status
  if status >= 200 and status <= 299 then return res end
  if status == 401 and creds.source and retry_allowed(r) then
    -- An OAuth token we believed valid was rejected (revoked, or clocks apart): fetch a new one
    -- and repeat the idempotent request once.
    creds.source:invalidate()
    auth, h = credential_of(creds)
    if not auth then return nil, h end
    res, err = _M.call(s, host, r, auth, with_credential(h, extra), json)
    if not res then return nil, err end
    if res.status >= 200 and res.status <= 299 then return res end
  end
  -- The server's message is outside text: it may quote the credential it was sent.
  return nil, s:redact(_M.status_error(res, method_of(r), r.path),
    { headers = h or { Authorization = auth } })
end

-- For batch.lua (cfg:request_all), which builds its requests as call does.
_M.merge_headers = merge_headers
_M.with_credential = with_credential
_M.encode_query = encode_query

return _M
