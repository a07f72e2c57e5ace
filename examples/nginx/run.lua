-- Run examples/nginx/nginx.conf against the bundled fake workspace, with one command:
--
--   make build && lua5.4 examples/nginx/run.lua [requests]
--
-- Starts the fake workspace (spec/support/fake.lua: TLS, OAuth, Databricks Apps), fills in the
-- @NAME@ values of nginx.conf for it, starts Debian's nginx from a temp prefix with the service
-- principal's credentials in the environment (DATABRICKS_HOST, DATABRICKS_CLIENT_ID,
-- DATABRICKS_CLIENT_SECRET), sends a few requests through the gateway to the app "my-app",
-- prints what came back, and stops both servers. Set KEEP=1 to leave them running.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"
local files = require "spec.support.files"

local q = files.q
local N = tonumber(arg[1] or "3")

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local root = sh("pwd"):gsub("%s+$", "")
if not files.read(root .. "/build/jit/dbxauth/core.so") then
  io.stderr:write("build/jit/dbxauth/core.so is missing: run `make build` first\n")
  os.exit(1)
end

local ws = fake.start { workers = 1, keep_dir = os.getenv("KEEP") ~= nil, detach = os.getenv("KEEP") ~= nil }
local prefix = sh("mktemp -d -t dbxauth-gateway.XXXXXX"):gsub("%s+$", "")
local nginx_pid

local function stop()
  if nginx_pid then sh("kill -QUIT " .. nginx_pid) end
  if not os.getenv("KEEP") then
    sh("sleep 0.3; rm -rf " .. q(prefix))
    ws:stop()
  end
end

local ok, err = pcall(function()
  local used = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    for p in (files.read(f) or ""):gmatch("\n%s*%d+: %x+:(%x+) ") do used[tonumber(p, 16)] = true end
  end
  local port = 38000 + tonumber(sh("echo $$"):match("%d+")) % 2000
  while used[port] do port = port + 1 end
  local resolver = (files.read("/etc/resolv.conf") or ""):match("nameserver%s+([%d.]+)") or "127.0.0.53"
  local app = "my-app"
  local app_host = app .. "-" .. ws.creds.workspace_id .. ".apps.localhost"
  local values = {
    LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
    LUA_CPATH = root .. "/build/jit/?.so;;",
    CA_FILE = ws.ca_file,
    RESOLVER = resolver,
    APP = app,
    APP_HOST = app_host,
    APP_SERVER = "127.0.0.1:" .. ws.port,      -- the fake serves its apps on its own port
    LISTEN = "127.0.0.1:" .. port,
  }
  local conf = assert(files.read(root .. "/examples/nginx/nginx.conf"))
  conf = conf:gsub("@([%u_]+)@", function(name) return values[name] end)
  files.write(prefix .. "/conf/nginx.conf", conf)
  assert(sh("mkdir -p " .. q(prefix .. "/logs") .. " " .. q(prefix .. "/temp")))

  local env = table.concat({
    "env -i PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
    "DATABRICKS_HOST=" .. q(ws.url),
    "DATABRICKS_CLIENT_ID=" .. q(ws.creds.client_id),
    "DATABRICKS_CLIENT_SECRET=" .. q(ws.creds.client_secret),
    "HOME=" .. q(prefix),                        -- no ~/.databrickscfg of yours gets in the way
  }, " ")
  local user = sh("id -u"):match("^0") and " -g 'user root root;'" or ""
  local nginx = files.read("/usr/sbin/nginx") and "/usr/sbin/nginx" or "nginx"
  print("$ DATABRICKS_HOST=" .. ws.url .. " DATABRICKS_CLIENT_ID=" .. ws.creds.client_id
    .. " DATABRICKS_CLIENT_SECRET=*** nginx -p " .. prefix .. " -c conf/nginx.conf\n")
  local out, rc = sh(env .. " " .. nginx .. " -p " .. q(prefix .. "/") .. " -c conf/nginx.conf -e logs/error.log"
    .. user)
  if rc ~= 0 then error("nginx did not start: " .. out .. (files.read(prefix .. "/logs/error.log") or "")) end
  nginx_pid = (files.read(prefix .. "/logs/nginx.pid") or ""):match("%d+")

  local base = "http://127.0.0.1:" .. port
  sh("for i in $(seq 1 100); do curl -s -o /dev/null " .. q(base .. "/_dbxauth/status")
    .. " && exit 0; sleep 0.05; done")
  for i = 1, N do
    local body = sh("curl -s -w ' -> HTTP %{http_code}' -H 'Authorization: Bearer what-the-client-sent' "
      .. q(base .. "/api/hello"))
    print(("request %d: GET %s/api/hello  %s"):format(i, base, body))
  end
  print("token state: " .. sh("curl -s " .. q(base .. "/_dbxauth/status")):gsub("%s+$", ""))
  local c = ws:counters()
  print(("token requests to the workspace: %d (app requests: %d)"):format(c["POST /oidc/v1/token"] or 0,
    c["APP my-app GET /api/hello"] or 0))
  if os.getenv("KEEP") then
    print("KEEP is set: gateway " .. base .. " (prefix " .. prefix .. "), fake workspace " .. ws.url)
  end
end)
stop()
if not ok then
  io.stderr:write("gateway example failed: " .. tostring(err) .. "\n")
  os.exit(1)
end
