-- `make bench`: every figure in one run, each next to its baseline or goal.
--
-- On a machine with 2+ CPUs the fake workspace's nginx is pinned to CPU 1 and every client to
-- CPU 0 (taskset), so that client and server never share a core by chance; the runs of a
-- comparison alternate round by round (BENCH_ROUNDS, 5) and each keeps its best round: the
-- cores are shared with whatever else the machine does, and any one run can be slowed by it.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"
local dbxauth = require "dbxauth"

local N = tonumber(os.getenv("BENCH_REQUESTS") or "20000")
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "5")
local CONC = 16

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("command failed: " .. cmd .. "\n" .. out) end
  return out
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local PINNED = tonumber(sh("nproc")) >= 2 and os.execute("taskset -c 0 true >/dev/null 2>&1")
local CLIENT = PINNED and "taskset -c 0 " or ""
local PATHS54 = "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' " .. CLIENT
local PATHSJIT = "LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/jit/?.so;;' " .. CLIENT

-- nginx's master and workers on CPU 1
local function pin_server(ws)
  if not PINNED then return end
  sh("for p in " .. ws.pid .. " $(pgrep -P " .. ws.pid .. "); do taskset -a -cp 1 $p >/dev/null; done")
end

print(PINNED and "(fake workspace pinned to CPU 1, clients to CPU 0; best of " .. ROUNDS .. " interleaved rounds)"
  or "(not pinned: fewer than 2 CPUs or no taskset)")

print("== cached cfg:authenticate() (goals: <= 200 ns on Lua 5.4, <= 50 ns on LuaJIT)")
io.write(sh(PATHS54 .. "lua5.4 bench/auth.lua"))
io.write(sh(PATHSJIT .. "luajit bench/auth.lua"))

-- Runs `list` ({ name, command }) round-robin ROUNDS times; each one's best req/s.
local function rate(out)
  return tonumber(out:match("= ([%d.]+) req/s")) or error("no rate in: " .. out)
end
local function compare(list, count)
  local best = {}
  for _ = 1, ROUNDS do
    for i, r in ipairs(list) do best[i] = math.max(best[i] or 0, rate(sh(r[2] .. " 2>&1"))) end
  end
  for i, r in ipairs(list) do
    print(string.format("%-28s %8.0f req/s (best of %d, %d requests each)", r[1], best[i], ROUNDS, count))
  end
  return best
end

