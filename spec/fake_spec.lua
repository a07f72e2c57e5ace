-- Tests of the fake Databricks workspace itself (spec/support/fake.lua), with the curl CLI as client.
-- Runs under Lua 5.4 and LuaJIT.
local fake = require "spec.support.fake"
local cjson = require "cjson.safe"

local ws, tmp

local files = require "spec.support.files"
local read, q = files.read, files.q

-- curl{ path = "/x" | url = "https://...", host = "ws"|"account"|"http", method, headers = {..},
--       data = "raw body", form = { k = v | {v1, v2} } (urlencoded, sets the content type),
--       user = "id:secret", bearer = "tok", cacert = file|false, args = "extra" }
-- -> { status, body, json, headers (lowercased), rc (curl exit code), err, time, size }
-- curls{ o1, o2, ... } runs all the requests in ONE curl process (--next; the connection is
-- reused), which is several times faster than a process per request. curl(o) = curls{o}[1].
local function form_encode(t)
  local keys, out = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local function enc(v)
    return (tostring(v):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
  end
  for _, k in ipairs(keys) do
    local v = t[k]
    for _, x in ipairs(type(v) == "table" and v or { v }) do out[#out + 1] = enc(k) .. "=" .. enc(x) end
  end
  return table.concat(out, "&")
end

local function curls(list)
  local cmd = { "curl -sS" }
  local function add(s) cmd[#cmd + 1] = s end
  for i, o in ipairs(list) do
    if i > 1 then add("--next") end
    local url = o.url
    if not url then
      local base = ({ ws = ws.url, account = ws.account_url, http = ws.http_url })[o.host or "ws"]
      url = base .. o.path
    end
    add("--max-time 10 -D " .. q(tmp .. ".h" .. i) .. " -o " .. q(tmp .. ".b" .. i))
    add("-w '\\n%{http_code} %{time_total} %{size_download} %{exitcode}\\n'")
    for _, r in ipairs(ws.resolve) do add("--resolve " .. q(r)) end
    if o.cacert ~= false then add("--cacert " .. q(o.cacert or ws.ca_file)) end
    if o.method then add("-X " .. o.method) end
    if o.user then add("-u " .. q(o.user)) end
    if o.bearer then add("-H " .. q("Authorization: Bearer " .. o.bearer)) end
    for k, v in pairs(o.headers or {}) do add("-H " .. q(k .. ": " .. v)) end
    local data = o.data
    if o.form then
      data = form_encode(o.form)
      add("-H 'Content-Type: application/x-www-form-urlencoded'")
    end
    if data then
      local f = assert(io.open(tmp .. ".d" .. i, "wb")); f:write(data); f:close()
      add("--data-binary @" .. q(tmp .. ".d" .. i))
    end
    if o.args then add(o.args) end
    add(q(url))
    os.remove(tmp .. ".h" .. i); os.remove(tmp .. ".b" .. i)
  end
  local p = io.popen(table.concat(cmd, " ") .. " 2>" .. q(tmp .. ".e"))
  local out = p:read("*a")
  p:close()
  local err = read(tmp .. ".e") or ""
  local results, i = {}, 0
  for code, time, size, rc in out:gmatch("(%d+) ([%d.]+) (%d+) (%d+)\n") do
    i = i + 1
    local res = { status = tonumber(code), time = tonumber(time), size = tonumber(size), rc = tonumber(rc),
                  body = read(tmp .. ".b" .. i) or "", err = err, headers = {} }
    for name, value in (read(tmp .. ".h" .. i) or ""):gmatch("([%w%-]+):%s*([^\r\n]*)") do
      res.headers[name:lower()] = value
    end
    res.json = cjson.decode(res.body)
    results[i] = res
  end
  assert(#results == #list, "curl ran " .. #results .. " of " .. #list .. " requests: " .. err)
  return results
end

local function curl(o)
  return curls { o }[1]
end

local function token(o)
  o = o or {}
  local r = curl { path = o.path or "/oidc/v1/token", user = o.user or "fake-client-id:fake-client-secret-xyz",
                   data = o.data or "grant_type=client_credentials&scope=all-apis",
                   headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } }
  assert.equals(200, r.status, r.body)
  return r.json.access_token, r
end

local function b64(s)
  local p = io.popen("printf %s " .. q(s) .. " | base64 -w0")
  local out = p:read("*a")
  p:close()
  return out
end

local TE = "urn:ietf:params:oauth:grant-type:token-exchange"
local TT_PAT = "urn:databricks:params:oauth:token-type:personal-access-token"
local TT_JWT = "urn:ietf:params:oauth:token-type:jwt"
local TT_AT = "urn:ietf:params:oauth:token-type:access_token"
-- PKCE pair: challenge = base64url-no-pad(SHA-256(verifier)), computed with
-- printf %s "$V" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='
local VERIFIER = "fake-verifier-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
local CHALLENGE = "Mpb_8Px3F7IjfUDyd-W78A5c7soJhx_BPFlzIoNMJa0"
local REDIRECT = "http://localhost:8020"

-- Token-exchange request options (workspace endpoint unless path/host given).
local function exchange(form, o)
  o = o or {}
  local f = { grant_type = TE }
  for k, v in pairs(form) do f[k] = v end
  return { host = o.host, path = o.path or "/oidc/v1/token", form = f }
end

-- Query parameters of a URL (values percent- and +-decoded).
local function query_of(url)
  local out = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
    out[k] = v:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return out
end

local function authorize_path(params, root)
  local p = { response_type = "code", client_id = "databricks-cli", redirect_uri = REDIRECT,
              scope = "all-apis offline_access", state = "st-1", code_challenge = CHALLENGE,
              code_challenge_method = "S256" }
  for k, v in pairs(params or {}) do
    if v == false then p[k] = nil else p[k] = v end
  end
  return (root or "/oidc") .. "/v1/authorize?" .. form_encode(p)
end

describe("fake workspace", function()
  setup(function()
    tmp = os.tmpname()
    ws = fake.start { workers = 2 }
  end)

  teardown(function()
    if not ws then return end
    local dir, pid = ws.dir, ws.pid
    ws:stop()
    ws:stop()                                            -- idempotent
    assert.is_nil(read(dir .. "/logs/nginx.pid"))        -- prefix removed
    local st = read("/proc/" .. pid .. "/stat")
    assert.is_true(st == nil or st:match("^%d+ %b() (%a)") == "Z")
    local r = curl { url = ws.http_url .. "/.well-known/databricks-config" }
    assert.equals(7, r.rc)                               -- connection refused
    os.remove(tmp); os.remove(tmp .. ".e")
    for i = 1, 20 do
      for _, ext in ipairs { ".h", ".b", ".d" } do os.remove(tmp .. ext .. i) end
    end
  end)

  before_each(function() ws:reset() end)

  describe("controller", function()
    it("describes the running server", function()
      assert.equals("https://localhost:" .. ws.port, ws.url)
      assert.equals("https://accounts.localhost:" .. ws.port, ws.account_url)
      assert.equals("http://127.0.0.1:" .. ws.http_port, ws.http_url)
      local p = ws.port
      assert.same({ "accounts.localhost:" .. p .. ":127.0.0.1", "localhost:" .. p .. ":127.0.0.1",
                    "my-app-1234567890.apps.localhost:" .. p .. ":127.0.0.1",
                    "scoped-app-1234567890.apps.localhost:" .. p .. ":127.0.0.1",
                    "plain-app-1234567890.apps.localhost:" .. p .. ":127.0.0.1",
                    "stopped-app-1234567890.apps.localhost:" .. p .. ":127.0.0.1" }, ws.resolve)
      assert.equals("x-1234567890.apps.localhost:" .. p .. ":127.0.0.1",
        ws:resolve_for("https://X-1234567890.apps.localhost:" .. p .. "/api/hello?a=b"))
      assert.equals("example.com:443:127.0.0.1", ws:resolve_for("https://example.com"))
      assert.equals("example.com:80:127.0.0.1", ws:resolve_for("http://example.com/x"))
      assert.equals("https://my-app-1234567890.apps.localhost:" .. p, ws:app_url("my-app"))
      assert.truthy(read(ws.ca_file):find("BEGIN CERTIFICATE", 1, true))
      assert.truthy(read(ws.other_ca_file):find("BEGIN CERTIFICATE", 1, true))
      assert.truthy(read(ws.dir .. "/conf/nginx.conf"))
      assert.same({ pat = "dapi-fake-pat-0123456789abcdef", username = "admin@example.com",
                    password = "fake-password-123", client_id = "fake-client-id",
                    client_secret = "fake-client-secret-xyz", account_id = "fake-account-0001",
                    workspace_id = "1234567890", actions_request_token = "fake-actions-request-token",
                    ado_access_token = "fake-ado-system-accesstoken-9876",
                    actions_request_url = ws.url .. "/__idp/github/token?api-version=2.0",
                    azure_client_id = "fake-azure-client-id", azure_client_secret = "fake-azure-secret-0123",
                    azure_tenant_id = "fake-tenant-0001", identity_header = "fake-identity-header-secret",
                    azure_resource_id = "/subscriptions/fake-sub/resourceGroups/rg/providers/Microsoft.Databricks/"
                      .. "workspaces/ws",
                    azure_authority = ws.url .. "/__entra/", imds_url = ws.http_url,
                    identity_endpoint = ws.http_url .. "/__appservice/msi/token" }, ws.creds)
    end)

    it("raises with the error log when nginx cannot start", function()
      local ok, err = pcall(fake.start, { log_level = "no-such-level" })
      assert.is_false(ok)
      assert.matches("nginx failed to start", err, 1, true)
      assert.matches("no-such-level", err, 1, true)
    end)

    it("set merges settings and returns the effective ones", function()
      local s = ws:set { token_lifetime = 2 }
      assert.same({ metadata = true, discovery = true, token_lifetime = 2, token_type = "Bearer",
        localhost_app = false }, s)
      s = ws:set { metadata = false }
      assert.same({ metadata = false, discovery = true, token_lifetime = 2, token_type = "Bearer",
        localhost_app = false }, s)
    end)

    it("rejects an unknown fault kind", function()
      assert.has_error(function() ws:fault { path = "/x", kind = "nope" } end)
    end)
  end)

  describe("TLS", function()
    it("verifies with ca_file for localhost, accounts.localhost and 127.0.0.1", function()
      local r = curls {
        { path = "/.well-known/databricks-config" },
        { host = "account", path = "/.well-known/databricks-config" },
        { url = "https://127.0.0.1:" .. ws.port .. "/.well-known/databricks-config" },
        { url = ws:app_url("my-app") .. "/api/nope" },                    -- *.apps.localhost
      }
      for i = 1, 3 do assert.equals(200, r[i].status, i) end
      assert.equals(401, r[4].status)
    end)

    it("fails verification with other_ca_file", function()
      local r = curl { path = "/.well-known/databricks-config", cacert = ws.other_ca_file }
      assert.equals(60, r.rc)                            -- CURLE_PEER_FAILED_VERIFICATION
      assert.equals(0, r.status)
    end)
  end)

  describe("host metadata", function()
    it("describes the workspace host", function()
      local r = curl { path = "/.well-known/databricks-config" }
      assert.equals(200, r.status)
      assert.matches("^application/json", r.headers["content-type"])
      assert.same({ oidc_endpoint = ws.url .. "/oidc", account_id = "fake-account-0001",
                    workspace_id = "1234567890", cloud = "AWS", host_type = "workspace",
                    token_federation_default_oidc_audiences = { ws.url .. "/oidc/v1/token" } }, r.json)
      assert.is_nil(r.body:find("\\/", 1, true))        -- no escaped slashes
    end)

    it("describes the account host with a literal {account_id}", function()
      local r = curl { host = "account", path = "/.well-known/databricks-config" }
      assert.same({ oidc_endpoint = ws.account_url .. "/oidc/accounts/{account_id}", cloud = "AWS",
                    host_type = "account", token_federation_default_oidc_audiences = { "fake-account-0001" } },
                  r.json)
    end)

    it("uses the scheme and host the client used", function()
      local r = curl { host = "http", path = "/.well-known/databricks-config" }
      assert.equals(ws.http_url .. "/oidc", r.json.oidc_endpoint)
    end)

    it("is 404 when switched off", function()
      ws:set { metadata = false }
      local r = curl { path = "/.well-known/databricks-config" }
      assert.equals(404, r.status)
      assert.equals("ENDPOINT_NOT_FOUND", r.json.error_code)
    end)
  end)

  describe("OIDC discovery", function()
    it("serves the workspace document", function()
      local r = curl { path = "/oidc/.well-known/oauth-authorization-server" }
      assert.equals(200, r.status)
      assert.equals(ws.url .. "/oidc", r.json.issuer)
      assert.equals(ws.url .. "/oidc/v1/authorize", r.json.authorization_endpoint)
      assert.equals(ws.url .. "/oidc/v1/token", r.json.token_endpoint)
      assert.same({ "code", "id_token" }, r.json.response_types_supported)
      assert.same({ "S256" }, r.json.code_challenge_methods_supported)
      assert.same({ "authorization_code", "client_credentials", "refresh_token",
                    "urn:ietf:params:oauth:grant-type:token-exchange" }, r.json.grant_types_supported)
    end)

    it("serves the account document", function()
      local r = curl { host = "account",
                       path = "/oidc/accounts/fake-account-0001/.well-known/oauth-authorization-server" }
      assert.equals(200, r.status)
      local root = ws.account_url .. "/oidc/accounts/fake-account-0001"
      assert.equals(root .. "/v1/token", r.json.token_endpoint)
      assert.equals(root .. "/v1/authorize", r.json.authorization_endpoint)
    end)

    it("is 404 for an unknown account and when switched off", function()
      local r = curl { host = "account", path = "/oidc/accounts/nope/.well-known/oauth-authorization-server" }
      assert.equals(404, r.status)
      assert.equals("RESOURCE_DOES_NOT_EXIST", r.json.error_code)
      ws:set { discovery = false }
      r = curls {
        { path = "/oidc/.well-known/oauth-authorization-server" },
        { host = "account", path = "/oidc/accounts/fake-account-0001/.well-known/oauth-authorization-server" },
      }
      assert.equals(404, r[1].status)
      assert.equals(404, r[2].status)
    end)
  end)

  describe("token endpoint (client_credentials)", function()
    local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

    it("issues a token with HTTP Basic client auth", function()
      ws:set { token_lifetime = 120 }
      local tok, r = token { data = "grant_type=client_credentials&scope=all-apis+sql" }
      assert.matches("^fake%-at%-%x+$", tok)
      assert.same({ access_token = tok, token_type = "Bearer", expires_in = 120, scope = "all-apis sql" }, r.json)
      assert.equals("no-store", r.headers["cache-control"])
    end)

    it("form-URL-decodes the Basic parts (RFC 6749 2.3.1)", function()
      local r = curl { path = "/oidc/v1/token", headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        Authorization = "Basic " .. b64("fake%2Dclient-id:fake-client%2dsecret-xyz") },
        data = "grant_type=client_credentials&scope=all-apis" }
      assert.equals(200, r.status, r.body)
    end)

    it("accepts client credentials in the body", function()
      local r = curl { path = "/oidc/v1/token", headers = FORM,
        data = "grant_type=client_credentials&scope=all-apis&client_id=fake-client-id"
          .. "&client_secret=fake-client-secret-xyz" }
      assert.equals(200, r.status, r.body)
    end)

    it("rejects wrong or missing client credentials", function()
      local bad = curl { path = "/oidc/v1/token", headers = FORM, user = "fake-client-id:wrong",
                         data = "grant_type=client_credentials&scope=all-apis" }
      assert.equals(401, bad.status)
      assert.same({ error = "invalid_client", error_description = "Client authentication failed" }, bad.json)
      local none = curl { path = "/oidc/v1/token", headers = FORM, data = "grant_type=client_credentials&scope=x" }
      assert.equals(401, none.status)
      assert.equals("invalid_client", none.json.error)
    end)

    it("requires a form content type, a scope and a known grant type", function()
      local r = curls {
        { path = "/oidc/v1/token", user = "fake-client-id:fake-client-secret-xyz",
          headers = { ["Content-Type"] = "application/json" }, data = '{"grant_type":"x"}' },
        { path = "/oidc/v1/token", user = "fake-client-id:fake-client-secret-xyz", headers = FORM,
          data = "grant_type=client_credentials" },
        { path = "/oidc/v1/token", user = "fake-client-id:fake-client-secret-xyz", headers = FORM,
          data = "grant_type=password&scope=all-apis" },
      }
      assert.equals(400, r[1].status)
      assert.equals("invalid_request", r[1].json.error)
      assert.equals(400, r[2].status)
      assert.equals("invalid_scope", r[2].json.error)
      assert.equals(400, r[3].status)
      assert.equals("unsupported_grant_type", r[3].json.error)
      assert.is_string(r[3].json.error_description)
    end)

    it("issues account tokens on the account endpoint", function()
      local r = curl { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token", headers = FORM,
                       user = "fake-client-id:fake-client-secret-xyz",
                       data = "grant_type=client_credentials&scope=all-apis" }
      assert.equals(200, r.status, r.body)
      local tok = r.json.access_token
      local ok = curl { host = "account", path = "/api/2.0/accounts/fake-account-0001/workspaces", bearer = tok }
      assert.equals(200, ok.status)
      assert.same({ { workspace_id = 1234567890, workspace_name = "fake-workspace" } }, ok.json)
      -- not valid on workspace APIs
      local me = curl { path = "/api/2.0/preview/scim/v2/Me", bearer = tok }
      assert.equals(401, me.status)
      assert.equals("Invalid access token.", me.json.message)
    end)
  end)

  describe("REST authentication", function()
    local ME = "/api/2.0/preview/scim/v2/Me"

    it("accepts the PAT", function()
      local r = curl { path = ME, bearer = ws.creds.pat }
      assert.equals(200, r.status)
      assert.equals("user@example.com", r.json.userName)
      assert.is_true(r.json.active)
      assert.is_string(r.json.id)
      assert.is_string(r.json.displayName)
      assert.equals("1234567890", r.headers["x-databricks-org-id"])
    end)

    it("accepts an issued workspace token and reports the service principal", function()
      local r = curl { path = ME, bearer = token() }
      assert.equals(200, r.status)
      assert.equals("fake-client-id", r.json.userName)
    end)

    it("accepts Basic username:password", function()
      local r = curl { path = ME, user = "admin@example.com:fake-password-123" }
      assert.equals(200, r.status)
      assert.equals("admin@example.com", r.json.userName)
      assert.equals(401, curl { path = ME, user = "admin@example.com:nope" }.status)
    end)

    it("rejects missing, unsupported, unknown and expired credentials", function()
      ws:set { token_lifetime = 0 }
      local tok, t = token()
      assert.equals(0, t.json.expires_in)
      local r = curls {
        { path = ME },
        { path = ME, headers = { Authorization = "Negotiate abc" } },
        { path = ME, bearer = "nope" },
        { path = ME, bearer = tok },
      }
      assert.equals(401, r[1].status)
      assert.same({ error_code = "UNAUTHENTICATED",
                    message = "Credential was not sent or was of an unsupported type for this API." }, r[1].json)
      assert.equals("Credential was not sent or was of an unsupported type for this API.", r[2].json.message)
      assert.equals(401, r[3].status)
      assert.same({ error_code = "UNAUTHENTICATED", message = "Invalid access token." }, r[3].json)
      assert.equals("Invalid access token.", r[4].json.message)
    end)

    it("rejects workspace tokens on account APIs", function()
      local path = "/api/2.0/accounts/fake-account-0001/workspaces"
      local r = curls {
        { host = "account", path = path, bearer = token() },
        { host = "account", path = path, bearer = ws.creds.pat },
        { host = "account", path = path, user = "admin@example.com:fake-password-123" },
      }
      assert.equals(401, r[1].status)
      assert.equals(200, r[2].status)
      assert.equals(200, r[3].status)
    end)

    it("forgets issued tokens on reset", function()
      local tok = token()
      assert.equals(200, curl { path = ME, bearer = tok }.status)
      ws:reset()
      assert.equals(401, curl { path = ME, bearer = tok }.status)
    end)
  end)

  describe("REST endpoints", function()
    it("lists no clusters", function()
      local r = curl { path = "/api/2.0/clusters/list", bearer = ws.creds.pat }
      assert.equals(200, r.status)
      assert.equals('{"clusters":[]}', r.body)
    end)

    it("echoes the request with the authorization reduced to its scheme", function()
      local r = curl { path = "/api/2.0/fake/echo?a=1&b=x%20y&a=2", method = "PUT", bearer = ws.creds.pat,
                       headers = { ["X-Test"] = "yes", ["Content-Type"] = "text/plain" }, data = "hello body" }
      assert.equals(200, r.status)
      assert.equals("PUT", r.json.method)
      assert.equals("/api/2.0/fake/echo", r.json.path)
      assert.equals("a=1&b=x%20y&a=2", r.json.query)
      assert.same({ a = { "1", "2" }, b = "x y" }, r.json.args)
      assert.equals("Bearer", r.json.headers.authorization)
      assert.equals("yes", r.json.headers["x-test"])
      assert.equals("hello body", r.json.body)
      assert.equals(401, curl { path = "/api/2.0/fake/echo" }.status)
    end)

    it("answers 404 ENDPOINT_NOT_FOUND for unknown paths and methods", function()
      local r = curl { path = "/api/2.0/nope?x=1", bearer = ws.creds.pat }
      assert.equals(404, r.status)
      assert.same({ error_code = "ENDPOINT_NOT_FOUND", message = "No API found for 'GET /api/2.0/nope'" }, r.json)
      r = curl { path = "/api/2.0/clusters/list", method = "DELETE" }
      assert.equals("No API found for 'DELETE /api/2.0/clusters/list'", r.json.message)
    end)

    it("serves the same API over plain HTTP", function()
      local r = curl { host = "http", path = "/api/2.0/preview/scim/v2/Me", bearer = ws.creds.pat }
      assert.equals(200, r.status)
    end)
  end)

  describe("faults", function()
    local CFG = "/.well-known/databricks-config"

    it("json: Databricks error body, Retry-After, consumed by count", function()
      ws:fault { path = "/oidc/v1/token", method = "POST", status = 503, retry_after = "1", count = 2 }
      for _ = 1, 2 do
        local r = curl { path = "/oidc/v1/token", data = "grant_type=client_credentials&scope=all-apis",
                         user = "fake-client-id:fake-client-secret-xyz" }
        assert.equals(503, r.status)
        assert.equals("1", r.headers["retry-after"])
        assert.equals("TEMPORARILY_UNAVAILABLE", r.json.error_code)
        assert.is_string(r.json.message)
      end
      token()
      assert.equals(3, ws:counters()["POST /oidc/v1/token"])
    end)

    it("json: error codes by status", function()
      ws:fault { path = CFG, status = 429 }
      ws:fault { path = CFG, status = 500 }
      ws:fault { path = CFG, status = 400 }
      local r = curls { { path = CFG }, { path = CFG }, { path = CFG }, { path = CFG } }
      assert.equals("REQUEST_LIMIT_EXCEEDED", r[1].json.error_code)
      assert.equals("INTERNAL_ERROR", r[2].json.error_code)
      assert.equals("BAD_REQUEST", r[3].json.error_code)
      assert.equals(200, r[4].status)
    end)

    it("matches the method when given", function()
      ws:fault { path = CFG, method = "POST", status = 500 }
      assert.equals(200, curl { path = CFG }.status)
    end)

    it("oauth: OAuth error body", function()
      ws:fault { path = "/oidc/v1/token", status = 400, kind = "oauth" }
      local r = curl { path = "/oidc/v1/token", data = "x=1" }
      assert.equals(400, r.status)
      assert.equals("invalid_request", r.json.error)
      assert.is_string(r.json.error_description)
    end)

    it("garbage: 200 with a non-JSON body", function()
      ws:fault { path = CFG, kind = "garbage" }
      local r = curl { path = CFG }
      assert.equals(200, r.status)
      assert.is_nil(r.json)
      assert.truthy(#r.body > 0)
    end)

    it("html: HTML error page", function()
      ws:fault { path = CFG, kind = "html", status = 502 }
      local r = curl { path = CFG }
      assert.equals(502, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      assert.matches("<pre>.*</pre>", r.body)
    end)

    it("oversize: streams `size` bytes, 20 MiB by default", function()
      ws:fault { path = CFG, kind = "oversize", size = 100000 }
      local r = curl { path = CFG }
      assert.equals(200, r.status)
      assert.equals(100000, #r.body)
      assert.is_table(r.json)
      ws:fault { path = CFG, kind = "oversize" }
      r = curl { path = CFG, args = "-o /dev/null" }
      assert.equals(20 * 1024 * 1024, r.size)
    end)

    it("close: drops the connection without a response", function()
      ws:fault { path = CFG, kind = "close" }
      local r = curls { { path = CFG, args = "--http1.1" }, { path = CFG, args = "--http1.1" } }
      assert.equals(52, r[1].rc)                         -- CURLE_GOT_NOTHING
      assert.equals(200, r[2].status)
      -- over HTTP/2 only the stream is reset; the connection serves the next request
      ws:fault { path = CFG, kind = "close" }
      r = curls { { path = CFG }, { path = CFG } }
      assert.equals(92, r[1].rc)                         -- CURLE_HTTP2_STREAM
      assert.equals(200, r[2].status)
    end)

    it("speaks HTTP/2 on its TLS ports when offered, HTTP/1.1 otherwise", function()
      local r = curls { { path = "/api/2.0/preview/scim/v2/Me", bearer = ws.creds.pat },
                        { path = "/api/2.0/preview/scim/v2/Me", bearer = ws.creds.pat, args = "--http1.1" },
                        { host = "http", path = "/api/2.0/preview/scim/v2/Me", bearer = ws.creds.pat,
                          args = "--http2" } }
      assert.same({ 200, 200, 200 }, { r[1].status, r[2].status, r[3].status })
      ws:reset()
      curl { path = "/api/2.0/fake/echo?a=1", bearer = ws.creds.pat, method = "POST", data = "x=y" }
      local last = ws:last("/api/2.0/fake/echo")
      assert.equals("HTTP/2.0", last.protocol)
      assert.same({ "POST", "a=1", "x=y" }, { last.method, last.query, last.body })
      assert.equals("Bearer " .. ws.creds.pat, last.headers.authorization)
      assert.matches("^localhost:%d+$", last.headers.host)
      curl { path = "/api/2.0/fake/echo", bearer = ws.creds.pat, args = "--http1.1" }
      assert.equals("HTTP/1.1", ws:last("/api/2.0/fake/echo").protocol)
    end)

    it("counts requests in flight while count_concurrency is on", function()
      ws:set { count_concurrency = true }
      ws:fault { path = CFG, kind = "pass", delay = 0.3, count = 3 }
      -- three transfers at once (curl --parallel), each held 0.3 s by the delay
      local r = curls { { path = CFG, args = "--parallel --parallel-immediate" }, { path = CFG }, { path = CFG } }
      assert.same({ 200, 200, 200 }, { r[1].status, r[2].status, r[3].status })
      assert.same({ now = 0, max = 3 }, ws:concurrency())
      ws:reset()
      curl { path = CFG }
      assert.same({ now = 0, max = 0 }, ws:concurrency())
    end)

    it("delay: waits before answering", function()
      ws:fault { path = CFG, status = 503, delay = 0.3 }
      local r = curl { path = CFG }
      assert.equals(503, r.status)
      assert.is_true(r.time >= 0.29, "took " .. r.time)
      ws:fault { path = CFG, kind = "pass", delay = 0.2 }
      r = curl { path = CFG }
      assert.equals(200, r.status)
      assert.is_true(r.time >= 0.19, "took " .. r.time)
    end)

    it("body: verbatim body and content type", function()
      ws:fault { path = CFG, kind = "body", status = 418, body = "ERROR_X: plain", content_type = "text/plain" }
      local r = curl { path = CFG }
      assert.equals(418, r.status)
      assert.equals("ERROR_X: plain", r.body)
      assert.matches("^text/plain", r.headers["content-type"])
    end)

    it("count = -1 applies until reset", function()
      ws:fault { path = CFG, status = 500, count = -1 }
      for _, r in ipairs(curls { { path = CFG }, { path = CFG }, { path = CFG } }) do assert.equals(500, r.status) end
      ws:reset()
      assert.equals(200, curl { path = CFG }.status)
    end)
  end)

  describe("counters and last request", function()
    it("counts every non-admin request by METHOD path", function()
      assert.same({}, ws:counters())
      curls { { path = "/.well-known/databricks-config?x=1" }, { path = "/.well-known/databricks-config" },
              { path = "/nope", method = "POST", data = "" } }
      ws:set { token_lifetime = 10 }                       -- admin: not counted
      assert.same({ ["GET /.well-known/databricks-config"] = 2, ["POST /nope"] = 1, total = 3 }, ws:counters())
      assert.equals("number", type(ws:counters().total))
      ws:reset()
      assert.same({}, ws:counters())
    end)

    it("remembers the last request to a path", function()
      assert.is_nil(ws:last("/oidc/v1/token"))
      token { data = "grant_type=client_credentials&scope=all-apis&n=1" }
      token { data = "grant_type=client_credentials&scope=all-apis&n=2" }
      local last = ws:last("/oidc/v1/token")
      assert.equals("POST", last.method)
      assert.equals("/oidc/v1/token", last.path)
      assert.equals("", last.query)
      assert.equals("grant_type=client_credentials&scope=all-apis&n=2", last.body)
      assert.equals("Basic " .. b64("fake-client-id:fake-client-secret-xyz"), last.headers.authorization)
      assert.equals("application/x-www-form-urlencoded", last.headers["content-type"])
      curl { path = "/api/2.0/fake/echo?a=b%20c", bearer = "t", args = "-H 'X-Dup: 1' -H 'X-Dup: 2'" }
      last = ws:last("/api/2.0/fake/echo")
      assert.equals("GET", last.method)
      assert.equals("a=b%20c", last.query)
      assert.equals("", last.body)
      assert.equals("Bearer t", last.headers.authorization)
      assert.equals("1, 2", last.headers["x-dup"])
      assert.equals("localhost:" .. ws.port, last.headers.host)
    end)
  end)

  describe("apps API", function()
    it("serves the default apps to workspace callers and 404s unknown ones", function()
      local r = curls {
        { path = "/api/2.0/apps/my-app", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/scoped-app", user = "admin@example.com:fake-password-123" },
        { path = "/api/2.0/apps/plain-app", bearer = token() },
        { path = "/api/2.0/apps/stopped-app", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/nope", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/my-app" },
      }
      assert.equals(200, r[1].status, r[1].body)
      local app = r[1].json
      assert.equals("my-app", app.name)
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", app.id)
      assert.equals(ws:app_url("my-app"), app.url)
      assert.equals("app-client-my-app", app.oauth2_app_client_id)
      assert.equals("integ-my-app", app.oauth2_app_integration_id)
      assert.is_string(app.service_principal_client_id)
      assert.is_string(app.description)
      assert.is_string(app.create_time)
      assert.same({ "sql" }, app.user_api_scopes)
      -- the Apps API adds the implicit iam.* scopes to the effective ones
      assert.same({ "iam.access-control:read", "iam.current-user:read", "sql" }, app.effective_user_api_scopes)
      assert.equals("RUNNING", app.app_status.state)
      assert.equals("ACTIVE", app.compute_status.state)
      assert.same({ "dashboards.genie", "file.files", "sql" }, r[2].json.user_api_scopes)
      assert.same({ "dashboards.genie", "file.files", "iam.access-control:read", "iam.current-user:read", "sql" },
        r[2].json.effective_user_api_scopes)
      assert.equals(200, r[3].status)
      assert.is_nil(r[3].json.user_api_scopes)
      assert.is_nil(r[3].json.effective_user_api_scopes)
      assert.same({ state = "UNAVAILABLE", message = "App is not running" }, r[4].json.app_status)
      assert.equals("STOPPED", r[4].json.compute_status.state)
      assert.equals(404, r[5].status)
      assert.same({ error_code = "RESOURCE_DOES_NOT_EXIST",
                    message = "App with name nope does not exist or is deleted." }, r[5].json)
      assert.equals(401, r[6].status)
      assert.equals("UNAUTHENTICATED", r[6].json.error_code)
    end)

    it("needs the apps scope (or all-apis) in an OAuth token", function()
      local r = curls {
        { path = "/api/2.0/apps/my-app", bearer = token { data = "grant_type=client_credentials&scope=sql" } },
        { path = "/api/2.0/apps/my-app", bearer = token { data = "grant_type=client_credentials&scope=sql+apps" } },
        { path = "/api/2.0/apps/my-app", bearer = token() },
      }
      assert.equals(403, r[1].status)
      assert.same({ error_code = "PERMISSION_DENIED",
                    message = "Provided OAuth token does not have required scopes: apps" }, r[1].json)
      assert.equals(200, r[2].status, r[2].body)
      assert.equals(200, r[3].status, r[3].body)
    end)

    it("ws:app recomputes the effective scopes from user_api_scopes", function()
      local app = ws:app("new-app", { user_api_scopes = { "sql", "files.files" } })
      assert.same({ "files.files", "iam.access-control:read", "iam.current-user:read", "sql" },
        app.effective_user_api_scopes)
      app = ws:app("new-app", { user_api_scopes = fake.NULL })
      assert.is_nil(app.effective_user_api_scopes)
      app = ws:app("new-app", { user_api_scopes = { "sql" }, effective_user_api_scopes = { "sql" } })
      assert.same({ "sql" }, app.effective_user_api_scopes)
    end)

    it("ws:app adds apps, merges and removes fields; reset restores the defaults", function()
      local app = ws:app("new-app", { description = "added" })
      assert.equals(ws:app_url("new-app"), app.url)
      assert.equals("added", app.description)
      assert.equals("app-client-new-app", app.oauth2_app_client_id)
      assert.equals("RUNNING", app.app_status.state)
      assert.equals(ws:resolve_for(app.url), ws.resolve[#ws.resolve])
      local n = #ws.resolve
      ws:app("new-app", { description = "again" })
      assert.equals(n, #ws.resolve)                      -- not added twice
      app = ws:app("my-app", { url = fake.NULL, oauth2_app_client_id = fake.NULL })
      assert.is_nil(app.url)
      assert.same({ "sql" }, app.user_api_scopes)        -- other fields kept
      assert.equals("again", ws:app("new-app").description)
      assert.is_nil(ws:app("plain-app", fake.NULL))
      local r = curls {
        { path = "/api/2.0/apps/my-app", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/plain-app", bearer = ws.creds.pat },
        { url = ws:app_url("new-app") .. "/api/hello", bearer = token() },  -- its host verifies
      }
      assert.is_nil(r[1].json.url)
      assert.is_nil(r[1].json.oauth2_app_client_id)
      assert.equals(404, r[2].status)
      assert.equals(200, r[3].status, r[3].body)
      assert.equals("new-app", r[3].json.app)
      ws:reset()
      r = curls {
        { path = "/api/2.0/apps/my-app", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/new-app", bearer = ws.creds.pat },
        { path = "/api/2.0/apps/plain-app", bearer = ws.creds.pat },
      }
      assert.equals(ws:app_url("my-app"), r[1].json.url)
      assert.equals(404, r[2].status)
      assert.equals(200, r[3].status)
    end)
  end)

  describe("app hosts", function()
    local function hello(name) return ws:app_url(name) .. "/api/hello" end

    it("accept workspace OAuth tokens and tokens exchanged for the app, nothing else", function()
      local r = curls {
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "sql",
                   audience = "app-client-my-app", requested_token_type = TT_AT },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT,
                   scope = "sql file.files dashboards.genie", audience = "app-client-scoped-app" },
        { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token",
          user = "fake-client-id:fake-client-secret-xyz",
          form = { grant_type = "client_credentials", scope = "all-apis" } },
      }
      local mine, other, account = r[1].json.access_token, r[2].json.access_token, r[3].json.access_token
      ws:set { token_lifetime = 0 }
      local expired = token()
      local m2m_scoped = token { data = "grant_type=client_credentials&scope=sql" }
      r = curls {
        { url = hello("my-app") },
        { url = hello("my-app"), bearer = ws.creds.pat },
        { url = hello("my-app"), user = "admin@example.com:fake-password-123" },
        { url = hello("my-app"), bearer = "nope" },
        { url = hello("my-app"), bearer = expired },
        { url = hello("my-app"), bearer = account },
        { url = hello("my-app"), bearer = other },
        { url = hello("my-app"), bearer = mine },
        { url = hello("my-app"), bearer = m2m_scoped },
        { path = "/api/2.0/preview/scim/v2/Me", bearer = mine },
      }
      for i = 1, 7 do
        assert.equals(401, r[i].status, i .. ": " .. r[i].body)
        assert.equals("unauthenticated", r[i].json.error, i)
        assert.is_string(r[i].json.message)
        assert.matches("^application/json", r[i].headers["content-type"])
      end
      assert.equals(200, r[8].status, r[8].body)
      assert.same({ message = "hello from my-app", app = "my-app", user = "user@example.com", scopes = { "sql" } },
        r[8].json)
      -- the token expired, but token_lifetime = 0 applies to every token minted after the set
      assert.equals(401, r[9].status)
      assert.equals(401, r[10].status)                 -- app tokens do not work on workspace APIs
      assert.equals("Invalid access token.", r[10].json.message)
      ws:reset()
      r = curls { { url = hello("my-app"), bearer = token { data = "grant_type=client_credentials&scope=sql" } } }
      assert.equals(200, r[1].status, r[1].body)
      assert.equals("fake-client-id", r[1].json.user)
    end)

    it("check CAN USE, then scopes, then that the app runs", function()
      local m2m = token()
      local r = curls {
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "sql" },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT,
                   scope = "sql file.files dashboards.genie" },
      }
      local user_sql = r[1].json.access_token
      local user_all3 = r[2].json.access_token
      ws:app_permission("my-app", { "user@example.com" })
      r = curls {
        { url = hello("my-app"), bearer = m2m },
        { url = hello("my-app"), bearer = user_sql },
        { url = hello("scoped-app"), bearer = user_sql },
        { url = hello("scoped-app"), bearer = user_all3 },
        { url = hello("scoped-app"), bearer = m2m },                  -- all-apis
        { url = hello("plain-app"), bearer = user_sql },
        { url = hello("stopped-app"), bearer = m2m },
        { url = ws:app_url("nope") .. "/api/hello", bearer = m2m,
          args = "--resolve " .. q(ws:resolve_for(ws:app_url("nope"))) },
        { url = ws:app_url("my-app") .. "/api/nope", bearer = user_sql },
      }
      assert.equals(403, r[1].status)
      assert.same({ error = "permission_denied", message = "User does not have CAN USE permission on app my-app" },
        r[1].json)
      assert.equals(200, r[2].status)
      assert.equals(403, r[3].status)
      assert.same({ error = "insufficient_scope",
                    message = "Token is missing required scopes: dashboards.genie file.files" }, r[3].json)
      assert.equals(200, r[4].status)
      assert.same({ "sql", "file.files", "dashboards.genie" }, r[4].json.scopes)
      assert.equals(200, r[5].status)
      assert.equals(200, r[6].status)
      assert.equals(404, r[7].status)
      assert.same({ error = "not_found", message = "App stopped-app is not running" }, r[7].json)
      assert.equals(404, r[8].status)
      assert.equals("not_found", r[8].json.error)
      assert.equals(404, r[9].status)
      assert.same({ error = "not_found", message = "No route /api/nope" }, r[9].json)
      ws:app_permission("my-app", nil)
      ws:app("stopped-app", { app_status = { state = "RUNNING" }, compute_status = { state = "ACTIVE" } })
      r = curls { { url = hello("my-app"), bearer = m2m }, { url = hello("stopped-app"), bearer = m2m } }
      assert.equals(200, r[1].status)
      assert.equals(200, r[2].status)
    end)

    it("echo and redirect", function()
      local r = curls {
        { url = ws:app_url("my-app") .. "/api/echo?a=1&a=2", method = "PUT", bearer = token(),
          headers = { ["X-Test"] = "yes", ["Content-Type"] = "text/plain" }, data = "app body" },
        { url = ws:app_url("my-app") .. "/api/redirect?to=" .. form_encode { x = "https://elsewhere.example/p?q=1" }
          :sub(3), bearer = token() },
      }
      assert.equals(200, r[1].status)
      assert.equals("PUT", r[1].json.method)
      assert.equals("/api/echo", r[1].json.path)
      assert.equals("a=1&a=2", r[1].json.query)
      assert.same({ a = { "1", "2" } }, r[1].json.args)
      assert.equals("Bearer", r[1].json.headers.authorization)
      assert.equals("yes", r[1].json.headers["x-test"])
      assert.equals("app body", r[1].json.body)
      assert.equals(302, r[2].status)
      assert.equals("https://elsewhere.example/p?q=1", r[2].headers.location)
    end)

    it("faults (optionally by host), counters and last request", function()
      local m2m = token()
      ws:fault { path = "/api/hello", status = 503, retry_after = "2" }            -- any host
      ws:fault { path = "/api/hello", host = "scoped-app", status = 500, count = -1 }
      ws:fault { path = "/.well-known/databricks-config", host = "my-app", status = 500, count = -1 }
      ws:fault { path = "/.well-known/databricks-config", host = "account", status = 502, count = -1 }
      local r = curls {
        { url = hello("my-app"), bearer = m2m },
        { url = hello("my-app"), bearer = m2m },
        { url = hello("scoped-app"), bearer = m2m },
        { path = "/.well-known/databricks-config" },
        { host = "account", path = "/.well-known/databricks-config" },
      }
      assert.equals(503, r[1].status)
      assert.equals("2", r[1].headers["retry-after"])
      assert.equals(200, r[2].status)
      assert.equals(500, r[3].status)
      assert.equals(200, r[4].status)
      assert.equals(502, r[5].status)
      ws:clear_faults()
      ws:fault { path = "/api/hello", host = "workspace", status = 500, count = -1 }
      r = curls { { url = hello("my-app"), bearer = m2m } }
      assert.equals(200, r[1].status)
      local c = ws:counters()
      assert.equals(3, c["APP my-app GET /api/hello"])
      assert.equals(1, c["APP scoped-app GET /api/hello"])
      assert.is_nil(c["GET /api/hello"])
      local last = ws:last("/api/hello")
      assert.equals("my-app", last.app)
      assert.equals("Bearer " .. m2m, last.headers.authorization)
      assert.is_nil(ws:last("/.well-known/databricks-config").app)
    end)
  end)

  describe("token exchange", function()
    local ME = "/api/2.0/preview/scim/v2/Me"

    it("exchanges the PAT for a workspace or app token", function()
      ws:set { token_lifetime = 900 }
      local r = curls {
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "all-apis",
                   requested_token_type = TT_AT },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "sql  sql",
                   audience = "app-client-my-app" },
      }
      assert.equals(200, r[1].status, r[1].body)
      assert.same({ access_token = r[1].json.access_token, token_type = "Bearer", expires_in = 900, scope = "all-apis",
                    issued_token_type = TT_AT }, r[1].json)
      assert.equals("sql", r[2].json.scope)
      local me = curls { { path = ME, bearer = r[1].json.access_token } }[1]
      assert.equals("user@example.com", me.json.userName)
      assert.same({ exchange = 2, ["exchange workspace"] = 1, ["exchange app-client-my-app"] = 1,
                    ["POST /oidc/v1/token"] = 2, ["GET " .. ME] = 1, total = 3 }, ws:counters())
    end)

    it("rejects bad subjects, types, scopes and audiences", function()
      local r = curls {
        exchange { subject_token = "dapi-wrong", subject_token_type = TT_PAT, scope = "all-apis" },
        exchange { subject_token = ws.creds.pat, subject_token_type = "urn:x", scope = "all-apis" },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "all-apis",
                   requested_token_type = "urn:ietf:params:oauth:token-type:refresh_token" },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "all-apis", audience = "nope" },
        exchange({ subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "all-apis" },
                 { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token" }),
        exchange { subject_token = "fake-at-unknown", subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = ws.creds.pat, subject_token_type = TT_PAT, scope = "sql",
                   audience = "app-client-scoped-app" },
      }
      assert.equals(400, r[1].status)
      assert.same({ error = "invalid_grant", error_description = "The subject token is invalid or expired" }, r[1].json)
      assert.equals("invalid_request", r[2].json.error)
      assert.equals("invalid_request", r[3].json.error)
      assert.equals(400, r[4].status)
      assert.equals("invalid_scope", r[4].json.error)
      assert.same({ error = "invalid_target", error_description = "Unknown audience" }, r[5].json)
      assert.equals("invalid_request", r[6].json.error)               -- PATs only on the workspace
      assert.equals("invalid_grant", r[7].json.error)
      assert.equals("invalid_request", r[8].json.error)
      -- an app audience needs a scope covering the app's user_api_scopes (seed 001)
      assert.equals(400, r[9].status)
      assert.same({ error = "invalid_scope", error_description = "The requested scope does not include the scopes "
        .. "configured for the app in user authorization: dashboards.genie file.files" }, r[9].json)
      assert.is_nil(ws:counters().exchange)
    end)

    it("exchanges this fake's OAuth tokens keeping the identity", function()
      local m2m = token()
      local r = curls {
        exchange { subject_token = m2m, subject_token_type = TT_JWT, scope = "sql", audience = "app-client-my-app" },
        exchange({ subject_token = m2m, subject_token_type = TT_JWT, scope = "all-apis" },
                 { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token" }),  -- wrong endpoint
      }
      assert.equals(200, r[1].status, r[1].body)
      assert.equals("invalid_grant", r[2].json.error)
      local hello = curls { { url = ws:app_url("my-app") .. "/api/hello", bearer = r[1].json.access_token } }[1]
      assert.equals("fake-client-id", hello.json.user)
    end)
  end)

  describe("fake IdP and OIDC federation", function()
    local ME = "/api/2.0/preview/scim/v2/Me"

    it("issues JWT-shaped ID tokens", function()
      local jwt = ws:idp_token { sub = "repo:acme/x:ref:refs/heads/main", ttl = 120 }
      local h, p, sig = jwt:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
      assert.truthy(sig, jwt)
      local function dec(part)
        local pipe = io.popen("printf %s " .. q(part:gsub("-", "+"):gsub("_", "/") .. ("="):rep(-#part % 4))
          .. " | base64 -d")
        local out = pipe:read("*a")
        pipe:close()
        return cjson.decode(out)
      end
      assert.same({ alg = "RS256", typ = "JWT", kid = "fake" }, dec(h))
      local claims = dec(p)
      assert.equals(ws.url .. "/__idp", claims.iss)
      assert.equals("repo:acme/x:ref:refs/heads/main", claims.sub)
      assert.equals(ws.url .. "/oidc/v1/token", claims.aud)
      assert.equals(120, claims.exp - claims.iat)
    end)

    it("exchanges ID tokens with the expected audience", function()
      ws:set { federation_audience = "custom-aud" }
      local ok = ws:idp_token { sub = "repo:acme/x:ref:refs/heads/main" }
      local r = curls {
        exchange { subject_token = ok, subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = ws:idp_token {}, subject_token_type = TT_JWT, scope = "all-apis",
                   client_id = "fake-client-id" },
        exchange { subject_token = ws:idp_token { aud = "custom-aud" }, subject_token_type = TT_JWT, scope = "sql" },
        exchange { subject_token = ws:idp_token { aud = "https://elsewhere/oidc/v1/token" },
                   subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = ws:idp_token { ttl = 0 }, subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = ok .. "x", subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = ws:idp_token {}, subject_token_type = TT_JWT, scope = "all-apis",
                   client_id = "unknown-client" },
        exchange({ subject_token = ws:idp_token { aud = "fake-account-0001" }, subject_token_type = TT_JWT,
                   scope = "all-apis" }, { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token" }),
        exchange({ subject_token = ws:idp_token {}, subject_token_type = TT_JWT, scope = "all-apis" },
                 { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token" }),
      }
      for i = 1, 3 do assert.equals(200, r[i].status, i .. ": " .. r[i].body) end
      assert.same({ error = "invalid_grant", error_description = "audience mismatch" }, r[4].json)
      assert.same({ error = "invalid_grant", error_description = "The subject token is invalid or expired" }, r[5].json)
      assert.equals("invalid_grant", r[6].json.error)
      assert.equals("invalid_client", r[7].json.error)
      assert.equals(200, r[8].status, r[8].body)
      assert.same({ error = "invalid_grant", error_description = "audience mismatch" }, r[9].json)
      local me = curls {
        { path = ME, bearer = r[1].json.access_token },
        { path = ME, bearer = r[2].json.access_token },
        { host = "account", path = "/api/2.0/accounts/fake-account-0001/workspaces", bearer = r[8].json.access_token },
      }
      assert.equals("federated:repo:acme/x:ref:refs/heads/main", me[1].json.userName)
      assert.equals("fake-client-id", me[2].json.userName)
      assert.equals(200, me[3].status)
    end)

    it("serves GitHub Actions ID tokens", function()
      local url = ws.creds.actions_request_url
      local r = curls {
        { url = url .. "&audience=" .. form_encode { x = ws.url .. "/oidc/v1/token" }:sub(3),
          bearer = ws.creds.actions_request_token },
        { url = url, bearer = ws.creds.actions_request_token },
        { url = url .. "&audience=other", bearer = ws.creds.actions_request_token },
        { url = url, bearer = "wrong" },
        { url = url },
      }
      assert.equals(200, r[1].status, r[1].body)
      assert.matches("^[%w_-]+%.[%w_-]+%.[%w_-]+$", r[1].json.value)
      assert.equals(401, r[4].status)
      assert.equals(401, r[5].status)
      local x = curls {
        exchange { subject_token = r[1].json.value, subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = r[2].json.value, subject_token_type = TT_JWT, scope = "all-apis" },
        exchange { subject_token = r[3].json.value, subject_token_type = TT_JWT, scope = "all-apis" },
      }
      assert.equals(200, x[1].status, x[1].body)
      assert.equals(200, x[2].status, x[2].body)                   -- default audience
      assert.equals("audience mismatch", x[3].json.error_description)
      assert.equals(5, ws:counters()["GET /__idp/github/token"])
    end)
  end)

  describe("U2M", function()
    local ME = "/api/2.0/preview/scim/v2/Me"

    local function code_grant(code, extra, o)
      local f = { grant_type = "authorization_code", code = code, redirect_uri = REDIRECT,
                  code_verifier = VERIFIER, client_id = "databricks-cli" }
      for k, v in pairs(extra or {}) do
        if v == false then f[k] = nil else f[k] = v end
      end
      return { host = o and o.host, path = o and o.path or "/oidc/v1/token", form = f }
    end

    local function refresh_grant(rt, o)
      return { host = o and o.host, path = o and o.path or "/oidc/v1/token",
               form = { grant_type = "refresh_token", refresh_token = rt, client_id = "databricks-cli" } }
    end

    it("authorize redirects with a code that buys tokens once", function()
      local r = curls {
        { path = authorize_path() },
        { path = authorize_path { scope = "sql", state = "a b&c", redirect_uri = "http://127.0.0.1:8021/cb" } },
        { path = authorize_path { client_id = "fake-client-id" } },
      }
      assert.equals(302, r[1].status)
      local loc = r[1].headers.location
      assert.matches("^http://localhost:8020%?code=", loc)
      local q1 = query_of(loc)
      assert.equals("st-1", q1.state)
      local q2 = query_of(r[2].headers.location)
      assert.matches("^http://127%.0%.0%.1:8021/cb%?", r[2].headers.location)
      assert.equals("a b&c", q2.state)
      local q3 = query_of(r[3].headers.location)
      local t = curls {
        code_grant(q1.code, { scope = "ignored" }),
        code_grant(q1.code),                                            -- reused
        code_grant(q2.code, { redirect_uri = "http://127.0.0.1:8021/cb" }),
        code_grant(q3.code, { client_id = "fake-client-id" }),
      }
      assert.equals(200, t[1].status, t[1].body)
      local tok = t[1].json
      assert.matches("^fake%-at%-", tok.access_token)
      assert.is_string(tok.refresh_token)
      assert.equals("Bearer", tok.token_type)
      assert.equals(3600, tok.expires_in)
      assert.equals("all-apis offline_access", tok.scope)
      assert.equals(400, t[2].status)
      assert.equals("invalid_grant", t[2].json.error)
      assert.equals(200, t[3].status, t[3].body)
      assert.is_nil(t[3].json.refresh_token)                             -- no offline_access
      assert.equals("sql", t[3].json.scope)
      assert.equals(200, t[4].status, t[4].body)
      local use = curls {
        { path = ME, bearer = tok.access_token },
        { url = ws:app_url("my-app") .. "/api/hello", bearer = tok.access_token },
        { url = ws:app_url("my-app") .. "/api/hello", bearer = t[3].json.access_token },
        { url = ws:app_url("scoped-app") .. "/api/hello", bearer = t[3].json.access_token },
      }
      assert.equals("user@example.com", use[1].json.userName)
      assert.equals(200, use[2].status)
      assert.equals(200, use[3].status)
      assert.equals(403, use[4].status)
    end)

    it("authorize refuses bad clients and redirect URIs with a page, other errors by redirect", function()
      local r = curls {
        { path = authorize_path { client_id = "evil" } },
        { path = authorize_path { client_id = false } },
        { path = authorize_path { redirect_uri = "https://localhost:8020" } },
        { path = authorize_path { redirect_uri = "http://localhost" } },
        { path = authorize_path { redirect_uri = "http://evil.example:8020" } },
        { path = authorize_path { redirect_uri = "http://localhost:8020/cb?x=1" } },
        { path = authorize_path { code_challenge_method = "plain" } },
        { path = authorize_path { code_challenge = false } },
        { path = authorize_path { response_type = "token" } },
      }
      for i = 1, 6 do
        assert.equals(400, r[i].status, i)
        assert.matches("^text/html", r[i].headers["content-type"])
        assert.is_nil(r[i].headers.location)
      end
      for i, e in ipairs { [7] = "invalid_request", [8] = "invalid_request", [9] = "unsupported_response_type" } do
        assert.equals(302, r[i].status)
        local qp = query_of(r[i].headers.location)
        assert.equals(e, qp.error)
        assert.equals("st-1", qp.state)
        assert.is_nil(qp.code)
      end
      ws:set { authorize_error = "access_denied" }
      r = curls { { path = authorize_path() } }
      assert.equals(REDIRECT .. "?error=access_denied&error_description=The+user+denied+the+request&state=st-1",
        r[1].headers.location)
      ws:reset()
      ws:set { authorize_state = "forged" }
      r = curls { { path = authorize_path() } }
      assert.equals("forged", query_of(r[1].headers.location).state)
      assert.is_string(query_of(r[1].headers.location).code)
      ws:reset()
      r = curls { { path = authorize_path() } }
      assert.equals("st-1", query_of(r[1].headers.location).state)
    end)

    it("the code grant checks verifier, redirect_uri, client and code", function()
      local codes = {}
      local r = curls {
        { path = authorize_path() }, { path = authorize_path() }, { path = authorize_path() },
        { path = authorize_path() },
      }
      for i = 1, 4 do codes[i] = query_of(r[i].headers.location).code end
      local t = curls {
        code_grant(codes[1], { code_verifier = VERIFIER .. "x" }),
        code_grant(codes[2], { redirect_uri = "http://localhost:8021" }),
        code_grant(codes[3], { client_id = "fake-client-id" }),
        code_grant("fake-code-nope"),
        code_grant(codes[4], { code_verifier = false }),
        code_grant(codes[1]),                                  -- burnt by the failed attempt
      }
      for i = 1, 6 do
        assert.equals(400, t[i].status, i)
        assert.equals("invalid_grant", t[i].json.error, i)
        assert.is_string(t[i].json.error_description)
      end
    end)

    it("refresh rotates the refresh token; revoke invalidates all", function()
      local code = query_of(curls { { path = authorize_path() } }[1].headers.location).code
      local rt1 = curls { code_grant(code) }[1].json.refresh_token
      local r = curls { refresh_grant(rt1), refresh_grant(rt1) }
      assert.equals(200, r[1].status, r[1].body)
      local rt2 = r[1].json.refresh_token
      assert.is_string(rt2)
      assert.are_not.equal(rt1, rt2)
      assert.equals("all-apis offline_access", r[1].json.scope)
      assert.same({ error = "invalid_grant", error_description = "Refresh token is invalid" }, r[2].json)
      local wrong_client = refresh_grant(rt2)
      wrong_client.form.client_id = "fake-client-id"
      r = curls {
        wrong_client,
        refresh_grant("fake-rt-nope"),
        refresh_grant(rt2, { host = "account", path = "/oidc/accounts/fake-account-0001/v1/token" }),
        { path = ME, bearer = r[1].json.access_token },
      }
      for i = 1, 3 do assert.equals("Refresh token is invalid", r[i].json.error_description, i) end
      assert.equals(200, r[4].status)
      assert.equals(1, ws:counters().refresh)
      ws:revoke_refresh_tokens()
      r = curls { refresh_grant(rt2) }
      assert.same({ error = "invalid_grant", error_description = "Refresh token is invalid" }, r[1].json)
    end)

    it("has account variants bound to the account", function()
      local root = "/oidc/accounts/fake-account-0001"
      local r = curls {
        { host = "account", path = authorize_path(nil, root) },
        { host = "account", path = authorize_path(nil, "/oidc/accounts/nope") },
      }
      assert.equals(302, r[1].status)
      assert.equals(404, r[2].status)
      local code = query_of(r[1].headers.location).code
      local acct = { host = "account", path = root .. "/v1/token" }
      local t = curls { code_grant(code, nil, acct) }[1]
      assert.equals(200, t.status, t.body)
      local code2 = query_of(curls { { host = "account", path = authorize_path(nil, root) } }[1].headers.location).code
      r = curls {
        { host = "account", path = "/api/2.0/accounts/fake-account-0001/workspaces", bearer = t.json.access_token },
        { path = ME, bearer = t.json.access_token },
        refresh_grant(t.json.refresh_token, acct),
        code_grant(code2),                                     -- account code at the workspace endpoint
      }
      assert.equals(200, r[1].status)
      assert.equals(401, r[2].status)
      assert.equals(200, r[3].status, r[3].body)
      assert.equals("invalid_grant", r[4].json.error)
    end)
  end)
end)
