-- The credential chain: an ordered list of providers, each deciding from the configuration
-- alone whether it applies (decision D10, order of the Go SDK restricted to what dbxauth
-- supports). A provider is one module with `name`, `applies(cfg)` and `configure(cfg)`;
-- adding an auth type is one file plus one row here.
local _M = {}

local oidc = require "dbxauth.providers.oidc"

_M.CHAIN = {
  require "dbxauth.providers.pat",
  require "dbxauth.providers.basic",
  require "dbxauth.providers.oauth_m2m",
  require "dbxauth.providers.databricks_cli",
  oidc.github,
  oidc.env,
  oidc.file,
}

-- Chosen only by auth_type: a browser must never open by surprise.
_M.ONLY_FORCED = {
  require("dbxauth.u2m").provider,
}

_M.BY_NAME = {}
for _, p in ipairs(_M.CHAIN) do _M.BY_NAME[p.name] = p end
for _, p in ipairs(_M.ONLY_FORCED) do _M.BY_NAME[p.name] = p end

-- Auth types the SDKs know that need cloud-specific machinery dbxauth does not carry.
_M.FOREIGN = {}
for _, name in ipairs { "azure-cli", "azure-msi", "azure-client-secret", "github-oidc-azure",
  "azure-devops-oidc", "google-credentials", "google-id", "runtime", "runtime-oauth", "model-serving",
  "metadata-service" } do
  _M.FOREIGN[name] = true
end

function _M.names()
  local out = {}
  for i, p in ipairs(_M.CHAIN) do out[i] = p.name end
  for _, p in ipairs(_M.ONLY_FORCED) do out[#out + 1] = p.name end
  return out
end

return _M
