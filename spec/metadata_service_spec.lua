-- metadata-service end to end: the public API against the fake workspace and its metadata
-- service (plain HTTP on 127.0.0.1, as the IDE extensions serve it), and the failure modes.
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"
local leakcheck = require "spec.support.leakcheck"

local ws

-- The per-session key an IDE puts in the URL's path: a secret (D23).
local KEY = "msk-7f3a9c2e5b1d4e6f8a0b"

local function config(opts, env, clock)
  opts.ca_file = ws.ca_file
  local cfg, err = dbxauth.config(opts, { env = env or {}, home = "/nonexistent-home-for-specs", clock = clock })
  assert(cfg, err and tostring(err))
  return cfg
end

local function msurl()
  return ws.metadata_url .. "?key=" .. KEY
end

local function me(cfg)
  local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
  assert(res, err and tostring(err))
  return res:json()
end

local function no_key(err)
  assert.is_nil(tostring(err):find(KEY, 1, true))
  assert.is_nil(tostring(err.hint or ""):find(KEY, 1, true))
end

setup(function()
  ws = fake.start()
  leakcheck.secret(KEY)
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  ws:reset()
  dbxauth.clear_caches()
end)

describe("metadata-service", function()
  it("is chosen from DATABRICKS_METADATA_SERVICE_URL and calls the API with its token", function()
    local cfg = config({ host = ws.url }, { DATABRICKS_METADATA_SERVICE_URL = msurl() })
    assert.equal("user@example.com", me(cfg).userName)
    assert.equal("metadata-service", cfg.auth_type)
    local last = ws:last("/__metadata/token")
    assert.equal("GET", last.method)
    assert.equal("key=" .. KEY, last.query)
    assert.equal("1", last.headers["x-databricks-metadata-version"])
    assert.equal(ws.url, last.headers["x-databricks-host"])
    assert.equal("application/json", last.headers.accept)
    local tok = assert(cfg:token())
    leakcheck.secret(tok.access_token)
    assert.equal("Bearer", tok.token_type)
    assert.is_true(tok.expiry > os.time() + 3000)
    -- one GET for the token: the dry run's token is the one the request used
    assert.equal(1, ws:counters()["GET /__metadata/token"])
  end)

  it("normalises token_type and reads expires_on given as a string", function()
    for _, tt in ipairs { "bearer", "" } do
      ws:set { metadata_service_token_type = tt, metadata_service_expires_as = "string" }
      local cfg = config { host = ws.url, metadata_service_url = msurl() }
      local h = assert(cfg:authenticate())
      assert.matches("^Bearer fake%-at%-", h.Authorization)
      leakcheck.secret(h.Authorization:sub(8))
      assert.equal("user@example.com", me(cfg).userName)
    end
  end)

  it("asks again ahead of expiry and keeps one token until then", function()
    ws:set { token_lifetime = 600 }
    local now = os.time()
    local cfg = config({ host = ws.url, metadata_service_url = msurl() }, nil, function() return now end)
    local first = assert(cfg:authenticate()).Authorization
    leakcheck.secret(first:sub(8))
    assert.equal(first, assert(cfg:authenticate()).Authorization)
    assert.equal(1, ws:counters()["GET /__metadata/token"])
    now = now + 400                      -- in the refresh-ahead window (the last 300 s)
    local second = assert(cfg:authenticate()).Authorization
    leakcheck.secret(second:sub(8))
    assert.not_equal(first, second)
    assert.equal(2, ws:counters()["GET /__metadata/token"])
    assert.equal("user@example.com", me(cfg).userName)
  end)

  it("refuses URLs off this machine, without showing the URL's path", function()
    for _, u in ipairs { "http://example.com/token?key=" .. KEY, "http://[::1]:8080/t/" .. KEY,
                         "http://127.0.0.2:1/" .. KEY } do
      local cfg = config { host = ws.url, metadata_service_url = u }
      local h, err = cfg:authenticate()
      assert.is_nil(h)
      assert.matches("^default auth: metadata%-service: only localhost URLs are allowed: http://", err.message)
      assert.equal("config", err.code)
      no_key(err)
    end
    assert.is_nil(ws:counters()["GET /__metadata/token"])
  end)

  it("says when the URL cannot be parsed", function()
    local cfg = config { host = ws.url, metadata_service_url = "#$%^&*" .. KEY }
    local _, err = cfg:authenticate()
    assert.matches("^default auth: metadata%-service: invalid auth server URL: ", err.message)
    assert.matches("metadata_service_url=%*%*%*", err.message)
    no_key(err)
  end)

  it("reports a refusal of the service (a session for another host)", function()
    ws:set { metadata_service_host = "https://other.example.com" }
    local cfg = config { host = ws.url, metadata_service_url = msurl() }
    local _, err = cfg:authenticate()
    assert.matches("^default auth: metadata%-service: token request: HTTP 403: ", err.message)
    assert.equal(403, err.status)
    no_key(err)
  end)

  it("retries a 503 of the service with the token retry policy", function()
    ws:fault { path = "/__metadata/token", status = 503, count = 1 }
    local cfg = config { host = ws.url, metadata_service_url = msurl() }
    assert.equal("user@example.com", me(cfg).userName)
    assert.equal(2, ws:counters()["GET /__metadata/token"])
    leakcheck.secret(assert(cfg:token()).access_token)
  end)

  it("reports Go's texts for an empty token and a bad expiry", function()
    local cases = {
      { body = "", want = "token parse: token parse: invalid token" },
      { body = '{"access_token":"","token_type":"Bearer","expires_on":1}',
        want = "token parse: token parse: invalid token" },
      { body = '{"access_token":"abc-token-1","token_type":"Bearer"}',
        want = 'token parse: invalid token expiry: strconv.ParseInt: parsing "": invalid syntax' },
      { body = '{"access_token":"abc-token-1","token_type":"Bearer","expires_on":"soon"}',
        want = 'token parse: invalid token expiry: strconv.ParseInt: parsing "soon": invalid syntax' },
      { body = '{"access_token":"abc token","expires_on":1}', want = "token parse: invalid token: an access_token" },
      { body = "<html>", want = "token parse: the metadata service returned a non-JSON response (6 bytes)" },
    }
    for _, c in ipairs(cases) do
      ws:clear_faults()
      ws:fault { path = "/__metadata/token", kind = "body", body = c.body, count = -1 }
      local cfg = config { host = ws.url, metadata_service_url = msurl() }
      local _, err = cfg:authenticate()
      assert.equal("default auth: metadata-service: " .. c.want,
        err.message:sub(1, #("default auth: metadata-service: " .. c.want)))
      assert.equal("invalid_response", err.code)
    end
  end)

  it("reports a service that is not running", function()
    local cfg = config { host = ws.url, metadata_service_url = "http://127.0.0.1:1/" .. KEY,
                         retry_timeout_seconds = 1 }
    local _, err = cfg:authenticate()
    assert.matches("^default auth: metadata%-service: token request: ", err.message)
    assert.equal("network", err.code)
    no_key(err)
  end)

  it("is tried only when auth_type names it or nothing before it applies", function()
    local cfg = config { host = ws.url, token = ws.creds.pat, metadata_service_url = msurl(),
                         auth_type = "metadata-service" }
    assert.equal("user@example.com", me(cfg).userName)
    assert.equal("metadata-service", cfg.auth_type)
    cfg = config { host = ws.url, auth_type = "metadata-service" }
    local _, err = cfg:authenticate()
    assert.matches("^metadata%-service auth: not configured", err.message)
  end)
end)
