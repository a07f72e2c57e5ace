-- HTTP header names and values, and the Authorization value built from a token: one validator
-- for every header dbxauth sends (API requests, Apps calls, both transports), so a value that
-- one path refuses is refused by all. (The C client checks again before anything is sent.)
local _M = {}

-- RFC 9110 token: header names, auth scheme names (token_type).
_M.TOKEN = "^[!#$%%&'*+.^_`|~%w-]+$"

function _M.is_token(s)
  return type(s) == "string" and s:match(_M.TOKEN) ~= nil
end

-- nil, or why (name, value) cannot be sent; the message names the header, never the value.
function _M.check(name, value)
  if not _M.is_token(name) then return "invalid header name" end
  if type(value) ~= "string" then
    return 'header "' .. name .. '" must be a string'
  end
  if value:find("[\r\n%z]") then
    return 'header "' .. name .. '" contains CR, LF or NUL'
  end
  -- RFC 9110 field-value without obs-text: visible ASCII, space and tab.
  if value:find("[^\t\32-\126]") then
    return 'header "' .. name .. '" contains control or non-ASCII characters (only visible ASCII, '
      .. 'space and tab are allowed)'
  end
  return nil
end

-- The canonical scheme name: "bearer" (some IdPs) and an absent type are "Bearer".
function _M.scheme(token_type)
  if type(token_type) ~= "string" or token_type == "" or token_type:lower() == "bearer" then
    return "Bearer"
  end
  return token_type
end

-- "Bearer <access_token>" for a token table.
function _M.authorization(tok)
  return _M.scheme(tok.token_type) .. " " .. tok.access_token
end

-- A function that hands out { Authorization = value }: the same table on every call while
-- nobody has changed it (a cached cfg:authenticate() then allocates nothing), a new one as
-- soon as someone did (changed the value, or added a field: the table then stops being
-- watched and is the caller's own). See README, cfg:authenticate().
function _M.cached(value)
  local current
  local watch = {}
  watch.__newindex = function(t, k, v)
    setmetatable(t, nil)
    if t == current then current = nil end
    t[k] = v
  end
  return function()
    local h = current
    if h and h.Authorization == value then return h end
    h = setmetatable({ Authorization = value }, watch)
    current = h
    return h
  end
end

return _M
