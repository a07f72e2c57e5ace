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
