-- OAuth machine-to-machine (notes §6.3): client_credentials at the OIDC token endpoint with
-- the service principal's id and secret, scope all-apis unless `scopes` says otherwise. The
-- token is cached and refreshed ahead of expiry by a token source.
local oauth = require "dbxauth.oauth"
local tokensource = require "dbxauth.tokensource"

return {
  name = "oauth-m2m",
  applies = function(c)
    return c:get("client_id") ~= nil and c:get("client_secret") ~= nil and c:get("host") ~= nil
  end,
  configure = function(c)
    local function fetch()
      local ep, err = c:_oidc_endpoints()
      if not ep then return nil, err end
      local req = oauth.client_credentials_request {
        token_endpoint = ep.token_endpoint,
        client_id = c:get("client_id"),
        client_secret = c:get("client_secret"),
        scopes = c:_scopes(),
      }
      return c:_token_call(req, "client credentials token request")
    end
    return c:_token_credentials(tokensource.new { fetch = fetch, now = function() return c:_now() end })
  end,
}
