-- cfg:request_all with CONC requests in flight against a running fake workspace: authenticated
-- GETs per second over batches of BATCH items, or resident memory growth over 100,000 requests
-- sent that way (after ten batches of warm-up).
-- Usage: lua5.4 bench/batch.lua URL CA_FILE PAT N [CONC [BATCH [rate|memory]]]
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"

local url, ca, pat = arg[1], arg[2], arg[3]
local n, conc, size = tonumber(arg[4] or "20000"), tonumber(arg[5] or "16"), tonumber(arg[6] or "1000")
local mode = arg[7] or "rate"

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local cfg = assert(dbxauth.config({ host = url, token = pat, ca_file = ca }, { env = {}, home = "/nonexistent" }))
local PATH = "/api/2.0/preview/scim/v2/Me"
local list = {}
for i = 1, size do list[i] = { path = PATH } end

local function run(count)
  local left = count
  while left > 0 do
    local items = list
    if left < size then
      items = {}
      for i = 1, left do items[i] = list[i] end
    end
    local _, errs, failed = cfg:request_all(items, { concurrency = conc })
    if failed > 0 then
      for i = 1, #items do if errs[i] then error(tostring(errs[i])) end end
    end
    left = left - #items
  end
end

if mode == "rate" then
  run(math.min(size, 2000))   -- warm up: metadata, the connection, the slots
  local t0 = core.now()
  run(n)
  local dt = core.now() - t0
  print(string.format("request_all: %d requests, %d in flight, in %.3f s = %.0f req/s", n, conc, dt, n / dt))
else
  -- The first batches grow the process to a batch's working set (BATCH responses alive at once,
  -- and what malloc keeps of them once freed); growth is measured after ten of them.
  run(10 * size)
  collectgarbage()
  collectgarbage()
  local a = rss_kib()
  run(100000)
  collectgarbage()
  collectgarbage()
  local b = rss_kib()
  print(string.format("memory (request_all, batches of %d): RSS %d KiB after %d requests, %d KiB after 100,000 "
    .. "more: growth %d KiB", size, a, 10 * size, b, b - a))
end
