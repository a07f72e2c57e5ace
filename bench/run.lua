-- `make bench`: every figure in one run, each next to its baseline or goal.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"
local dbxauth = require "dbxauth"

local N = tonumber(os.getenv("BENCH_REQUESTS") or "20000")

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("command failed: " .. cmd .. "\n" .. out) end
  return out
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local PATHS54 = "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' "
local PATHSJIT = "LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/jit/?.so;;' "

print("== cached cfg:authenticate() (goal <= 1000 ns)")
io.write(sh(PATHS54 .. "lua5.4 bench/auth.lua"))
io.write(sh(PATHSJIT .. "luajit bench/auth.lua"))

local ws = fake.start { workers = 1 }
local ok, err = pcall(function()
  local pat = ws.creds.pat
  local url = ws.url .. "/api/2.0/preview/scim/v2/Me"

  print("== authenticated GETs over TLS keep-alive (goal: cfg:request >= 0.9 x raw libcurl)")
  local raw = sh("build/bench/raw_curl " .. q(url) .. " " .. q(ws.ca_file) .. " " .. N .. " "
    .. q("Authorization: Bearer " .. pat))
  io.write(raw)
  local lua = sh(PATHS54 .. "lua5.4 bench/requests.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " "
    .. q(pat) .. " " .. N)
  io.write(lua)
  local jitout = sh(PATHSJIT .. "luajit bench/requests.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " "
    .. q(pat) .. " " .. N)
  io.write("(luajit) " .. jitout)
  local r_raw = tonumber(raw:match("= ([%d.]+) req/s"))
  local r_lua = tonumber(lua:match("= ([%d.]+) req/s"))
  local r_jit = tonumber(jitout:match("= ([%d.]+) req/s"))
  print(string.format("ratio cfg:request / raw libcurl: lua5.4 %.2f, luajit %.2f", r_lua / r_raw, r_jit / r_raw))

  print("== resident memory (goal: growth < 1024 KiB)")
  io.write(sh(PATHS54 .. "lua5.4 bench/requests.lua " .. q(ws.url) .. " " .. q(ws.ca_file) .. " "
    .. q(pat) .. " 0 memory"))

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
