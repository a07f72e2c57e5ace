-- Azure Entra ID, shared by the Azure providers (notes cloud-auth §0): the environment of the
-- host (authority, service-management endpoint, login app id), the tenant from the workspace's
-- /aad/auth redirect, Entra's v1 token requests and responses, its error text, and the
-- credentials that send Entra tokens to Azure Databricks with the headers it expects.
--
--   azure.applies(ctx, name)        the Go SDK's cloud gate (or auth_type names the provider)
--   azure.environment(ctx)          { name, login_app_id, authority, sm, arm } | nil, err
--   azure.tenant(ctx)               azure_tenant_id, else the one /aad/auth redirects to | nil, err
--   azure.token_request(env, tenant, fields)  POST {authority}{tenant}/oauth2/token (v1 form)
--   azure.parse(res, now, what)     an Entra / IMDS token response -> token | nil, err
--   azure.credentials(ctx, { primary = fetch, management = fetch | nil, ... })
--   azure.is_entra_token(token)     a JWT Entra issued? (Apps refuse them unexchanged)
--
-- AZURE_AUTHORITY_HOST (the Azure Identity SDKs' variable; the Databricks SDKs ignore it) replaces
-- the environment's authority: sovereign or air-gapped clouds, and the specs' seam to a fake.
local cjson = require "cjson.safe"
local core = require "dbxauth.core"
local apierror = require "dbxauth.apierror"
local errors = require "dbxauth.errors"
local hosts = require "dbxauth.host"
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local _M = {}

-- Entra expiries move this much earlier: Azure Databricks rejects tokens with <= 30 s left.
_M.EARLY = 40

_M.SM_HEADER = "X-Databricks-Azure-SP-Management-Token"
_M.RESOURCE_ID_HEADER = "X-Databricks-Azure-Workspace-Resource-Id"

-- G common/environment/azure.go: every endpoint ends in "/".
_M.CLOUDS = {
  PUBLIC = { authority = "https://login.microsoftonline.com/", sm = "https://management.core.windows.net/",
             arm = "https://management.azure.com/" },
  USGOVERNMENT = { authority = "https://login.microsoftonline.us/",
                   sm = "https://management.core.usgovcloudapi.net/", arm = "https://management.usgovcloudapi.net/" },
  CHINA = { authority = "https://login.chinacloudapi.cn/", sm = "https://management.core.chinacloudapi.cn/",
            arm = "https://management.chinacloudapi.cn/" },
}

local function fail(code, message, fields)
  return nil, errors.new(code, message, fields)
end

function _M.applies(ctx, name)
  return ctx.get("auth_type") == name or ctx.cloud() == "Azure"
end

-- The production row of host.lua's table for an environment name (no .dev / .staging zones).
local function row_named(name)
  for _, env in ipairs(hosts.ENVIRONMENTS) do
    if env.azure_environment == name and not env.suffix:find("^%.dev%.") and not env.suffix:find("^%.staging%.") then
      return env
    end
  end
end

-- AZURE_AUTHORITY_HOST normalised to end in "/", or nil, err. Tokens and secrets go there, so it
-- must be https (plain http only to loopback) and a plain URL.
local function authority_override(ctx)
  local v = ctx.getenv("AZURE_AUTHORITY_HOST")
  if v == nil or v == "" then return nil end
  local p, why = urls.parse(v)
  if not p or urls.plain_http_off_loopback(v) then
    return nil, errors.new("config", "AZURE_AUTHORITY_HOST is not a usable authority: "
      .. (why or "plain http is allowed only to localhost"), {
      hint = "set it to the Entra ID authority, like https://login.microsoftonline.com/, or unset it",
    })
  end
  if v:find("[?#]") then
    return nil, errors.new("config", "AZURE_AUTHORITY_HOST must not have a query or fragment",
      { hint = "set it to the Entra ID authority, like https://login.microsoftonline.com/" })
  end
  return (v:gsub("/+$", "")) .. "/"
end

-- The host's DNS zone decides (notes §0.2). Without an Azure zone (no host but a resource id, or
-- a custom host that `cloud` or host metadata calls Azure), azure_environment (ARM_ENVIRONMENT,
-- default PUBLIC) names it, as the SDKs do for the no-host case.
function _M.environment(ctx)
  local row = hosts.environment(ctx.get("host"))
  if not row.azure_environment then
    local name = (ctx.get("azure_environment") or "PUBLIC"):upper()
    row = row_named(name)
    if not row then
      return fail("config", "unknown Azure environment: " .. name:sub(1, 40),
        { hint = "azure_environment (ARM_ENVIRONMENT) is PUBLIC, USGOVERNMENT or CHINA" })
    end
  end
  local cloud = _M.CLOUDS[row.azure_environment]
  local authority, err = authority_override(ctx)
  if err then return nil, err end
  return { name = row.azure_environment, login_app_id = row.azure_login_app_id,
           authority = authority or cloud.authority, sm = cloud.sm, arm = cloud.arm }
