-- Authenticated REST endpoints of the fake workspace (runs inside nginx).
local common = require "spec.support.fake.common"
local oauth = require "spec.support.fake.oauth"

local ngx = ngx
local M = {}

local PAT_USER = "user@example.com"
local NOT_SENT = "Credential was not sent or was of an unsupported type for this API."
local INVALID = "Invalid access token."

-- Identity of the caller or nil, message. audience: "workspace" or an account id.
-- Accepts the PAT, an unexpired issued token for that audience, a Google ID token (fake/google.lua),
-- or Basic username:password.
function M.authenticate(audience)
  local h = ngx.var.http_authorization
  if not h then return nil, NOT_SENT end
  local scheme, cred = h:match("^(%S+)%s+(%S+)%s*$")
  scheme = scheme and scheme:lower()
  local cfg = common.config
  if scheme == "bearer" then
    if cred == cfg.pat then return { user = PAT_USER, kind = "pat" } end
    local t = oauth.lookup(cred)
    if t and t.aud == audience and t.exp > ngx.now() then
      local refused = t.resource and require("spec.support.fake.entra").check_headers(t)
      if refused then return nil, refused end
      return { user = t.sub, kind = t.kind or "oauth", scope = t.scope, token = t }
    end
    local g, gerr = require("spec.support.fake.google").authenticate(cred)
    if g ~= nil then return g or nil, gerr end
    return nil, INVALID
  elseif scheme == "basic" then
    if ngx.decode_base64(cred) == cfg.username .. ":" .. cfg.password then
      return { user = cfg.username, kind = "basic" }
    end
    return nil, INVALID
  end
  return nil, NOT_SENT
end

local function unauthenticated(msg)
  return common.api_error(401, "UNAUTHENTICATED", msg)
end

local USERS = {
  [PAT_USER]  = { id = "7000000000000001", displayName = "Fake User" },
}

local me_cache = {}   -- kind .. user -> encoded body (the benchmark's hot path)

local function me_body(who)
  local key = who.kind .. "\0" .. who.user
  local body = me_cache[key]
  if body then return body end
  local info
  if who.kind == "service_principal" then
    info = { id = "7000000000000003", displayName = "Fake Service Principal" }
  elseif who.user == common.config.username then
    info = { id = "7000000000000002", displayName = "Fake Admin" }
  else
    info = USERS[who.user] or { id = "7000000000000009", displayName = who.user }
  end
  body = common.encode { id = info.id, userName = who.user, displayName = info.displayName, active = true,
                         schemas = { "urn:ietf:params:scim:schemas:core:2.0:User" } }
  me_cache[key] = body
  return body
end

function M.me()
  local who, err = M.authenticate("workspace")
  if not who then return unauthenticated(err) end
  return common.send(200, me_body(who), "application/json",
    { ["X-Databricks-Org-Id"] = common.config.workspace_id })
end

function M.clusters_list()
  local who, err = M.authenticate("workspace")
  if not who then return unauthenticated(err) end
  -- literal: Debian's lua-cjson has no empty-array marker
  return common.send(200, '{"clusters":[]}')
end

function M.echo()
  local who, err = M.authenticate("workspace")
  if not who then return unauthenticated(err) end
  local headers = common.headers()
  if headers.authorization then headers.authorization = headers.authorization:match("^%S+") end
  return common.json(200, {
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    query = ngx.var.args or "",
    args = ngx.req.get_uri_args(1000),
    headers = headers,
    body = common.body(),
  })
end

function M.account_workspaces(account)
  local who, err = M.authenticate(account)
  if not who then return unauthenticated(err) end
  local cfg = common.config
  if account ~= cfg.account_id then
    return common.api_error(404, "RESOURCE_DOES_NOT_EXIST", "Account '" .. account .. "' does not exist")
  end
  local id = tonumber(cfg.workspace_id) or cfg.workspace_id
  return common.json(200, { { workspace_id = id, workspace_name = "fake-workspace" } })
end

return M
