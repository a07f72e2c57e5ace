-- Azure sign-ins inside nginx (cosockets): a gateway in front of an app of the fake workspace,
-- with an Entra ID service principal and with a managed identity; the Entra token is exchanged
-- for the app's audience (seed 001), one token request per refresh for all workers.
local fake = require "spec.support.fake"
local ngw = require "spec.support.nginx_gw"
local files = require "spec.support.files"
local curl = require "dbxauth.transport.curl"
local cjson = require "cjson.safe"

local function location(prefix, opts)
  return ([[
    location /@PREFIX@/ {
      access_by_lua_block { require("dbxauth.nginx").access(@OPTS@) }
      proxy_pass https://fake/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${APP_HOST:my-app}:${WS_PORT};
      proxy_ssl_name ${APP_HOST:my-app};
      proxy_ssl_server_name on;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${CA};
    }
  ]]):gsub("@PREFIX@", prefix):gsub("@OPTS@", opts)
end

describe("Azure in nginx", function()
  local ws, gw, home
  local SP = '{ config = { profile = "azsp", cloud = "Azure" }, app = "my-app" }'
  local WS = '{ config = { profile = "azsp", cloud = "Azure", azure_workspace_resource_id = "@RID@" } }'
  local MSI = '{ config = { profile = "azmsi", cloud = "Azure" }, app = "my-app" }'

  setup(function()
    ws = fake.start { workers = 2 }
    home = files.tmpdir()
    local c = ws.creds
    files.write(home .. "/.databrickscfg", table.concat({
      "[azsp]", "host = " .. ws.url, "azure_client_id = " .. c.azure_client_id,
      "azure_client_secret = " .. c.azure_client_secret, "azure_tenant_id = " .. c.azure_tenant_id, "",
      "[azmsi]", "host = " .. ws.url, "azure_use_msi = true", "",
    }, "\n"))
    gw = ngw.start {
      ws = ws,
      env = { HOME = home, AZURE_AUTHORITY_HOST = c.azure_authority, AZURE_POD_IDENTITY_AUTHORITY_HOST = c.imds_url },
      server = location("sp", SP) .. location("msi", MSI) .. [[
        location /api/ {
          access_by_lua_block { require("dbxauth.nginx").access]] .. WS:gsub("@RID@", c.azure_resource_id) .. [[ }
          proxy_pass https://fake;
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_set_header Host localhost:${WS_PORT};
          proxy_ssl_name localhost;
          proxy_ssl_server_name on;
          proxy_ssl_verify on;
          proxy_ssl_trusted_certificate ${CA};
        }
      ]],
    }
  end)

  teardown(function()
    if gw then gw:stop() end
    if ws then ws:stop() end
    if home then os.execute("rm -rf " .. files.q(home)) end
  end)

  local client = curl.new()
  local function get(path, headers)
    local res, err = client:send { method = "GET", url = gw.url .. path, timeout = 20, headers = headers }
    assert(res, err and tostring(err))
    return res
  end

  local cases = { { "sp", "azure-client-secret", "entra workspace" }, { "msi", "azure-msi", "imds workspace" } }
  for _, case in ipairs(cases) do
    it(case[2] .. ": the app gets a Databricks token exchanged from the Entra token, once for all workers", function()
      ws:reset()
      for _ = 1, 6 do
        local res = get("/" .. case[1] .. "/api/hello")
        assert.equal(200, res.status, res.body)
      end
      local c = ws:counters()
      assert.equal(1, c[case[3]])
      assert.equal(1, c["exchange " .. ws:app("my-app").oauth2_app_client_id])
      local last = ws:last("/api/hello")
      assert.matches("^Bearer fake%-at%-", last.headers.authorization)
      assert.is_nil(cjson.decode(get("/" .. case[1] .. "/api/hello").body).error)
    end)
  end

  it("in front of the workspace: the management token and resource id go upstream, not the client's", function()
    ws:reset()
    ws:set { azure_require_sm = true }
    for _ = 1, 3 do
      local res = get("/api/2.0/fake/echo", { ["X-Databricks-Azure-SP-Management-Token"] = "client-own-value" })
      assert.equal(200, res.status, res.body)
      local h = cjson.decode(res.body).headers
      assert.equal(ws.creds.azure_resource_id, h["x-databricks-azure-workspace-resource-id"])
      assert.is_string(h["x-databricks-azure-sp-management-token"])
      assert.are_not.equal("client-own-value", h["x-databricks-azure-sp-management-token"])
    end
    assert.equal(1, ws:counters()["entra azure-sm"])
  end)
end)
