-- HTTP Basic (notes §6.2): base64("<username>:<password>"), parts not URL-encoded.
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"

return {
  name = "basic",
  applies = function(c)
    return c:get("username") ~= nil and c:get("password") ~= nil and c:get("host") ~= nil
  end,
  configure = function(c)
    local header = "Basic " .. core.b64_encode(c:get("username") .. ":" .. c:get("password"))
    return {
      headers = function() return { Authorization = header } end,
      token = function()
        return nil, errors.new("unsupported", "basic auth has no bearer token", {
          hint = "cfg:token() needs token-based auth (a personal access token or OAuth); "
            .. "cfg:authenticate() gives the Basic header",
        })
      end,
    }
  end,
}
