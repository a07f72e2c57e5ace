-- OAuth machine-to-machine (notes §6.3): client_credentials at the OIDC token endpoint with
-- the service principal's id and secret, scope all-apis unless `scopes` says otherwise. The
-- token is cached and refreshed ahead of expiry by a token source.
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"

return {
  name = "oauth-m2m",
  applies = function(ctx)
    return ctx.get("client_id") ~= nil and ctx.get("client_secret") ~= nil and ctx.get("host") ~= nil
  end,
  configure = function(ctx)
    local function fetch()
      local ep, err = ctx.endpoints()
      if not ep then return nil, err end
      local req = oauth.client_credentials_request {
        token_endpoint = ep.token_endpoint,
        client_id = ctx.get("client_id"),
        client_secret = ctx.get("client_secret"),
        scopes = ctx.scopes(),
      }
      return ctx.token_request(req, "client credentials token request")
    end
    return tokensource.credentials(tokensource.new { fetch = fetch, now = ctx.now })
  end,
}
