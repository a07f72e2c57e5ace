-- `make gateway-demo`: examples/nginx/nginx.conf in front of the bundled fake workspace's app.
--
--   make gateway-demo            (or, after `make build`: lua5.4 examples/nginx/run.lua [requests])
--
-- Starts the fake workspace (spec/support/fake.lua: TLS, OAuth, Databricks Apps), fills in the
-- values nginx.conf marks "<- yours" for it (nothing else of the file changes), starts Debian's
-- nginx from a temp prefix with the service principal's credentials in the environment
-- (DATABRICKS_HOST, DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET), sends requests through the
-- gateway to the app "my-app" (printing the status and the identity the app saw), shows
-- /_dbxauth/status, and stops both servers: also on an error, on Ctrl-C, and (through a
-- watchdog process) when this process is killed. KEEP=1 leaves them running.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"
local files = require "spec.support.files"
local cjson = require "cjson.safe"

local q = files.q
local N = tonumber(arg[1] or "3")
local KEEP = os.getenv("KEEP") ~= nil and os.getenv("KEEP") ~= ""

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local root = trim(sh("pwd"))
if not files.read(root .. "/build/jit/dbxauth/core.so") then
  io.stderr:write("build/jit/dbxauth/core.so is missing: run `make build` first\n")
  os.exit(1)
end

