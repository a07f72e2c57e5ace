-- Secrets out of messages. Error messages quote outside text (an OAuth error_description, an
-- API `message`, an HTML or text body, the databricks CLI's stderr), and a server or a CLI can
-- echo back what it was sent. Before such an error reaches the caller, every secret the
-- configuration holds or the request carried is replaced by "***".
--
--   redact.error(err, secrets) -> err   (message, hint and nested causes, in place)
--   redact.text(s, secrets) -> s
--   redact.of_request(req, into) -> into  the secrets a request carries: credential form fields
--                                         and the credential headers' values (*-Token too)
local _M = {}

local MIN = 4            -- shorter values would mangle ordinary words
local MASK = "***"
local MAX_DEPTH = 5

-- Form fields that carry a credential (OAuth grants, RFC 8693, RFC 7523).
local SECRET_FIELDS = { client_secret = true, refresh_token = true, code = true, code_verifier = true,
  subject_token = true, actor_token = true, client_assertion = true, assertion = true, password = true,
  access_token = true }

-- Headers besides Authorization whose whole value is a credential (Azure's management token, the
-- App Service identity endpoint's secret).
local SECRET_HEADERS = { "X-Databricks-Azure-SP-Management-Token", "X-IDENTITY-HEADER" }
local KNOWN = {}
for _, name in ipairs(SECRET_HEADERS) do KNOWN[name] = true end

local function replace_plain(s, secret)
  local out, pos = {}, 1
  while true do
    local i, j = s:find(secret, pos, true)
    if not i then break end
    out[#out + 1] = s:sub(pos, i - 1)
    out[#out + 1] = MASK
    pos = j + 1
  end
  if pos == 1 then return s end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

function _M.text(s, secrets)
  if type(s) ~= "string" or not secrets then return s end
  for _, secret in ipairs(secrets) do
    if type(secret) == "string" and #secret >= MIN then s = replace_plain(s, secret) end
  end
  return s
end

local function walk(err, secrets, depth)
  if type(err) ~= "table" or depth > MAX_DEPTH then return end
  err.message = _M.text(err.message, secrets)
  err.hint = _M.text(err.hint, secrets)
  walk(err.cause, secrets, depth + 1)
end

function _M.error(err, secrets)
  if secrets and #secrets > 0 then walk(err, secrets, 1) end
  return err
end

local function unescape(v)
  v = v:gsub("+", " ")
  return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function _M.of_request(req, into)
  into = into or {}
  local body = req.body
  if type(body) == "string" and body:find("=", 1, true) then
    for k, v in body:gmatch("([^&=]+)=([^&]*)") do
      if SECRET_FIELDS[k] then into[#into + 1] = unescape(v) end
    end
  end
  local h = req.headers
  local auth = h and (h.Authorization or h.authorization)
  if type(auth) == "string" then
    local cred = auth:match("^%S+%s+(.+)$")
    if cred then into[#into + 1] = cred end
  end
  if h then
    for _, name in ipairs(SECRET_HEADERS) do
      if type(h[name]) == "string" then into[#into + 1] = h[name] end
    end
    -- Second credentials beside Authorization (X-Databricks-GCP-SA-Access-Token, ...)
    for k, v in pairs(h) do
      if type(k) == "string" and type(v) == "string" and k:lower():find("%-token$") and not KNOWN[k] then
        into[#into + 1] = v
      end
    end
  end
  return into
end

return _M
