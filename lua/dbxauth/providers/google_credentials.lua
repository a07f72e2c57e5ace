-- google-credentials (notes cloud-auth §7): a service account's JSON key (google_credentials:
-- the JSON itself, or the path of a file holding it) signs RS256 JWT assertions for Google's
-- jwt-bearer grant at the key's token_uri: one for an ID token whose audience is the host
-- (Authorization), one for an access token with the cloud-platform and compute scopes
-- (X-Databricks-GCP-SA-Access-Token, sent when it can be had). Applies on GCP hosts only, as in
-- the Go SDK, unless auth_type names it. Both tokens are cached and refreshed ahead of expiry.
local google = require "dbxauth.google"
local tokensource = require "dbxauth.tokensource"

local ID = "could not obtain OIDC token from JSON: "
local SA = "could not obtain OAuth2 token from JSON: "

return {
  name = "google-credentials",
  applies = function(ctx)
    return ctx.get("google_credentials") ~= nil and ctx.get("host") ~= nil
      and (ctx.cloud() == "GCP" or ctx.get("auth_type") == "google-credentials")
  end,
  configure = function(ctx)
    local text, err = google.read_credentials(ctx.get("google_credentials"))
    if not text then return nil, err end
    local key
    key, err = google.parse_key(text, ID)
    if not key then return nil, err end
    local host = ctx.get("host")
    local function grant(claims, parse, prefix, what)
      local req, rerr = google.jwt_grant_request(key, claims, ctx.now())
      if not req then return nil, rerr end
      local tok, terr = google.exchange(ctx, req, parse, what)
      if not tok then
        terr.message = prefix .. terr.message
        return nil, terr
      end
      return tok
    end
    local id = tokensource.new { now = ctx.now, fetch = function()
      return grant({ target_audience = host }, google.id_token_response, ID, "ID token request")
    end }
    local sa = tokensource.new { now = ctx.now, fetch = function()
      return grant({ scope = table.concat(google.SA_SCOPES, " ") }, function(res, what)
        return require("dbxauth.oauth").parse_token_response(res, ctx.now(), what)
      end, SA, "access token request")
    end }
    return google.credentials(id, sa, ctx.now)
  end,
}