local ws = fake.start { workers = 1 }
pin_server(ws)
local ok, err = pcall(function()
  local pat = ws.creds.pat
  local url = ws.url .. "/api/2.0/preview/scim/v2/Me"
  local ua = require("dbxauth.useragent").build(dbxauth.VERSION, "pat", os.getenv)
  -- the baselines send exactly the headers cfg:request sends
  local hdrs = q("Authorization: Bearer " .. pat) .. " " .. q("Accept: application/json") .. " "
    .. q("User-Agent: " .. ua) .. " " .. q("X-Databricks-Workspace-Id: " .. ws.creds.workspace_id)
  local function raw(flags, u, headers) return CLIENT .. "build/bench/raw_curl " .. flags .. " " .. q(u) .. " "
    .. q(ws.ca_file) .. " " .. N .. " " .. headers end
  local function lua_bench(paths, interp, script, extra)
    return paths .. interp .. " " .. script .. " " .. q(ws.url) .. " " .. q(ws.ca_file) .. " " .. q(pat) .. " "
      .. N .. (extra or "")
  end

  print("== authenticated GETs over TLS keep-alive, HTTP/1.1 (goals: cfg:request >= 0.95 x the fair raw loop,")
  print("   >= 0.9 x the bare one; fair = libcurl capturing status, headers and body, as dbxauth must)")
  local best = compare({
    { "raw libcurl, bare (C)", raw("--http1.1", url, hdrs) },
    { "raw libcurl, fair (C)", raw("--fair --http1.1", url, hdrs) },
    { "cfg:request lua5.4", lua_bench(PATHS54, "lua5.4", "bench/requests.lua") },
    { "cfg:request luajit", lua_bench(PATHSJIT, "luajit", "bench/requests.lua") },
  }, N)
  print(string.format("ratio cfg:request / bare: lua5.4 %.2f, luajit %.2f; / fair: lua5.4 %.2f, luajit %.2f",
    best[3] / best[1], best[4] / best[1], best[3] / best[2], best[4] / best[2]))
  local seq_bare = best[1]

  print("== " .. CONC .. " requests in flight, HTTP/2 multiplexed (goals: request_all >= 0.85 x raw libcurl multi,")
  print("   >= 1.5 x the bare sequential loop)")
  local multi = compare({
    { "raw libcurl multi (C)", CLIENT .. "build/bench/raw_multi " .. q(url) .. " " .. q(ws.ca_file) .. " " .. N
      .. " " .. CONC .. " " .. hdrs },
    { "request_all lua5.4", lua_bench(PATHS54, "lua5.4", "bench/batch.lua", " " .. CONC) },
    { "request_all luajit", lua_bench(PATHSJIT, "luajit", "bench/batch.lua", " " .. CONC) },
    { "raw libcurl sequential, bare", raw("--http1.1", url, hdrs) },
  }, N)
  print(string.format("ratio request_all / raw multi: lua5.4 %.2f, luajit %.2f; / bare sequential (this "
    .. "comparison's %.0f req/s): lua5.4 %.2f, luajit %.2f", multi[2] / multi[1], multi[3] / multi[1], multi[4],
    multi[2] / multi[4], multi[3] / multi[4]))
  print(string.format("(the sequential comparison above measured the bare loop at %.0f req/s)", seq_bare))

  print("== the fake workspace's own limit (wrk, 1 thread, " .. CONC .. " connections, HTTP/1.1 keep-alive)")
  local wrk_best = 0
  for _ = 1, 3 do
    local out = sh(CLIENT .. "wrk -t1 -c" .. CONC .. " -d3s -H " .. q("Authorization: Bearer " .. pat) .. " "
      .. q(url))
    wrk_best = math.max(wrk_best, tonumber(out:match("Requests/sec:%s*([%d.]+)")) or 0)
  end
  print(string.format("fake workspace: %.0f req/s (1 nginx worker, best of 3; goal > 20000); request_all "
    .. "reaches %.2f (lua5.4) and %.2f (luajit) of it", wrk_best, multi[2] / wrk_best, multi[3] / wrk_best))

  print("== app_request with a cached exchanged token (goal >= 0.9 x raw libcurl to the same app endpoint)")
  ws:set { localhost_app = "my-app" }
  local app_cfg = assert(dbxauth.config({ host = ws.url, token = pat, ca_file = ws.ca_file },
    { env = {}, home = "/nonexistent" }))
  local app_tok = assert(app_cfg:app_token { app = "my-app" })
  local app_url = "https://localhost:" .. ws.app_port .. "/api/hello"
  local app_best = compare({
    { "raw libcurl, bare (C)", raw("--http1.1", app_url, q("Authorization: Bearer " .. app_tok.access_token) .. " "
      .. q("Accept: application/json") .. " " .. q("User-Agent: " .. ua)) },
    { "app_request lua5.4", lua_bench(PATHS54, "lua5.4", "bench/app_requests.lua") },
  }, N)
  print(string.format("ratio app_request / raw libcurl: %.2f", app_best[2] / app_best[1]))
  ws:reset()
  ws:set { localhost_app = "my-app" }
  sh(PATHS54 .. "lua5.4 bench/app_requests.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " " .. q(pat) .. " 9800")
  print(string.format("token exchanges for 10,000 app requests in one token lifetime (goal 1): %d",
    ws:counters().exchange or 0))

  print("== resident memory (goal: growth < 1024 KiB)")
  io.write(sh(PATHS54 .. "lua5.4 bench/requests.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " "
    .. q(pat) .. " 0 memory"))
  io.write(sh(PATHS54 .. "lua5.4 bench/batch.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " "
    .. q(pat) .. " 0 " .. CONC .. " 1000 memory"))

  print("== network round trips before the first API call, cold M2M config (goal <= 2 with host metadata)")
  for _, metadata in ipairs { true, false } do
    ws:reset()
    dbxauth.clear_discovery_cache()
    ws:set { metadata = metadata }
    local cfg = assert(dbxauth.config({ host = ws.url, client_id = ws.creds.client_id,
      client_secret = ws.creds.client_secret, ca_file = ws.ca_file }, { env = {}, home = "/nonexistent" }))
    assert(cfg:authenticate())
    local c = ws:counters()
    print(string.format("round trips (host metadata %s): %d", metadata and "on" or "off", c.total or 0))
  end
end)
ws:stop()
if not ok then error(err, 0) end
dofile("bench/gateway.lua")   -- nginx gateway: throughput, p99 and token requests per refresh
