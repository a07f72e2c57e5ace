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
