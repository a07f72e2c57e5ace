-- github-oidc-azure end to end: the fake workspace's GitHub Actions ID-token endpoint and its
-- Entra ID (federated credential: client assertion), through the public API.
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"

local ws, creds

local function config(opts, env)
  local o = { host = ws.url, cloud = "Azure", ca_file = ws.ca_file, auth_type = "github-oidc-azure",
              azure_client_id = creds.azure_client_id, azure_tenant_id = creds.azure_tenant_id,
              actions_id_token_request_url = creds.actions_request_url,
              actions_id_token_request_token = creds.actions_request_token }
  for k, v in pairs(opts or {}) do o[k] = v end
  for k, v in pairs(o) do if v == false then o[k] = nil end end
  local e = { AZURE_AUTHORITY_HOST = creds.azure_authority }
  for k, v in pairs(env or {}) do e[k] = v end
  return assert(dbxauth.config(o, { env = e, home = "/nonexistent-home-for-specs" }))
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

describe("github-oidc-azure", function()
  it("sends GitHub's ID token for api://AzureADTokenExchange as the client assertion", function()
    local cfg = config()
    local me = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json()
    assert.equal(creds.azure_client_id, me.userName)
    local gh = ws:last("/__idp/github/token")
    assert.equal("Bearer " .. creds.actions_request_token, gh.headers.authorization)
    assert.equal("api://AzureADTokenExchange", require("dbxauth.core").parse_query(gh.query).audience)
    local f = require("dbxauth.core").parse_query(ws:last("/__entra/" .. creds.azure_tenant_id .. "/oauth2/token").body)
    assert.equal("urn:ietf:params:oauth:client-assertion-type:jwt-bearer", f.client_assertion_type)
    assert.equal("2ff814a6-3304-4ab8-85cb-cd0e6f879c1d", f.resource)
    assert.is_nil(f.client_secret)
    -- Authorization only: no management token for a federated identity
    local h = assert(cfg:authenticate())
    assert.is_nil(h["X-Databricks-Azure-SP-Management-Token"])
    assert.equal(1, ws:counters()["entra workspace"])
  end)

  it("is not configured without each of its attributes", function()
    for _, missing in ipairs { "azure_client_id", "azure_tenant_id", "actions_id_token_request_url",
                               "actions_id_token_request_token" } do
      local _, err = config({ [missing] = false }):authenticate()
      assert.matches("^github%-oidc%-azure auth: not configured", err.message)
    end
  end)

  it("reports GitHub's refusal", function()
    local _, err = config({ actions_id_token_request_token = "not-the-actions-token" }):authenticate()
    assert.matches("^default auth: github%-oidc%-azure: failed to request ID token from ", err.message)
    assert.matches("HTTP 401", err.message)
    assert.is_nil(tostring(err):find("not-the-actions-token", 1, true))
  end)

  it("reports Entra's refusal (an app without the federated credential)", function()
    local _, err = config({ azure_client_id = "other-app" }):authenticate()
    assert.matches("AADSTS700016", err.message)
  end)

  it("reports Entra server errors", function()
    ws:fault { path = "/__entra/" .. creds.azure_tenant_id .. "/oauth2/token", status = 500, kind = "body",
               body = "oops", content_type = "text/plain", count = -1 }
    local _, err = config({ http_timeout_seconds = 5, retry_timeout_seconds = 1 }):authenticate()
    assert.equal(500, err.status)
  end)
end)
