-- google-id (notes cloud-auth §8): impersonation of google_service_account through the IAM
-- Credentials API, with the application default credentials (google_adc.lua) as the source
-- identity, as the Go SDK's impersonate package does: generateIdToken (audience = the host,
-- includeEmail) for Authorization, generateAccessToken (cloud-platform and compute scopes, one
-- hour) for X-Databricks-GCP-SA-Access-Token when it can be had. The source identity needs
-- roles/iam.serviceAccountTokenCreator on the service account. Applies on GCP hosts only, as
-- in the Go SDK, unless auth_type names it.
--
-- DBXAUTH_GOOGLE_IAM_URL (a dbxauth extension, for tests and private endpoints) replaces
-- https://iamcredentials.googleapis.com; it must be https:// (plain http on loopback only).
local adc = require "dbxauth.google_adc"
local errors = require "dbxauth.errors"
local google = require "dbxauth.google"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local IAM_URL = "https://iamcredentials.googleapis.com"
local HELP = " Running 'gcloud auth application-default login' may help"
local OIDC = "could not obtain OIDC token. "

-- The IAM Credentials base URL | nil, err.
local function iam_base(ctx)
  local v = ctx.getenv("DBXAUTH_GOOGLE_IAM_URL")
  if v == nil or v == "" then return IAM_URL end
  v = v:gsub("/+$", "")
  local p = urls.parse(v)
  if not p or urls.plain_http_off_loopback(v) or p.target:find("[?#]") then
    return nil, errors.new("config", "DBXAUTH_GOOGLE_IAM_URL must be an https:// base URL",
      { hint = "unset it to use " .. IAM_URL })
  end
  return v
end

-- Why a failure happened, with what fixes it.
local function explain(err, account)
  local hint = err.hint
  if err.status == 403 or err.status == 404 then
    hint = "the application default credentials need roles/iam.serviceAccountTokenCreator on "
      .. account .. ", and the service account must exist"
  elseif err.status == 401 then
    hint = "the application default credentials were rejected: run `gcloud auth application-default login`"
  end
  return hint
end

return {
  name = "google-id",
  applies = function(ctx)
    return ctx.get("google_service_account") ~= nil and ctx.get("host") ~= nil
      and (ctx.cloud() == "GCP" or ctx.get("auth_type") == "google-id")
  end,
  configure = function(ctx)
    local base, berr = iam_base(ctx)
    if not base then return nil, berr end
    local found, err = adc.find(ctx)
    if not found then
      err.message = OIDC .. err.message .. HELP
      return nil, err
    end
    local account, host = ctx.get("google_service_account"), ctx.get("host")
    local source = found.source
    local function call(method, body, parse, prefix, what)
      local src, serr = source:token()
      if not src then
        serr.message = prefix .. serr.message .. HELP
        return nil, serr
      end
      local tok, terr = google.exchange(ctx, google.iam_request(base, account, method, body, src), parse, what)
      if not tok then
        terr.message = prefix .. terr.message .. HELP
        terr.hint = explain(terr, account)
        if terr.status == 401 then source:invalidate() end
        return nil, terr
      end
      return tok
    end
    local id = tokensource.new { now = ctx.now, fetch = function()
      return call("generateIdToken", { audience = host, includeEmail = true }, google.iam_id_token,
        OIDC, "generateIdToken")
    end }
    local sa = tokensource.new { now = ctx.now, fetch = function()
      return call("generateAccessToken", { scope = google.SA_SCOPES, lifetime = "3600s" },
        google.iam_access_token, "Unable to acquire impersonated credentials: ", "generateAccessToken")
    end }
    return google.credentials(id, sa, ctx.now)
  end,
}
