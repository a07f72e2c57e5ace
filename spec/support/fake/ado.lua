-- Azure DevOps's pipeline ID-token API (runs inside nginx; the azure-devops-oidc auth type,
-- cloud-auth §6). The collection is ws.ado_collection ("<ws.url>/__ado/<org>/", with the trailing
-- "/" Azure DevOps gives SYSTEM_TEAMFOUNDATIONCOLLECTIONURI):
--   POST /__ado/<org>/<project>/_apis/distributedtask/hubs/<hostType>/plans/<plan>/jobs/<job>/oidctoken
--        ?api-version=7.2-preview.1
--   needs Authorization: Bearer <creds.ado_access_token> (401 otherwise) and that api-version
--   (400 otherwise); answers {"oidcToken": "<jwt>"}: a JWT of the fake IdP (fake/idp.lua) with
--   aud api://AzureADTokenExchange, as Azure DevOps always sets, iss https://vstoken.dev.azure.com/<org>,
--   sub p://<org>/<project>/<hostType> (or the setting ado_sub). The workspace's token endpoint
--   accepts it only when the federation policy does: the setting federation_audience must
--   include api://AzureADTokenExchange.
-- Setting ado_empty_token = true answers {"oidcToken": ""}.
local common = require "spec.support.fake.common"
local idp = require "spec.support.fake.idp"

local ngx = ngx
local M = {}

M.AUDIENCE = "api://AzureADTokenExchange"
M.PATTERN = "^/__ado/([^/]+)/([^/]+)/_apis/distributedtask/hubs/([^/]+)/plans/[^/]+/jobs/[^/]+/oidctoken$"

function M.oidctoken()
  local org, project, host_type = ngx.var.uri:match(M.PATTERN)
  local h = ngx.var.http_authorization
  local tok = h and h:match("^Bearer (%S+)$")
  if tok ~= common.config.ado_access_token then
    return common.json(401, { message = "TF400813: The user '' is not authorized to access this resource.",
                              typeKey = "UnauthorizedRequestException" })
  end
  if ngx.req.get_uri_args()["api-version"] ~= "7.2-preview.1" then
    return common.json(400, { message = "The requested REST API version is not supported.",
                              typeKey = "VssVersionNotSupportedException" })
  end
  local s = common.settings()
  if s.ado_empty_token then return common.json(200, { oidcToken = "" }) end
  local jwt = idp.issue { iss = "https://vstoken.dev.azure.com/" .. org, aud = M.AUDIENCE, ttl = 300,
                         sub = s.ado_sub or ("p://" .. org .. "/" .. project .. "/" .. host_type) }
  return common.json(200, { oidcToken = jwt })
end

M.pattern_routes = { { M.PATTERN, { POST = M.oidctoken } } }

return M
