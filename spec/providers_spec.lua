-- Each credential provider against a fake context (spec/support/fake_context.lua): what it
-- asks of the context, what it sends, what it hands back. No configuration, no network.
local fake_context = require "spec.support.fake_context"
local chain = require "dbxauth.chain"
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local files = require "spec.support.files"
local oauth = require "dbxauth.oauth"
local tokencache = require "dbxauth.tokencache"

local leakcheck = require "spec.support.leakcheck"

local HOST = "https://h.example.com"
for _, secret in ipairs { "dapi1", "sp-secret", "gh-request-token", "gh.id.token", "idp.jwt.value",
  "file.jwt", "cached-at", "cached-rt" } do
  leakcheck.secret(secret)
end
local form = fake_context.form

local function provider(name)
  return assert(chain.BY_NAME[name], name)
end

local function configure(name, o)
  local ctx = fake_context.new(o)
  local p = provider(name)
  assert.is_true(p.applies(ctx), name .. " should apply")
  local creds, err = p.configure(ctx)
  return creds, err, ctx
end

describe("the chain table", function()
  it("lists the providers in the Go SDK's order, external-browser only by name", function()
    assert.same({ "pat", "basic", "oauth-m2m", "databricks-cli", "metadata-service", "github-oidc",
                  "azure-devops-oidc", "env-oidc", "file-oidc", "github-oidc-azure", "azure-msi",
                  "azure-client-secret", "azure-cli", "google-credentials", "google-id", "external-browser" },
                chain.names())
    for _, p in ipairs(chain.CHAIN) do
      assert.is_string(p.name)
      assert.is_function(p.applies)
      assert.is_function(p.configure)
      assert.is_false(p.applies(fake_context.new { attrs = {} }), p.name .. " applies without a host")
    end
  end)
end)

