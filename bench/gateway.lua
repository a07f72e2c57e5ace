-- The nginx gateway (dbxauth.nginx) under load, next to the same nginx proxying with a fixed
-- header, in the same run. Called by bench/run.lua (paths set there); alone:
--   LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' lua5.4 bench/gateway.lua
--
-- Throughput and p99: one gateway nginx (2 workers) with two locations in front of the same
-- upstream (an nginx server block in the same instance answering 200 over keep-alive, so the
-- figures are nginx + the access handler, not the fake workspace): /gw/ runs
-- dbxauth.nginx.access (PAT exchanged for my-app's audience, from a shared-dict token),
-- /fixed/ sets a constant Authorization header. wrk alternates between them; best of 3 each.
-- Token requests per refresh: 4 s tokens, 200 connections for 10 s through /gw/.
local fake = require "spec.support.fake"
local ngw = require "spec.support.nginx_gw"
local files = require "spec.support.files"

local q = files.q
local SECS = tonumber(os.getenv("BENCH_GATEWAY_SECONDS") or "5")
local CONNS = tonumber(os.getenv("BENCH_GATEWAY_CONNECTIONS") or "64")

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- wrk --latency output -> req/s, p99 (ms), errors
local function wrk(url, conns, secs)
  local out = sh("wrk -t2 -c" .. conns .. " -d" .. secs .. "s --latency -H "
    .. q("Authorization: Bearer client-token") .. " " .. q(url))
  local rps = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
  local v, unit = out:match("\n%s*99%%%s+([%d.]+)(%a+)")
  local p99 = tonumber(v)
  if p99 then
    if unit == "us" then p99 = p99 / 1000 elseif unit == "s" then p99 = p99 * 1000 end
  end
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)") or "0")
  local c, r, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  local errs = non2xx + (tonumber(c) or 0) + (tonumber(r) or 0) + (tonumber(w) or 0) + (tonumber(t) or 0)
  if not rps then error("wrk failed: " .. out) end
  return rps, p99, errs
end

local function home_with_profile(ws)
  local home = files.tmpdir()
  files.write(home .. "/.databrickscfg", "[pat]\nhost = " .. ws.url .. "\ntoken = " .. ws.creds.pat .. "\n"
    .. "[m2m]\nhost = " .. ws.url .. "\nclient_id = " .. ws.creds.client_id .. "\nclient_secret = "
    .. ws.creds.client_secret .. "\n")
  return home
end

local PAT = '{ profile = "pat", app = "my-app" }'
local M2M = '{ profile = "m2m", app = "my-app" }'

local function gateway(ws, home, upstream_app)
  local upstream = upstream_app and [[
      proxy_pass https://fake/;
      proxy_set_header Host ${APP_HOST:my-app}:${WS_PORT};
      proxy_ssl_name ${APP_HOST:my-app};
      proxy_ssl_server_name on;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${CA};
  ]] or [[
      proxy_pass http://bench_upstream/;
  ]]
  return ngw.start {
    ws = ws,
    log_level = "warn",
    env = { HOME = home },
    init_worker = 'require("dbxauth.nginx").init' .. PAT .. '\nrequire("dbxauth.nginx").init' .. M2M,
    http = [[
      upstream bench_upstream { server 127.0.0.1:${UPSTREAM_PORT}; keepalive 256; }
      server {
        listen 127.0.0.1:${UPSTREAM_PORT};
        access_log off;
        location / { return 200 "ok\n"; }
      }
    ]],
    server = ([[
      location /gw/ {
        access_by_lua_block { require("dbxauth.nginx").access]] .. PAT .. [[ }
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        @UPSTREAM@
      }
      location /m2m/ {
        access_by_lua_block { require("dbxauth.nginx").access]] .. M2M .. [[ }
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        @UPSTREAM@
      }
      location /fixed/ {
        proxy_set_header Authorization "Bearer fixed-token-for-the-baseline";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        @UPSTREAM@
      }
    ]]):gsub("@UPSTREAM@", (upstream:gsub("%%", "%%%%"))),
    vars = { UPSTREAM_PORT = ngw.free_port() },
  }
