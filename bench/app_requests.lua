-- app_request GETs per second with a cached exchanged token (a PAT exchanged for the app).
-- Usage: lua5.4 bench/app_requests.lua WORKSPACE_URL CA_FILE PAT N
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"

local url, ca, pat, n = arg[1], arg[2], arg[3], tonumber(arg[4] or "10000")
local cfg = assert(dbxauth.config({ host = url, token = pat, ca_file = ca }, { env = {}, home = "/nonexistent" }))

local function run(count)
  for _ = 1, count do
    local res, err = cfg:app_request { app = "my-app", path = "/api/hello" }
    if not res then error(tostring(err)) end
  end
end

run(200)
local t0 = core.now()
run(n)
local dt = core.now() - t0
print(string.format("app_request: %d requests in %.3f s = %.0f req/s", n, dt, n / dt))
