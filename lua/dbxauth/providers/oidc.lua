-- OIDC workload identity federation (notes §6.6, §6.7), shared by the github-oidc,
-- azure-devops-oidc, env-oidc and file-oidc providers: an identity provider's JWT is exchanged
-- (RFC 8693) for a Databricks token at the OIDC token endpoint, with `client_id` when
-- configured (service principal federation policy) and without it (account-wide). The JWT is
-- read again at every refresh: CI systems rotate it. This file is a helper, not a provider.
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"

local _M = {}

-- Audience of the ID token we ask an IdP for, in the Go SDK's order (determineAudience):
-- token_audience (explicit, DATABRICKS_TOKEN_AUDIENCE, or filled in from host metadata), else
-- the account id on hosts that are not workspaces (account and unified hosts), else the token
-- endpoint (notes §6.7, cloud-auth §9).
function _M.audience(ctx, ep)
  local aud = ctx.get("token_audience")
  if aud then return aud end
  local account = ctx.get("account_id")
  if account and ctx.host_type() ~= "workspace" then return account end
  return ep.token_endpoint
end

-- id_token(audience, ep) -> jwt | nil, err. Every provider is handed the audience; sources whose
-- tokens carry a fixed one (a file, a variable, Azure DevOps) ignore it.
function _M.credentials(ctx, id_token)
  local function fetch()
    local ep, err = ctx.endpoints()
    if not ep then return nil, err end
    local jwt
    jwt, err = id_token(_M.audience(ctx, ep), ep)
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