-- The example's values (as the file has them) and what they become for the fake workspace.
local function fill_in(conf, ws, port)
  local app_host = "my-app-" .. ws.creds.workspace_id .. ".apps.localhost"
  local values = {
    -- the checkout instead of an installed copy
    { '"/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;;"',
      q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"), 1 },
    { '"/usr/local/lib/lua/5.1/?.so;;"', q(root .. "/build/jit/?.so;;"), 1 },
    -- the fake's CA instead of the public ones
    { "/etc/ssl/certs/ca-certificates.crt", ws.ca_file, 2 },
    -- the fake serves its apps on its own port; nginx connects there, by address
    { "my-app-1234567890.aws.databricksapps.com:443", "127.0.0.1:" .. ws.port, 1 },
    { "my-app-1234567890.aws.databricksapps.com", app_host, 2 },
    { "listen 127.0.0.1:8080;", "listen 127.0.0.1:" .. port .. ";", 1 },
  }
  for _, v in ipairs(values) do
    local from, to, want = v[1], v[2], v[3]
    local n
    conf, n = conf:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
    if n ~= want then
      error(("examples/nginx/nginx.conf: %q found %d times, expected %d"):format(from, n, want))
    end
  end
  return conf
end

local function free_port()
  local used = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    for p in (files.read(f) or ""):gmatch("\n%s*%d+: %x+:(%x+) ") do used[tonumber(p, 16)] = true end
  end
  local port = 38000 + tonumber(trim(sh("echo $$"))) % 2000
  while used[port] do port = port + 1 end
  return port
end

-- What the app answered: its status and the identity it saw (the fake app echoes it).
local function show(i, base, path)
  local out = sh("curl -s --max-time 10 -w '\\n%{http_code}' -H 'Authorization: Bearer what-the-client-sent' "
    .. q(base .. path))
  local body, status = out:match("^(.*)\n(%d+)%s*$")
  local doc = cjson.decode(body or "")
  local saw = type(doc) == "table" and doc.user
    and ("the app saw user %s (scopes %s)"):format(doc.user, table.concat(doc.scopes or {}, " "))
    or (body or out)
  print(("request %d: GET %s -> HTTP %s, %s"):format(i, path, status or "?", saw))
  return status == "200"
end

local ws = fake.start { workers = 1, keep_dir = KEEP, detach = KEEP }
local prefix = trim(sh("mktemp -d -t dbxauth-gateway.XXXXXX"))
local nginx_pid

-- Stops the gateway and removes its prefix once this process is gone, however it ends (the fake
-- workspace watches this process itself).
local function watchdog()
  local me = files.read("/proc/self/stat"):match("^(%d+)")
  sh("setsid sh -c " .. q("while kill -0 " .. me .. " 2>/dev/null; do sleep 0.5; done; "
    .. "p=$(cat " .. q(prefix .. "/logs/nginx.pid") .. " 2>/dev/null) && kill -QUIT $p; "
    .. "sleep 0.5; rm -rf " .. q(prefix)) .. " </dev/null >/dev/null 2>&1 &")
end

local function stop()
  if KEEP then return end
  if nginx_pid then
    sh("kill -QUIT " .. nginx_pid .. "; for i in $(seq 1 100); do kill -0 " .. nginx_pid
      .. " 2>/dev/null || break; sleep 0.05; done")
  end
  sh("rm -rf " .. q(prefix))
  ws:stop()
  print("stopped the gateway and the fake workspace")
end

local ok, err = pcall(function()
  if not KEEP then watchdog() end
  local port = free_port()
  local conf = fill_in(assert(files.read(root .. "/examples/nginx/nginx.conf")), ws, port)
  files.write(prefix .. "/conf/nginx.conf", conf)
  assert(sh("mkdir -p " .. q(prefix .. "/logs") .. " " .. q(prefix .. "/temp")))

  local env = table.concat({
    "env -i PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
    "DATABRICKS_HOST=" .. q(ws.url),
    "DATABRICKS_CLIENT_ID=" .. q(ws.creds.client_id),
    "DATABRICKS_CLIENT_SECRET=" .. q(ws.creds.client_secret),
    "HOME=" .. q(prefix),                        -- no ~/.databrickscfg of yours gets in the way
  }, " ")
  -- as root, workers would run as nobody, who cannot read the private temp prefix
  local user = sh("id -u"):match("^0") and " -g 'user root root;'" or ""
  local nginx = files.read("/usr/sbin/nginx") and "/usr/sbin/nginx" or "nginx"
  print("fake workspace: " .. ws.url .. " (nginx pid " .. tostring(ws.pid) .. ")")
  print("$ DATABRICKS_HOST=" .. ws.url .. " DATABRICKS_CLIENT_ID=" .. ws.creds.client_id
    .. " DATABRICKS_CLIENT_SECRET=*** nginx -p " .. prefix .. "/ -c conf/nginx.conf")
  local out, rc = sh(env .. " " .. nginx .. " -p " .. q(prefix .. "/") .. " -c conf/nginx.conf -e logs/error.log"
    .. user)
  if rc ~= 0 then error("nginx did not start: " .. out .. (files.read(prefix .. "/logs/error.log") or "")) end
  nginx_pid = (files.read(prefix .. "/logs/nginx.pid") or ""):match("%d+")
  local base = "http://127.0.0.1:" .. port
  print("gateway: " .. base .. " (nginx pid " .. tostring(nginx_pid) .. ")\n")

  sh("for i in $(seq 1 100); do curl -s -o /dev/null " .. q(base .. "/_dbxauth/status")
    .. " && exit 0; sleep 0.05; done")
  local good = 0
  for i = 1, N do
    if show(i, base, "/api/hello") then good = good + 1 end
  end
  print("\n$ curl " .. base .. "/_dbxauth/status")
  print(trim(sh("curl -s " .. q(base .. "/_dbxauth/status"))))
  local c = ws:counters()
  print(("\ntoken requests to the workspace: %d, requests the app answered: %d")
    :format(c["POST /oidc/v1/token"] or 0, c["APP my-app GET /api/hello"] or 0))
  if KEEP then
    print("KEEP is set: gateway " .. base .. " (prefix " .. prefix .. "), fake workspace " .. ws.url)
  end
  if good ~= N then error(("%d of %d requests failed; the gateway's log:\n%s"):format(N - good, N,
    files.read(prefix .. "/logs/error.log") or "")) end
end)
if not ok and tostring(err):find("interrupted!", 1, true) then err = "interrupted" end
stop()
if not ok then
  io.stderr:write("gateway demo failed: " .. tostring(err) .. "\n")
  os.exit(err == "interrupted" and 130 or 1)
end
