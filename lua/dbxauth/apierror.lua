-- Turn a failed HTTP response into an error object, the way the SDKs read Databricks error
-- bodies (notes §9.5): {error_code, message}, OAuth {error, error_description}, API 1.2
-- {error}, SCIM {detail, status, scimType}, Google {error: {code, message, status}},
-- "ERROR_CODE: message" text, HTML pages.
-- Pure: no I/O. Raw bodies are never copied whole into messages: a server could echo
-- anything, so unstructured bodies are summarised and truncated.
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"

local _M = {}

local STATUS_TEXT = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [409] = "Conflict", [413] = "Payload Too Large",
  [429] = "Too Many Requests", [499] = "Client Closed Request", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

local STATUS_CODE = {
  [400] = "bad_request", [401] = "unauthenticated", [403] = "permission_denied", [404] = "not_found",
  [409] = "conflict", [429] = "too_many_requests", [499] = "cancelled", [500] = "internal_error",
  [501] = "not_implemented", [503] = "temporarily_unavailable", [504] = "deadline_exceeded",
}

-- Databricks error codes that refine the class of an error (notes §9.5).
local ERROR_CODE_CLASS = {
  INVALID_PARAMETER_VALUE = "bad_request", INVALID_STATE = "bad_request",
  RESOURCE_DOES_NOT_EXIST = "not_found", ABORTED = "conflict", ALREADY_EXISTS = "conflict",
  RESOURCE_ALREADY_EXISTS = "conflict", RESOURCE_EXHAUSTED = "too_many_requests",
  REQUEST_LIMIT_EXCEEDED = "too_many_requests", DATA_LOSS = "internal_error",
}

local HINTS = {
  unauthenticated = "the credentials were rejected: check that the token is valid and not expired "
    .. "(for OAuth logins run `databricks auth login`), and that host points at the right workspace",
  permission_denied = "the identity is authenticated but lacks permission for this resource",
  not_found = "check the host and the request path",
  too_many_requests = "the request rate limit was exceeded; retry later",
  temporarily_unavailable = "the service is temporarily unavailable; retry later",
}

local MAX_SNIPPET = 200
-- Unstructured bodies are only looked at this far: a server may send megabytes (up to
-- max_response_bytes) built to make pattern matching slow.
local MAX_SCAN = 64 * 1024
-- Texts taken from structured error documents are cut here, and their control characters
-- (terminal escapes, CR) blanked: they end up in logs and on terminals.
local MAX_MESSAGE = 1024
local MAX_CODE = 128

function _M.status_text(status)
  return STATUS_TEXT[status] or ("HTTP " .. tostring(status))
end

local trim = require("dbxauth.text").trim

local function snippet(s)
  s = trim(s:sub(1, MAX_SCAN):gsub("[%c]+", " "))
  if #s > MAX_SNIPPET then s = s:sub(1, MAX_SNIPPET) .. "…" end
  return s
end

-- A server's text as it may appear in a message: newlines and tabs kept, other control
-- characters blanked, at most `max` bytes.
local function clean(s, max)
  if #s > max then s = s:sub(1, max) .. "…" end
  return (s:gsub("[%z\1-\8\11-\31\127]", " "))
end

local function is_html(body, ctype)
  return (ctype and ctype:lower():find("text/html", 1, true)) or body:find("^%s*<") ~= nil
end

