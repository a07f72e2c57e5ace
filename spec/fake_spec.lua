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
      assert.same({ "accounts.localhost:" .. ws.port .. ":127.0.0.1", "localhost:" .. ws.port .. ":127.0.0.1" },
        ws.resolve)
      assert.truthy(read(ws.ca_file):find("BEGIN CERTIFICATE", 1, true))
      assert.truthy(read(ws.other_ca_file):find("BEGIN CERTIFICATE", 1, true))
      assert.truthy(read(ws.dir .. "/conf/nginx.conf"))
      assert.same({ pat = "dapi-fake-pat-0123456789abcdef", username = "admin@example.com",
                    password = "fake-password-123", client_id = "fake-client-id",
                    client_secret = "fake-client-secret-xyz", account_id = "fake-account-0001",
                    workspace_id = "1234567890" }, ws.creds)
    end)

    it("raises with the error log when nginx cannot start", function()
      local ok, err = pcall(fake.start, { log_level = "no-such-level" })
      assert.is_false(ok)
      assert.matches("nginx failed to start", err, 1, true)
      assert.matches("no-such-level", err, 1, true)
    end)

    it("set merges settings and returns the effective ones", function()
      local s = ws:set { token_lifetime = 2 }
      assert.same({ metadata = true, discovery = true, token_lifetime = 2, token_type = "Bearer" }, s)
      s = ws:set { metadata = false }
      assert.same({ metadata = false, discovery = true, token_lifetime = 2, token_type = "Bearer" }, s)
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
      }
      for i = 1, 3 do assert.equals(200, r[i].status, i) end
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
                    workspace_id = "1234567890", cloud = "AWS", host_type = "workspace" }, r.json)
      assert.is_nil(r.body:find("\\/", 1, true))        -- no escaped slashes
    end)

    it("describes the account host with a literal {account_id}", function()
      local r = curl { host = "account", path = "/.well-known/databricks-config" }
      assert.same({ oidc_endpoint = ws.account_url .. "/oidc/accounts/{account_id}", cloud = "AWS",
                    host_type = "account" }, r.json)
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
      assert.same({ "client_credentials" }, r.json.grant_types_supported)
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
      local r = curls { { path = CFG }, { path = CFG } }
      assert.equals(52, r[1].rc)                         -- CURLE_GOT_NOTHING
      assert.equals(200, r[2].status)
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
end)
