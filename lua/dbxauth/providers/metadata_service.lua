-- metadata-service (cloud-auth §1, notes §6.9): a token server on this machine (the VS Code
-- extension runs one) answers `GET <metadata_service_url>` with
-- {"access_token", "token_type", "expires_on": <Unix seconds>} for the host it is told about
-- in X-Databricks-Host. Only localhost and 127.0.0.1 are allowed (the Go SDK's rule), so plain
-- http never leaves the machine; the transports send it past any proxy. The token is cached
-- and refreshed ahead of expiry, with a new GET each time.
--
-- metadata_service_url is a secret (D23): its path often is the server's per-session key. Go
-- prints the whole URL in its errors; dbxauth shows only its scheme and authority.
local cjson = require "cjson.safe"
local apierror = require "dbxauth.apierror"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local TIMEOUT = 10
local VERSION = "1"
local LOCAL = { localhost = true, ["127.0.0.1"] = true }
local MAX_SHOWN = 40

local HINT_URL = "metadata_service_url (DATABRICKS_METADATA_SERVICE_URL) must be a URL on this machine, "
  .. "like http://localhost:<port>/<path>"

-- The parsed URL | nil, err: Go's two texts, without the secret part of the URL.
local function check_url(u)
  local p, why = urls.parse(u)
  if not p then
    return nil, errors.new("config", "invalid auth server URL: " .. why, { hint = HINT_URL })
  end
  if not LOCAL[urls.hostname(p.authority)] then
    return nil, errors.new("config", "only localhost URLs are allowed: " .. p.scheme .. "://" .. p.authority
      .. " (the rest of metadata_service_url is not shown)", { hint = HINT_URL })
  end
  return p
end

-- strconv's quoting of a short outside value, for Go's expiry message.
local function quoted(s)
  if #s > MAX_SHOWN then s = s:sub(1, MAX_SHOWN) .. "..." end
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c) return string.format("\\x%02x", c:byte()) end) .. '"'
end

-- Go decodes expires_on as a json.Number and calls Int64(): a whole number, or a string of one.
local function expiry_of(v)
  if type(v) == "number" then
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return math.floor(v) end
    return nil, quoted(string.format("%.17g", v))
  end
  if type(v) == "string" and v:match("^[+-]?%d+$") and #v <= 15 then return math.floor(tonumber(v)) end
  if type(v) == "string" then return nil, quoted(v) end
  return nil, '""'
end

local function parse_error(message)
  return nil, errors.new("invalid_response", "token parse: " .. message, {
    hint = "the metadata service's answer is not a token; check that metadata_service_url points at it",
  })
end

-- The response -> token | nil, err (Go's texts: the doubled "token parse" is theirs).
local function parse(res, now)
  local body = res.body or ""
  local doc = cjson.decode(body)
  if body:match("^%s*$") then doc = {} end
  if type(doc) ~= "table" then
    return parse_error("the metadata service returned a non-JSON response (" .. #body .. " bytes)")
  end
  local at, tt = doc.access_token, doc.token_type
  if type(at) ~= "string" or at == "" then return parse_error("token parse: invalid token") end
  if at:find("[^\33-\126]") then
    return parse_error("invalid token: an access_token with blanks, control or non-ASCII characters")
  end
  if tt == nil or tt == cjson.null then tt = "" end
  if type(tt) ~= "string" or (tt ~= "" and not headers.is_token(tt)) then
    return parse_error("invalid token: a token_type that is not an HTTP authentication scheme name")
  end
  local expiry, text = expiry_of(doc.expires_on)
  if not expiry then
    return parse_error("invalid token expiry: strconv.ParseInt: parsing " .. text .. ": invalid syntax")
  end
  return oauth.token { access_token = at, token_type = headers.scheme(tt), expiry = expiry, issued_at = now }
end

local function fetch(ctx, url)
  local res, err = ctx.send_token {
    method = "GET",
    url = url,
    timeout = TIMEOUT,
    headers = { ["X-Databricks-Metadata-Version"] = VERSION, ["X-Databricks-Host"] = ctx.get("host"),
                Accept = "application/json" },
  }
  if not res then
    err = errors.wrap("token request: ", err)
    err.message = ctx.redact(err.message)
    return nil, err
  end
  if res.status < 200 or res.status > 299 then
    local e = apierror.from_response(res)
    e.message = ctx.redact("token request: HTTP " .. res.status .. ": " .. e.message)
    e.hint = "the metadata service refused to give a token for " .. ctx.get("host")
      .. "; check that it is signed in to this host"
    return nil, e
  end
  return parse(res, ctx.now())
end

return {
  name = "metadata-service",
  applies = function(ctx)
    return ctx.get("metadata_service_url") ~= nil and ctx.get("host") ~= nil
  end,
  configure = function(ctx)
    local url = ctx.get("metadata_service_url")
    local _, err = check_url(url)
    if err then return nil, err end
    return tokensource.credentials(tokensource.new {
      fetch = function() return fetch(ctx, url) end,
      now = ctx.now,
    })
  end,
}
