-- Entry point of the fake Databricks workspace (runs inside nginx; see fake/nginx.conf).
-- Every non-admin request: count it, record it as the path's last request, apply a matching
-- fault if any, then route it. Requests whose Host ends in .apps.localhost go to an app
-- (fake/apps.lua) instead of the workspace routes.
local common = require "spec.support.fake.common"
local oauth = require "spec.support.fake.oauth"
local api = require "spec.support.fake.api"
local apps = require "spec.support.fake.apps"
local idp = require "spec.support.fake.idp"
local admin = require "spec.support.fake.admin"

local ngx = ngx
local find = string.find
local M = {}

-- ------------------------------------------------------------------ routes
-- Exact paths: path -> { METHOD = handler } ("ANY" matches every method).
M.routes = {
  ["/.well-known/databricks-config"] = { GET = oauth.host_metadata },
  ["/oidc/.well-known/oauth-authorization-server"] = { GET = oauth.discovery_workspace },
  ["/oidc/v1/token"] = { POST = oauth.token_workspace },
  ["/oidc/v1/authorize"] = { GET = oauth.authorize_workspace },
  ["/__idp/github/token"] = { GET = idp.github_token },
  ["/api/2.0/preview/scim/v2/Me"] = { GET = api.me },
  ["/api/2.0/clusters/list"] = { GET = api.clusters_list },
  ["/api/2.0/fake/echo"] = { ANY = api.echo },
}

-- Patterned paths, tried in order; captures are passed to the handler.
M.pattern_routes = {
  { "^/oidc/accounts/([^/]+)/%.well%-known/oauth%-authorization%-server$", { GET = oauth.discovery_account } },
  { "^/oidc/accounts/([^/]+)/v1/token$", { POST = oauth.token_account } },
  { "^/oidc/accounts/([^/]+)/v1/authorize$", { GET = oauth.authorize_account } },
  { "^/api/2%.0/apps/([^/]+)$", { GET = apps.get } },
  { "^/api/2%.0/accounts/([^/]+)/workspaces$", { GET = api.account_workspaces } },
}
require("spec.support.fake.google").install(M.routes, M.pattern_routes)

