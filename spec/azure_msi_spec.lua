-- azure-msi end to end: IMDS and the App Service identity endpoint of the fake workspace (plain
-- HTTP on loopback, as the seams allow), Entra-token headers checked by the workspace.
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"

local ws, creds

local function config(opts, env)
  local o = { host = ws.url, cloud = "Azure", ca_file = ws.ca_file, azure_use_msi = true }
  for k, v in pairs(opts or {}) do o[k] = v end
  local e = { AZURE_POD_IDENTITY_AUTHORITY_HOST = creds.imds_url }
  for k, v in pairs(env or {}) do e[k] = v end
  return assert(dbxauth.config(o, { env = e, home = "/nonexistent-home-for-specs" }))
end

local function query(path)
  return require("dbxauth.core").parse_query(ws:last(path).query)
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

describe("azure-msi", function()
  it("gets both tokens from IMDS with Metadata: true and calls the workspace", function()
    ws:set { azure_require_sm = true }
    local cfg = config { azure_workspace_resource_id = creds.azure_resource_id }
    local res = assert(cfg:request { path = "/api/2.0/fake/echo" })
    assert.equal("azure-msi", cfg.auth_type)
    local h = res:json().headers
    assert.is_string(h["x-databricks-azure-sp-management-token"])
    assert.equal(creds.azure_resource_id, h["x-databricks-azure-workspace-resource-id"])
    local last = ws:last("/metadata/identity/oauth2/token")
    assert.equal("true", last.headers.metadata)
    assert.equal("application/json", last.headers.accept)
    local c = ws:counters()
    assert.equal(1, c["imds workspace"])
    assert.equal(1, c["imds azure-sm"])
    -- the Go SDK's query, sorted, resource escaped
    assert.equal("api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.core.windows.net%2F", last.query)
  end)

  it("names a user-assigned identity with client_id", function()
    ws:set { msi_client_id = "user-assigned-1" }
    local cfg = config { azure_client_id = "user-assigned-1" }
    assert(cfg:authenticate())
    assert.equal("user-assigned-1", query("/metadata/identity/oauth2/token").client_id)
  end)

  it("reports an unknown identity with IMDS's text and the fix", function()
    local _, err = config({ azure_client_id = "not-assigned" }):authenticate()
    assert.equal(400, err.status)
    assert.matches("^default auth: azure%-msi: inner token: managed identity token request failed: Identity not found",
      err.message)
    assert.matches("managed identity", err.hint)
  end)

  it("maps an IMDS 404 to not_found", function()
    ws:fault { path = "/metadata/identity/oauth2/token", status = 404, kind = "body", body = "404 page not found",
               content_type = "text/plain" }
    local _, err = config({ auth_type = "azure-msi" }):authenticate()
    assert.equal("not_found", err.code)
    assert.matches("^azure%-msi", (err.message:gsub("^default auth: ", "")))
  end)

  it("refuses an expires_on it cannot read", function()
    ws:fault { path = "/metadata/identity/oauth2/token", kind = "body", content_type = "application/json",
      body = '{"token_type":"Bearer","access_token":"abcdefabcdefabcdef","expires_on":"123456789123456789123456789"}' }
    local _, err = config():authenticate()
    assert.matches("invalid token expiry", err.message)
  end)

  it("uses the App Service endpoint when IDENTITY_ENDPOINT and IDENTITY_HEADER are set", function()
    local cfg = config({}, { IDENTITY_ENDPOINT = creds.identity_endpoint, IDENTITY_HEADER = creds.identity_header })
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    local c = ws:counters()
    assert.equal(1, c["appservice workspace"])
    assert.is_nil(c["imds workspace"])
    local q = query("/__appservice/msi/token")
    assert.equal("2019-08-01", q["api-version"])
    assert.equal(creds.identity_header, ws:last("/__appservice/msi/token").headers["x-identity-header"])
  end)

  it("keeps the App Service secret out of errors", function()
    local cfg = config({}, { IDENTITY_ENDPOINT = creds.identity_endpoint, IDENTITY_HEADER = "wrong-identity-secret" })
    local _, err = cfg:authenticate()
    assert.equal(401, err.status)
    assert.is_nil(tostring(err):find("wrong-identity-secret", 1, true))
  end)

  it("fetches plain HTTP only from 169.254.169.254 or loopback", function()
    for _, v in ipairs { "http://metadata.example.com", "http://10.0.0.1:80" } do
      local _, err = config({}, { AZURE_POD_IDENTITY_AUTHORITY_HOST = v }):authenticate()
      assert.equal("config", err.code)
      assert.matches("169%.254%.169%.254 or localhost", err.message)
    end
    local _, err = config({}, { IDENTITY_ENDPOINT = "http://evil.example.com/token", IDENTITY_HEADER = "x" })
      :authenticate()
    assert.matches("IDENTITY_ENDPOINT must be", err.message)
  end)

  it("does not apply without azure_use_msi or off Azure", function()
    local _, err = config({ azure_use_msi = false }):authenticate()
    assert.matches("cannot configure default credentials", err.message)
    _, err = config({ cloud = "AWS" }):authenticate()
    assert.matches("cannot configure default credentials", err.message)
    assert.is_nil(ws:counters()["imds workspace"])
  end)
end)
