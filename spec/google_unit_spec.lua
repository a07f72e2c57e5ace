-- google.lua and the two Google providers over a provider context of plain functions: the
-- cloud gate as data, key parsing, lifetimes (cache, refresh, the SA token's cooldown) and
-- what error messages may quote.
local cjson = require "cjson"
local core = require "dbxauth.core"
local fake_context = require "spec.support.fake_context"
local google = require "dbxauth.google"
local keys = require "spec.support.google_keys"

local creds_provider = require "dbxauth.providers.google_credentials"
local id_provider = require "dbxauth.providers.google_id"

local function jwt(claims)
  return core.b64url_encode('{"alg":"RS256"}') .. "." .. core.b64url_encode(cjson.encode(claims)) .. ".c2ln"
end

describe("the cloud gate (Go: google_* set and IsGcp, unless auth_type names the provider)", function()
  local GCP, AWS = "https://123.4.gcp.databricks.com", "https://abc.cloud.databricks.com"
  local rows = {
    { p = creds_provider, attrs = { host = GCP, google_credentials = "{}" }, want = true },
    { p = creds_provider, attrs = { host = AWS, google_credentials = "{}" }, want = false },
    { p = creds_provider, attrs = { host = AWS, google_credentials = "{}" }, cloud = "GCP", want = true },
    { p = creds_provider, attrs = { host = GCP, google_credentials = "{}" }, cloud = "Azure", want = false },
    { p = creds_provider, attrs = { host = AWS, google_credentials = "{}", auth_type = "google-credentials" },
      want = true },
    { p = creds_provider, attrs = { host = AWS, google_credentials = "{}", auth_type = "google-id" }, want = false },
    { p = creds_provider, attrs = { host = GCP }, want = false },
    { p = creds_provider, attrs = { google_credentials = "{}" }, cloud = "GCP", want = false },
    { p = id_provider, attrs = { host = GCP, google_service_account = "sa@p.iam" }, want = true },
    { p = id_provider, attrs = { host = AWS, google_service_account = "sa@p.iam" }, want = false },
    { p = id_provider, attrs = { host = AWS, google_service_account = "sa@p.iam" }, cloud = "GCP", want = true },
    { p = id_provider, attrs = { host = AWS, google_service_account = "sa@p.iam", auth_type = "google-id" },
      want = true },
    { p = id_provider, attrs = { host = GCP, google_credentials = "{}" }, want = false },
  }
  for i, r in ipairs(rows) do
    it(("row %d: %s %s"):format(i, r.p.name, tostring(r.want)), function()
      assert.equal(r.want, r.p.applies(fake_context.new { attrs = r.attrs, cloud = r.cloud }))
    end)
  end
end)

describe("google.parse_key", function()
  it("defaults token_uri to Google's and keeps the key id", function()
    local k = assert(google.parse_key('{"type":"service_account","client_email":"a@b","private_key":"k",'
      .. '"private_key_id":"abc123"}', ""))
    assert.equal("https://oauth2.googleapis.com/token", k.token_uri)
    assert.equal("abc123", k.private_key_id)
  end)

  it("names the missing field", function()
    local _, err = google.parse_key('{"type":"service_account","private_key":"k"}', "p: ")
    assert.equal("p: the service account key has no client_email", err.message)
  end)
end)

describe("google.rfc3339", function()
  it("reads IAM's expireTime in UTC, with or without fractions", function()
    assert.equal(1767225600, google.rfc3339("2026-01-01T00:00:00Z"))
    assert.equal(1767225661, google.rfc3339("2026-01-01T00:01:01.123456Z"))
    assert.is_nil(google.rfc3339("2026-01-01 00:00:00"))
    assert.is_nil(google.rfc3339(12))
  end)
end)

describe("google-credentials lifetimes", function()
  local sa = keys.get("unit-sa")
  local function setup_ctx(opts)
    local ctx
    ctx = fake_context.new {
      attrs = { host = "https://h.gcp.databricks.com",
                google_credentials = keys.json(sa, "https://oauth2.example.com/token") },
      send = function(req)
        local a = core.parse_query(req.body).assertion
        local claims = cjson.decode(core.b64url_decode(a:match("^[^.]+%.([^.]+)")))
        if claims.target_audience then
          return { status = 200, headers = {}, body = cjson.encode {
            id_token = jwt { aud = claims.target_audience, exp = ctx.clock.t + 3600 } } }
        end
        return opts.sa(req, ctx)
      end,
    }
    return ctx
  end

  it("caches both tokens and refreshes the ID token at its expiry", function()
    local n = 0
    local ctx = setup_ctx { sa = function()
      n = n + 1
      return { status = 200, headers = {}, body = cjson.encode {
        access_token = "ya29.unit-access-token-" .. n, expires_in = 3599, token_type = "Bearer" } }
    end }
    local creds = assert(creds_provider.configure(ctx))
    local h = assert(creds.headers())
    assert.equal("ya29.unit-access-token-1", h["X-Databricks-GCP-SA-Access-Token"])
    assert(creds.headers())
    assert.equal(2, #ctx.send_calls)
    ctx.clock.t = ctx.clock.t + 3600
    h = assert(creds.headers())
    assert.equal(4, #ctx.send_calls)
    assert.equal("ya29.unit-access-token-2", h["X-Databricks-GCP-SA-Access-Token"])
  end)

  it("goes without the SA token and asks again only after the cooldown", function()
    local ctx = setup_ctx { sa = function()
      return { status = 400, headers = {}, body = '{"error":"invalid_scope","error_description":"no"}' }
    end }
    local creds = assert(creds_provider.configure(ctx))
    local h = assert(creds.headers())
    assert.is_nil(h["X-Databricks-GCP-SA-Access-Token"])
    assert.matches("^Bearer ", h.Authorization)
    assert(creds.headers())
    assert.equal(2, #ctx.send_calls)
    ctx.clock.t = ctx.clock.t + 61
    assert(creds.headers())
    assert.equal(3, #ctx.send_calls)
  end)

  it("masks the assertion when the token endpoint echoes it", function()
    local ctx = fake_context.new {
      attrs = { host = "https://h.gcp.databricks.com",
                google_credentials = keys.json(sa, "https://oauth2.example.com/token") },
      send = function(req)
        local a = core.parse_query(req.body).assertion
        return { status = 400, headers = {}, body = cjson.encode { error = "invalid_grant",
          error_description = "bad assertion " .. a } }
      end,
    }
    local creds = assert(creds_provider.configure(ctx))
    local _, err = creds.headers()
    local a = core.parse_query(ctx.send_calls[1].body).assertion
    assert.is_nil(err.message:find(a, 1, true))
    assert.matches("bad assertion %*%*%*", err.message)
  end)
end)

describe("google-id's application default credentials", function()
  local adc = require "dbxauth.google_adc"
  local errors = require "dbxauth.errors"

  it("asks the default metadata address briefly, and says no ADC was found when nothing answers", function()
    local ctx = fake_context.new { home = "/nonexistent", send = function()
      return nil, errors.new("network", "connect failed", { reason = "connect" })
    end }
    local found = assert(adc.find(ctx))
    assert.equal("metadata", found.kind)
    local tok, err = found.source:token()
    assert.is_nil(tok)
    local req = ctx.send_calls[1]
    assert.equal("http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token?scopes="
      .. "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform", req.url)
    assert.equal("Google", req.headers["Metadata-Flavor"])
    assert.equal(3, req.timeout)
    assert.equal("google_credentials", err.code)
    assert.matches("google: could not find default credentials", err.message, 1, true)
  end)

  it("prefers GOOGLE_APPLICATION_CREDENTIALS, then gcloud's file under CLOUDSDK_CONFIG", function()
    local dir = require("spec.support.files").tmpdir()
    require("spec.support.files").write(dir .. "/application_default_credentials.json",
      '{"type":"authorized_user","client_id":"c","client_secret":"unit-gcloud-secret","refresh_token":"r"}')
    local ctx = fake_context.new { env = { CLOUDSDK_CONFIG = dir } }
    assert.equal("file", assert(adc.find(ctx)).kind)
    local _, err = adc.find(fake_context.new {
      env = { CLOUDSDK_CONFIG = dir, GOOGLE_APPLICATION_CREDENTIALS = dir .. "/x" } })
    assert.matches("GOOGLE_APPLICATION_CREDENTIALS", err.message)
  end)

  it("refuses credential types it cannot use", function()
    local dir = require("spec.support.files").tmpdir()
    require("spec.support.files").write(dir .. "/ext.json", '{"type":"external_account"}')
    local _, err = adc.find(fake_context.new { env = { GOOGLE_APPLICATION_CREDENTIALS = dir .. "/ext.json" } })
    assert.matches("unsupported credentials type", err.message)
  end)
end)

describe("Google's answers and second credentials in errors", function()
  it("reads Google's nested error document", function()
    local f = require("dbxauth.apierror").parse_body(403,
      '{"error":{"code":403,"message":"Permission denied on resource.","status":"PERMISSION_DENIED"}}')
    assert.same({ error_code = "PERMISSION_DENIED", message = "Permission denied on resource." }, f)
  end)

  it("masks the SA access token header like Authorization", function()
    local list = require("dbxauth.redact").of_request { headers = {
      Authorization = "Bearer id.token.value", ["X-Databricks-GCP-SA-Access-Token"] = "ya29.sa-token-value" } }
    table.sort(list)
    assert.same({ "id.token.value", "ya29.sa-token-value" }, list)
  end)

  it("refuses an IAM answer without a usable token or expiry", function()
    local what = "generateAccessToken"
    local _, err = google.iam_access_token({ status = 200, headers = {}, body = '{"accessToken":"a b"}' }, what)
    assert.equal("invalid_response", err.code)
    _, err = google.iam_access_token({ status = 200, headers = {},
      body = '{"accessToken":"ya29.x","expireTime":"soon"}' }, what)
    assert.matches("expireTime", err.message)
    _, err = google.iam_id_token({ status = 200, headers = {}, body = '{"token":"not-a-jwt"}' }, "generateIdToken")
    assert.matches("no expiry", err.message)
  end)
end)
