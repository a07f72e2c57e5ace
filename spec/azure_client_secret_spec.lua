-- azure-client-secret end to end: the fake workspace's Entra ID (AZURE_AUTHORITY_HOST) over TLS,
-- through the public API only.
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"
local leakcheck = require "spec.support.leakcheck"

local ws, creds

local function config(opts, env)
  local o = { host = ws.url, cloud = "Azure", ca_file = ws.ca_file, azure_client_id = creds.azure_client_id,
              azure_client_secret = creds.azure_client_secret, azure_tenant_id = creds.azure_tenant_id }
  for k, v in pairs(opts or {}) do o[k] = v end
  for k, v in pairs(o) do if v == false then o[k] = nil end end
  local e = { AZURE_AUTHORITY_HOST = creds.azure_authority }
  for k, v in pairs(env or {}) do e[k] = v end
  return assert(dbxauth.config(o, { env = e, home = "/nonexistent-home-for-specs" }))
end

local function echo(cfg)
  local res, err = cfg:request { path = "/api/2.0/fake/echo" }
  assert(res, err and tostring(err))
  return res:json().headers
end

setup(function()
  ws = fake.start()
  creds = ws.creds
end)

teardown(function() if ws then ws:stop() end end)

before_each(function()
  ws:reset()
  dbxauth.clear_caches()
end)

