-- github-oidc-azure (notes cloud-auth §5, G auth_azure_github_oidc.go): in GitHub Actions, the
-- workflow's ID token for audience api://AzureADTokenExchange is the client assertion of an
-- Entra ID app registration with a federated credential for the repository; Entra ID answers
-- with a token for the Azure Databricks login app. Only Authorization is sent (no management
-- token: a federated identity has no secret to get one with). The ID token is fetched again at
-- every refresh: GitHub's expire within minutes.
--
-- Applies on Azure hosts (or when auth_type names it) with host, azure_client_id,
-- azure_tenant_id and ACTIONS_ID_TOKEN_REQUEST_URL / _TOKEN (job permission id-token: write).
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local azure = require "dbxauth.azure"
local errors = require "dbxauth.errors"
local tokensource = require "dbxauth.tokensource"

local NAME = "github-oidc-azure"
local AUDIENCE = "api://AzureADTokenExchange"
local TIMEOUT = 10
local ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

local function shown(url)
  return (url:gsub("[?#].*$", ""))
end

-- The ID token | nil, err. GitHub's URL already has a query (?api-version=2.0).
local function id_token(ctx)
  local url = ctx.get("actions_id_token_request_url")
  if not url:match("^https://") then
    return nil, errors.new("config", "ACTIONS_ID_TOKEN_REQUEST_URL must be https (got " .. shown(url) .. ")")
  end
  local res, err = ctx.send {
    method = "GET", timeout = TIMEOUT,
    url = url .. (url:find("?", 1, true) and "&" or "?") .. "audience=" .. core.url_encode(AUDIENCE),
    headers = { Authorization = "Bearer " .. ctx.get("actions_id_token_request_token"), Accept = "application/json" },
  }
  local what = "failed to request ID token from " .. shown(url) .. ": "
  if not res then return nil, errors.wrap(what, err) end
  if res.status ~= 200 then
    return nil, errors.new("oauth", what .. "HTTP " .. res.status, { status = res.status,
      hint = "the job needs `permissions: id-token: write`" })
  end
  local doc = cjson.decode(res.body or "")
  if type(doc) ~= "table" or type(doc.value) ~= "string" or doc.value == "" then
    return nil, errors.new("oauth", what .. "the response has no ID token (value)")
  end
  return doc.value
end

return {
  name = NAME,
  applies = function(ctx)
    return ctx.get("host") ~= nil and ctx.get("azure_client_id") ~= nil and ctx.get("azure_tenant_id") ~= nil
      and ctx.get("actions_id_token_request_url") ~= nil and ctx.get("actions_id_token_request_token") ~= nil
      and azure.applies(ctx, NAME)
  end,
  configure = function(ctx)
    local env, err = azure.environment(ctx)
    if not env then return nil, err end
    local function fetch()
      local jwt, jerr = id_token(ctx)
      if not jwt then return nil, jerr end
      local req = azure.token_request(env, ctx.get("azure_tenant_id"), {
        grant_type = "client_credentials",
        client_id = ctx.get("azure_client_id"),
        resource = env.login_app_id,
        client_assertion_type = ASSERTION,
        client_assertion = jwt,
      })
      req.timeout = TIMEOUT
      return ctx.token_request(req, "Entra ID token request", azure.parse)
    end
    return tokensource.credentials(tokensource.new { fetch = fetch, now = ctx.now })
  end,
}