-- Stand-ins for services beside the workspace, one file each (fake/<name>.lua): their exact
-- and patterned routes join the tables above.
for _, name in ipairs { "metadata_service", "ado" } do
  local m = require("spec.support.fake." .. name)
  for path, r in pairs(m.routes or {}) do M.routes[path] = r end
  for _, pr in ipairs(m.pattern_routes or {}) do M.pattern_routes[#M.pattern_routes + 1] = pr end
end
require("spec.support.fake.entra").install(M)   -- Entra ID, IMDS, /aad/auth

local function route(method, uri)
  local r = M.routes[uri]
  if r then
    local h = r[method] or r.ANY
    if h then return h() end
    return common.not_found()
  end
  for _, pr in ipairs(M.pattern_routes) do
    local cap = uri:match(pr[1])
    if cap then
      local h = pr[2][method] or pr[2].ANY
      if h then return h(cap) end
      return common.not_found()
    end
  end
  return common.not_found()
end

-- ------------------------------------------------------------------ faults

local API_CODES = {
  [400] = "BAD_REQUEST", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
  [404] = "NOT_FOUND", [409] = "RESOURCE_CONFLICT", [429] = "REQUEST_LIMIT_EXCEEDED",
  [499] = "CANCELLED", [500] = "INTERNAL_ERROR", [501] = "NOT_IMPLEMENTED",
  [502] = "BAD_GATEWAY", [503] = "TEMPORARILY_UNAVAILABLE", [504] = "DEADLINE_EXCEEDED",
}
local OAUTH_CODES = {
  [400] = "invalid_request", [401] = "invalid_client", [403] = "access_denied",
  [429] = "slow_down", [500] = "server_error", [503] = "temporarily_unavailable",
}
local REASONS = {
  [200] = "OK", [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [429] = "Too Many Requests", [500] = "Internal Server Error",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local function stream_oversize(size, headers)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  for k, v in pairs(headers) do ngx.header[k] = v end
  -- valid JSON of exactly `size` bytes ({"pad":"xxx..."}), sent chunked with back-pressure
  local head, tail = '{"pad":"', '"}'
  local fill = size - #head - #tail
  if fill < 0 then ngx.print(("x"):rep(size)); return end
  if not ngx.print(head) then return end
  local chunk = ("x"):rep(65536)
  while fill > 0 do
    local n = fill < #chunk and fill or #chunk
    if not ngx.print(n == #chunk and chunk or chunk:sub(1, n)) then return end
    if not ngx.flush(true) then return end
    fill = fill - n
  end
  ngx.print(tail)
end

-- Sleep in slices so that a graceful stop (ngx.worker.exiting) is not held up by a long delay:
-- lua_check_client_abort does not notice TLS clients that hang up (their close_notify is data).
local function delay(secs)
  local deadline = ngx.now() + secs
  while true do
    if ngx.worker.exiting() then return false end
    local left = deadline - ngx.now()
    if left <= 0 then return true end
    ngx.sleep(left < 0.05 and left or 0.05)
    ngx.update_time()
  end
end

local function apply_fault(f)
  local secs = tonumber(f.delay)
  if secs and secs > 0 and not delay(secs) then ngx.exit(444); return true end
  local kind = f.kind or "json"
  if kind == "pass" then return false end          -- only the delay: answer normally
  if kind == "close" then ngx.exit(444); return true end
  local headers = {}
  if f.retry_after then headers["Retry-After"] = tostring(f.retry_after) end
  local status = tonumber(f.status)
  if kind == "json" then
    status = status or 500
    common.api_error(status, f.error_code or API_CODES[status] or "UNKNOWN",
      f.message or ("Injected fault: HTTP " .. status), headers)
  elseif kind == "oauth" then
    status = status or 400
    common.oauth_error(status, f.error or OAUTH_CODES[status] or "server_error",
      f.error_description or ("Injected fault: HTTP " .. status), headers)
  elseif kind == "garbage" then
    common.send(status or 200, "this is not JSON <<<\1\2\255", "application/json", headers)
  elseif kind == "html" then
    status = status or 502
    local reason = REASONS[status] or "Error"
    common.send(status, "<html>\n<head><title>" .. status .. " " .. reason .. "</title></head>\n" ..
      "<body>\n<h1>" .. reason .. "</h1>\n<pre>" .. (f.message or ("Injected fault: HTTP " .. status)) ..
      "</pre>\n</body>\n</html>\n", "text/html", headers)
  elseif kind == "oversize" then
    stream_oversize(tonumber(f.size) or 20 * 1024 * 1024, headers)
  elseif kind == "body" then
    common.send(status or 200, tostring(f.body or ""), f.content_type or "application/json", headers)
  else
    common.json(500, { error = "fake: unknown fault kind " .. tostring(kind) })
  end
  return true
end

-- Does fault host `want` ("workspace", "account" or an app name) match this request?
-- app: the app name for app hosts, nil otherwise.
local function host_matches(want, app)
  if app then return want == app end
  if want == "account" then return common.is_account_host() end
  return want == "workspace" and not common.is_account_host()
end

-- First fault matching path/method(/host) that still has a count left (consumed atomically).
local function take_fault(method, uri, app)
  local faults = common.faults()
  if #faults == 0 then return nil end
  local d = common.dict
  for i = 1, #faults do
    local f = faults[i]
    if f.path == uri and (f.method == nil or f.method == method)
      and (f.host == nil or host_matches(f.host, app)) then
      if f.count < 0 then return f end
      local left = d:incr("fault_left:" .. f.id, -1)
      if left and left >= 0 then return f end
    end
  end
  return nil
end

-- ------------------------------------------------------------------ request entry

-- Hot path: no JSON here. The last request is stored as length-prefixed fields plus the raw
-- header block, and decoded by admin.lua only when asked for (M.decode_last).
-- The request's header block, "Name: value" lines. HTTP/2 has none on the wire (and ngx_lua's
-- raw_header refuses h2 requests): the lines are rebuilt from the parsed headers, :authority as Host.
local function header_block()
  if ngx.req.http_version() ~= 2 then return ngx.req.raw_header(true) end
  local lines = {}
  for k, v in pairs(ngx.req.get_headers(1000, true)) do
    for _, x in ipairs(type(v) == "table" and v or { v }) do lines[#lines + 1] = k .. ": " .. x end
  end
  if not ngx.var.http_host then lines[#lines + 1] = "Host: " .. ngx.var.host .. ":" .. ngx.var.server_port end
  lines[#lines + 1] = ""
  return table.concat(lines, "\r\n")
end

local function record(key, method, uri)
  local counters = common.counters
  counters:incr(key, 1, 0)
  counters:incr("total", 1, 0)
  local args, body, proto = ngx.var.args or "", common.body(), ngx.var.server_protocol or ""
  common.last:set(uri, #method .. ":" .. method .. #args .. ":" .. args .. #body .. ":" .. body
    .. #proto .. ":" .. proto .. header_block())
end

-- Requests in flight (admin calls excluded), and the most seen at once since the last reset:
-- counted only while the `count_concurrency` setting is on, so the hot path pays nothing.
local function enter()
  if not common.settings().count_concurrency then return end
  local d = common.dict
  local n = d:incr("inflight", 1, 0)
  if n > (d:get("inflight_max") or 0) then d:set("inflight_max", n) end
  ngx.ctx.fake_inflight = true
end

local function handle()
  local uri = ngx.var.uri
  ngx.req.read_body()
  local admin_name = uri:match("^/__fake/(.*)$")
  if admin_name then return admin.handle(admin_name) end
  enter()
  local method = ngx.req.get_method()
  local app = find(ngx.var.host, ".apps.localhost", 1, true) and apps.name_of(ngx.var.host)
  if not app and ngx.var.server_port == tostring(common.config.app_port) then
    app = common.settings().localhost_app or "?localhost"
  end
  if app then
    record("APP " .. app .. " " .. method .. " " .. uri, method, uri)
    local f = take_fault(method, uri, app)
    if f and apply_fault(f) then return end
    return apps.handle(app, method, uri)
  end
  record(method .. " " .. uri, method, uri)
  local f = take_fault(method, uri, nil)
  if f and apply_fault(f) then return end
  return route(method, uri)
end

local function on_error(err)
  return debug.traceback(tostring(err), 2)
end

function M.handle()
  local ok, err = xpcall(handle, on_error)
  if not ok then
    ngx.log(ngx.ERR, "fake: ", err)
    if not ngx.headers_sent then
      common.api_error(500, "INTERNAL_ERROR", "fake workspace bug: " .. tostring(err):match("^[^\n]*"))
    end
  end
end

-- log phase: the request is over, whichever way it ended (a fault's ngx.exit included).
function M.log()
  if common.settings().count_concurrency and ngx.ctx.fake_inflight then
    common.dict:incr("inflight", -1, 0)
  end
end

-- ------------------------------------------------------------------ lifecycle

-- Master process, before fork: read the controller's config (credentials, watched pid).
function M.init(config_file)
  local f = assert(io.open(config_file, "rb"))
  local cfg = assert(common.decode(f:read("*a")), "bad " .. config_file)
  f:close()
  common.config = cfg
  admin.reset()
end

-- /proc/<pid>/stat start time, so that a recycled pid is not mistaken for the controller.
local function start_time(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local rest = s:match(".*%) (.*)$")   -- comm may contain spaces and ")"
  if not rest then return nil end
  local i = 0
  for field in rest:gmatch("%S+") do
    i = i + 1
    if i == 20 then return field end  -- field 22 overall
  end
  return nil
end

-- Each worker: seed math.random; worker 0 stops nginx when the controlling Lua process is gone
-- (covers a test runner killed with SIGKILL, where no __gc runs).
function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  local cfg = common.config
  if not (cfg.watch_pid and ngx.worker.id() == 0) then return end
  local pid, started = cfg.watch_pid, cfg.watch_start
  local ffi = require "ffi"
  pcall(ffi.cdef, "int kill(int pid, int sig); int getppid(void);")
  local ok, err = ngx.timer.every(1, function(premature)
    if premature then return end
    if start_time(pid) ~= started then
      ngx.log(ngx.NOTICE, "fake: controller process ", pid, " is gone, shutting down")
      for _, dir in ipairs(cfg.watch_cleanup or {}) do
        if dir:find("/dbxauth%-fake[^/]*$") then
          os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
        end
      end
      ffi.C.kill(ffi.C.getppid(), 3)  -- SIGQUIT to the master: graceful stop
    end
  end)
  if not ok then ngx.log(ngx.ERR, "fake: watch timer: ", err) end
end

return M
