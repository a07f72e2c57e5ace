-- Fake Azure identity endpoints for the fake workspace (runs inside nginx): Entra ID's token
-- endpoint, the Instance Metadata Service, the App Service identity endpoint and the workspace's
-- /aad/auth redirect. Tokens are minted in the workspace's token store (fake/oauth.lua), so the
-- workspace API accepts those for the Azure Databricks login app and refuses the rest.
--
--   POST /__entra/{tenant}/oauth2/token         v1: resource=<R>
--   POST /__entra/{tenant}/oauth2/v2.0/token    v2: scope=<R>/.default
--        grant client_credentials with client_secret (body or Basic) for creds.azure_client_id, or
--        client_assertion (jwt-bearer) = an ID token of the fake IdP with aud api://AzureADTokenExchange
--        (its sub becomes "federated:<sub>" unless it is creds.azure_client_id's). Unknown tenant,
--        client, secret or resource: Entra's error shape (error, error_description with AADSTS code
--        and "Trace ID", error_codes, error_uri, correlation_id). Counted "entra <resource>".
--   GET  /metadata/identity/oauth2/token?api-version=2018-02-01&resource=<R>[&client_id=]
--        needs Metadata: true; client_id must be settings.msi_client_id when given. "imds <resource>".
--   GET  /__appservice/msi/token?api-version=2019-08-01&resource=<R>   X-IDENTITY-HEADER needed.
--   GET  /aad/auth   302 to https://login.microsoftonline.com/<creds.azure_tenant_id>/oauth2/authorize?...
-- Settings: entra_lifetime (3600), msi_client_id (unset), azure_require_sm (false: when true, a
-- service principal's Entra token is accepted only with a valid management token beside it).
local common = require "spec.support.fake.common"
local oauth = require "spec.support.fake.oauth"
local idp = require "spec.support.fake.idp"

local ngx = ngx
local M = {}

M.LOGIN_APPS = { ["2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"] = true, ["62a912ac-b58e-4c1d-89ea-b2dbfc7358fc"] = true,
                 ["4a67d088-db5c-48f1-9ff2-0aace800ae68"] = true }
M.SM = { ["https://management.core.windows.net/"] = true, ["https://management.core.usgovcloudapi.net/"] = true,
         ["https://management.core.chinacloudapi.cn/"] = true }
local ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
local EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

local function entra_error(status, err, code, text)
  local trace = common.random_hex()
  return common.json(status, {
    error = err,
    error_description = "AADSTS" .. code .. ": " .. text .. " Trace ID: " .. trace .. " Correlation ID: "
      .. common.random_hex() .. " Timestamp: 2026-12-02 08:00:00Z",
    error_codes = { code },
    timestamp = "2026-12-02 08:00:00Z",
    trace_id = trace,
    correlation_id = common.random_hex(),
    error_uri = "https://login.microsoftonline.com/error?code=" .. code,
  })
end

-- The audience a token for `resource` gets in the fake's store.
local function audience_of(resource)
  if M.LOGIN_APPS[resource] then return "workspace" end
  if M.SM[resource] then return "azure-sm" end
  return nil
end

local function lifetime()
  return tonumber(common.settings().entra_lifetime) or 3600
end

-- Entra access tokens are JWTs (iss https://sts.windows.net/<tenant>/, aud = the resource); the
-- store, not a signature, makes them valid here.
local function mint(resource, who, kind)
  local aud = audience_of(resource)
  local life = lifetime()
  local now = math.floor(ngx.now())
  local claims = { iss = "https://sts.windows.net/" .. common.config.azure_tenant_id .. "/", aud = resource,
                   appid = who, iat = now, nbf = now, exp = now + life, jti = common.random_hex() }
  local token = common.b64url(common.encode { alg = "RS256", typ = "JWT", kid = "fake-entra" }) .. "."
    .. common.b64url(common.encode(claims)) .. "." .. common.b64url("fake-entra-signature:" .. common.random_hex())
  local rec = { sub = who, kind = kind, aud = aud, resource = resource, sp = kind ~= "user", exp = now + life }
  common.tokens:set(token, common.encode(rec), life + 60)
  common.counters:incr("entra " .. (aud or resource), 1, 0)
  return token, life
end

-- The identity of a client_credentials request | nil (an error was sent).
local function client(args)
  local cfg = common.config
  if args.client_assertion_type ~= nil or args.client_assertion ~= nil then
    if args.client_assertion_type ~= ASSERTION then
      entra_error(400, "invalid_request", 50027, "Invalid JWT token. client_assertion_type is not supported.")
      return nil
    end
    local p = idp.lookup(args.client_assertion)
    local auds = p and (type(p.aud) == "table" and p.aud or { p.aud }) or {}
    local ok = false
    for _, a in ipairs(auds) do ok = ok or a == EXCHANGE_AUDIENCE end
    if not p or not ok or p.exp <= ngx.now() then
      entra_error(400, "invalid_client", 700211, "No matching federated identity record found for presented "
        .. "assertion issuer or audience.")
      return nil
    end
    if args.client_id ~= cfg.azure_client_id then
      entra_error(400, "unauthorized_client", 700016, "Application with identifier '" .. tostring(args.client_id)
        .. "' was not found in the directory 'Fake'.")
      return nil
    end
    return args.client_id, "federated"
  end
  local id, secret = oauth.client_auth(args)
  if id ~= cfg.azure_client_id then
    entra_error(400, "unauthorized_client", 700016, "Application with identifier '" .. tostring(id)
      .. "' was not found in the directory 'Fake'.")
    return nil
  end
  if secret ~= cfg.azure_client_secret then
    entra_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent "
      .. "in the request is the client secret value, not the client secret ID.")
    return nil
  end
  return id, "service_principal"
end

local function token(tenant, v2)
  if tenant ~= common.config.azure_tenant_id then
    return entra_error(400, "invalid_request", 90002, "Tenant '" .. tenant .. "' not found.")
  end
  local ct = ngx.var.content_type
  if not ct or not ct:lower():find("^%s*application/x%-www%-form%-urlencoded") then
    return entra_error(400, "invalid_request", 900144, "The request body must contain the following parameter: "
      .. "'grant_type'.")
  end
  local args = ngx.req.get_post_args(100) or {}
  if args.grant_type ~= "client_credentials" then
    return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
  end
  local resource
  if v2 then
    resource = type(args.scope) == "string" and args.scope:match("^(.-)/?%.default$")
    if resource and M.SM[resource .. "/"] then resource = resource .. "/" end
  else
    resource = args.resource
  end
  if type(resource) ~= "string" or not audience_of(resource) then
    return entra_error(400, "invalid_resource", 500011, "The resource principal named " .. tostring(resource)
      .. " was not found in the tenant named Fake.")
  end
  local who, kind = client(args)
  if not who then return end
  local tok, life = mint(resource, who, kind)
  local now = math.floor(ngx.now())
  if v2 then
    return common.json(200, { token_type = "Bearer", expires_in = life, ext_expires_in = life, access_token = tok })
  end
  -- v1 sends its numbers as strings
  return common.json(200, { token_type = "Bearer", expires_in = tostring(life), ext_expires_in = tostring(life),
    expires_on = tostring(now + life), not_before = tostring(now), resource = resource, access_token = tok })
end

function M.token_v1(tenant) return token(tenant, false) end
function M.token_v2(tenant) return token(tenant, true) end

-- IMDS and App Service answer with expires_on (and IMDS with expires_in too), as strings.
local function managed(resource, client_id, counter)
  if type(resource) ~= "string" or not audience_of(resource) then
    return common.json(400, { error = "invalid_resource", error_description = "AADSTS500011: The resource "
      .. "principal named " .. tostring(resource) .. " was not found in the tenant." })
  end
  local want = common.settings().msi_client_id
  if client_id ~= nil and client_id ~= want then
    return common.json(400, { error = "invalid_request", error_description = "Identity not found" })
  end
  local tok, life = mint(resource, client_id or "system-assigned-identity", "managed_identity")
  common.counters:incr(counter .. " " .. audience_of(resource), 1, 0)
  local now = math.floor(ngx.now())
  return common.json(200, { access_token = tok, client_id = client_id or "fake-msi", expires_in = tostring(life),
    expires_on = tostring(now + life), ext_expires_in = tostring(life), not_before = tostring(now),
    resource = resource, token_type = "Bearer" })
end

function M.imds()
  if ngx.var.http_metadata ~= "true" then
    return common.json(400, { error = "invalid_request", error_description = "Required metadata header not specified" })
  end
  local a = ngx.req.get_uri_args(100)
  if a["api-version"] ~= "2018-02-01" then
    return common.json(400, { error = "invalid_request", error_description = "Invalid api-version" })
  end
  return managed(a.resource, a.client_id, "imds")
end

function M.app_service()
  if ngx.var.http_x_identity_header ~= common.config.identity_header then
    return common.json(401, { statusCode = 401, message = "Unauthorized" })
  end
  local a = ngx.req.get_uri_args(100)
  if a["api-version"] ~= "2019-08-01" then
    return common.json(400, { statusCode = 400, message = "Invalid api-version" })
  end
  return managed(a.resource, a.client_id, "appservice")
end

function M.aad_auth()
  ngx.status = 302
  ngx.header["Location"] = "https://login.microsoftonline.com/" .. common.config.azure_tenant_id
    .. "/oauth2/authorize?client_id=2ff814a6-3304-4ab8-85cb-cd0e6f879c1d&response_type=code"
  ngx.header["Content-Length"] = 0
  return ngx.exit(302)
end

-- For the workspace API: nil, or why an Entra token `t` is refused with these request headers.
function M.check_headers(t)
  local id = ngx.var.http_x_databricks_azure_workspace_resource_id
  if id ~= nil and id ~= common.config.azure_resource_id then
    return "X-Databricks-Azure-Workspace-Resource-Id does not name this workspace"
  end
  if t.sp and common.settings().azure_require_sm then
    local sm = oauth.lookup(ngx.var.http_x_databricks_azure_sp_management_token or "")
    if not sm or sm.aud ~= "azure-sm" or sm.exp <= ngx.now() then
      return "Missing or invalid X-Databricks-Azure-SP-Management-Token for a service principal"
    end
  end
end

function M.install(app)
  app.routes["/metadata/identity/oauth2/token"] = { GET = M.imds }
  app.routes["/__appservice/msi/token"] = { GET = M.app_service }
  app.routes["/aad/auth"] = { GET = M.aad_auth }
  table.insert(app.pattern_routes, { "^/__entra/([^/]+)/oauth2/token$", { POST = M.token_v1 } })
  table.insert(app.pattern_routes, { "^/__entra/([^/]+)/oauth2/v2%.0/token$", { POST = M.token_v2 } })
end

return M