describe("pat", function()
  it("applies with token and host, and sends the token as it is", function()
    assert.is_false(provider("pat").applies(fake_context.new { attrs = { token = "dapi1" } }))
    local creds, _, ctx = configure("pat", { attrs = { host = HOST, token = "dapi1" } })
    assert.same({ Authorization = "Bearer dapi1" }, creds.headers())
    local tok = creds.token()
    assert.equal("dapi1", tok.access_token)
    assert.is_nil(tok.expiry)
    assert.equal(0, #ctx.token_calls + #ctx.send_calls)
  end)
end)

describe("basic", function()
  it("sends base64(user:password) and has no bearer token", function()
    local creds = configure("basic", { attrs = { host = HOST, username = "u", password = "p:w" } })
    assert.same({ Authorization = "Basic " .. core.b64_encode("u:p:w") }, creds.headers())
    local tok, err = creds.token()
    assert.is_nil(tok)
    assert.equal("unsupported", err.code)
  end)
end)

describe("oauth-m2m", function()
  local attrs = { host = HOST, client_id = "sp-id", client_secret = "sp-secret" }

  it("asks the token endpoint for client credentials with all-apis, once per token lifetime", function()
    local creds, _, ctx = configure("oauth-m2m", { attrs = attrs })
    assert.same({ Authorization = "Bearer at-1" }, creds.headers())
    assert.same({ Authorization = "Bearer at-1" }, creds.headers())
    assert.equal(1, #ctx.token_calls)
    local req = ctx.token_calls[1].req
    assert.equal("POST", req.method)
    assert.equal(fake_context.ENDPOINTS.token_endpoint, req.url)
    assert.equal(oauth.basic_client_auth("sp-id", "sp-secret"), req.headers.Authorization)
    assert.same({ grant_type = "client_credentials", scope = "all-apis" }, form(req.body))
    ctx.clock.t = ctx.clock.t + 3600 - 30                -- inside the expiry margin
    assert.same({ Authorization = "Bearer at-2" }, creds.headers())
  end)

  it("passes configured scopes and reports the token endpoint's error", function()
    local a = { host = HOST, client_id = "sp-id", client_secret = "sp-secret", scopes = { "sql", "files" } }
    local creds, _, ctx = configure("oauth-m2m", { attrs = a, token = function()
      return nil, errors.new("oauth", "invalid_client: bad secret", { status = 401 })
    end })
    local h, err = creds.headers()
    assert.is_nil(h)
    assert.equal(401, err.status)
    assert.equal("sql files", form(ctx.token_calls[1].req.body).scope)
  end)

  it("does not apply without the secret", function()
    assert.is_false(provider("oauth-m2m").applies(fake_context.new { attrs = { host = HOST, client_id = "x" } }))
  end)
end)

describe("OIDC federation", function()
  it("env-oidc exchanges DATABRICKS_OIDC_TOKEN (trimmed), with client_id when set", function()
    local creds, _, ctx = configure("env-oidc", { attrs = { host = HOST, client_id = "fed-sp" },
      env = { DATABRICKS_OIDC_TOKEN = "idp.jwt.value \n" } })
    assert(creds.headers())
    local f = form(ctx.token_calls[1].req.body)
    assert.equal(oauth.TOKEN_EXCHANGE, f.grant_type)
    assert.equal("idp.jwt.value", f.subject_token)
    assert.equal(oauth.TYPE_JWT, f.subject_token_type)
    assert.equal("fed-sp", f.client_id)
    assert.is_nil(ctx.token_calls[1].req.headers.Authorization)   -- the subject token is the credential
  end)

  it("env-oidc reads the variable oidc_token_env names, again at every refresh", function()
    local env = { MY_JWT = "first" }
    local creds, _, ctx = configure("env-oidc", { attrs = { host = HOST, oidc_token_env = "MY_JWT" }, env = env })
    assert(creds.headers())
    env.MY_JWT = "second"
    ctx.clock.t = ctx.clock.t + 3590
    assert(creds.headers())
    assert.equal("first", form(ctx.token_calls[1].req.body).subject_token)
    assert.equal("second", form(ctx.token_calls[2].req.body).subject_token)
    assert.is_false(provider("env-oidc").applies(fake_context.new { attrs = { host = HOST }, env = { MY_JWT = "" } }))
  end)

  it("file-oidc reads the file, and says when it is missing or empty", function()
    local dir = files.tmpdir()
    files.write(dir .. "/jwt", "file.jwt\n")
    local creds, _, ctx = configure("file-oidc", { attrs = { host = HOST, oidc_token_filepath = dir .. "/jwt" } })
    assert(creds.headers())
    assert.equal("file.jwt", form(ctx.token_calls[1].req.body).subject_token)
    files.write(dir .. "/empty", "  \n")
    local c2 = configure("file-oidc", { attrs = { host = HOST, oidc_token_filepath = dir .. "/empty" } })
    local _, err = c2.headers()
    assert.matches("is empty", err.message)
    local c3 = configure("file-oidc", { attrs = { host = HOST, oidc_token_filepath = dir .. "/nope" } })
    _, err = c3.headers()
    assert.matches("does not exist", err.message)
    os.execute("rm -rf " .. files.q(dir))
  end)

  it("github-oidc asks GitHub for an ID token with the token endpoint as audience, then exchanges it", function()
    local attrs = { host = HOST, actions_id_token_request_url = "https://gh.example.com/idtoken?api-version=2.0",
                    actions_id_token_request_token = "gh-request-token" }
    local creds, _, ctx = configure("github-oidc", { attrs = attrs, send = function()
      return { status = 200, headers = {}, body = '{"value":"gh.id.token"}' }
    end })
    assert(creds.headers())
    local req = ctx.send_calls[1]
    assert.equal("Bearer gh-request-token", req.headers.Authorization)
    assert.equal("https://gh.example.com/idtoken?api-version=2.0&audience="
      .. core.url_encode(fake_context.ENDPOINTS.token_endpoint), req.url)
    assert.equal("gh.id.token", form(ctx.token_calls[1].req.body).subject_token)
  end)

  it("github-oidc uses token_audience, and refuses a plain-http request URL", function()
    local attrs = { host = HOST, token_audience = "my-aud", actions_id_token_request_url = "https://gh/x",
                    actions_id_token_request_token = "t" }
    local _, _, ctx = configure("github-oidc", { attrs = attrs, send = function()
      return { status = 200, headers = {}, body = '{"value":"v"}' }
    end })
    local creds = provider("github-oidc").configure(ctx)
    assert(creds.headers())
    assert.matches("audience=my%-aud$", ctx.send_calls[1].url)
    attrs.actions_id_token_request_url = "http://gh/x"
    local c2 = configure("github-oidc", { attrs = attrs })
    local _, err = c2.headers()
    assert.equal("config", err.code)
    assert.matches("must be https", err.message)
  end)
end)

describe("the U2M cache providers", function()
  local home
  before_each(function()
    home = files.tmpdir()
    assert(tokencache.put(tokencache.path(home), { HOST }, oauth.token {
      access_token = "cached-at", token_type = "Bearer", refresh_token = "cached-rt", expiry = 1000 + 3600,
    }, 1000))
  end)
  after_each(function() os.execute("rm -rf " .. files.q(home)) end)

  it("databricks-cli uses a valid cache entry without starting the CLI", function()
    local creds, _, ctx = configure("databricks-cli", { attrs = { host = HOST }, home = home, env = { PATH = "" } })
    assert.same({ Authorization = "Bearer cached-at" }, creds.headers())
    assert.equal(0, #ctx.token_calls)
  end)

  it("databricks-cli refreshes an expired entry with the refresh token and writes it back", function()
    local creds, _, ctx = configure("databricks-cli", { attrs = { host = HOST }, home = home, env = { PATH = "" },
      now = 1000 + 3600 })
    assert.same({ Authorization = "Bearer at-1" }, creds.headers())
    local f = form(ctx.token_calls[1].req.body)
    assert.equal("refresh_token", f.grant_type)
    assert.equal("cached-rt", f.refresh_token)
    assert.equal("databricks-cli", f.client_id)
    assert.equal("at-1", tokencache.get(tokencache.path(home), HOST).access_token)
  end)

  it("databricks-cli refuses scopes that do not come from the profile, and needs a cache or a CLI", function()
    local _, err = configure("databricks-cli", { attrs = { host = HOST, scopes = { "sql" } }, home = home,
      env = { PATH = "" } })
    assert.matches("custom scopes are not supported", err.message)
    local empty = fake_context.new { attrs = { host = HOST }, home = files.tmpdir(), env = { PATH = "" } }
    assert.is_false(provider("databricks-cli").applies(empty))
  end)

  it("external-browser serves the cached login, never opening a browser while it is valid", function()
    local creds, _, ctx = configure("external-browser", { attrs = { host = HOST }, home = home })
    assert.same({ Authorization = "Bearer cached-at" }, creds.headers())
    assert.equal(0, #ctx.token_calls + #ctx.send_calls)
  end)
end)
