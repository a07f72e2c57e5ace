-- A Databricks metadata service (runs inside nginx; the metadata-service auth type, cloud-auth §1):
-- GET /__metadata/token, served on every port, meant to be reached as ws.metadata_url (plain HTTP
-- on 127.0.0.1, as the IDE extensions serve it). As the Go SDK documents the protocol:
--   * X-Databricks-Metadata-Version must be "1", else 400;
--   * X-Databricks-Host must be the workspace (ws.url; or the setting metadata_service_host),
--     else 403: the server keeps one session per host;
--   * 200 {"access_token", "token_type", "expires_on"} with a workspace token (user@example.com,
--     scope all-apis) of token_lifetime seconds.
-- Settings: metadata_service_token_type (default: the token_type setting, "Bearer"; "" is sent as
-- an empty string), metadata_service_expires_as = "number" (default) | "string".
local common = require "spec.support.fake.common"
local oauth = require "spec.support.fake.oauth"

local ngx = ngx
local M = {}

M.USER = "user@example.com"

function M.token()
  local h = ngx.req.get_headers()
  if h["x-databricks-metadata-version"] ~= "1" then
    return common.json(400, { error = "unsupported metadata version" })
  end
  local s = common.settings()
  local want = s.metadata_service_host or ("https://localhost:" .. tostring(common.config.port))
  if h["x-databricks-host"] ~= want then
    return common.json(403, { error = "this metadata service has no session for that host" })
  end
  local token, lifetime = oauth.mint { sub = M.USER, kind = "user", aud = "workspace", scope = "all-apis" }
  local expires_on = math.floor(ngx.now()) + lifetime
  local tt = s.metadata_service_token_type
  if tt == nil then tt = s.token_type end
  return common.json(200, {
    access_token = token,
    token_type = tt,
    expires_on = s.metadata_service_expires_as == "string" and tostring(expires_on) or expires_on,
  })
end

M.routes = { ["/__metadata/token"] = { GET = M.token } }

return M
