-- Where a host's OAuth endpoints are (decision D9):
--   1. host metadata  GET {host}/.well-known/databricks-config  (best effort, one attempt)
--   2. an explicit discovery_url is fetched, and its failure is the answer;
--   3. an OIDC root from host metadata gives the endpoints directly (saves a round trip);
--   4. account hosts use {host}/oidc/accounts/{account_id}/v1/...;
--   5. workspaces fetch {host}/oidc/.well-known/oauth-authorization-server; a 404 there means
--      the host has no Databricks OAuth, other failures fall back to {host}/oidc/v1/....
-- Endpoints must be on the origin of the document that names them (metadata: the host;
-- discovery: the document's URL): a document naming another host or plain HTTP is an error
-- (invalid_response), never a fallback, so credentials only ever go to the configured host.
--
-- Results are kept for an hour in the process-wide "discovery" cache, keyed by the TLS scope
-- (the transport, or the CA and verification settings that build one) and the URL, so that
-- configurations for the same workspace share one lookup but a configuration with other TLS
-- settings never sees an answer fetched under weaker ones. dbxauth.clear_caches() clears it.
--
-- io = { send = fn(req) -> res | nil, err (one attempt), now = fn() -> seconds, scope = string }
local cache = require "dbxauth.cache"
local oauth = require "dbxauth.oauth"
local errors = require "dbxauth.errors"

local _M = {}

local TTL = 3600

local function store()
  return cache.shared("discovery", TTL)
end

local function cached(io, key, compute)
  local c = store()
  key = io.scope .. "\0" .. key
  local hit = c:get(key, io.now())
  if hit ~= nil then return hit.value end
  local value, err, remember = compute()
  if remember then c:set(key, { value = value }, io.now()) end
  return value, err
end

-- Host metadata (a table), nil when the host has none, or nil, err when the host's TLS
-- certificate cannot be verified or the metadata names an OIDC endpoint off the host.
function _M.metadata(io, host)
  return cached(io, "metadata " .. host, function()
    local res, err = io.send(oauth.metadata_request(host))
    -- An unverifiable certificate will fail every later request too: say so now.
    if not res and err.code == "tls" then return nil, err, false end
    local md = oauth.parse_metadata(res)
    if md and md.oidc_endpoint then
      local bad = oauth.check_endpoint("OIDC endpoint", md.oidc_endpoint, host, "host metadata")
      if bad then return nil, bad, false end
    end
    -- A transport failure is not remembered: the next configuration may reach the host.
    return md, nil, res ~= nil
  end)
end

-- Host metadata fills only attributes the user left unset (notes §5.1).
function _M.apply(state, md)
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

local function fetch_discovery(io, url)
  local res, err = io.send(oauth.discovery_request(url))
  if not res then return nil, err end
  return oauth.parse_discovery(res, url)
end

local function remembered(io, url)
  return cached(io, "discovery " .. url, function()
    local ep, err = fetch_discovery(io, url)
    return ep, err, ep ~= nil
  end)
end

-- p = { host, account_id, is_account, discovery_url (explicit), metadata (table|nil) }
function _M.endpoints(io, p)
  if p.discovery_url then
    -- The user named this document: if it cannot be used, say so (no silent fallback).
    return remembered(io, p.discovery_url)
  end
  local root = oauth.oidc_root(p.metadata, p.account_id)
  if root then return oauth.endpoints_from_root(root) end
  if p.is_account then
    if not p.account_id then
      return nil, errors.new("config", "account_id is required for account-level OAuth", {
        hint = "set account_id (or DATABRICKS_ACCOUNT_ID) to the id of your Databricks account",
      })
    end
    return oauth.endpoints_from_root(oauth.account_root(p.host, p.account_id))
  end
  local ep, err = remembered(io, oauth.workspace_discovery_url(p.host))
  if ep then return ep end
  if err.code == "tls" or err.code == "invalid_response" then return nil, err end
  if err.status == 404 then
    return nil, errors.new("oauth", "databricks OAuth is not supported for this host", {
      status = 404,
      hint = "check that host is a Databricks workspace URL; OAuth is served under {host}/oidc",
    })
  end
  -- Not remembered: the document may be reachable next time.
  return oauth.endpoints_from_root(p.host .. "/oidc")
end

return _M
