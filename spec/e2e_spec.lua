-- End to end over real TLS against the fake workspace: the public API only.
local dbxauth = require "dbxauth"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"

local ws, creds

local function ctx(extra)
  local c = { env = {}, home = "/nonexistent-home-for-specs" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function config(opts, extra)
  opts.ca_file = opts.ca_file or ws.ca_file
  local cfg, err = dbxauth.config(opts, ctx(extra))
  assert(cfg, err and tostring(err))
  return cfg
end

local function m2m(extra_opts, extra_ctx)
  local opts = { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
  for k, v in pairs(extra_opts or {}) do opts[k] = v end
  return config(opts, extra_ctx)
end

local function me(cfg)
  local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
  assert(res, err and tostring(err))
  return res:json()
end

setup(function()
  ws = fake.start()
  creds = ws.creds
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  ws:reset()
  dbxauth.clear_discovery_cache()
end)

describe("PAT", function()
  it("authenticates and calls the API", function()
    local cfg = config { host = ws.url, token = creds.pat }
    local h = assert(cfg:authenticate())
    assert.equal("Bearer " .. creds.pat, h.Authorization)
    assert.equal("pat", cfg.auth_type)
    assert.equal("user@example.com", me(cfg).userName)
    local tok = assert(cfg:token())
    assert.equal(creds.pat, tok.access_token)
    assert.is_nil(tok.expiry)
  end)

  it("reads the workspace id from host metadata and sends it", function()
    local cfg = config { host = ws.url, token = creds.pat }
    local res = assert(cfg:request { path = "/api/2.0/fake/echo" })
    assert.equal(creds.workspace_id, res:json().headers["x-databricks-workspace-id"])
    assert.equal(creds.workspace_id, cfg.workspace_id)
  end)

  it("reuses one connection for many requests", function()
    local cfg = config { host = ws.url, token = creds.pat }
    me(cfg)
    for _ = 1, 5 do
      local res = assert(cfg:request { path = "/api/2.0/clusters/list" })
      assert.is_true(res.reused)
    end
  end)

  it("gets 401 with a hint for a wrong token", function()
    local cfg = config { host = ws.url, token = "dapi-wrong" }
    local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
    assert.is_nil(res)
    assert.equal("unauthenticated", err.code)
    assert.equal(401, err.status)
    assert.equal("UNAUTHENTICATED", err.error_code)
    assert.equal("Invalid access token.", err.message)
    assert.truthy(err.hint)
    assert.equal(401, err.response.status)
  end)
end)

describe("basic", function()
  it("sends Basic credentials", function()
    local cfg = config { host = ws.url, username = creds.username, password = creds.password }
    assert.equal("basic", (function() assert(cfg:authenticate()); return cfg.auth_type end)())
    assert.equal(creds.username, me(cfg).userName)
    local tok, err = cfg:token()
    assert.is_nil(tok)
    assert.equal("unsupported", err.code)
  end)
end)

describe("OAuth M2M", function()
  it("uses host metadata: two round trips before the first API call", function()
    local cfg = m2m()
    local h = assert(cfg:authenticate())
    assert.matches("^Bearer ", h.Authorization)
    assert.equal("oauth-m2m", cfg.auth_type)
    local c = ws:counters()
    assert.equal(1, c["GET /.well-known/databricks-config"])
    assert.equal(1, c["POST /oidc/v1/token"])
    assert.equal(2, c.total)
    assert.equal(creds.client_id, me(cfg).userName)
    local tok = assert(cfg:token())
    assert.same({ "all-apis" }, tok.scopes)
    assert.is_true(tok.expiry > os.time() + 3000)
  end)

  it("sends the client credentials as the SDKs do", function()
    local cfg = m2m { scopes = { "sql", "clusters" } }
    assert(cfg:authenticate())
    local last = ws:last("/oidc/v1/token")
    assert.equal("grant_type=client_credentials&scope=clusters+sql", last.body)
    assert.equal("application/x-www-form-urlencoded", last.headers["content-type"])
    assert.matches("^Basic ", last.headers.authorization)
    assert.matches("^dbxauth/0%.1%.0 lua/[%d.]+ .*os/%w+ auth/oauth%-m2m", last.headers["user-agent"])
  end)

  it("works without host metadata through OIDC discovery", function()
    ws:set { metadata = false }
    local cfg = m2m()
    assert.equal(creds.client_id, me(cfg).userName)
    local c = ws:counters()
    assert.equal(1, c["GET /oidc/.well-known/oauth-authorization-server"])
    assert.equal(1, c["POST /oidc/v1/token"])
  end)

  it("caches discovery per host across configurations", function()
    ws:set { metadata = false }
    assert(m2m():authenticate())
    assert(m2m():authenticate())
    local c = ws:counters()
    assert.equal(1, c["GET /oidc/.well-known/oauth-authorization-server"])
    assert.equal(2, c["POST /oidc/v1/token"])
  end)

  it("falls back to the classic endpoints when discovery fails", function()
    ws:set { metadata = false }
    ws:fault { path = "/oidc/.well-known/oauth-authorization-server", status = 500 }
    local cfg = m2m()
    assert.equal(creds.client_id, me(cfg).userName)
    assert.equal(1, ws:counters()["POST /oidc/v1/token"])
  end)

  it("fetches an explicit discovery_url, account form included", function()
    ws:set { metadata = false }
    local A = creds.account_id
    local cfg = m2m { host = ws.account_url, account_id = A,
      discovery_url = ws.account_url .. "/oidc/accounts/" .. A .. "/.well-known/oauth-authorization-server",
      transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve } }
    assert(cfg:request { path = "/api/2.0/accounts/" .. A .. "/workspaces" })
    local c = ws:counters()
    assert.equal(1, c["GET /oidc/accounts/" .. A .. "/.well-known/oauth-authorization-server"])
    assert.equal(1, c["POST /oidc/accounts/" .. A .. "/v1/token"])
  end)

  it("says so when the host serves no OAuth", function()
    ws:set { metadata = false, discovery = false }
    local _, err = m2m():authenticate()
    assert.equal("oauth", err.code)
    assert.matches("^default auth: oauth%-m2m: databricks OAuth is not supported for this host", err.message)
  end)

  it("reports rejected client credentials with the OAuth error", function()
    local cfg = m2m { client_secret = "wrong-secret-value" }
    local _, err = cfg:authenticate()
    assert.equal("unauthenticated", err.code)
    assert.equal("invalid_client", err.oauth_error)
    assert.equal(401, err.status)
    assert.matches("Client authentication failed", err.message)
    assert.matches("^default auth: oauth%-m2m: client credentials token request failed", err.message)
  end)

  it("works at account level, with and without metadata", function()
    for _, metadata in ipairs { true, false } do
      ws:reset()
      dbxauth.clear_discovery_cache()
      ws:set { metadata = metadata }
      -- accounts.localhost resolves only through the transport's resolve list
      local cfg = m2m { host = ws.account_url, account_id = creds.account_id,
        transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve } }
      assert.is_true(cfg:is_account())
      local res = assert(cfg:request { path = "/api/2.0/accounts/" .. creds.account_id .. "/workspaces" })
      assert.equal("fake-workspace", res:json()[1].workspace_name)
      assert.equal(1, ws:counters()["POST /oidc/accounts/" .. creds.account_id .. "/v1/token"])
    end
  end)

  it("refreshes after expiry with exactly one token request", function()
    local now = os.time()
    local cfg = m2m({}, { clock = function() return now end })
    assert(cfg:authenticate())
    for _ = 1, 50 do assert(cfg:authenticate()) end
    assert.equal(1, ws:counters()["POST /oidc/v1/token"])
    now = now + 3600
    for _ = 1, 50 do assert(cfg:authenticate()) end
    assert.equal(2, ws:counters()["POST /oidc/v1/token"])
    assert.equal(creds.client_id, me(cfg).userName)
  end)

  it("refreshes ahead of expiry once, in the stale window", function()
    local now = os.time()
    local cfg = m2m({}, { clock = function() return now end })
    local first = assert(cfg:token()).access_token
    now = now + 2500
    local second = assert(cfg:token()).access_token
    for _ = 1, 20 do assert(cfg:token()) end
    assert.are_not.equal(first, second)
    assert.equal(2, ws:counters()["POST /oidc/v1/token"])
  end)

  it("retries the token endpoint on 503 with Retry-After", function()
    ws:fault { path = "/oidc/v1/token", status = 503, retry_after = "1", count = 1 }
    local cfg = m2m()
    assert(cfg:authenticate())
    assert.equal(2, ws:counters()["POST /oidc/v1/token"])
  end)

  it("gives a clear error for a garbage token response", function()
    ws:fault { path = "/oidc/v1/token", kind = "garbage" }
    local _, err = m2m():authenticate()
    assert.equal("oauth", err.code)
    assert.matches("non%-JSON response", err.message)
  end)
end)

