-- Personal access token (notes §6.1): `Authorization: Bearer <token>`, no expiry, no refresh.
local headers = require "dbxauth.headers"
local oauth = require "dbxauth.oauth"

return {
  name = "pat",
  -- Both SDKs skip a token without a host (it could not be used anyway).
  applies = function(ctx)
    return ctx.get("token") ~= nil and ctx.get("host") ~= nil
  end,
  configure = function(ctx)
    local tok = oauth.token { access_token = ctx.get("token"), token_type = "Bearer" }
    local header = "Bearer " .. tok.access_token
    return {
      headers = headers.cached(header),
      authorization = function() return header end,
      token = function() return tok end,
    }
  end,
}
