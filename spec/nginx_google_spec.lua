-- google-credentials and google-id inside nginx: the token grants, IAM calls, the metadata
-- server (plain HTTP) and the API call all go over cosockets from a content handler.
local cjson = require "cjson"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local keys = require "spec.support.google_keys"
local ngw = require "spec.support.nginx_gw"

local TARGET = "target-sa@fake-project.iam.gserviceaccount.com"
local METADATA_EMAIL = "vm-default@fake-project.iam.gserviceaccount.com"

local SERVER = [[
  location = /google {
    content_by_lua_block {
      local cjson = require "cjson.safe"
      local dbxauth = require "dbxauth"
      local f = assert(io.open(ngx.var.arg_conf, "rb"))
      local o = cjson.decode(f:read("*a"))
      f:close()
      local cfg = assert(dbxauth.config(o.config, { env = o.env, home = "/nonexistent" }))
      local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
      local h = cfg:authenticate()
      ngx.say(cjson.encode { user = res and res:json().userName, err = err and tostring(err),
        auth_type = cfg.auth_type, transport = tostring(require("dbxauth.transport").default({})),
        sa_header = h and h["X-Databricks-GCP-SA-Access-Token"] ~= nil })
    }
  }
]]

describe("Google auth in nginx", function()
  local ws, gw, dir, sa

  setup(function()
    ws = fake.start()
    gw = ngw.start { ws = ws, server = SERVER }
    dir = files.tmpdir()
    sa = keys.get("nginx-sa")
  end)

  teardown(function()
    if gw then gw:stop() end
    if ws then ws:stop() end
  end)

  before_each(function()
    ws:reset()
    ws:set { google_keys = keys.settings { sa }, google_impersonators = { [TARGET] = { METADATA_EMAIL } } }
  end)

  local function call(name, config, env)
    local path = dir .. "/" .. name .. ".json"
    files.write(path, cjson.encode { config = config, env = env })
    local res = assert(curl.new():send { method = "GET", url = gw.url .. "/google?conf=" .. path, headers = {} })
    assert.equal(200, res.status, res.body)
    return cjson.decode(res.body)
  end

  it("google-credentials signs in over cosockets", function()
    local out = call("creds", { host = ws.url, google_credentials = keys.json(sa, ws.url .. "/__google/token") },
      { DATABRICKS_CLOUD = "GCP" })
    assert.equal(sa.email, out.user, out.err)
    assert.equal("google-credentials", out.auth_type)
    assert.is_true(out.sa_header)
    assert.matches("ngx", out.transport)
  end)

  it("google-id impersonates with the metadata server's identity over plain HTTP", function()
    local out = call("id", { host = ws.url, google_service_account = TARGET }, {
      DATABRICKS_CLOUD = "GCP", GCE_METADATA_HOST = "127.0.0.1:" .. ws.http_port,
      DBXAUTH_GOOGLE_IAM_URL = ws.url .. "/__google/iam" })
    assert.equal(TARGET, out.user, out.err)
    assert.equal("google-id", out.auth_type)
    assert.is_true(out.sa_header)
    assert.equal(1, ws:counters()["GET /computeMetadata/v1/instance/service-accounts/default/token"])
  end)
end)