describe("TLS", function()
  it("fails at once with a clear TLS error for a wrong CA, never retried", function()
    local cfg = config { host = ws.url, token = creds.pat, ca_file = ws.other_ca_file }
    local t0 = os.time()
    local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
    assert.is_nil(res)
    assert.equal("tls", err.code)
    assert.matches("ca_file", err.hint)
    assert.is_true(os.time() - t0 <= 2)
    assert.equal(0, ws:counters().total or 0)
  end)

  it("takes the CA bundle from SSL_CERT_FILE", function()
    local cfg = assert(dbxauth.config({ host = ws.url, token = creds.pat },
      ctx { env = { SSL_CERT_FILE = ws.ca_file } }))
    assert.equal("user@example.com", me(cfg).userName)
    cfg = assert(dbxauth.config({ host = ws.url, token = creds.pat }, ctx()))
    local _, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
    assert.equal("tls", err.code)   -- the system store does not know the fake's CA
  end)

  it("connects with skip_verify only when asked", function()
    local cfg = config { host = ws.url, token = creds.pat, ca_file = ws.other_ca_file, skip_verify = true }
    assert.equal("user@example.com", me(cfg).userName)
  end)

  it("refuses plain-http hosts", function()
    local cfg = config { host = "http://example.com", token = creds.pat }
    local _, err = cfg:authenticate()
    assert.equal("config", err.code)
    assert.matches("https://", err.message)
  end)
end)

