-- HTTP Basic (notes §6.2): base64("<username>:<password>"), parts not URL-encoded.
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"

return {
  name = "basic",
  applies = function(ctx)
    return ctx.get("username") ~= nil and ctx.get("password") ~= nil and ctx.get("host") ~= nil
  end,
  configure = function(ctx)
    local header = "Basic " .. core.b64_encode(ctx.get("username") .. ":" .. ctx.get("password"))
    return {
      headers = headers.cached(header),
      authorization = function() return header end,
      token = function()
        return nil, errors.new("unsupported", "basic auth has no bearer token", {
          hint = "cfg:token() needs token-based auth (a personal access token or OAuth); "
            .. "cfg:authenticate() gives the Basic header",
        })
      end,
    }
  end,
}