describe("azure-client-secret", function()
  it("is chosen on Azure and sends the Entra token with the management token beside it", function()
    ws:set { azure_require_sm = true }
    local cfg = config()
    local h = echo(cfg)
    assert.equal("azure-client-secret", cfg.auth_type)
    assert.equal("Bearer", h.authorization)
    assert.is_string(h["x-databricks-azure-sp-management-token"])
    assert.is_nil(h["x-databricks-azure-workspace-resource-id"])
    local me = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json()
    assert.equal(creds.azure_client_id, me.userName)
    -- one client-credentials call per resource, then both tokens are reused
    local c = ws:counters()
    assert.equal(1, c["entra workspace"])
    assert.equal(1, c["entra azure-sm"])
    local form = ws:last("/__entra/" .. creds.azure_tenant_id .. "/oauth2/token")
    assert.equal("POST", form.method)
  end)

  it("posts the v1 form: resource = the login app id, then the service-management endpoint", function()
    local cfg = config()
    assert(cfg:authenticate())
    local body = ws:last("/__entra/" .. creds.azure_tenant_id .. "/oauth2/token").body
    local f = require("dbxauth.core").parse_query(body)
    assert.equal("client_credentials", f.grant_type)
    assert.equal(creds.azure_client_id, f.client_id)
    assert.equal("https://management.core.windows.net/", f.resource)
    assert.is_nil(f.scope)
  end)

  it("hands out the Entra token with its expiry 40 s early, and the three headers from authenticate", function()
    local cfg = config { azure_workspace_resource_id = creds.azure_resource_id }
    local t0 = os.time()
    local tok = assert(cfg:token())
    assert.equal("Bearer", tok.token_type)
    assert.is_true(tok.expiry >= t0 + 3600 - 40 - 2 and tok.expiry <= t0 + 3600 - 40 + 2)
    local h = assert(cfg:authenticate())
    assert.equal("Bearer " .. tok.access_token, h.Authorization)
    assert.equal(creds.azure_resource_id, h["X-Databricks-Azure-Workspace-Resource-Id"])
    assert.is_string(h["X-Databricks-Azure-SP-Management-Token"])
    h.Authorization = "changed"
    assert.equal("Bearer " .. tok.access_token, assert(cfg:authenticate()).Authorization)
  end)

  it("sends the workspace resource id, and the workspace checks it", function()
    local h = echo(config { azure_workspace_resource_id = creds.azure_resource_id })
    assert.equal(creds.azure_resource_id, h["x-databricks-azure-workspace-resource-id"])
    local cfg = config { azure_workspace_resource_id = "/subscriptions/other/x" }
    local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
    assert.is_nil(res)
    assert.equal(401, err.status)
    assert.matches("Workspace%-Resource%-Id", err.message)
  end)

  it("the credential's headers win over the caller's", function()
    local cfg = config { azure_workspace_resource_id = creds.azure_resource_id }
    local res = assert(cfg:request { path = "/api/2.0/fake/echo",
      headers = { ["x-databricks-azure-workspace-resource-id"] = "/mine", ["X-Other"] = "kept" } })
    local h = res:json().headers
    assert.equal(creds.azure_resource_id, h["x-databricks-azure-workspace-resource-id"])
    assert.equal("kept", h["x-other"])
  end)

  it("leaves the caller's resource-id header alone when the credential sets none", function()
    local cfg = assert(dbxauth.config({ host = ws.url, ca_file = ws.ca_file, token = creds.pat },
      { env = {}, home = "/nonexistent-home-for-specs" }))
    local res = assert(cfg:request { path = "/api/2.0/fake/echo",
      headers = { ["X-Databricks-Azure-Workspace-Resource-Id"] = creds.azure_resource_id } })
    assert.equal(creds.azure_resource_id, res:json().headers["x-databricks-azure-workspace-resource-id"])
  end)

  it("reaches every item of a batch with its headers", function()
    ws:set { azure_require_sm = true }
    local cfg = config { azure_workspace_resource_id = creds.azure_resource_id }
    local list = {}
    for i = 1, 4 do list[i] = { path = "/api/2.0/fake/echo", query = { i = tostring(i) } } end
    local out, errs = cfg:request_all(list)
    for i = 1, 4 do
      assert(out[i], errs and errs[i] and tostring(errs[i]))
      local h = out[i]:json().headers
      assert.equal(creds.azure_resource_id, h["x-databricks-azure-workspace-resource-id"])
      assert.is_string(h["x-databricks-azure-sp-management-token"])
    end
  end)

  it("loads the tenant from the workspace's /aad/auth redirect when azure_tenant_id is unset", function()
    local cfg = config { azure_tenant_id = false }
    assert(cfg:authenticate())
    assert.equal(1, ws:counters()["GET /aad/auth"])
    assert.is_table(ws:last("/__entra/" .. creds.azure_tenant_id .. "/oauth2/token"))
  end)

  it("reports a wrong secret in Entra's words, without the Trace ID or the secret", function()
    local secret = leakcheck.secret("wrong-azure-secret-7")
    local cfg = config { azure_client_secret = secret }
    local _, err = cfg:authenticate()
    assert.equal("unauthenticated", err.code)
    assert.equal(401, err.status)
    assert.equal("invalid_client", err.oauth_error)
    assert.matches("^default auth: azure%-client%-secret: inner token: Entra ID token request failed: "
      .. "AADSTS7000215: Invalid client secret provided%.", err.message)
    assert.matches("%. See https://login%.microsoftonline%.com/error%?code=7000215", err.message)
    assert.is_nil(err.message:find("Trace ID", 1, true))
    assert.is_nil(tostring(err):find(secret, 1, true))
  end)

  it("reports an unknown tenant and an unknown client", function()
    local _, err = config({ azure_tenant_id = "no-such-tenant" }):authenticate()
    assert.matches("AADSTS90002: Tenant 'no%-such%-tenant' not found", err.message)
    assert.equal("bad_request", err.code)
    _, err = config({ azure_client_id = "nobody" }):authenticate()
    assert.matches("AADSTS700016", err.message)
  end)

  it("does not apply off Azure, unless auth_type names it", function()
    local cfg = config { cloud = false }
    local _, err = cfg:authenticate()
    assert.matches("cannot configure default credentials", err.message)
    assert.is_nil(ws:counters()["entra workspace"])
    cfg = config { cloud = false, auth_type = "azure-client-secret" }
    assert(cfg:authenticate())
    assert.equal("azure-client-secret", cfg.auth_type)
  end)

  it("reads ARM_* from the environment", function()
    local cfg = assert(dbxauth.config({ host = ws.url, ca_file = ws.ca_file }, { home = "/nonexistent-home-for-specs",
      env = { ARM_CLIENT_ID = creds.azure_client_id, ARM_CLIENT_SECRET = creds.azure_client_secret,
              ARM_TENANT_ID = creds.azure_tenant_id, DATABRICKS_CLOUD = "azure",
              AZURE_AUTHORITY_HOST = creds.azure_authority:gsub("/$", "") } }))
    assert(cfg:authenticate())
    assert.equal("azure-client-secret", cfg.auth_type)
    assert.is_nil(tostring(cfg):find(creds.azure_client_secret, 1, true))
  end)

  it("refuses a plain-http authority off loopback", function()
    local _, err = config({}, { AZURE_AUTHORITY_HOST = "http://login.example.com/" }):authenticate()
    assert.equal("config", err.code)
    assert.matches("AZURE_AUTHORITY_HOST", err.message)
  end)

  it("gets a new token from Entra after a 401 (the token was revoked)", function()
    local cfg = config()
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    ws:fault { path = "/api/2.0/preview/scim/v2/Me", status = 401, kind = "json" }
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal(2, ws:counters()["entra workspace"])
  end)
end)