describe("proxies", function()
  -- The process environment cannot be changed from Lua, so a child process gets it.
  local function run_child(env)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
      local dbxauth = require "dbxauth"
      local cfg = assert(dbxauth.config({ host = %q, token = %q, ca_file = %q, retry_timeout_seconds = 1 },
        { env = {}, home = "/nonexistent" }))
      local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
      io.write(res and ("ok " .. res.status) or ("err " .. err.code .. " " .. tostring(err.reason)))
    ]], ws.url, creds.pat, ws.ca_file))
    f:close()
    local p = io.popen("env -u http_proxy -u https_proxy -u HTTPS_PROXY -u ALL_PROXY -u NO_PROXY -u no_proxy "
      .. env .. " LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' lua5.4 " .. script)
    local out = p:read("*a")
    p:close()
    os.remove(script)
    return out
  end

  it("goes through HTTPS_PROXY and skips it for NO_PROXY hosts", function()
    assert.equal("err network connect", run_child("HTTPS_PROXY=http://127.0.0.1:9"))
    assert.equal("ok 200", run_child("HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=localhost"))
  end)
end)

describe("requests", function()
  local cfg
  before_each(function() cfg = config { host = ws.url, token = creds.pat } end)

  it("sends method, query, headers and a JSON body", function()
    local res = assert(cfg:request { method = "POST", path = "/api/2.0/fake/echo",
      query = { b = "x y", a = { "1", "2" } }, headers = { ["X-Custom"] = "v" }, json = { k = "v" } })
    local echo = res:json()
    assert.equal("POST", echo.method)
    assert.equal("a=1&a=2&b=x%20y", echo.query)
    assert.equal("v", echo.headers["x-custom"])
    assert.equal("application/json", echo.headers["content-type"])
    assert.equal('{"k":"v"}', echo.body)
    assert.equal("Bearer", echo.headers.authorization)
    assert.equal("application/json", res.headers["content-type"])
  end)

  it("rejects CR/LF in header values before sending", function()
    local res, err = cfg:request { path = "/api/2.0/fake/echo", headers = { ["X-Evil"] = "a\r\nInjected: 1" } }
    assert.is_nil(res)
    assert.equal("invalid_header", err.code)
    assert.not_matches("Injected", err.message)
    assert.is_nil(ws:counters()["GET /api/2.0/fake/echo"])
  end)

  it("rejects a relative path and wrong argument types", function()
    local _, err = cfg:request { path = "api/2.0/x" }
    assert.equal("invalid_request", err.code)
    assert.has_error(function() cfg:request { path = 42 } end)
    assert.has_error(function() cfg:request "nope" end)
  end)
end)

