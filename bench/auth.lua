-- Cost of a cached cfg:authenticate() call, per auth type, in this interpreter.
-- Usage: lua5.4 bench/auth.lua   |   luajit bench/auth.lua   (paths set by bench/run.lua)
local dbxauth = require "dbxauth"
local fake_transport = require "spec.support.fake_transport"

local N = tonumber(arg and arg[1]) or 2000000

local function m2m_transport()
  return fake_transport.new {
    { pattern = "databricks%-config$", respond = function()
      return { status = 200, body = '{"oidc_endpoint":"https://h/oidc"}' } end },
    { pattern = "/oidc/v1/token$", respond = function()
      return { status = 200, body = '{"access_token":"tok","token_type":"Bearer","expires_in":3600}' } end },
  }
end

local function measure(name, cfg)
  assert(cfg:authenticate())
  local t0 = os.clock()
  local sum = 0
  for _ = 1, N do sum = sum + #cfg:authenticate().Authorization end
  local ns = (os.clock() - t0) / N * 1e9
  assert(sum > 0)
  print(string.format("authenticate %-9s %-28s %7.0f ns/call", name,
    (type(jit) == "table" and jit.version or _VERSION), ns))
end

local ctx = { env = {}, home = "/nonexistent" }
local pat = assert(dbxauth.config({ host = "https://h", token = "dapi-x", transport = m2m_transport() }, ctx))
measure("pat", pat)
local m2m = assert(dbxauth.config({ host = "https://h", client_id = "c", client_secret = "s",
  transport = m2m_transport() }, ctx))
measure("oauth-m2m", m2m)
