-- Authenticated GETs per second through cfg:request against a running fake workspace,
-- and resident memory growth between 1,000 and 100,000 requests.
-- Usage: lua5.4 bench/requests.lua URL CA_FILE PAT N
local dbxauth = require "dbxauth"

local url, ca, pat, n = arg[1], arg[2], arg[3], tonumber(arg[4] or "20000")
local mode = arg[5] or "rate"

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local cfg = assert(dbxauth.config({ host = url, token = pat, ca_file = ca }, { env = {}, home = "/nonexistent" }))
local core = require "dbxauth.core"
local PATH = "/api/2.0/preview/scim/v2/Me"

local function run(count)
  for _ = 1, count do
    local res, err = cfg:request { path = PATH }
    if not res then error(tostring(err)) end
  end
end

if mode == "rate" then
  run(200)   -- warm up: metadata, connection
  local t0 = core.now()
  run(n)
  local dt = core.now() - t0
  print(string.format("cfg_request: %d requests in %.3f s = %.0f req/s", n, dt, n / dt))
else
  run(1000)
  collectgarbage()
  local a = rss_kib()
  run(99000)
  collectgarbage()
  local b = rss_kib()
  print(string.format("memory: RSS %d KiB after 1,000 requests, %d KiB after 100,000: growth %d KiB",
    a, b, b - a))
end
