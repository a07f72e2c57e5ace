-- The examples run as a user runs them: a child lua5.4 with the configuration in its
-- environment, against the fake workspace.
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local ws
local q = files.q

local function run(example, env)
  local parts = { "env -u DATABRICKS_CONFIG_PROFILE -u DATABRICKS_TOKEN -u DATABRICKS_CLIENT_ID",
    "-u DATABRICKS_CLIENT_SECRET", "HOME=" .. q(ws.dir), "SSL_CERT_FILE=" .. q(ws.ca_file),
    "DATABRICKS_HOST=" .. q(ws.url),
    "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;'", "LUA_CPATH_5_4='build/5.4/?.so;;'" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
  local p = io.popen(table.concat(parts, " ") .. " lua5.4 " .. q(example) .. " 2>&1; echo __rc=$?")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc
end

setup(function()
  ws = fake.start()
  ws:set { localhost_app = "my-app" }
end)
teardown(function() if ws then ws:stop() end end)

describe("examples", function()
  local m2m = {}
  before_each(function()
    m2m = { DATABRICKS_CLIENT_ID = ws.creds.client_id, DATABRICKS_CLIENT_SECRET = ws.creds.client_secret }
  end)

  it("m2m.lua reads the current user", function()
    local out, rc = run("examples/m2m.lua", m2m)
    assert.equal(0, rc, out)
    assert.matches("current user: fake%-client%-id", out)
  end)

  it("app_call.lua calls the app as the service principal", function()
    local out, rc = run("examples/app_call.lua", m2m)
    assert.equal(0, rc, out)
    assert.matches("my%-app /api/hello %-> HTTP 200 %(auth type oauth%-m2m%)", out)
  end)

  it("notebook_app_call.lua exchanges a notebook token and calls the app", function()
    local out, rc = run("examples/notebook_app_call.lua", { DATABRICKS_TOKEN = ws.creds.pat })
    assert.equal(0, rc, out)
    assert.matches("audience app%-client%-my%-app", out)
    assert.matches("exchanged: dbxauth%.token%(Bearer", out)
    assert.matches("HTTP 200", out)
    assert.not_matches(ws.creds.pat, out, 1, true)
  end)

  it("fail with the error on stderr and exit 1", function()
    local out, rc = run("examples/app_call.lua", { DATABRICKS_TOKEN = "dapi-wrong-token" })
    assert.equal(1, rc)
    assert.matches("calling app my%-app: ", out)
  end)
end)
