-- Shared state and response helpers for the fake Databricks workspace (runs inside nginx).
local cjson = require "cjson.safe"

local ngx = ngx
local M = {}

M.dict     = ngx.shared.fake
M.counters = ngx.shared.fake_counters
M.tokens   = ngx.shared.fake_tokens
M.last     = ngx.shared.fake_last

-- Filled by app.init() from conf/fake.json written by the controller.
M.config = {}

M.DEFAULT_SETTINGS = {
  metadata = true,          -- serve /.well-known/databricks-config
  discovery = true,         -- serve the OIDC authorization-server documents
  token_lifetime = 3600,    -- seconds; expires_in of issued tokens
  token_type = "Bearer",    -- token_type of token responses
  localhost_app = false,    -- an app name: served at https://localhost:<app_port> (resolvable
                            -- without --resolve lists: the demo and examples use it)
}

-- Debian's lua-cjson (mpx 2.1.0) escapes "/" as "\/" and has no switch to turn that off.
-- cjson never emits "\\" followed by a bare "/", so this rewrite is exact.
function M.encode(v)
  local s = assert(cjson.encode(v))
  return (s:gsub("\\/", "/"))
end
M.decode = cjson.decode

-- Per-worker cache of settings and faults, reloaded when the shared version changes.
local cached_ver = -1
local settings, faults = M.DEFAULT_SETTINGS, {}

function M.refresh()
  local ver = M.dict:get("ver") or 0
  if ver ~= cached_ver then
    local s = M.decode(M.dict:get("settings") or "null")
    local merged = {}
    for k, v in pairs(M.DEFAULT_SETTINGS) do merged[k] = v end
    if type(s) == "table" then for k, v in pairs(s) do merged[k] = v end end
    settings = merged
    local f = M.decode(M.dict:get("faults") or "null")
    faults = type(f) == "table" and f or {}
    cached_ver = ver
  end
end

function M.settings() M.refresh(); return settings end
function M.faults() M.refresh(); return faults end

-- ------------------------------------------------------------------ apps (Databricks Apps)
-- The app store lives in the shared dict as JSON: "apps" (name -> app object; absent = the
-- defaults below) and "app_perms" (name -> list of identities with CAN USE; absent = everyone).
-- Workers cache the decoded store per "ver", like settings.

-- Deterministic uuid-like string from a seed.
local function uuid(seed)
  local h = ngx.md5(seed)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21, 32)
end

-- Hostname (no port) of an app: <name>-<workspace id>.apps.localhost
function M.app_hostname(name)
  return name .. "-" .. tostring(M.config.workspace_id) .. ".apps.localhost"
end

-- A new app with every field filled in: RUNNING on ACTIVE compute, no user_api_scopes.
function M.new_app(name)
  return {
    name = name,
    id = uuid("app:" .. name),
    url = "https://" .. M.app_hostname(name) .. ":" .. tostring(M.config.port),
    description = "Fake app " .. name,
    create_time = "2025-01-01T00:00:00Z",
    creator = "user@example.com",
    oauth2_app_client_id = "app-client-" .. name,
    oauth2_app_integration_id = "integ-" .. name,
    service_principal_client_id = uuid("sp:" .. name),
    service_principal_id = 7100000000 + tonumber(ngx.md5("spid:" .. name):sub(1, 6), 16),
    service_principal_name = "app-" .. name,
    app_status = { state = "RUNNING", message = "App is running" },
    compute_status = { state = "ACTIVE", message = "App compute is running." },
  }
end

