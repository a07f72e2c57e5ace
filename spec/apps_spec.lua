-- Databricks Apps end to end over TLS against the fake workspace and its app hosts.
local dbxauth = require "dbxauth"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local ws, creds

local function config(opts, ctx)
  opts.transport = opts.transport or curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  ctx = ctx or {}
  ctx.env = ctx.env or {}
  ctx.home = ctx.home or "/nonexistent"
  local cfg, err = dbxauth.config(opts, ctx)
  assert(cfg, err and tostring(err))
  return cfg
end

local function pat(ctx) return config({ host = ws.url, token = creds.pat }, ctx) end
local function m2m(extra)
  local o = { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
  for k, v in pairs(extra or {}) do o[k] = v end
  return config(o)
end

local function count(key) return ws:counters()[key] or 0 end
local HELLO = "APP my-app GET /api/hello"

setup(function()
  ws = fake.start()
  creds = ws.creds
end)
teardown(function() if ws then ws:stop() end end)
before_each(function()
  ws:reset()
  dbxauth.clear_discovery_cache()
end)

describe("cfg:app", function()
  it("returns the app's metadata", function()
    local app = assert(pat():app("my-app"))
    assert.equal("my-app", app.name)
    assert.matches("^https://my%-app%-1234567890%.apps%.localhost:%d+$", app.url)
    assert.equal("app-client-my-app", app.oauth2_app_client_id)
    assert.same({ "sql" }, app.user_api_scopes)
    assert.same({ "iam.access-control:read", "iam.current-user:read", "sql" }, app.effective_user_api_scopes)
    assert.equal("RUNNING", app.state)
  end)

  it("caches the lookup briefly", function()
    local cfg = pat()
    assert(cfg:app("my-app")); assert(cfg:app("my-app"))
    assert.equal(1, count("GET /api/2.0/apps/my-app"))
  end)

  it("reports a missing app with a hint", function()
    local _, err = pat():app("no-such-app")
    assert.equal("not_found", err.code)
    assert.equal(404, err.status)
    assert.matches("check the app name", err.hint)
  end)

  it("rejects hostile Apps API answers", function()
    ws:app("no-url", { url = fake.NULL })
    ws:app("http-url", { url = "http://http-url-1234567890.apps.localhost:1" })
    local cfg = pat()
    local _, err = cfg:app("no-url")
    assert.equal("invalid_response", err.code)
    assert.matches("no url", err.message)
    _, err = cfg:app("http-url")
    assert.equal("invalid_response", err.code)
    assert.matches("non%-https", err.message)
    ws:app("userinfo-url", { url = "https://user:pw@evil.example:99999" })
    _, err = cfg:app("userinfo-url")
    assert.equal("invalid_response", err.code)
    _, err = cfg:app("Bad Name")
    assert.equal("invalid_request", err.code)
  end)
end)

describe("cfg:app_request", function()
  it("exchanges a PAT for the app's audience and calls the app", function()
    local cfg = pat()
    local res = assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    local body = res:json()
    assert.equal("my-app", body.app)
    assert.equal("user@example.com", body.user)
    assert.equal(1, count("exchange"))
    assert.equal(1, count("exchange app-client-my-app"))
    local last = ws:last("/oidc/v1/token")
    assert.matches("audience=app%-client%-my%-app", last.body)
    assert.matches("subject_token_type=urn%%3Adatabricks%%3Aparams%%3Aoauth%%3Atoken%-type%%3Apersonal%-access%-token",
      last.body)
  end)

  it("sends an M2M token as it is", function()
    local res = assert(m2m():app_request { app = "my-app", path = "/api/hello" })
    assert.equal(creds.client_id, res:json().user)
    assert.equal(0, count("exchange"))
  end)

  it("requests exactly the given scopes", function()
    local scopes = { "sql", "dashboards.genie", "file.files" }
    local res = assert(m2m():app_request { app = "scoped-app", path = "/api/hello", scopes = scopes })
    assert.same({ "dashboards.genie", "file.files", "sql" }, res:json().scopes)
    assert.equal(1, count("exchange app-client-scoped-app"))
  end)

  it("takes seed 001's own example: the app's user-authorization scopes, not the implicit iam.* ones", function()
    -- the Apps API adds iam.access-control:read and iam.current-user:read to
    -- effective_user_api_scopes; a token need not (and cannot usefully) carry them
    local seed = { "sql", "file.files", "dashboards.genie" }
    for _, cfg in ipairs { pat(), m2m() } do
      local res = assert(cfg:app_request { app = "scoped-app", path = "/api/hello", scopes = seed })
      assert.same({ "dashboards.genie", "file.files", "sql" }, res:json().scopes)
    end
    -- and a login with exactly those scopes (M2M here) is sent as it is
    local cfg = m2m { scopes = "sql file.files dashboards.genie apps" }
    assert.equal("fake-client-id", assert(cfg:app_request { app = "scoped-app", path = "/api/hello" }):json().user)
    assert.equal(3, count("APP scoped-app GET /api/hello"))
  end)

  it("catches requested scopes that miss the app's before any token request", function()
    local _, err = pat():app_request { app = "scoped-app", path = "/api/hello", scopes = { "sql" } }
    assert.equal("insufficient_scopes", err.code)
    assert.same({ "dashboards.genie", "file.files" }, err.missing_scopes)
    assert.matches("dashboards%.genie, file%.files", err.message)
    assert.truthy(err.hint:find('scopes = { "dashboards.genie", "file.files", "sql" }', 1, true))
    assert.equal(0, count("POST /oidc/v1/token"))
    assert.equal(0, count("APP scoped-app GET /api/hello"))
    -- the same before the exchange of an OAuth token
    _, err = m2m():app_token { app = "scoped-app", scopes = "sql file.files" }
    assert.equal("insufficient_scopes", err.code)
    assert.same({ "dashboards.genie" }, err.missing_scopes)
    assert.equal(0, count("exchange"))
  end)

  it("catches a login's scopes that miss the app's before sending", function()
    local _, err = m2m { scopes = "sql apps" }:app_request { app = "scoped-app", path = "/api/hello" }
    assert.equal("insufficient_scopes", err.code)
    assert.same({ "dashboards.genie", "file.files" }, err.missing_scopes)
    assert.matches("^the token's scopes do not include", err.message)
    assert.equal(0, count("APP scoped-app GET /api/hello"))
  end)

  it("maps the token endpoint's invalid_scope to insufficient_scopes with the same advice", function()
    local cfg = pat()
    local url = ws:app_url("scoped-app")
    -- by url the app's scopes are unknown here: the token endpoint is the one to refuse them
    local _, err = cfg:app_request { url = url, audience = "app-client-scoped-app", path = "/api/hello",
      scopes = { "sql" } }
    assert.equal("insufficient_scopes", err.code)
    assert.equal("invalid_scope", err.oauth_error)
    assert.equal(400, err.status)
    assert.matches("configured for the app in user authorization", err.message)
    assert.matches("scopes = {", err.hint)
    _, err = cfg:exchange { audience = "app-client-scoped-app", scopes = "sql" }
    assert.equal("insufficient_scopes", err.code)
    assert.matches("user authorization", err.hint)
    assert.equal(0, count("exchange"))
  end)

  it("says when the login lacks the apps scope the Apps API needs, and the two ways out", function()
    local cfg = m2m { scopes = "sql file.files dashboards.genie" }
    local _, err = cfg:app_request { app = "scoped-app", path = "/api/hello" }
    assert.equal("insufficient_scopes", err.code)
    assert.equal(403, err.status)
    assert.same({ "apps" }, err.missing_scopes)
    assert.truthy(err.message:find("Provided OAuth token does not have required scopes: apps", 1, true))
    assert.truthy(err.hint:find("scopes = apps,dashboards.genie,file.files,sql", 1, true))
    assert.truthy(err.hint:find("databricks auth login --scopes apps,dashboards.genie,file.files,sql", 1, true))
    assert.truthy(err.hint:find("url =", 1, true))
    assert.is_nil(err.hint:find("CAN USE", 1, true))
    -- the second way out works: by url there is no lookup
    local res = assert(cfg:app_request { url = ws:app_url("scoped-app"), path = "/api/hello" })
    assert.equal("fake-client-id", res:json().user)
  end)

  it("sends method, query, headers and JSON", function()
    local res = assert(pat():app_request { app = "my-app", method = "POST", path = "/api/echo",
      query = { q = "a b" }, headers = { ["X-Trace"] = "t1" }, json = { n = 1 } })
    local echo = res:json()
    assert.equal("POST", echo.method)
    assert.equal("q=a%20b", echo.query)
    assert.equal("t1", echo.headers["x-trace"])
    assert.equal('{"n":1}', echo.body)
  end)

  it("maps 401 to unauthenticated with the docs' advice", function()
    local cfg = pat()
    local app = assert(cfg:app("scoped-app"))
    -- a token exchanged for my-app is not valid for scoped-app
    local _, err = cfg:app_request { url = app.url, audience = "app-client-my-app", path = "/api/hello" }
    assert.equal("unauthenticated", err.code)
    assert.equal(401, err.status)
    assert.matches("databricks auth token", err.hint)
    assert.equal(401, err.response.status)
  end)

  it("exchanges any credential's token for the audience it is given", function()
    -- an M2M token would be accepted as it is; asked for the app's audience, it is exchanged
    local cfg = m2m()
    local res = assert(cfg:app_request { url = ws:app_url("my-app"), audience = "app-client-my-app",
      path = "/api/hello" })
    assert.equal(creds.client_id, res:json().user)
    assert.equal(1, count("exchange app-client-my-app"))
    local last = ws:last("/oidc/v1/token")
    assert.matches("audience=app%-client%-my%-app", last.body)
    assert.matches("subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken%-type%%3Ajwt", last.body)
    -- the token is for that app only: another app rejects it
    local _, err = cfg:app_request { url = ws:app_url("scoped-app"), audience = "app-client-my-app",
      path = "/api/hello" }
    assert.equal("unauthenticated", err.code)
    -- cfg:app_token says the same
    local tok = assert(cfg:app_token { audience = "app-client-my-app" })
    assert.equal(1, count("exchange app-client-my-app"))       -- the cached exchanged token
    assert.is_string(tok.access_token)
  end)

  it("refuses an audience that is not the named app's", function()
    local _, err = pat():app_request { app = "my-app", audience = "app-client-scoped-app", path = "/api/hello" }
    assert.equal("invalid_request", err.code)
    assert.matches("not the oauth2_app_client_id of app my%-app", err.message)
    assert.matches("drop audience", err.hint)
    assert.equal(0, count("POST /oidc/v1/token"))
    assert.has_error(function() pat():app_token { audience = 7 } end)
  end)

  it("maps 403 to permission_denied naming CAN USE", function()
    ws:app_permission("my-app", { "someone-else@example.com" })
    local _, err = pat():app_request { app = "my-app", path = "/api/hello" }
    assert.equal("permission_denied", err.code)
    assert.equal(403, err.status)
    assert.matches("CAN USE", err.hint)
  end)

  it("maps 404 to not_found", function()
    local _, err = pat():app_request { app = "my-app", path = "/api/nope" }
    assert.equal("not_found", err.code)
    assert.matches("endpoint path exists", err.hint)
  end)

  it("fails fast for a stopped app", function()
    local _, err = pat():app_request { app = "stopped-app", path = "/api/hello" }
    assert.equal("app_not_running", err.code)
    assert.matches("stopped%-app is not running", err.message)
    assert.matches("UNAVAILABLE", err.message)
    assert.equal(0, count("exchange"))
  end)

  it("says a stopped app called by url is not running, and how to start it", function()
    local url = ws:app_url("stopped-app")
    local _, err = m2m():app_request { url = url, path = "/api/hello" }
    assert.equal("app_not_running", err.code)
    assert.equal(404, err.status)
    assert.matches("STOPPED", err.message)
    assert.truthy(err.hint:find("databricks apps start stopped-app", 1, true))
    -- without the apps scope the Apps API cannot be asked; the 404 advice still names the fix
    _, err = m2m { scopes = "sql" }:app_request { url = url, path = "/api/hello" }
    assert.equal("not_found", err.code)
    assert.truthy(err.hint:find("databricks apps start stopped-app", 1, true))
    -- a running app's 404 is about the path
    _, err = m2m():app_request { url = ws:app_url("my-app"), path = "/api/nope" }
    assert.equal("not_found", err.code)
    assert.is_nil(err.hint:find("apps start", 1, true))
  end)

  it("says an app's 5xx is the app's own failure, and where its logs are", function()
    ws:fault { path = "/api/hello", host = "my-app", status = 500, count = -1,
               message = "Traceback (most recent call last)" }
    for _, call in ipairs { { app = "my-app" }, { url = ws:app_url("my-app") } } do
      call.path = "/api/hello"
      local _, err = m2m():app_request(call)
      assert.equal("internal_error", err.code)
      assert.equal(500, err.status)
      assert.equal("my-app", err.app)
      assert.truthy(err.hint:find("the app itself failed (HTTP 500)", 1, true))
      assert.truthy(err.hint:find("app my-app", 1, true))
      assert.truthy(err.hint:find(ws:app_url("my-app") .. "/logz", 1, true))
    end
  end)

  it("reports network failures with the Apps advice", function()
    -- a refused connection is retried within retry_timeout_seconds; keep that short here
    local cfg = config { host = ws.url, token = creds.pat, retry_timeout_seconds = 1 }
    local _, err = cfg:app_request { url = "https://127.0.0.1:1", audience = "app-client-my-app",
      path = "/api/hello" }
    assert.equal("network", err.code)
    assert.matches("databricksapps%.com", err.hint)
  end)

  it("does not follow redirects", function()
    local _, err = pat():app_request { app = "my-app", path = "/api/redirect",
      query = { to = "https://evil.example.com/steal" } }
    assert.equal("redirect", err.code)
    assert.equal(302, err.status)
  end)

  it("refuses non-https app urls and relative paths", function()
    local cfg = pat()
    local _, err = cfg:app_request { url = "http://my-app.example.com", audience = "x", path = "/api/hello" }
    assert.equal("invalid_request", err.code)
    _, err = cfg:app_request { app = "my-app", path = "api/hello" }
    assert.equal("invalid_request", err.code)
    assert.has_error(function() cfg:app_request { path = "/api/hello" } end)
  end)

  it("needs the app's client id to exchange a PAT", function()
    ws:app("no-client", { oauth2_app_client_id = fake.NULL })
    local _, err = pat():app_request { app = "no-client", path = "/api/hello" }
    assert.equal("invalid_response", err.code)
    assert.matches("oauth2_app_client_id", err.message)
  end)

  it("reuses the exchanged token until expiry, then exchanges exactly once more", function()
    local now = os.time()
    local cfg = pat { clock = function() return now end }
    for _ = 1, 30 do assert(cfg:app_request { app = "my-app", path = "/api/hello" }) end
    assert.equal(1, count("exchange"))
    now = now + 3600
    for _ = 1, 30 do assert(cfg:app_request { app = "my-app", path = "/api/hello" }) end
    assert.equal(2, count("exchange"))
    assert.equal(60, count(HELLO))
  end)
end)

describe("the token shape", function()
  local tokenshape = require "spec.support.tokenshape"

  it("cfg:app_token and cfg:exchange hand out what cfg:token does", function()
    for name, cfg in pairs { pat = pat(), ["oauth-m2m"] = m2m() } do
      local tok = tokenshape.check(assert(cfg:app_token { app = "my-app" }), name .. " app_token")
      assert.is_number(tok.expiry)
      tok = tokenshape.check(assert(cfg:app_token { app = "scoped-app", scopes = "sql file.files dashboards.genie" }),
        name .. " app_token with scopes")
      assert.same({ "dashboards.genie", "file.files", "sql" }, tok.scopes)
      tokenshape.check(assert(cfg:exchange { audience = "app-client-my-app", scopes = "sql" }), name .. " exchange")
      tokenshape.check(assert(cfg:exchange()), name .. " exchange without audience")
    end
  end)
end)

describe("cfg:exchange", function()
  it("exchanges the configuration's token for an audience and scopes", function()
    local tok = assert(pat():exchange { audience = "app-client-my-app", scopes = "sql" })
    assert.same({ "sql" }, tok.scopes)
    assert.is_true(tok.expiry > os.time() + 3000)
    assert.not_matches(tok.access_token, tostring(tok), 1, true)
  end)

  it("reports a rejected subject token", function()
    local cfg = config { host = ws.url, token = "dapi-not-valid" }
    local _, err = cfg:exchange { audience = "app-client-my-app" }
    assert.equal("invalid_grant", err.oauth_error)
    assert.matches("^token exchange failed", err.message)
  end)
end)

describe("OIDC federation end to end", function()
  it("env-oidc: exchanges the IdP token from the environment", function()
    local jwt = ws:idp_token { sub = "repo:acme/x:ref:refs/heads/main", aud = ws.url .. "/oidc/v1/token" }
    local cfg = config({ host = ws.url }, { env = { DATABRICKS_OIDC_TOKEN = jwt } })
    local res = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal("env-oidc", cfg.auth_type)
    assert.matches("federated", res:json().userName)
  end)

  it("file-oidc: with the service principal's client id", function()
    local dir = files.tmpdir()
    files.write(dir .. "/token", ws:idp_token { sub = "ci", aud = ws.url .. "/oidc/v1/token" })
    local cfg = config({ host = ws.url, client_id = creds.client_id, auth_type = "file-oidc" },
      { env = { DATABRICKS_OIDC_TOKEN_FILEPATH = dir .. "/token" } })
    assert.equal(creds.client_id, assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
  end)

  it("github-oidc: fetches the ID token from the Actions endpoint", function()
    local cfg = config({ host = ws.url }, { env = {
      ACTIONS_ID_TOKEN_REQUEST_URL = creds.actions_request_url,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN = creds.actions_request_token } })
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal("github-oidc", cfg.auth_type)
  end)

  it("account level", function()
    local aud = creds.account_id
    local cfg = config({ host = ws.account_url, account_id = creds.account_id },
      { env = { DATABRICKS_OIDC_TOKEN = ws:idp_token { sub = "ci", aud = aud } } })
    assert(cfg:request { path = "/api/2.0/accounts/" .. creds.account_id .. "/workspaces" })
  end)

  it("a token for the wrong audience is refused", function()
    local jwt = ws:idp_token { sub = "x", aud = "other" }
    local cfg = config({ host = ws.url }, { env = { DATABRICKS_OIDC_TOKEN = jwt } })
    local _, err = cfg:authenticate()
    assert.equal("invalid_grant", err.oauth_error)
    assert.matches("^default auth: env%-oidc: OIDC token exchange failed", err.message)
  end)
end)
