-- Issue 11, "no secret off its host, no byte where it does not belong" and "messages a
-- newcomer meets": through the public API against the fake workspace over TLS.
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local leakcheck = require "spec.support.leakcheck"

local ws, creds

local function config(opts, ctx)
  opts.ca_file = opts.ca_file or ws.ca_file
  return assert(dbxauth.config(opts, ctx or { env = {}, home = "/nonexistent-home-for-specs" }))
end

-- every user-readable string of an error
local function texts(err)
  return table.concat(leakcheck.strings(err), "\n")
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

describe("messages built from outside text carry no secret", function()
  it("an OAuth error_description that echoes the client secret", function()
    ws:fault { path = "/oidc/v1/token", kind = "oauth", status = 401, error = "invalid_client",
               error_description = "client secret " .. creds.client_secret .. " is wrong", count = -1 }
    local cfg = config { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.matches("client secret %*%*%* is wrong", err.message)
    assert.is_nil(texts(err):find(creds.client_secret, 1, true))
  end)

  it("an API message and an HTML page that quote the token", function()
    local cfg = config { host = ws.url, token = creds.pat }
    ws:fault { path = "/api/2.0/clusters/list", kind = "json", status = 400, error_code = "INVALID_PARAMETER_VALUE",
               message = "token " .. creds.pat .. " cannot list clusters" }
    local res, err = cfg:request { path = "/api/2.0/clusters/list" }
    assert.is_nil(res)
    assert.matches("token %*%*%* cannot", err.message)
    ws:fault { path = "/api/2.0/clusters/list", kind = "html", status = 502, message = "upstream saw " .. creds.pat }
    res, err = cfg:request { path = "/api/2.0/clusters/list" }
    assert.is_nil(res)
    assert.is_nil(texts(err):find(creds.pat, 1, true))
    assert.matches("%*%*%*", err.message)
  end)

  it("a token endpoint that echoes the authorization code and the PKCE verifier", function()
    local cfg = config { host = ws.url }
    local pkce = dbxauth.pkce()
    local code = "auth-code-" .. string.rep("x", 20)
    leakcheck.secret(code)
    ws:fault { path = "/oidc/v1/token", kind = "oauth", status = 400, error = "invalid_grant",
               error_description = "code " .. code .. " / verifier " .. pkce.verifier .. " rejected" }
    local tok, err = cfg:exchange_code { code = code, verifier = pkce.verifier, redirect_uri = "http://localhost:8020" }
    assert.is_nil(tok)
    assert.is_nil(texts(err):find(code, 1, true))
    assert.is_nil(texts(err):find(pkce.verifier, 1, true))
    assert.matches("code %*%*%* / verifier %*%*%* rejected", err.message)
  end)

  it("a refresh grant whose error quotes the refresh token", function()
    local cfg = config { host = ws.url }
    local rt = "refresh-token-" .. string.rep("r", 24)
    leakcheck.secret(rt)
    ws:fault { path = "/oidc/v1/token", kind = "oauth", status = 400, error = "invalid_request",
               error_description = "bad refresh_token " .. rt }
    local tok, err = cfg:refresh { refresh_token = rt }
    assert.is_nil(tok)
    assert.is_nil(texts(err):find(rt, 1, true))
  end)

  it("the databricks CLI's stderr that prints the configuration's secret", function()
    local dir = files.tmpdir()
    local cli = dir .. "/databricks"
    local pad = ("# the Go CLI is large\n"):rep(60000)
    files.write(cli, "#!/bin/sh\ncase \"$1\" in\n version) echo 'Databricks CLI v0.296.0'; exit 0;;\n"
      .. " auth) echo \"error: password " .. creds.password .. " rejected\" >&2; exit 1;;\nesac\nexit 2\n" .. pad)
    assert(os.execute("chmod 755 " .. files.q(cli)))
    local cfg = dbxauth.config({ host = ws.url, auth_type = "databricks-cli", databricks_cli_path = cli,
      password = creds.password, ca_file = ws.ca_file }, { env = {}, home = files.tmpdir() })
    assert(cfg)
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.matches("password %*%*%* rejected", err.message)
    assert.is_nil(texts(err):find(creds.password, 1, true))
    os.execute("rm -rf " .. files.q(dir))
  end)
end)

describe("host URLs are never reinterpreted", function()
  it("refuses userinfo and percent-encoding in the host, naming it", function()
    for _, h in ipairs { "https://a.cloud.databricks.com@evil.example.com", "https://admin:pw@" .. ws.url:sub(9),
                         "https://a%2ecloud.databricks.com" } do
      local cfg = config { host = h, token = creds.pat }
      local headers, err = cfg:authenticate()
      assert.is_nil(headers)
      assert.equal("config", err.code)
      assert.matches("^invalid host: ", err.message)
      assert.is_nil(err.message:find("evil", 1, true))
    end
  end)

  it("refuses a plain-http or userinfo discovery_url, naming it", function()
    local cfg = config { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret,
                         discovery_url = "http://evil.example.com/oidc/.well-known/oauth-authorization-server" }
    local _, err = cfg:authenticate()
    assert.equal("config", err.code)
    assert.matches("discovery_url must use https://", err.message)
    cfg = config { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret,
                   discovery_url = "https://u:p@" .. ws.url:sub(9) .. "/oidc/.well-known/oauth-authorization-server" }
    _, err = cfg:authenticate()
    assert.matches("discovery_url is not a usable URL: user information", err.message)
    assert.equal(0, ws:counters()["POST /oidc/v1/token"] or 0)
  end)
end)

describe("bytes where they belong", function()
  it("refuses a token that is not visible ASCII, naming where it came from, never its value", function()
    for _, bad in ipairs { "dapi\1abc", "dapi abc", "dapi\195\169abc" } do
      local cfg, err = dbxauth.config({}, { env = { DATABRICKS_HOST = ws.url, DATABRICKS_TOKEN = bad }, home = "/x" })
      assert.is_nil(cfg)
      assert.matches("token %(from DATABRICKS_TOKEN%) contains characters that cannot be sent in an HTTP header",
        err.message)
      assert.is_nil(err.message:find(bad, 1, true))
    end
  end)

  it("refuses request header values with control or non-ASCII characters, naming the header", function()
    local cfg = config { host = ws.url, token = creds.pat }
    local res, err = cfg:request { path = "/api/2.0/fake/echo", headers = { ["X-Note"] = "caf\195\169" } }
    assert.is_nil(res)
    assert.equal("invalid_header", err.code)
    assert.matches('header "X%-Note" contains control or non%-ASCII', err.message)
    assert(cfg:request { path = "/api/2.0/fake/echo", headers = { ["X-Note"] = "tab\tand space ok" } })
  end)

  it("parses integers and booleans strictly and names the attribute and its source", function()
    for _, case in ipairs {
      { env = { DATABRICKS_RATE_LIMIT = "0x10" }, attr = "rate_limit", src = "DATABRICKS_RATE_LIMIT" },
      { env = { DATABRICKS_RATE_LIMIT = "1e3" }, attr = "rate_limit", src = "DATABRICKS_RATE_LIMIT" },
      { env = { DATABRICKS_RATE_LIMIT = " 7" }, attr = "rate_limit", src = "DATABRICKS_RATE_LIMIT" },
      { env = { DATABRICKS_DEBUG_HEADERS = "yes" }, attr = "debug_headers", src = "DATABRICKS_DEBUG_HEADERS" },
    } do
      case.env.DATABRICKS_HOST, case.env.DATABRICKS_TOKEN = ws.url, creds.pat
      local cfg, err = dbxauth.config({}, { env = case.env, home = "/x" })
      assert.is_nil(cfg)
      assert.matches("^resolve: strconv%.", err.message)
      assert.equal(case.attr, err.attribute)
      assert.equal(case.src, err.source)
      assert.matches(case.attr .. " %(from " .. case.src .. "%) must be", err.hint)
    end
    local home = files.home("[p]\nhost = " .. ws.url .. "\ntoken = " .. creds.pat .. "\nhttp_timeout_seconds = 1.5\n")
    local cfg, err = dbxauth.config({ profile = "p" }, { env = {}, home = home })
    assert.is_nil(cfg)
    assert.equal("http_timeout_seconds", err.attribute)
    assert.matches("^profile p of ", err.source)
  end)

  it("sends exactly one Authorization (the configured one) and one User-Agent, whatever the caller's case", function()
    local cfg = config { host = ws.url, token = creds.pat }
    assert(cfg:request { path = "/api/2.0/fake/echo", headers = { authorization = "Bearer not-mine",
      ["user-agent"] = "my-tool/1.0", accept = "text/plain", ["x-databricks-workspace-id"] = "42" } })
    local last = ws:last("/api/2.0/fake/echo")
    assert.equal("Bearer " .. creds.pat, last.headers.authorization)
    assert.equal("my-tool/1.0", last.headers["user-agent"])
    assert.equal("text/plain", last.headers.accept)
    assert.equal("42", last.headers["x-databricks-workspace-id"])
    local res, err = cfg:request { path = "/api/2.0/fake/echo", headers = { ["X-A"] = "1", ["x-a"] = "2" } }
    assert.is_nil(res)
    assert.equal("invalid_header", err.code)
  end)

  it("loopback http never goes through a configured proxy", function()
    local script = os.tmpname()
    files.write(script, [[
      local dbxauth = require "dbxauth"
      local cfg = assert(dbxauth.config({ host = arg[1], token = arg[2] }, { env = {}, home = "/x" }))
      local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
      io.write(res and ("ok " .. res.status) or ("err " .. tostring(err)))
    ]])
    local lua = (type(jit) == "table") and "luajit" or "lua5.4"
    local cpath = (type(jit) == "table") and "build/jit/?.so;;" or "build/5.4/?.so;;"
    local cmd = "http_proxy=http://127.0.0.1:1 HTTP_PROXY=http://127.0.0.1:1 https_proxy=http://127.0.0.1:1 "
      .. "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' "
      .. "LUA_CPATH=" .. files.q(cpath) .. " LUA_CPATH_5_4=" .. files.q(cpath) .. " "
      .. lua .. " " .. files.q(script) .. " " .. files.q(ws.http_url) .. " " .. files.q(creds.pat)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.equal("ok 200", out)
  end)
end)

describe("messages a newcomer meets", function()
  it("a profile that does not exist lists the ones that do", function()
    local home = files.home("[DEFAULT]\nhost = " .. ws.url .. "\n[dev]\nhost = " .. ws.url .. "\ntoken = x\n")
    local cfg, err = dbxauth.config({ profile = "prod" }, { env = {}, home = home })
    assert.is_nil(cfg)
    assert.matches("has no prod profile configured", err.message)
    assert.matches("the profiles there are DEFAULT, dev", err.hint)
    assert.same({ "DEFAULT", "dev" }, err.profiles)
  end)

  it("an http:// server that drops the connection suggests https://", function()
    ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "close", count = -1 }
    local cfg = config { host = ws.http_url, token = creds.pat }
    local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
    assert.is_nil(res)
    assert.equal("network", err.code)
    assert.matches("use https:// instead of http://", err.hint)
  end)

  it("a reused authorization code says to start the login again", function()
    local cfg = config { host = ws.url }
    local pkce = dbxauth.pkce()
    local tok, err = cfg:exchange_code { code = "never-issued-code", verifier = pkce.verifier,
                                         redirect_uri = "http://localhost:8020" }
    assert.is_nil(tok)
    assert.equal("invalid_grant", err.oauth_error)
    assert.matches("start the login again", err.hint)
  end)

  it("a refused refresh at account level names --account-id in both commands", function()
    local cfg = config { host = ws.account_url, account_id = creds.account_id, resolve = nil }
    local tok, err = cfg:refresh { refresh_token = "not-a-refresh-token" }
    assert.is_nil(tok)
    assert.equal("invalid_refresh_token", err.code)
    local id = creds.account_id:gsub("%-", "%%-")
    assert.matches("databricks auth login %-%-host .* %-%-account%-id " .. id, err.message)
    assert.matches("dbxauth login %-%-host .* %-%-account%-id " .. id, err.hint)
  end)

  it("a 401 for an OAuth token believed valid is refreshed and the GET retried once", function()
    local cfg = config { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
    assert(cfg:authenticate())
    local before = ws:counters()["POST /oidc/v1/token"] or 0
    ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "json", status = 401, error_code = "UNAUTHENTICATED",
               message = "Token is expired", count = 1 }
    local res = assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })
    assert.equal(200, res.status)
    assert.equal(before + 1, ws:counters()["POST /oidc/v1/token"])
    -- a POST is not repeated
    ws:fault { path = "/api/2.0/fake/echo", kind = "json", status = 401, count = 1 }
    local res2, err = cfg:request { method = "POST", path = "/api/2.0/fake/echo", json = {} }
    assert.is_nil(res2)
    assert.equal(401, err.status)
  end)
end)