-- Scopes the Apps API adds to effective_user_api_scopes of every app with user authorization:
-- granted implicitly, never part of user_api_scopes (the scopes "configured for the app in user
-- authorization", which a token must carry).
M.IMPLICIT_APP_SCOPES = { "iam.access-control:read", "iam.current-user:read" }

-- effective_user_api_scopes for these user_api_scopes (sorted), or nil when there are none.
function M.effective_scopes(user)
  if type(user) ~= "table" or #user == 0 then return nil end
  local out, seen = {}, {}
  for _, list in ipairs { user, M.IMPLICIT_APP_SCOPES } do
    for _, s in ipairs(list) do
      if not seen[s] then seen[s] = true; out[#out + 1] = s end
    end
  end
  table.sort(out)
  return out
end

function M.default_apps()
  local apps = {}
  for _, name in ipairs { "my-app", "scoped-app", "plain-app", "stopped-app" } do apps[name] = M.new_app(name) end
  apps["my-app"].user_api_scopes = { "sql" }
  apps["scoped-app"].user_api_scopes = { "dashboards.genie", "file.files", "sql" }
  for _, app in pairs(apps) do app.effective_user_api_scopes = M.effective_scopes(app.user_api_scopes) end
  apps["stopped-app"].app_status = { state = "UNAVAILABLE", message = "App is not running" }
  apps["stopped-app"].compute_status = { state = "STOPPED", message = "App compute is stopped." }
  return apps
end

local apps_ver, apps, app_perms = -1, nil, nil

local function refresh_apps()
  local ver = M.dict:get("ver") or 0
  if ver ~= apps_ver then
    local a = M.decode(M.dict:get("apps") or "null")
    apps = type(a) == "table" and a or M.default_apps()
    local p = M.decode(M.dict:get("app_perms") or "null")
    app_perms = type(p) == "table" and p or {}
    apps_ver = ver
  end
end

-- name -> app object (do not modify).
function M.apps() refresh_apps(); return apps end
-- name -> list of identities allowed to use the app (absent: everyone).
function M.app_perms() refresh_apps(); return app_perms end

-- The app whose oauth2_app_client_id is `client_id`, or nil.
function M.app_by_client_id(client_id)
  for _, app in pairs(M.apps()) do
    if app.oauth2_app_client_id == client_id then return app end
  end
  return nil
end

-- ------------------------------------------------------------------ crypto helpers

-- base64url without padding (RFC 7636 appendix A).
function M.b64url(s)
  return (ngx.encode_base64(s, true):gsub("[+/]", { ["+"] = "-", ["/"] = "_" }))
end

function M.b64url_decode(s)
  s = s:gsub("[-_]", { ["-"] = "+", ["_"] = "/" })
  local pad = #s % 4
  if pad == 2 then s = s .. "==" elseif pad == 3 then s = s .. "=" elseif pad == 1 then return nil end
  return ngx.decode_base64(s)
end

-- SHA-256 with libcrypto's one-shot SHA256(), which nginx already links (no extra package).
local sha256_buf
function M.sha256(s)
  if not sha256_buf then
    local ffi = require "ffi"
    pcall(ffi.cdef, "unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);")
    sha256_buf = ffi.new("unsigned char[32]")
  end
  local ffi = require "ffi"
  ffi.C.SHA256(s, #s, sha256_buf)
  return ffi.string(sha256_buf, 32)
end

-- Random hex string (n bytes of md5 output; not cryptographic, which a fake does not need).
local rnd_seq = 0
function M.random_hex()
  rnd_seq = rnd_seq + 1
  return ngx.md5(ngx.worker.pid() .. ":" .. rnd_seq .. ":" .. ngx.now() .. ":" .. math.random())
end

-- scheme://Host as the client sent it, so documents point back to the URL the client used.
function M.base()
  local var = ngx.var
  local host = var.http_host or (var.server_addr .. ":" .. var.server_port)
  return var.scheme .. "://" .. host
end

function M.is_account_host()
  local host = ngx.var.http_host
  return host ~= nil and host:sub(1, 9):lower() == "accounts."
end

-- Send a complete response. headers: optional table of extra response headers.
function M.send(status, body, content_type, headers)
  ngx.status = status
  local h = ngx.header
  h["Content-Type"] = content_type or "application/json"
  h["Content-Length"] = #body
  if headers then for k, v in pairs(headers) do h[k] = v end end
  ngx.print(body)
end

function M.json(status, value, headers)
  return M.send(status, M.encode(value), "application/json", headers)
end

-- Databricks REST error body (§9.5).
function M.api_error(status, code, message, headers)
  return M.json(status, { error_code = code, message = message }, headers)
end

-- OAuth error body (RFC 6749 §5.2).
function M.oauth_error(status, err, description, headers)
  return M.json(status, { error = err, error_description = description }, headers)
end

function M.not_found()
  return M.api_error(404, "ENDPOINT_NOT_FOUND",
    "No API found for '" .. ngx.req.get_method() .. " " .. ngx.var.uri .. "'")
end

-- Request headers as { lowercased name -> string }; repeated headers are joined with ", ".
function M.headers()
  local out = {}
  for k, v in pairs(ngx.req.get_headers(1000)) do
    out[k] = type(v) == "table" and table.concat(v, ", ") or v
  end
  return out
end

-- Raw request body ("" when there is none). The body has been read by app.handle().
function M.body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if file then
    local f = io.open(file, "rb")
    if f then data = f:read("*a"); f:close(); return data end
  end
  return ""
end

return M
