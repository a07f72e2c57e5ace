-- env-oidc (notes §6.6): the ID token is the value of an environment variable,
-- DATABRICKS_OIDC_TOKEN unless oidc_token_env names another.
local errors = require "dbxauth.errors"
local oidc = require "dbxauth.providers.oidc"

local function env_name(ctx)
  return ctx.get("oidc_token_env") or "DATABRICKS_OIDC_TOKEN"
end

return {
  name = "env-oidc",
  applies = function(ctx)
    return ctx.get("host") ~= nil and oidc.getenv(ctx, env_name(ctx)) ~= nil
  end,
  configure = function(ctx)
    return oidc.credentials(ctx, function()
      local name = env_name(ctx)
      local v = oidc.getenv(ctx, name)
      if not v then return nil, errors.new("config", 'missing env var "' .. name .. '"') end
      return oidc.trim_end(v)
    end)
  end,
}
