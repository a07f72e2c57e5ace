-- The Lua side of a call alone: dbxauth over a stub transport that answers at once (no network,
-- no TLS), N calls of one kind. bench/instructions.lua runs it under callgrind.
-- Usage: lua5.4 bench/lua_side.lua KIND N   KIND: authenticate_pat | authenticate_m2m |
--        request | request_m2m | app_request | request_all   (paths as bench/run.lua sets them)
local dbxauth = require "dbxauth"
local curl = require "dbxauth.transport.curl"
local fake_transport = require "spec.support.fake_transport"

local kind, n = arg[1], tonumber(arg[2] or "10000")
local HOST = "https://h.example.com"
local APP = "https://my-app-123.apps.example.com"
local PATH = "/api/2.0/preview/scim/v2/Me"

-- Setup answers (metadata, OIDC, tokens, the Apps API) come from the scripted transport.
local setup = fake_transport.new {
  { pattern = "databricks%-config$", respond = function()
    return { status = 200, body = '{"oidc_endpoint":"' .. HOST .. '/oidc","workspace_id":"123"}' } end },
  { pattern = "oauth%-authorization%-server$", respond = function()
    return { status = 200, body = '{"token_endpoint":"' .. HOST .. '/oidc/v1/token"}' } end },
  { pattern = "/oidc/v1/token$", respond = function()
    return { status = 200, body = '{"access_token":"tok","token_type":"Bearer","expires_in":3600,'
      .. '"scope":"all-apis"}' } end },
  { pattern = "/api/2.0/apps/my%-app$", respond = function()
    return { status = 200, body = '{"name":"my-app","url":"' .. APP .. '","oauth2_app_client_id":"cid",'
      .. '"user_api_scopes":["sql"],"app_status":{"state":"RUNNING"},"compute_status":{"state":"ACTIVE"}}' } end },
}

-- The measured calls get one prepared response; the clock is the curl transport's.
local RES = { status = 200, headers = { ["content-type"] = "application/json" }, body = "{}" }
local API, APP_HELLO = HOST .. PATH, APP .. "/api/hello"
local stub = { now_function = curl.new().now_function }
function stub:send(req)
  local u = req.url
  if u == API or u == APP_HELLO then return RES end
  return setup:send(req)
end
function stub:send_all(reqs)
  local rs, es = {}, {}
  for i = 1, #reqs do rs[i], es[i] = RES, false end
  return rs, es
end
function stub:now() return self.now_function() end
function stub:sleep() end

local ctx = { env = {}, home = "/nonexistent" }
local opts = kind:find("m2m") and { host = HOST, client_id = "c", client_secret = "s", transport = stub }
  or { host = HOST, token = "dapi-x", transport = stub }
local cfg = assert(dbxauth.config(opts, ctx))

local keep, sum = {}, 0
if kind:find("^authenticate") then
  assert(cfg:authenticate())
  -- the table is kept, as a caller's would be (LuaJIT would otherwise sink the allocation)
  for i = 1, n do
    local h = cfg:authenticate()
    keep[i % 8] = h
    sum = sum + #h.Authorization
  end
elseif kind:find("^request_all") then
  local list = {}
  for i = 1, 1000 do list[i] = { path = PATH } end
  for _ = 0, n / 1000 do
    local _, _, failed = cfg:request_all(list, { concurrency = 16 })
    assert(failed == 0)
    sum = sum + 1
  end
elseif kind:find("^request") then
  for _ = 0, n do sum = sum + cfg:request({ path = PATH }).status end
elseif kind == "app_request" then
  for _ = 0, n do sum = sum + cfg:app_request({ app = "my-app", path = "/api/hello" }).status end
else
  error("unknown kind " .. tostring(kind))
end
assert(sum > 0 and (#keep >= 0))
