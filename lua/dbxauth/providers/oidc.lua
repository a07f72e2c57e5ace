-- OIDC workload identity federation (notes §6.6, §6.7): an identity provider's JWT is
-- exchanged (RFC 8693) for a Databricks token at the OIDC token endpoint, with `client_id`
-- when configured (service principal federation policy) and without it (account-wide).
-- The JWT is read again at every refresh: CI systems rotate it.
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"

local _M = {}

local MAX_ID_TOKEN = 1024 * 1024

local function trim_end(s)
  return (s:gsub("%s+$", ""))
end

-- Audience of the ID token we ask an IdP for: token_audience, else the account id on
-- non-workspace hosts, else the token endpoint (notes §6.7).
local function audience(c, ep)
  local aud = c:get("token_audience")
  if aud then return aud end
  if c:is_account() and c:get("account_id") then return c:get("account_id") end
  return ep.token_endpoint
end

local function configure(c, id_token)
  local function fetch()
    local ep, err = c:_oidc_endpoints()
    if not ep then return nil, err end
    local jwt
    jwt, err = id_token(ep)
    if not jwt then return nil, err end
    local req = oauth.token_exchange_request {
      token_endpoint = ep.token_endpoint,
      subject_token = jwt,
      subject_token_type = oauth.TYPE_JWT,
      scopes = c:_scopes(),
      client_id = c:get("client_id"),
    }
    return c:_token_call(req, "OIDC token exchange")
  end
  return c:_token_credentials(tokensource.new { fetch = fetch, now = function() return c:_now() end })
end

local function env_name(c)
  return c:get("oidc_token_env") or "DATABRICKS_OIDC_TOKEN"
end

local function getenv(c, name)
  local v = c._getenv(name)
  if v == "" then return nil end
  return v
end

_M.env = {
  name = "env-oidc",
  applies = function(c)
    return c:get("host") ~= nil and getenv(c, env_name(c)) ~= nil
  end,
  configure = function(c)
    return configure(c, function()
      local name = env_name(c)
      local v = getenv(c, name)
      if not v then return nil, errors.new("config", 'missing env var "' .. name .. '"') end
      return trim_end(v)
    end)
  end,
}

_M.file = {
  name = "file-oidc",
  applies = function(c)
    return c:get("host") ~= nil and c:get("oidc_token_filepath") ~= nil
  end,
  configure = function(c)
    return configure(c, function()
      local path = c:get("oidc_token_filepath")
      if not path then return nil, errors.new("config", "missing path") end
      local f, msg = io.open(path, "rb")
      if not f then
        if msg:find("No such file", 1, true) then
          return nil, errors.new("config", 'file "' .. path .. '" does not exist')
        end
        return nil, errors.new("config", 'file "' .. path .. '" cannot be read: ' .. msg)
      end
      local data = f:read(MAX_ID_TOKEN + 1) or ""
      f:close()
      if #data > MAX_ID_TOKEN then
        return nil, errors.new("config", 'file "' .. path .. '" is larger than an ID token can be')
      end
      data = trim_end(data)
      if data == "" then return nil, errors.new("config", 'file "' .. path .. '" is empty') end
      return data
    end)
  end,
}

-- The request URL without its query, for messages.
local function shown(url)
  return (url:gsub("[?#].*$", ""))
end

_M.github = {
  name = "github-oidc",
  applies = function(c)
    return c:get("host") ~= nil and c:get("actions_id_token_request_url") ~= nil
      and c:get("actions_id_token_request_token") ~= nil
  end,
  configure = function(c)
    return configure(c, function(ep)
      local url = c:get("actions_id_token_request_url")
      if not url:match("^https://") then
        return nil, errors.new("config", "ACTIONS_ID_TOKEN_REQUEST_URL must be https (got " .. shown(url) .. ")")
      end
      local req = {
        method = "GET",
        url = url .. (url:find("?", 1, true) and "&" or "?") .. "audience=" .. core.url_encode(audience(c, ep)),
        headers = { Authorization = "Bearer " .. c:get("actions_id_token_request_token"),
                    Accept = "application/json" },
      }
      local res, err = c:_send_once(req)
      local what = "failed to request ID token from " .. shown(url) .. ": "
      if not res then return nil, errors.wrap(what, err) end
      if res.status ~= 200 then
        return nil, errors.new("oauth", what .. "HTTP " .. res.status, { status = res.status })
      end
      local doc = cjson.decode(res.body or "")
      if type(doc) ~= "table" or type(doc.value) ~= "string" or doc.value == "" then
        return nil, errors.new("oauth", what .. "the response has no ID token (value)")
      end
      return doc.value
    end)
  end,
}

return _M
