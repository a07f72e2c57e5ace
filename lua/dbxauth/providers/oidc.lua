-- OIDC workload identity federation (notes §6.6, §6.7), shared by the github-oidc, env-oidc and
-- file-oidc providers: an identity provider's JWT is exchanged (RFC 8693) for a Databricks
-- token at the OIDC token endpoint, with `client_id` when configured (service principal
-- federation policy) and without it (account-wide). The JWT is read again at every refresh:
-- CI systems rotate it. This file is a helper, not a provider.
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"

local _M = {}

-- Audience of the ID token we ask an IdP for: token_audience, else the account id on
-- non-workspace hosts, else the token endpoint (notes §6.7).
function _M.audience(ctx, ep)
  local aud = ctx.get("token_audience")
  if aud then return aud end
  if ctx.is_account() and ctx.get("account_id") then return ctx.get("account_id") end
  return ep.token_endpoint
end

-- id_token(ep) -> jwt | nil, err
function _M.credentials(ctx, id_token)
  local function fetch()
    local ep, err = ctx.endpoints()
    if not ep then return nil, err end
    local jwt
    jwt, err = id_token(ep)
    if not jwt then return nil, err end
    local req = oauth.token_exchange_request {
      token_endpoint = ep.token_endpoint,
      subject_token = jwt,
      subject_token_type = oauth.TYPE_JWT,
      scopes = ctx.scopes(),
      client_id = ctx.get("client_id"),
    }
    return ctx.token_request(req, "OIDC token exchange")
  end
  return tokensource.credentials(tokensource.new { fetch = fetch, now = ctx.now })
end

_M.trim_end = require("dbxauth.text").rtrim

-- A non-empty environment variable, or nil.
function _M.getenv(ctx, name)
  local v = ctx.getenv(name)
  if v == "" then return nil end
  return v
end

return _M
