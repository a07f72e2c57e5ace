-- auth_type = "external-browser" (notes §6.4): the cached login when there is one (refreshed as
-- needed), else a browser login whose tokens go to the CLI's cache. Never in the default chain.
local tokensource = require "dbxauth.tokensource"
local u2m = require "dbxauth.u2m"

return {
  name = "external-browser",
  applies = function(ctx) return ctx.get("host") ~= nil end,
  configure = function(ctx)
    local function fetch(force)
      local tok, err = u2m.cached_token(ctx, { force_refresh = force })
      if tok then return tok end
      if tok == nil then return nil, err end
      return u2m.login(ctx)
    end
    local creds = tokensource.credentials(tokensource.new { fetch = fetch, now = ctx.now })
    creds.force_refresh = function()
      local tok, err = fetch(true)
      if tok then creds.source:set(tok) end
      return tok, err
    end
    return creds
  end,
}
