-- metadata-service and azure-devops-oidc inside nginx (LuaJIT, cosockets): a content handler of
-- a gateway nginx (spec/support/nginx_gw.lua) builds a configuration and calls the fake
-- workspace's API; the metadata service is reached over plain HTTP on 127.0.0.1, the workspace
-- and Azure DevOps over TLS, all through the cosocket transport.
local fake = require "spec.support.fake"
local ngw = require "spec.support.nginx_gw"
local curl = require "dbxauth.transport.curl"
local cjson = require "cjson.safe"

-- A content handler: dbxauth.config(<opts>, { env = <env> }), one API call, the outcome as JSON.
local function location(path, opts, env)
  return [[
    location = ]] .. path .. [[ {
      content_by_lua_block {
        local dbxauth = require "dbxauth"
        local cfg = assert(dbxauth.config(]] .. opts .. [[, { env = ]] .. env .. [[, home = "/nonexistent" }))
        local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
        ngx.header["Content-Type"] = "application/json"
        ngx.print(require("cjson").encode(res and { status = res.status, user = res:json().userName,
          auth_type = cfg.auth_type, phase = ngx.get_phase() } or { err = err.message }))
      }
    }
  ]]
end

describe("in nginx", function()
  local ws, gw
  local client = curl.new()

  setup(function()
    ws = fake.start()
    ws:set { federation_audience = "api://AzureADTokenExchange" }
    local host = '"https://localhost:${WS_PORT}"'
    gw = ngw.start {
      ws = ws,
      vars = { MS_URL = ws.metadata_url, ADO = ws.ado_collection, ADO_TOKEN = ws.creds.ado_access_token },
      server = location("/t/ms", "{ host = " .. host .. ', metadata_service_url = "${MS_URL}" }', "{}")
        .. location("/t/ado", "{ host = " .. host .. " }", [[{ SYSTEM_ACCESSTOKEN = "${ADO_TOKEN}",
             SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = "${ADO}", SYSTEM_TEAMPROJECTID = "proj",
             SYSTEM_PLANID = "plan", SYSTEM_JOBID = "job", SYSTEM_HOSTTYPE = "build" }]]),
    }
  end)

  teardown(function()
    if gw then gw:stop() end
    if ws then ws:stop() end
  end)

  local function call(path)
    local res = assert(client:send { method = "GET", url = gw.url .. path, headers = {}, timeout = 20 })
    assert.equal(200, res.status, res.body)
    return assert(cjson.decode(res.body))
  end

  it("metadata-service gets its token over plain HTTP on loopback through a cosocket", function()
    local out = call("/t/ms")
    assert.is_nil(out.err, out.err)
    assert.same({ status = 200, user = "user@example.com", auth_type = "metadata-service", phase = "content" }, out)
    assert.equal(1, ws:counters()["GET /__metadata/token"])
    assert.equal("https://localhost:" .. ws.port, ws:last("/__metadata/token").headers["x-databricks-host"])
  end)

  it("azure-devops-oidc asks Azure DevOps and federates through cosockets", function()
    local out = call("/t/ado")
    assert.is_nil(out.err, out.err)
    assert.same({ status = 200, user = "federated:p://fake-org/proj/build", auth_type = "azure-devops-oidc",
                  phase = "content" }, out)
  end)
end)
