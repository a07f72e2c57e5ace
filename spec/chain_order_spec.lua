-- The credential chain's order and auth_type rules as data (spec/fixtures/chain_cases.lua),
-- through the public API: dbxauth.config, then cfg:authenticate(), over a scripted transport
-- that plays every service the chain's providers talk to (host metadata, OIDC discovery and
-- token endpoint, a metadata service on localhost:1234, Azure DevOps, GitHub Actions) and
-- answers 404 to anything else.
--
-- spec/fixtures/chain_cases_cloud.lua holds the Azure and Google cases in the same format.
local dbxauth = require "dbxauth"
local cjson = require "cjson"
local core = require "dbxauth.core"
local fake_transport = require "spec.support.fake_transport"

local SOURCES = { "spec.fixtures.chain_cases", "spec.fixtures.chain_cases_cloud" }
local UNSET = "<unset>"

local function json(status, doc)
  return { status = status, body = cjson.encode(doc), headers = { ["content-type"] = "application/json" } }
end

local function transport(case)
  local t
  t = fake_transport.new {
    { pattern = "/%.well%-known/databricks%-config$", respond = function()
      if case.metadata then return json(200, case.metadata) end
      return { status = 404, body = "" }
    end },
    { pattern = "/oidc/%.well%-known/oauth%-authorization%-server$", respond = function(req)
      local root = req.url:match("^(.-)/%.well%-known")
      return json(200, { authorization_endpoint = root .. "/v1/authorize", token_endpoint = root .. "/v1/token" })
    end },
    { method = "POST", pattern = "/v1/token$", respond = function()
      return json(200, { access_token = "chain-oauth-token", token_type = "Bearer", expires_in = 3600 })
    end },
    { method = "GET", pattern = "^http://localhost:1234/metadata/token$", respond = function(req)
      local h = req.headers
      if h["X-Databricks-Metadata-Version"] ~= "1" or not h["X-Databricks-Host"] then return json(400, {}) end
      return json(200, { access_token = "chain-ms-token", token_type = "Bearer", expires_on = t:now() + 3600 })
    end },
    { method = "POST", pattern = "/_apis/distributedtask/hubs/[^/]+/plans/[^/]+/jobs/[^/]+/oidctoken%?",
      respond = function(req)
        if not req.headers.Authorization then return json(401, {}) end
        return json(200, { oidcToken = "ado.jwt.value" })
      end },
    -- Entra ID (v1), for github-oidc-azure: a client assertion buys a token
    { method = "POST", pattern = "^https://login%.microsoftonline%.com/[^/]+/oauth2/token$", respond = function(req)
      if not req.body:find("client_assertion=", 1, true) then return json(400, { error = "invalid_request" }) end
      return json(200, { access_token = "chain-entra-token", token_type = "Bearer", expires_in = "3600" })
    end },
    { method = "GET", pattern = "^https://gh%.example%.com/idtoken%?", respond = function(req)
      local aud = core.parse_query(req.url:match("%?(.*)$")).audience
      return json(200, { value = "gh.jwt.for." .. tostring(aud) })
    end },
  }
  -- case.fail: those URLs answer 500 instead
  local send = t.send
  t.send = function(self, req)
    if case.fail and req.url:find(case.fail) then
      self.calls[#self.calls + 1] = req
      return { status = 500, headers = {}, body = "" }
    end
    return send(self, req)
  end
  return t
end

local function asked_audience(t)
  for i = #t.calls, 1, -1 do
    local u = t.calls[i].url
    if u:find("^https://gh%.example%.com/idtoken%?") then
      return core.parse_query(u:match("%?(.*)$")).audience
    end
  end
end

local function run(case)
  local t = transport(case)
  local opts = { transport = t }
  for k, v in pairs(case.opts or {}) do opts[k] = v end
  local cfg, err = dbxauth.config(opts, { env = case.env or {}, home = "/nonexistent-home-for-specs" })
  local headers
  if cfg then headers, err = cfg:authenticate() end
  return cfg, headers, err, t
end

local function check(case)
  local want = case.want
  local cfg, headers, err, t = run(case)
  if want.error then
    assert.is_nil(headers)
    assert.is_not_nil(err, "expected an error")
    assert.equal(want.error, err.message)
  elseif want.chosen then
    if headers then
      assert.equal(want.chosen, cfg.auth_type)
    else
      local prefix = "default auth: " .. want.chosen .. ": "
      assert.equal(prefix, err.message:sub(1, #prefix), err.message)
    end
  else
    assert.is_not_nil(headers, err and err.message)
    assert.equal(want.auth_type, cfg.auth_type)
  end
  for k, v in pairs(want.values or {}) do
    if v == UNSET then assert.is_nil(cfg:get(k), k) else assert.same(v, cfg:get(k), k) end
  end
  if want.audience then assert.equal(want.audience, asked_audience(t)) end
end

for _, source in ipairs(SOURCES) do
  describe("the chain as data (" .. source .. ")", function()
    local cases = require(source)
    local names = {}
    for _, case in ipairs(cases) do
      it(case.name, function()
        assert.is_nil(names[case.name], "duplicate case name")
        names[case.name] = true
        check(case)
      end)
    end
  end)
end

describe("the chain's cases", function()
  it("assume the Go order for the chain's first nine rows", function()
    local order, first = require("dbxauth.chain").names(), {}
    for i = 1, 9 do first[i] = order[i] end
    assert.same({ "pat", "basic", "oauth-m2m", "databricks-cli", "metadata-service", "github-oidc",
                  "azure-devops-oidc", "env-oidc", "file-oidc" }, first)
    assert.is_true(#require("spec.fixtures.chain_cases") >= 40)
  end)
end)
