-- azure-msi (notes cloud-auth §4, G auth_azure_msi.go): an Azure managed identity. On a VM, VM
-- scale set or AKS node the Instance Metadata Service hands out its tokens:
--   GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01
--       [&client_id=<azure_client_id>]&resource=<R>        with Metadata: true
-- In App Service, Functions and Container Apps (IDENTITY_ENDPOINT and IDENTITY_HEADER set) the
-- platform's local identity endpoint does instead (api-version 2019-08-01, X-IDENTITY-HEADER),
-- a dbxauth extension the Go SDK does not have. As with client secrets, two tokens are kept:
-- the login app's (Authorization) and the service-management one (its header).
--
-- These endpoints speak plain HTTP, so they must be what the platforms document: the link-local
-- 169.254.169.254, or loopback. AZURE_POD_IDENTITY_AUTHORITY_HOST (the Azure Identity SDKs'
-- IMDS override) replaces http://169.254.169.254 under the same rule.
--
-- Applies on Azure hosts (or when auth_type names it) with azure_use_msi (ARM_USE_MSI) and a host
-- or azure_workspace_resource_id (then the host comes from Azure Resource Manager).
local core = require "dbxauth.core"
local azure = require "dbxauth.azure"
local errors = require "dbxauth.errors"
local urls = require "dbxauth.url"

local NAME = "azure-msi"
local IMDS = "http://169.254.169.254"
local TIMEOUT = 10      -- seconds, the Go SDK's azureMsiTimeout
local HINT = "azure-msi runs on Azure compute with a managed identity: check that the identity is assigned "
  .. "(and azure_client_id names it, for a user-assigned identity) and has access to the workspace"

-- A documented place for plain-HTTP tokens: 169.254.169.254 or loopback (http or https).
local function allowed(u)
  local p = urls.parse(u)
  return p ~= nil and (p.host == "169.254.169.254" or urls.is_loopback_host(p.host))
end

local function base_url(ctx, var, default)
  local v = ctx.getenv(var)
  if v == nil or v == "" then return default end
  if not allowed(v) then
    return nil, errors.new("config", var .. " must be a URL on 169.254.169.254 or localhost (it is fetched over "
      .. "plain HTTP)", { hint = "unset it, or point it at the managed identity endpoint of this host" })
  end
  return v
end

local function query(fields)
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. core.url_encode(fields[k]) end
  return table.concat(parts, "&")
end

-- The request for `resource`, from IMDS or from the App Service endpoint | nil, err.
local function request_for(ctx, resource)
  local endpoint, secret = ctx.getenv("IDENTITY_ENDPOINT"), ctx.getenv("IDENTITY_HEADER")
  local client_id = ctx.get("azure_client_id")
  if endpoint and endpoint ~= "" and secret and secret ~= "" then
    local url, err = base_url(ctx, "IDENTITY_ENDPOINT", endpoint)
    if not url then return nil, err end
    return { method = "GET", timeout = TIMEOUT,
             url = url .. (url:find("?", 1, true) and "&" or "?")
               .. query { ["api-version"] = "2019-08-01", resource = resource, client_id = client_id },
             headers = { ["X-IDENTITY-HEADER"] = secret, Accept = "application/json" } }
  end
  local base, err = base_url(ctx, "AZURE_POD_IDENTITY_AUTHORITY_HOST", IMDS)
  if not base then return nil, err end
  return { method = "GET", timeout = TIMEOUT,
           url = base:gsub("/+$", "") .. "/metadata/identity/oauth2/token?"
             .. query { ["api-version"] = "2018-02-01", resource = resource, client_id = client_id },
           headers = { Metadata = "true", Accept = "application/json" } }
end

local function parse(res, now, what)
  local tok, err = azure.parse(res, now, what)
  if not tok then
    err.hint = err.hint or HINT
    if res.status == 400 or res.status == 401 then err.hint = HINT end
  end
  return tok, err
end

return {
  name = NAME,
  applies = function(ctx)
    local where = ctx.get("host") ~= nil or ctx.get("azure_workspace_resource_id") ~= nil
    return ctx.get("azure_use_msi") == true and where and azure.applies(ctx, NAME)
  end,
  configure = function(ctx)
    local env, err = azure.environment(ctx)
    if not env then return nil, err end
    local function fetch_for(resource)
      return function()
        local req, rerr = request_for(ctx, resource)
        if not req then return nil, rerr end
        return ctx.token_request(req, "managed identity token request", parse)
      end
    end
    local ok
    ok, err = azure.ensure_host(ctx, env, fetch_for(env.arm))
    if not ok then return nil, err end
    return azure.credentials(ctx, { primary = fetch_for(env.login_app_id), management = fetch_for(env.sm) })
  end,
}