describe("Entra ID tokens into Databricks Apps (seed 001)", function()
  it("exchanges the Entra token for a Databricks token of the app's audience, once", function()
    local cfg = config()
    local res = assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    assert.equal(200, res.status)
    assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    local c = ws:counters()
    assert.equal(1, c.exchange)
    local f = require("dbxauth.core").parse_query(ws:last("/oidc/v1/token").body)
    assert.equal("urn:ietf:params:oauth:grant-type:token-exchange", f.grant_type)
    assert.equal("urn:ietf:params:oauth:token-type:jwt", f.subject_token_type)
    assert.equal(ws:app("my-app").oauth2_app_client_id, f.audience)
    local tok = assert(cfg:app_token { app = "my-app" })
    assert.are_not.equal(assert(cfg:token()).access_token, tok.access_token)
  end)

  it("exchanges for the requested scopes", function()
    local cfg = config()
    assert(cfg:app_request { app = "scoped-app", path = "/api/hello",
                             scopes = { "dashboards.genie", "file.files", "sql" } })
    local f = require("dbxauth.core").parse_query(ws:last("/oidc/v1/token").body)
    assert.equal("dashboards.genie file.files sql", f.scope)
  end)

  it("exchanges an Entra token given as `token` as a JWT, not as a PAT", function()
    local entra = assert(config():token()).access_token
    local cfg = assert(dbxauth.config({ host = ws.url, ca_file = ws.ca_file, token = entra },
      { env = {}, home = "/nonexistent-home-for-specs" }))
    assert(cfg:app_request { url = ws:app_url("my-app"), path = "/api/hello" })
    local f = require("dbxauth.core").parse_query(ws:last("/oidc/v1/token").body)
    assert.equal("urn:ietf:params:oauth:token-type:jwt", f.subject_token_type)
  end)

  it("the app refuses an unexchanged Entra token; its 401 says Entra tokens must be exchanged", function()
    local entra = assert(config():token()).access_token
    local res = assert(require("dbxauth.transport.curl").new { ca_file = ws.ca_file, resolve = ws.resolve }):send {
      method = "GET", url = ws:app_url("my-app") .. "/api/hello", headers = { Authorization = "Bearer " .. entra } }
    assert.equal(401, res.status)
    ws:fault { host = "my-app", path = "/api/hello", status = 401, kind = "json", error_code = "UNAUTHENTICATED",
               message = "Invalid access token" }
    local _, err = config():app_request { app = "my-app", path = "/api/hello" }
    assert.equal(401, err.status)
    assert.matches("must be exchanged for a Databricks OAuth token", err.hint)
  end)
end)
