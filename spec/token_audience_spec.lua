-- token_audience (DATABRICKS_TOKEN_AUDIENCE, cloud-auth §9): the audience OIDC federation asks
-- an identity provider for. Unset, host metadata fills it (the first of
-- token_federation_default_oidc_audiences, else the account id when the host has no workspace
-- id); then Go's determineAudience: token_audience, the account id on hosts that are not
-- workspaces, the token endpoint. End to end through github-oidc against the fake workspace,
-- whose token endpoint accepts only the audiences its federation policy names.
local dbxauth = require "dbxauth"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"
local fake_context = require "spec.support.fake_context"
local oidc = require "dbxauth.providers.oidc"

local ws

local function config(opts, env)
  opts.transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  local e = { ACTIONS_ID_TOKEN_REQUEST_URL = ws.creds.actions_request_url,
              ACTIONS_ID_TOKEN_REQUEST_TOKEN = ws.creds.actions_request_token }
  for k, v in pairs(env or {}) do e[k] = v end
  local cfg, err = dbxauth.config(opts, { env = e, home = "/nonexistent-home-for-specs" })
  assert(cfg, err and tostring(err))
  return cfg
end

-- Where an attribute came from (cfg:describe()).
local function source_of(cfg, name)
  for _, a in ipairs(cfg:describe().attributes) do
    if a.name == name then return a.source end
  end
end

-- The audience the last GitHub ID-token request asked for.
local function asked()
  local last = ws:last("/__idp/github/token")
  return last and require("dbxauth.core").parse_query(last.query).audience
end

setup(function()
  ws = fake.start()
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  ws:reset()
  dbxauth.clear_caches()
end)

describe("token_audience", function()
  it("comes from host metadata's token_federation_default_oidc_audiences", function()
    ws:set { default_audiences = { "aud-from-metadata", "second" }, federation_audience = "aud-from-metadata" }
    local cfg = config { host = ws.url }
    assert(cfg:authenticate())
    assert.equal("github-oidc", cfg.auth_type)
    assert.equal("aud-from-metadata", asked())
    assert.equal("aud-from-metadata", cfg:get("token_audience"))
    assert.equal("metadata", source_of(cfg, "token_audience"))
  end)

  it("is what the identity provider is asked for: a policy without it refuses the token", function()
    ws:set { default_audiences = { "aud-from-metadata" } }
    local _, err = config({ host = ws.url }):authenticate()
    assert.matches("^default auth: github%-oidc: .*audience mismatch", err.message)
  end)

  it("set by the user wins over host metadata", function()
    ws:set { default_audiences = { "aud-from-metadata" }, federation_audience = "my-audience" }
    local cfg = config({ host = ws.url }, { DATABRICKS_TOKEN_AUDIENCE = "my-audience" })
    assert(cfg:authenticate())
    assert.equal("my-audience", asked())
    assert.equal("env", source_of(cfg, "token_audience"))
  end)

  it("falls back to the token endpoint on a workspace without a metadata default", function()
    ws:set { default_audiences = {} }
    local cfg = config { host = ws.url }
    assert(cfg:authenticate())
    assert.equal(ws.url .. "/oidc/v1/token", asked())
    assert.is_nil(cfg:get("token_audience"))
  end)

  it("is the account id on an account host whose metadata names no default", function()
    ws:set { default_audiences = {} }
    local cfg = config { host = ws.account_url, account_id = ws.creds.account_id }
    assert(cfg:authenticate())
    assert.equal(ws.creds.account_id, asked())
    assert.equal(ws.creds.account_id, cfg:get("token_audience"))
    assert.equal(1, ws:counters()["exchange account"])
  end)
end)

describe("determineAudience (providers/oidc.lua)", function()
  local ep = { token_endpoint = "https://h.example.com/oidc/v1/token" }
  local cases = {
    { "token_audience first", { token_audience = "a", account_id = "acc" }, "account", "a" },
    { "account id on account hosts", { account_id = "acc" }, "account", "acc" },
    { "account id on unified hosts", { account_id = "acc" }, "unified", "acc" },
    { "token endpoint on workspaces, account id or not", { account_id = "acc" }, "workspace", ep.token_endpoint },
    { "token endpoint without an account id", {}, "account", ep.token_endpoint },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local attrs = { host = "https://h.example.com" }
      for k, v in pairs(c[2]) do attrs[k] = v end
      assert.equal(c[4], oidc.audience(fake_context.new { attrs = attrs, host_type = c[3] }, ep))
    end)
  end

  it("is handed to every ID-token source", function()
    local seen = {}
    local ctx = fake_context.new { attrs = { host = "https://h.example.com", token_audience = "aud-x" } }
    local creds = oidc.credentials(ctx, function(aud, e)
      seen[#seen + 1] = { aud, e.token_endpoint }
      return "jwt.value.x"
    end)
    assert(creds.headers())
    assert.same({ { "aud-x", fake_context.ENDPOINTS.token_endpoint } }, seen)
  end)
end)
