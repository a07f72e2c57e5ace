-- Error objects: expected failures are returned as `nil, err` where err is one of these.
-- They print and concatenate like strings, so `print("failed: " .. err)` just works, and
-- they never carry a secret: callers build messages from names, statuses and server texts only.
local _M = {}

local Error = {}
Error.__index = Error
Error.__name = "dbxauth.error"

local function render(e)
  if e.hint and e.hint ~= "" then
    return e.message .. " (hint: " .. e.hint .. ")"
  end
  return e.message
end

Error.__tostring = render
Error.__concat = function(a, b)
  return tostring(a) .. tostring(b)
end

-- code: short machine-readable class ("config", "tls", "timeout", "unauthenticated", ...)
-- message: what went wrong, in Databricks' words where they exist
-- fields: optional status, hint, cause, oauth_error, error_code, retryable, response, ...
function _M.new(code, message, fields)
  if type(code) ~= "string" then
    error("bad argument #1 to 'errors.new' (string expected, got " .. type(code) .. ")", 2)
  end
  if type(message) ~= "string" then
    error("bad argument #2 to 'errors.new' (string expected, got " .. type(message) .. ")", 2)
  end
  local e = {}
  if fields then
    for k, v in pairs(fields) do e[k] = v end
  end
  e.code, e.message = code, message
  return setmetatable(e, Error)
end

function _M.is(v)
  return getmetatable(v) == Error
end

-- Wrap an error with a prefix, keeping its code and fields ("default auth: " .. inner).
function _M.wrap(prefix, err, fields)
  local f = {}
  if _M.is(err) then
    for k, v in pairs(err) do f[k] = v end
    f.cause = err
  end
  if fields then
    for k, v in pairs(fields) do f[k] = v end
  end
  local code = f.code or "error"
  local msg = _M.is(err) and err.message or tostring(err)
  f.code, f.message = nil, nil
  return _M.new(code, prefix .. msg, f)
end

_M.Error = Error
return _M
