-- The fake workspace's Azure endpoints (spec/support/fake/entra.lua) as a client sees them: the
-- Entra v1 and v2 token forms, Entra's error shape, IMDS's Metadata rule, /aad/auth.
local fake = require "spec.support.fake"
local curl = require "dbxauth.transport.curl"
local oauth = require "dbxauth.oauth"
local cjson = require "cjson.safe"

local ws, creds, t

local function post(path, fields)
  local res = assert(t:send { method = "POST", url = ws.url .. path, body = oauth.form(fields),
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
  return res, cjson.decode(res.body)
end

setup(function()
  ws = fake.start()
  creds = ws.creds
  t = curl.new { ca_file = ws.ca_file }
end)

teardown(function() if ws then ws:stop() end end)

before_each(function() ws:reset() end)

describe("fake Entra ID", function()
  local base = function() return "/__entra/" .. creds.azure_tenant_id .. "/oauth2/" end

  it("answers the v1 form with string numbers and expires_on, and the v2 form with numbers", function()
    local res, doc = post(base() .. "token", { grant_type = "client_credentials", client_id = creds.azure_client_id,
      client_secret = creds.azure_client_secret, resource = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d" })
    assert.equal(200, res.status)
    assert.is_string(doc.expires_in)
    assert.is_string(doc.expires_on)
    assert.equal(3, select(2, doc.access_token:gsub("[^.]+", "")))
    res, doc = post(base() .. "v2.0/token", { grant_type = "client_credentials", client_id = creds.azure_client_id,
      client_secret = creds.azure_client_secret, scope = "https://management.core.windows.net//.default" })
    assert.equal(200, res.status)
    assert.is_number(doc.expires_in)
    assert.is_nil(doc.expires_on)
    assert.equal(1, ws:counters()["entra azure-sm"])
  end)

  it("answers errors in Entra's shape", function()
    local res, doc = post(base() .. "token", { grant_type = "client_credentials", client_id = creds.azure_client_id,
      client_secret = "nope-nope", resource = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d" })
    assert.equal(401, res.status)
    assert.equal("invalid_client", doc.error)
    assert.matches("^AADSTS7000215: .* Trace ID: ", doc.error_description)
    assert.same({ 7000215 }, doc.error_codes)
    assert.is_string(doc.correlation_id)
    res, doc = post(base() .. "token", { grant_type = "client_credentials", client_id = creds.azure_client_id,
      client_secret = creds.azure_client_secret, resource = "https://unknown.example.com/" })
    assert.equal(400, res.status)
    assert.equal("invalid_resource", doc.error)
  end)

  it("serves IMDS only with Metadata: true, and /aad/auth as a redirect to the tenant", function()
    local res = assert(t:send { method = "GET", url = creds.imds_url
      .. "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=2ff814a6-3304-4ab8-85cb-cd0e6f879c1d" })
    assert.equal(400, res.status)
    res = assert(t:send { method = "GET", url = ws.url .. "/aad/auth" })
    assert.equal(302, res.status)
    local want = "https://login.microsoftonline.com/" .. creds.azure_tenant_id .. "/oauth2/authorize?"
    assert.equal(want, res.headers.location:sub(1, #want))
  end)
end)
