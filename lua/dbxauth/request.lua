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

-- nil, or why r is not a request table (a programming error: the caller raises).
function _M.check(r, extra_keys)
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
  if r.json ~= nil then
    local _, jerr = cjson.encode(r.json)
    if jerr then return "json: " .. tostring(jerr) end
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

-- Send r (path, query, headers, json|body, method, timeout, retry) to base .. r.path with the
-- given Authorization value. Returns the response whatever its status, or nil, err.
function _M.call(s, base, r, authorization, extra)
  if r.path:sub(1, 1) ~= "/" then
    return nil, errors.new("invalid_request", 'path must start with "/" (got "' .. r.path .. '")')
  end
  local h, herr = merge_headers(r.headers, authorization, extra)
  if not h then return nil, herr end
  local body = r.body
  if r.json ~= nil then
    body = cjson.encode(r.json)
    h["Content-Type"] = h["Content-Type"] or "application/json"
  end
  local url = base .. r.path
  if r.query and next(r.query) then
    url = url .. (r.path:find("?", 1, true) and "&" or "?") .. encode_query(r.query)
  end
  local method = (r.method or "GET"):upper()
  local res, err = s:send({ method = method, url = url, headers = h, body = body,
                            timeout = s:timeout(r.timeout) }, "api", r.retry)
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

-- cfg:request: the configuration's credentials, its host, the workspace id header on
-- workspace hosts; 2xx responses only, everything else as an error.
function _M.api(s, r)
  local creds, err = s:credentials()
  if not creds then return nil, err end
  local auth
  auth, err = creds.headers()
  if not auth then return nil, err end
  local v = s.values
  local extra
  if v.workspace_id and not s:is_account() then
    extra = s.workspace_header
    if not extra or extra["X-Databricks-Workspace-Id"] ~= v.workspace_id then
      extra = { ["X-Databricks-Workspace-Id"] = v.workspace_id }
      s.workspace_header = extra
    end
  end
  local res
  res, err = _M.call(s, v.host, r, auth.Authorization, with_credential(auth, extra))
  if not res then return nil, err end
  if res.status == 401 and creds.source and retry_allowed(r) then
    -- An OAuth token we believed valid was rejected (revoked, or clocks apart): fetch a new one
    -- and repeat the idempotent request once.
    creds.source:invalidate()
    auth, err = creds.headers()
    if not auth then return nil, err end
    res, err = _M.call(s, v.host, r, auth.Authorization, with_credential(auth, extra))
    if not res then return nil, err end
  end
  if res.status >= 200 and res.status <= 299 then return res end
  -- The server's message is outside text: it may quote the credential it was sent.
  return nil, s:redact(_M.status_error(res, (r.method or "GET"):upper(), r.path), { headers = auth })
end

-- For batch.lua (cfg:request_all), which builds its requests as call does.
_M.merge_headers = merge_headers
_M.with_credential = with_credential
_M.encode_query = encode_query

return _M