end

local function status(gw, opts)
  local out = sh("curl -s " .. q(gw.url .. "/t/status?opts=" .. opts))
  return require("cjson.safe").decode(out) or {}
end

local ws = fake.start { workers = 2 }
local home = home_with_profile(ws)
local gws = {}
local ok, err = pcall(function()
  math.randomseed(os.time())
  print("== nginx gateway: dbxauth access handler vs a fixed Authorization header (goal >= 0.95 x "
    .. "throughput, < 0.5 ms added p99)")
  local gw = gateway(ws, home)
  gws[#gws + 1] = gw
  -- wait for the background refresh, then warm both paths
  for _ = 1, 100 do
    if status(gw, "%7B%22profile%22%3A%22pat%22%2C%22app%22%3A%22my-app%22%7D").valid then break end
    sh("sleep 0.05")
  end
  wrk(gw.url .. "/gw/", CONNS, 1)
  wrk(gw.url .. "/fixed/", CONNS, 1)
  local best = { gw = { rps = 0, p99 = math.huge }, fixed = { rps = 0, p99 = math.huge } }
  local errors = 0
  for _ = 1, 3 do
    for _, name in ipairs { "fixed", "gw" } do
      local rps, p99, e = wrk(gw.url .. "/" .. name .. "/", CONNS, SECS)
      errors = errors + e
      if rps > best[name].rps then best[name].rps = rps end
      if p99 and p99 < best[name].p99 then best[name].p99 = p99 end
    end
  end
  print(string.format("fixed header      %9.0f req/s  p99 %6.2f ms   (best of 3, %d s, %d connections, 2 workers)",
    best.fixed.rps, best.fixed.p99, SECS, CONNS))
  print(string.format("dbxauth gateway   %9.0f req/s  p99 %6.2f ms", best.gw.rps, best.gw.p99))
  print(string.format("ratio %.2f, added p99 %+.2f ms, failed requests %d", best.gw.rps / best.fixed.rps,
    best.gw.p99 - best.fixed.p99, errors))
  gw:stop()

  print("== token requests per refresh across 2 workers (goal 1; 4 s tokens, 200 connections, 10 s)")
  ws:reset()
  ws:set { token_lifetime = 4 }
  gw = gateway(ws, home)
  gws[#gws + 1] = gw
  local pat_opts = "%7B%22profile%22%3A%22pat%22%2C%22app%22%3A%22my-app%22%7D"
  local m2m_opts = "%7B%22profile%22%3A%22m2m%22%2C%22app%22%3A%22my-app%22%7D"
  for _ = 1, 100 do
    if status(gw, pat_opts).valid and status(gw, m2m_opts).valid then break end
    sh("sleep 0.05")
  end
  local c0, p0, m0 = ws:counters(), status(gw, pat_opts), status(gw, m2m_opts)
  local cmd = "wrk -t2 -c100 -d10s " .. q(gw.url .. "/gw/") .. " & wrk -t1 -c100 -d10s " .. q(gw.url .. "/m2m/")
    .. "; wait"
  sh(cmd)
  local c1, p1, m1 = ws:counters(), status(gw, pat_opts), status(gw, m2m_opts)
  local ex = (c1["exchange app-client-my-app"] or 0) - (c0["exchange app-client-my-app"] or 0)
  local all = (c1["POST /oidc/v1/token"] or 0) - (c0["POST /oidc/v1/token"] or 0)
  local pr, mr = p1.refreshes - p0.refreshes, m1.refreshes - m0.refreshes
  print(string.format("PAT exchanged for my-app: %d token requests / %d refreshes = %.2f per refresh",
    ex, pr, pr > 0 and ex / pr or 0))
  print(string.format("M2M (client credentials): %d token requests / %d refreshes = %.2f per refresh",
    all - ex, mr, mr > 0 and (all - ex) / mr or 0))
  gw:stop()
end)
for _, gw in ipairs(gws) do gw:stop() end
ws:stop()
os.execute("rm -rf " .. q(home))
if not ok then error(err, 0) end
