-- Databricks Apps in the fake workspace (runs inside nginx): the REST endpoint
-- GET /api/2.0/apps/{name} and the app hosts https://<name>-<workspace id>.apps.localhost:<port>.
-- The app store itself is in common.lua (common.apps, common.app_perms).
local common = require "spec.support.fake.common"
local oauth = require "spec.support.fake.oauth"
local api = require "spec.support.fake.api"

local ngx = ngx
local M = {}

-- ------------------------------------------------------------------ REST

-- The Apps API needs the `apps` scope (or all-apis) in an OAuth token; PATs and Basic pass.
local function has_apps_scope(who)
  if type(who.scope) ~= "string" then return true end
  for s in who.scope:gmatch("%S+") do
    if s == "apps" or s == "all-apis" then return true end
  end
  return false
end

function M.get(name)
  local who, err = api.authenticate("workspace")
  if not who then return common.api_error(401, "UNAUTHENTICATED", err) end
  if not has_apps_scope(who) then
    return common.api_error(403, "PERMISSION_DENIED", "Provided OAuth token does not have required scopes: apps")
  end
  local app = common.apps()[ngx.unescape_uri(name)]
  if not app then
    return common.api_error(404, "RESOURCE_DOES_NOT_EXIST",
      "App with name " .. ngx.unescape_uri(name) .. " does not exist or is deleted.")
  end
  if common.settings().localhost_app == app.name then
    local copy = {}
    for k, v in pairs(app) do copy[k] = v end
    copy.url = "https://localhost:" .. tostring(common.config.app_port)
    app = copy
  end
  return common.json(200, app)
end

-- ------------------------------------------------------------------ app hosts

-- App name from a request's $host (lowercased, no port), or nil when it is not an app host.
function M.name_of(host)
  local label = host:match("^(.+)%.apps%.localhost$")
  if not label then return nil end
  return label:match("^(.+)%-" .. tostring(common.config.workspace_id) .. "$") or ("?" .. label)
end

local function app_error(status, err, message, headers)
  return common.json(status, { error = err, message = message }, headers)
end

local function unauthenticated(message)
  return app_error(401, "unauthenticated", message, { ["WWW-Authenticate"] = 'Bearer realm="databricks-apps"' })
end

-- The caller's token claims, or nil and the 401 message. Accepted: unexpired OAuth tokens of
-- this workspace (M2M, U2M, token exchange without audience) and tokens exchanged for this
-- app's audience. Not accepted: PATs, Basic, account tokens, tokens for another app.
local function authenticate(app)
  local h = ngx.var.http_authorization
  local tok = h and h:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  if not tok then return nil, "Missing bearer token" end
  if tok == common.config.pat then
    return nil, "Personal access tokens are not accepted by apps; use an OAuth access token"
  end
  local t = oauth.lookup(tok)
  if not t or t.exp <= ngx.now() then return nil, "Invalid or expired access token" end
  -- seed 001: an Entra ID token must be exchanged for a Databricks OAuth token first
  if t.resource then return nil, "Invalid access token: Entra ID tokens are not accepted" end
  if t.aud == "workspace" then return t end
  if t.aud == "app:" .. tostring(app.oauth2_app_client_id) then return t end
  if type(t.aud) == "string" and t.aud:sub(1, 4) == "app:" then
    return nil, "Token audience does not match this app"
  end
  return nil, "Token is not valid for this workspace"
end

local function scope_set(scope)
  local set = {}
  for s in (scope or ""):gmatch("%S+") do set[s] = true end
  return set
end

local function scope_list(scope)
  local out = {}
  for s in (scope or ""):gmatch("%S+") do out[#out + 1] = s end
  return out
end

local function running(app)
  local a, c = app.app_status, app.compute_status
  return type(a) == "table" and a.state == "RUNNING" and type(c) == "table" and c.state == "ACTIVE"
end

local routes = {}

routes["GET /api/hello"] = function(app, t)
  return common.json(200, { message = "hello from " .. app.name, app = app.name, user = t.sub,
                            scopes = scope_list(t.scope) })
end

routes["ANY /api/echo"] = function()
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

routes["GET /api/redirect"] = function()
  local to = ngx.req.get_uri_args().to
  if type(to) ~= "string" or to == "" then return app_error(400, "bad_request", "to is required") end
  return common.send(302, "", "text/plain", { Location = to })
end

-- Answer a request to an app host. Checks in order: unknown app (404), token (401), CAN USE
-- (403), scopes (403: the token's must include user_api_scopes, or be all-apis), app running
-- (404), route (404).
function M.handle(name, method, uri)
  local app = common.apps()[name]
  if not app then return app_error(404, "not_found", "No app at host " .. ngx.var.host) end
  local t, err = authenticate(app)
  if not t then return unauthenticated(err) end
  local allowed = common.app_perms()[name]
  if allowed then
    local ok = false
    for _, id in ipairs(allowed) do if id == t.sub then ok = true; break end end
    if not ok then
      return app_error(403, "permission_denied", "User does not have CAN USE permission on app " .. name)
    end
  end
  -- user_api_scopes, not effective_user_api_scopes: the iam.* scopes the Apps API adds there
  -- are granted implicitly and never demanded of a token
  local have = scope_set(t.scope)
  if not have["all-apis"] and type(app.user_api_scopes) == "table" then
    local missing = {}
    for _, s in ipairs(app.user_api_scopes) do
      if not have[s] then missing[#missing + 1] = s end
    end
    if #missing > 0 then
      return app_error(403, "insufficient_scope", "Token is missing required scopes: " .. table.concat(missing, " "))
    end
  end
  if not running(app) then return app_error(404, "not_found", "App " .. name .. " is not running") end
  local h = routes[method .. " " .. uri] or routes["ANY " .. uri]
  if not h then return app_error(404, "not_found", "No route " .. uri) end
  return h(app, t)
end

return M