end

---------------------------------------------------------------------------------------------
-- Tenant discovery (notes §0.4, G loadAzureTenantId)

-- The first path segment of the Location /aad/auth redirects to (the login page of the
-- workspace's tenant: https://login.microsoftonline.com/<tenant>/oauth2/authorize?...).
function _M.tenant_from_location(location)
  if type(location) ~= "string" then return nil end
  local rest = location:match("^[%a][%w+.%-]*://[^/?#]*(/[^?#]*)") or location:match("^(/[^?#]*)")
  local tenant = rest and rest:match("^/([^/]+)")
  if tenant and tenant:find("^[%w%-%._]+$") then return tenant end
  return nil
end

function _M.tenant(ctx)
  local t = ctx.get("azure_tenant_id")
  if t then return t end
  local host = ctx.get("host")
  if not host then
    return fail("config", "load tenant id: no host to discover the tenant from",
      { hint = "set azure_tenant_id (ARM_TENANT_ID)" })
  end
  local res, err = ctx.send { method = "GET", url = host .. "/aad/auth", headers = {} }
  if not res then return nil, errors.wrap("load tenant id: ", err) end
  local tenant = _M.tenant_from_location(res.headers and res.headers.location)
  if not tenant then
    return fail("config", "load tenant id: " .. host .. "/aad/auth did not redirect to an Entra ID login page (HTTP "
      .. res.status .. ")", { status = res.status, hint = "set azure_tenant_id (ARM_TENANT_ID)" })
  end
  return tenant
end

---------------------------------------------------------------------------------------------
-- The host from azure_workspace_resource_id (notes §0.5, G azureEnsureWorkspaceUrl): with no
-- host, ask Azure Resource Manager for the workspace's URL, with a token for ARM.

-- ARM's error text: error.message without its final "." (G mapAzureResourceManagerError).
local function arm_error(res)
  local err = apierror.from_response(res)
  local doc = cjson.decode(res.body or "")
  local m = type(doc) == "table" and type(doc.error) == "table" and doc.error.message
  if type(m) == "string" then err.message = (m:gsub("%.$", ""):gsub("%c", " ")):sub(1, 1024) end
  return err
end

-- arm_token() -> token | nil, err. true | nil, err
function _M.ensure_host(ctx, env, arm_token)
  local id = ctx.get("azure_workspace_resource_id")
  if ctx.get("host") or not id then return true end
  local function fail_with(err) return nil, errors.wrap("resolve host: resolve workspace: ", err) end
  local tok, err = arm_token()
  if not tok then return fail_with(err) end
  local res
  res, err = ctx.send { method = "GET", url = env.arm:gsub("/+$", "") .. id .. "?api-version=2018-04-01",
    headers = { Authorization = require("dbxauth.headers").authorization(tok), Accept = "application/json" } }
  if not res then return fail_with(err) end
  if res.status < 200 or res.status > 299 then return fail_with(arm_error(res)) end
  local doc = cjson.decode(res.body or "")
  local url = type(doc) == "table" and type(doc.properties) == "table" and doc.properties.workspaceUrl
  if type(url) ~= "string" or url == "" then
    return fail_with(errors.new("invalid_response", "the workspace has no properties.workspaceUrl"))
  end
  if not url:find("://", 1, true) then url = "https://" .. url end
  return ctx.set_host(url)
end

---------------------------------------------------------------------------------------------
-- Entra ID requests and responses

-- POST {authority}{tenant}/oauth2/token: the v1 endpoint, which takes `resource` (notes §0.1).
function _M.token_request(env, tenant, fields)
  return {
    method = "POST",
    url = env.authority .. tenant .. "/oauth2/token",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
    body = oauth.form(fields),
  }
end

-- A whole number of seconds since the epoch (JSON number or numeric string), or nil.
local function epoch(v)
  local n
  if type(v) == "number" then n = v
  elseif type(v) == "string" and v:match("^%s*%d+%s*$") and #v < 20 then n = tonumber(v) end
  if n and n == n and n >= 0 and n < 2 ^ 53 and math.floor(n) == n then return n end
  return nil
end

-- G mapAzureActiveDirectoryError: the description up to ". Trace ID" (v1 puts "\r\n" there: cut
-- too), then ". See <error_uri>". Trace and correlation ids help only in Entra's own logs.
function _M.entra_message(doc)
  if type(doc) ~= "table" or type(doc.error_description) ~= "string" then return nil end
  local msg = doc.error_description
  local cut = msg:find("%.?[\r\n ]+Trace ID")
  if cut then msg = msg:sub(1, cut - 1) end
  if type(doc.error_uri) == "string" and doc.error_uri ~= "" then
    msg = msg:gsub("%.$", "") .. ". See " .. doc.error_uri
  end
  return (msg:gsub("[%c]", " "))
end

local function failed(res, what)
  local err = apierror.from_response(res)
  local doc = cjson.decode(res.body or "")
  local msg = _M.entra_message(doc)
  if type(doc) == "table" and type(doc.error) == "string" then err.oauth_error = doc.error end
  err.message = what .. " failed: " .. (msg and msg:sub(1, 1024) or err.message)
  if res.status == 400 or res.status == 401 then
    err.hint = "check azure_client_id, azure_tenant_id and the credential (client secret or federated identity)"
  end
  return nil, err
end

-- An Entra ID (v1 or v2) or managed-identity token response. expires_in wins, then expires_on
-- (number or string: Entra v1 sends both as strings, IMDS only expires_on), then the JWT's exp;
-- the expiry is moved 40 s earlier (notes §0.8).
function _M.parse(res, now, what)
  what = what or "Entra ID token request"
  if res.status < 200 or res.status > 299 then return failed(res, what) end
  local tok, err = oauth.parse_token_response(res, now, what)
  if not tok then return nil, err end
  local doc = cjson.decode(res.body or "")
  local expiry = tok.expiry
  if type(doc) == "table" and doc.expires_in == nil and doc.expires_on ~= nil then
    expiry = epoch(doc.expires_on)
    if not expiry then
      return fail("oauth", what .. " failed: invalid token expiry: expires_on is not a number of seconds",
        { status = res.status })
    end
  end
  if expiry then tok.expiry = expiry - _M.EARLY end
  tok.scopes = nil    -- an Entra scope is not a Databricks scope
  return tok
end

-- Is `token` an Entra ID access token (a JWT Entra issued)? Databricks Apps refuse those: they
-- must be exchanged for a Databricks OAuth token first (seed 001).
local ISSUERS = { "^https://sts%.windows%.net/", "^https://login%.microsoftonline%.com/",
                  "^https://login%.microsoftonline%.us/", "^https://sts%.chinacloudapi%.cn/",
                  "^https://login%.chinacloudapi%.cn/" }
function _M.is_entra_token(token)
  local payload = type(token) == "string" and token:match("^[%w_-]+%.([%w_-]+)%.[%w_-]*$")
  local json = payload and core.b64url_decode(payload)
  local claims = json and cjson.decode(json)
  local iss = type(claims) == "table" and claims.iss
  if type(iss) ~= "string" then return false end
  for _, p in ipairs(ISSUERS) do
    if iss:find(p) then return true end
  end
  return false
end

_M.TYPES = { ["azure-client-secret"] = true, ["azure-msi"] = true, ["azure-cli"] = true,
             ["github-oidc-azure"] = true }

---------------------------------------------------------------------------------------------
-- Credentials: Authorization with the Entra token for the login app, the management token and
-- the workspace resource id beside it (notes §0.6)

-- o.primary(), o.management(): fetch functions (token | nil, err); o.management nil: no SM header
-- (once there is one, a failing refresh fails the request, as in Go). o.primary_token,
-- o.management_token: tokens fetched already (the CLI's).
function _M.credentials(ctx, o)
  local primary = tokensource.new { fetch = o.primary, now = ctx.now }
  if o.primary_token then primary:set(o.primary_token) end
  local management = o.management and tokensource.new { fetch = o.management, now = ctx.now }
  if management and o.management_token then management:set(o.management_token) end
  local resource_id = ctx.get("azure_workspace_resource_id")
  local last_p, last_m, last
  local creds = { source = primary }
  function creds.token() return primary:token() end
  function creds.headers()
    local p, err = primary:token()
    if not p then return nil, errors.wrap("inner token: ", err) end
    local m
    if management then
      m, err = management:token()
      if not m then return nil, errors.wrap("cloud token: ", err) end
    end
    if p ~= last_p or m ~= last_m or not last then
      last_p, last_m = p, m
      last = { Authorization = require("dbxauth.headers").authorization(p) }
      if m then last[_M.SM_HEADER] = m.access_token end
      if resource_id then last[_M.RESOURCE_ID_HEADER] = resource_id end
    end
    return last
  end
  return creds
end

return _M