describe("faults", function()
  local cfg
  local ME = "/api/2.0/preview/scim/v2/Me"
  before_each(function() cfg = config { host = ws.url, token = creds.pat, http_timeout_seconds = 2 } end)

  it("retries 503 and 429 with Retry-After on GET", function()
    ws:fault { path = ME, status = 503, retry_after = "1" }
    ws:fault { path = ME, status = 429, retry_after = "1" }
    assert.equal("user@example.com", me(cfg).userName)
    assert.equal(3, ws:counters()["GET " .. ME])
  end)

  it("does not retry 500 and reports the Databricks error", function()
    ws:fault { path = ME, status = 500 }
    local _, err = cfg:request { path = ME }
    assert.equal("internal_error", err.code)
    assert.equal(500, err.status)
    assert.equal(1, ws:counters()["GET " .. ME])
  end)

  it("does not retry a POST unless asked", function()
    ws:fault { path = "/api/2.0/fake/echo", status = 503, count = 1 }
    local _, err = cfg:request { method = "POST", path = "/api/2.0/fake/echo", json = {} }
    assert.equal("temporarily_unavailable", err.code)
    ws:fault { path = "/api/2.0/fake/echo", status = 503, retry_after = "1", count = 1 }
    assert(cfg:request { method = "POST", path = "/api/2.0/fake/echo", json = {}, retry = true })
  end)

  it("summarises an HTML error page", function()
    ws:fault { path = ME, status = 502, kind = "html" }
    local _, err = cfg:request { path = ME }
    assert.equal(502, err.status)
    assert.equal("BAD_GATEWAY", err.error_code)
    assert.equal("Injected fault: HTTP 502", err.message)
  end)

  it("gives a clear error for a non-JSON body", function()
    ws:fault { path = ME, kind = "garbage" }
    local res = assert(cfg:request { path = ME })
    local v, err = res:json()
    assert.is_nil(v)
    assert.equal("invalid_json", err.code)
  end)

  it("stops an oversize response at the limit", function()
    ws:fault { path = ME, kind = "oversize", size = 17 * 1024 * 1024 }
    local _, err = cfg:request { path = ME }
    assert.equal("too_large", err.code)
    assert.matches("16777216", err.message)
  end)

  it("honours max_response_bytes", function()
    local small = config { host = ws.url, token = creds.pat, max_response_bytes = 10 }
    local _, err = small:request { path = ME }
    assert.equal("too_large", err.code)
  end)

  it("times out a slow response", function()
    ws:fault { path = ME, delay = 4 }
    local _, err = cfg:request { path = ME, timeout = 1 }
    assert.equal("timeout", err.code)
  end)

  it("reports a connection closed without a response", function()
    -- libcurl itself repeats a request once when a reused connection dies silently
    ws:fault { path = ME, kind = "close", count = 3 }
    local _, err = cfg:request { path = ME }
    assert.equal("network", err.code)
    assert.truthy(err.hint)
  end)

  it("reports a refused connection", function()
    local dead = config { host = "https://127.0.0.1:1", token = creds.pat, retry_timeout_seconds = 1 }
    local _, err = dead:request { path = ME }
    assert.equal("network", err.code)
    assert.equal("connect", err.reason)
  end)
end)

describe("invalidate", function()
  it("makes the next call fetch a new token", function()
    local cfg = m2m()
    local first = assert(cfg:token()).access_token
    cfg:invalidate()
    assert.are_not.equal(first, assert(cfg:token()).access_token)
    assert.equal(2, ws:counters()["POST /oidc/v1/token"])
  end)
end)

describe("cfg:token", function()
  local tokenshape = require "spec.support.tokenshape"
  local files = require "spec.support.files"

  it("returns one shape for pat, oauth-m2m and the three OIDC federations", function()
    local dir = files.tmpdir()
    files.write(dir .. "/id-token", ws:idp_token { sub = "ci" })
    local cases = {
      pat = config { host = ws.url, token = creds.pat },
      ["oauth-m2m"] = m2m(),
      ["env-oidc"] = config({ host = ws.url }, { env = { DATABRICKS_OIDC_TOKEN = ws:idp_token { sub = "ci" } } }),
      ["file-oidc"] = config({ host = ws.url, auth_type = "file-oidc" },
        { env = { DATABRICKS_OIDC_TOKEN_FILEPATH = dir .. "/id-token" } }),
      ["github-oidc"] = config({ host = ws.url }, { env = { ACTIONS_ID_TOKEN_REQUEST_URL = creds.actions_request_url,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN = creds.actions_request_token } }),
    }
    for name, cfg in pairs(cases) do
      local tok = tokenshape.check(assert(cfg:token()), name)
      assert.equal(name, cfg.auth_type)
      if name == "pat" then
        assert.is_nil(tok.expiry)
        assert.is_nil(tok.scopes)
      else
        assert.is_true(tok.expiry > os.time() + 3000, name)
        assert.same({ "all-apis" }, tok.scopes, name)
      end
      tokenshape.check(assert(cfg:token { force_refresh = true }), name .. " (forced)")
    end
  end)

  it("hands out a copy: changing it changes nothing dbxauth keeps", function()
    local cfg = m2m()
    local tok = assert(cfg:token())
    tok.access_token, tok.scopes[1] = "changed", "changed"
    local again = assert(cfg:token())
    assert.are_not.equal("changed", again.access_token)
    assert.same({ "all-apis" }, again.scopes)
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal(1, ws:counters()["POST /oidc/v1/token"])
  end)
end)
