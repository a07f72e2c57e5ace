-- azure-devops-oidc (cloud-auth §6): in an Azure DevOps pipeline, the job's ID token is asked
-- of Azure DevOps (the SYSTEM_* variables the agent sets) and exchanged for a Databricks token
-- at the Databricks token endpoint (RFC 8693 federation, like env-oidc), not at Entra ID.
-- Azure DevOps tokens always carry the audience api://AzureADTokenExchange: the federation
-- policy must accept it, and the audience we would ask for is ignored. A new ID token is asked
-- for at every refresh of the Databricks token (they are short-lived).
--
-- SYSTEM_ACCESSTOKEN is a credential of the pipeline: it is masked in every message (chain
-- SECRET_ENV) and only ever sent to the collection's https:// URL.
local apierror = require "dbxauth.apierror"
local cjson = require "cjson.safe"
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local oidc = require "dbxauth.providers.oidc"
local urls = require "dbxauth.url"

local ACCESS_TOKEN = "SYSTEM_ACCESSTOKEN"
local COLLECTION = "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"
-- In the Go SDK's order: the first one missing is the one named.
local PIPELINE_ENV = { COLLECTION, "SYSTEM_PLANID", "SYSTEM_JOBID", "SYSTEM_TEAMPROJECTID", "SYSTEM_HOSTTYPE" }
local API_VERSION = "7.2-preview.1"
local DOCS = "https://learn.microsoft.com/en-us/azure/devops/pipelines/build/variables?view=azure-devops&tabs=yaml"
  .. "#systemaccesstoken"

-- nil when every variable is there, else the Go SDK's error for the first one missing.
local function missing(ctx)
  if not oidc.getenv(ctx, ACCESS_TOKEN) then
    return errors.new("config", "SYSTEM_ACCESSTOKEN env var not found, if calling from Azure DevOps Pipeline, "
      .. "please set this env var following " .. DOCS, {
        hint = "map it into the step's environment: env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
      })
  end
  for _, name in ipairs(PIPELINE_ENV) do
    if not oidc.getenv(ctx, name) then
      return errors.new("config", "not calling from Azure DevOps Pipeline: missing env var " .. name)
    end
  end
  return nil
end

local function segment(ctx, name)
  return core.url_encode(ctx.getenv(name))
end

-- The oidctoken URL | nil, err. The collection URI ends in "/" as Azure DevOps sets it (Go
-- adds one more, Python none): exactly one separates it from the project.
local function oidctoken_url(ctx)
  local collection = ctx.getenv(COLLECTION)
  local p = urls.parse(collection)
  if not p or p.scheme ~= "https" then
    return nil, errors.new("config", COLLECTION .. " must be an https:// URL", {
      hint = "it is set by the Azure DevOps agent, like https://dev.azure.com/<organization>/",
    })
  end
  return collection:gsub("/+$", "") .. "/" .. segment(ctx, "SYSTEM_TEAMPROJECTID")
    .. "/_apis/distributedtask/hubs/" .. segment(ctx, "SYSTEM_HOSTTYPE")
    .. "/plans/" .. segment(ctx, "SYSTEM_PLANID") .. "/jobs/" .. segment(ctx, "SYSTEM_JOBID")
    .. "/oidctoken?api-version=" .. API_VERSION
end

local WHAT = "failed to request ID token from Azure DevOps: "

local function id_token(ctx)
  local err = missing(ctx)
  if err then return nil, err end
  local url
  url, err = oidctoken_url(ctx)
  if not url then return nil, err end
  local res
  res, err = ctx.send_token {
    method = "POST",
    url = url,
    body = "",
    headers = { Authorization = "Bearer " .. ctx.getenv(ACCESS_TOKEN), Accept = "application/json",
                ["Content-Type"] = "application/json" },
  }
  if not res then
    err = errors.wrap(WHAT, err)
    err.message = ctx.redact(err.message)
    return nil, err
  end
  if res.status < 200 or res.status > 299 then
    -- The server's text may echo the access token: masked in the one error object made.
    local e = apierror.from_response(res)
    e.code = "oauth"
    e.message = ctx.redact(WHAT .. "HTTP " .. res.status .. ": " .. e.message)
    e.hint = "check that the pipeline may use its access token (System.AccessToken) and that the job is running"
    return nil, e
  end
  local doc = cjson.decode(res.body or "")
  local tok = type(doc) == "table" and doc.oidcToken
  if type(tok) ~= "string" or tok == "" then
    return nil, errors.new("oauth", "empty OIDC token received from Azure DevOps")
  end
  return tok
end

return {
  name = "azure-devops-oidc",
  secret_env = { ACCESS_TOKEN },
  applies = function(ctx)
    return ctx.get("host") ~= nil and missing(ctx) == nil
  end,
  -- Why it does not apply, for an auth_type that names it (the Go SDK's texts).
  explain = missing,
  configure = function(ctx)
    return oidc.credentials(ctx, function() return id_token(ctx) end)
  end,
}
