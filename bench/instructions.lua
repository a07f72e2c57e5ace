-- Machine instructions per call, counted by callgrind: repeatable on a loaded machine, where
-- wall-clock rates are not. Each figure is (Ir(N2) - Ir(N1)) / (N2 - N1) of the client process,
-- so start-up, TLS handshakes and warm-up cancel out.
--
--   lua5.4 bench/instructions.lua [lua] [request] [app] [batch]    (default: all; needs valgrind
--   and `make build build/bench/raw_curl build/bench/raw_multi`)
--
-- lua: the Lua side alone over a stub transport (bench/lua_side.lua), both interpreters.
-- request / app / batch: against the fake workspace, next to the raw libcurl loops of
-- bench/run.lua (bare and fair; multi with 16 in flight), with the same headers on the wire.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"
local dbxauth = require "dbxauth"

local want = {}
for _, a in ipairs(arg) do want[a] = true end
if next(want) == nil then want = { lua = true, request = true, app = true, batch = true } end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local ENV54 = "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' "
local ENVJIT = "LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/jit/?.so;;' "
local INTERPS = { { "lua5.4", ENV54 }, { "luajit", ENVJIT } }
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. q(dir)))

local function instructions(env, cmd)
  local out = dir .. "/cg.out"
  local full = env .. "valgrind --tool=callgrind --callgrind-out-file=" .. q(out) .. " " .. cmd
    .. " >/dev/null 2>" .. q(dir .. "/cg.err")
  if not os.execute(full) then
    local f = io.open(dir .. "/cg.err")
    error("failed: " .. cmd .. "\n" .. (f and f:read("a") or ""), 0)
  end
  local f = assert(io.open(out))
  local text = f:read("a")
  f:close()
  return tonumber(text:match("\nsummary: (%d+)") or text:match("\ntotals: (%d+)"))
end

local function per_call(name, env, cmd_for, n1, n2)
  local a, b = instructions(env, cmd_for(n1)), instructions(env, cmd_for(n2))
  print(string.format("%-34s %9.0f instructions per call", name, (b - a) / (n2 - n1)))
  io.stdout:flush()
end

local ok, err = pcall(function()
  if want.lua then
    print("== the Lua side alone (stub transport)")
    for _, it in ipairs(INTERPS) do
      for _, kind in ipairs { "authenticate_pat", "authenticate_m2m", "request", "app_request", "request_all" } do
        local many = kind:find("^authenticate") and 100000 or 10000
        per_call(kind .. " " .. it[1], it[2],
          function(n) return it[1] .. " bench/lua_side.lua " .. kind .. " " .. n end, many / 10, many)
      end
    end
  end
  if not (want.request or want.app or want.batch) then return end
  local ws = fake.start { workers = 1 }
  local wok, werr = pcall(function()
    local pat = ws.creds.pat
    local url = ws.url .. "/api/2.0/preview/scim/v2/Me"
    local ua = require("dbxauth.useragent").build(dbxauth.VERSION, "pat", os.getenv)
    local hdrs = q("Authorization: Bearer " .. pat) .. " " .. q("Accept: application/json") .. " "
      .. q("User-Agent: " .. ua) .. " " .. q("X-Databricks-Workspace-Id: " .. ws.creds.workspace_id)
    local function raw(flags, u, headers)
      return function(n) return "build/bench/raw_curl " .. flags .. " " .. q(u) .. " " .. q(ws.ca_file) .. " " .. n
        .. " " .. headers end
    end
    local function script(interp, file, extra)
      return function(n) return interp .. " " .. file .. " " .. q(ws.url) .. " " .. q(ws.ca_file) .. " " .. q(pat)
        .. " " .. n .. (extra or "") end
    end
    if want.request then
      print("== authenticated GETs, HTTP/1.1 keep-alive")
      per_call("raw libcurl, bare", "", raw("--http1.1", url, hdrs), 300, 1300)
      per_call("raw libcurl, fair", "", raw("--fair --http1.1", url, hdrs), 300, 1300)
      for _, it in ipairs(INTERPS) do
        per_call("cfg:request " .. it[1], it[2], script(it[1], "bench/requests.lua"), 300, 1300)
      end
    end
    if want.app then
      print("== app_request with a cached exchanged token")
      ws:set { localhost_app = "my-app" }
      local cfg = assert(dbxauth.config({ host = ws.url, token = pat, ca_file = ws.ca_file },
        { env = {}, home = "/nonexistent" }))
      local tok = assert(cfg:app_token { app = "my-app" })
      local app_url = "https://localhost:" .. ws.app_port .. "/api/hello"
      per_call("raw libcurl, bare (app)", "", raw("--http1.1", app_url, q("Authorization: Bearer " .. tok.access_token)
        .. " " .. q("Accept: application/json") .. " " .. q("User-Agent: " .. ua)), 300, 1300)
      for _, it in ipairs(INTERPS) do
        per_call("app_request " .. it[1], it[2], script(it[1], "bench/app_requests.lua"), 300, 1300)
      end
    end
    if want.batch then
      print("== 16 in flight, HTTP/2 multiplexed")
      per_call("raw libcurl multi", "", function(n) return "build/bench/raw_multi " .. q(url) .. " " .. q(ws.ca_file)
        .. " " .. n .. " 16 " .. hdrs end, 2000, 6000)
      for _, it in ipairs(INTERPS) do
        per_call("request_all " .. it[1], it[2], script(it[1], "bench/batch.lua", " 16"), 2000, 6000)
      end
    end
  end)
  ws:stop()
  if not wok then error(werr, 0) end
end)
os.execute("rm -rf " .. q(dir))
if not ok then error(err, 0) end