-- The text between the first `open` and the next `close` (plain finds: linear), or nil.
local function between(s, open, close)
  local a = s:find(open, 1, true)
  if not a then return nil end
  local b = s:find(close, a + #open, true)
  if not b then return nil end
  return a + #open, b - 1
end

local function html_message(body)
  body = body:sub(1, MAX_SCAN)
  local a, b = between(body, "<pre>", "</pre>")
  if a then return snippet(body:sub(a, b)) end
  a, b = between(body:lower(), "<title>", "</title>")
  local title = a and body:sub(a, b)
  if title and trim(title) ~= "" then return "HTML error page: " .. snippet(title) end
  return "HTML error page"
end

local function str(v, max)
  if type(v) == "string" then return clean(v, max or MAX_MESSAGE) end
  if type(v) == "number" and v == v and v > -2^53 and v < 2^53 then return string.format("%d", v) end
  return nil
end

-- Read a JSON error document; returns fields or nil when the body is not one we know.
local function from_json(doc)
  if type(doc) ~= "table" then return nil end
  if doc.error_code ~= nil or (doc.message ~= nil and doc.error == nil) then
    return { error_code = str(doc.error_code, MAX_CODE), message = str(doc.message) }
  end
  if doc.scimType ~= nil or doc.detail ~= nil then
    local detail = str(doc.detail) or "SCIM API Internal Error"
    local scim = str(doc.scimType, MAX_CODE)
    local msg = scim and (scim .. " " .. detail) or detail
    return { error_code = "SCIM_" .. (str(doc.status, MAX_CODE) or ""), message = msg }
  end
  if type(doc.error) == "table" and type(doc.error.message) == "string" then
    -- Google APIs (IAM Credentials): {"error": {"code", "message", "status"}}
    return { error_code = str(doc.error.status, MAX_CODE), message = str(doc.error.message) }
  end
  local err = type(doc.error) == "string" and str(doc.error, MAX_CODE) or nil
  if err and type(doc.message) == "string" then
    return { error_code = err, message = str(doc.message) }
  end
  if err then
    local desc = str(doc.error_description) or str(doc.errorSummary)
    if desc then
      return { oauth_error = err, message = desc .. " (error code: " .. err .. ")" }
    end
    return { message = err, oauth_error = err }
  end
  if type(doc.errorCode) == "string" then
    local code = str(doc.errorCode, MAX_CODE)
    return { oauth_error = code, message = str(doc.errorSummary) or code }
  end
  return nil
end

-- Parse the body of a non-2xx response into { error_code, oauth_error, message }.
function _M.parse_body(status, body, ctype)
  body = body or ""
  if body == "" then return { message = _M.status_text(status) } end
  local doc = cjson.decode(body)
  local f = from_json(doc)
  if f and f.message and f.message ~= "" then return f end
  if f then f.message = _M.status_text(status); return f end
  local code, msg = body:match("^([A-Z_]+): (.*)$")
  if code then return { error_code = code, message = snippet(msg) } end
  if is_html(body, ctype) then
    return { error_code = _M.status_text(status):upper():gsub(" ", "_"), message = html_message(body) }
  end
  return { error_code = "UNKNOWN", message = snippet(body) }
end

-- Build the error object for a non-2xx response. `what` names the request for the message
-- prefix-free form; fields are merged in (e.g. { response = res } for API calls).
function _M.from_response(res, fields)
  local p = _M.parse_body(res.status, res.body, res.headers and res.headers["content-type"])
  local class = (p.error_code and ERROR_CODE_CLASS[p.error_code]) or STATUS_CODE[res.status]
    or (res.status >= 500 and "server_error" or "http_error")
  local f = {
    status = res.status,
    error_code = p.error_code,
    oauth_error = p.oauth_error,
    hint = HINTS[class],
    retry_after = res.headers and res.headers["retry-after"],
  }
  if fields then
    for k, v in pairs(fields) do f[k] = v end
  end
  return errors.new(class, p.message, f)
end

-- Retry-After: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). Returns seconds or nil.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
  Oct = 10, Nov = 11, Dec = 12 }

local function days_from_civil(y, m, d)
  -- Howard Hinnant's algorithm; avoids os.time's local-time interpretation.
  y = (m <= 2) and (y - 1) or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

function _M.utc_epoch(y, mo, d, h, mi, s)
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
end

function _M.retry_after(value, now)
  if type(value) ~= "string" then return nil end
  value = trim(value)
  if value:match("^%d+$") then return tonumber(value) end
  local d, mon, y, h, mi, s = value:match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if d and MONTHS[mon] then
    local t = _M.utc_epoch(tonumber(y), MONTHS[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(s))
    local delta = t - now
    return delta > 0 and delta or 0
  end
  return nil
end

return _M
