-- Where a host's OAuth endpoints are (decision D9), cached per host so that every
-- configuration for the same workspace shares one lookup:
--   1. host metadata  GET {host}/.well-known/databricks-config  (best effort, one attempt)
--   2. an explicit discovery_url is fetched, and its failure is the answer;
--   3. an OIDC root from host metadata gives the endpoints directly (saves a round trip);
--   4. account hosts use {host}/oidc/accounts/{account_id}/v1/...;
--   5. workspaces fetch {host}/oidc/.well-known/oauth-authorization-server; a 404 there means
--      the host has no Databricks OAuth, other failures fall back to {host}/oidc/v1/....
-- Endpoints must be on the origin of the document that names them (metadata: the host;
-- discovery: the document's URL): a document naming another host or plain HTTP is an error
-- (invalid_response), never a fallback, so credentials only ever go to the configured host.
local oauth = require "dbxauth.oauth"
local errors = require "dbxauth.errors"

local _M = {}

local TTL = 3600
local metadata_cache = {}   -- host -> { md = table|false, at = seconds }
local endpoint_cache = {}   -- key -> { ep = table, at = seconds }

function _M.clear()
  metadata_cache, endpoint_cache = {}, {}
end

-- send(req) -> res | nil, err  (one attempt, no retries); now() -> seconds
function _M.metadata(host, send, now)
  local hit = metadata_cache[host]
  if hit and now() - hit.at < TTL then return hit.md or nil end
  local res, err = send(oauth.metadata_request(host))
  -- An unverifiable certificate will fail every later request too: say so now.
  if not res and err.code == "tls" then return nil, err end
  local md = oauth.parse_metadata(res)
  if md and md.oidc_endpoint then
    local bad = oauth.check_endpoint("OIDC endpoint", md.oidc_endpoint, host, "host metadata")
    if bad then return nil, bad end
  end
  -- A transport failure is not remembered: the next configuration may reach the host.
  if res then metadata_cache[host] = { md = md or false, at = now() } end
  return md
end

local function fetch_discovery(url, send)
  local res, err = send(oauth.discovery_request(url))
  if not res then return nil, err end
  return oauth.parse_discovery(res, url)
end

local function cached(key, now, compute)
  local hit = endpoint_cache[key]
  if hit and now() - hit.at < TTL then return hit.ep end
  local ep, err = compute()
  if ep then endpoint_cache[key] = { ep = ep, at = now() } end
  return ep, err
end

-- p = { host, account_id, is_account, discovery_url (explicit), metadata (table|nil) }
function _M.endpoints(p, send, now)
  if p.discovery_url then
    -- The user named this document: if it cannot be used, say so (no silent fallback).
    return cached("d " .. p.discovery_url, now, function()
      return fetch_discovery(p.discovery_url, send)
    end)
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
  local ep, err = cached("w " .. p.host, now, function()
    return fetch_discovery(oauth.workspace_discovery_url(p.host), send)
  end)
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
