-- azure-devops-oidc end to end: the public API against the fake workspace and its Azure DevOps
-- stand-in (the pipeline's ID token, federated at the workspace token endpoint), and the
-- failure modes with the Go SDK's texts.
local curl = require "dbxauth.transport.curl"
local dbxauth = require "dbxauth"
local fake = require "spec.support.fake"
local leakcheck = require "spec.support.leakcheck"

local ws
local ADO_AUD = "api://AzureADTokenExchange"
local PROJECT, PLAN, JOB = "proj-6a1f", "plan-0b2c", "job-3d4e"

local function pipeline_env(extra)
  local env = {
    SYSTEM_ACCESSTOKEN = ws.creds.ado_access_token,
    SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = ws.ado_collection,
    SYSTEM_TEAMPROJECTID = PROJECT, SYSTEM_PLANID = PLAN, SYSTEM_JOBID = JOB, SYSTEM_HOSTTYPE = "build",
  }
  for k, v in pairs(extra or {}) do env[k] = v ~= false and v or nil end
  return env
end

local function config(opts, env, clock)
  opts.ca_file = ws.ca_file
  local cfg, err = dbxauth.config(opts, { env = env, home = "/nonexistent-home-for-specs", clock = clock })
  assert(cfg, err and tostring(err))
  return cfg
end

local function me(cfg)
  local res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
  assert(res, err and tostring(err))
  return res:json()
end

local OIDCTOKEN = "/__ado/fake-org/" .. PROJECT .. "/_apis/distributedtask/hubs/build/plans/" .. PLAN
  .. "/jobs/" .. JOB .. "/oidctoken"

setup(function()
  ws = fake.start()
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  ws:reset()
  dbxauth.clear_caches()
  -- the workspace's federation policy accepts Azure DevOps' audience
  ws:set { federation_audience = ADO_AUD }
end)

describe("azure-devops-oidc", function()
  it("asks Azure DevOps for the job's ID token and federates it (account-wide, no client_id)", function()
    local cfg = config({ host = ws.url }, pipeline_env())
    local who = me(cfg)
    assert.equal("azure-devops-oidc", cfg.auth_type)
    assert.equal("federated:p://fake-org/" .. PROJECT .. "/build", who.userName)
    local ado = ws:last(OIDCTOKEN)
    assert.equal("POST", ado.method)
    assert.equal("api-version=7.2-preview.1", ado.query)
    assert.equal("Bearer " .. ws.creds.ado_access_token, ado.headers.authorization)
    assert.equal("application/json", ado.headers.accept)
    local ex = ws:last("/oidc/v1/token")
    assert.matches("grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant%-type%%3Atoken%-exchange", ex.body)
    assert.matches("subject_token_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Atoken%-type%%3Ajwt", ex.body)
    assert.is_nil(ex.body:find("client_id", 1, true))
    assert.equal(1, ws:counters()["exchange workspace"])
  end)

  it("federates as the service principal with client_id, one slash after the collection", function()
    for _, collection in ipairs { ws.ado_collection, (ws.ado_collection:gsub("/$", "")) } do
      ws:reset(); ws:set { federation_audience = ADO_AUD }
      local cfg = config({ host = ws.url, client_id = ws.creds.client_id },
        pipeline_env { SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = collection })
      assert.equal(ws.creds.client_id, me(cfg).userName)
      assert.equal(1, ws:counters()["POST " .. OIDCTOKEN])
    end
  end)

  it("asks for a new ID token at each refresh and caches the Databricks token between", function()
    ws:set { token_lifetime = 600 }
    local now = os.time()
    local cfg = config({ host = ws.url }, pipeline_env(), function() return now end)
    assert(cfg:authenticate())
    assert(cfg:authenticate())
    assert.equal(1, ws:counters()["POST " .. OIDCTOKEN])
    now = now + 400
    assert(cfg:authenticate())
    assert.equal(2, ws:counters()["POST " .. OIDCTOKEN])
    assert.equal(2, ws:counters()["exchange workspace"])
  end)

  it("calls a Databricks App with the federated token as it is (a workspace OAuth token)", function()
    local cfg = config({ host = ws.url, transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve } },
      pipeline_env())
    local res = assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    assert.equal("federated:p://fake-org/" .. PROJECT .. "/build", res:json().user)
    assert.equal(1, ws:counters()["exchange"])
  end)

  it("retries Azure DevOps' 503 with the token retry policy", function()
    ws:fault { path = OIDCTOKEN, status = 503, count = 1 }
    local who = me(config({ host = ws.url }, pipeline_env()))
    assert.equal("federated:p://fake-org/" .. PROJECT .. "/build", who.userName)
    assert.equal(2, ws:counters()["POST " .. OIDCTOKEN])
  end)

  it("is refused by a workspace whose federation policy does not accept Azure DevOps' audience", function()
    ws:set { federation_audience = "something-else" }
    local cfg = config({ host = ws.url }, pipeline_env())
    local _, err = cfg:authenticate()
    assert.matches("^default auth: azure%-devops%-oidc: ", err.message)
    assert.matches("audience mismatch", err.message)
  end)

  it("reports Azure DevOps' refusal without the access token", function()
    local cfg = config({ host = ws.url }, pipeline_env { SYSTEM_ACCESSTOKEN = "wrong-ado-token-77" })
    leakcheck.secret("wrong-ado-token-77")
    local _, err = cfg:authenticate()
    assert.matches("^default auth: azure%-devops%-oidc: failed to request ID token from Azure DevOps: HTTP 401",
      err.message)
    assert.equal(401, err.status)
    assert.is_nil(tostring(err):find("wrong-ado-token-77", 1, true))
  end)

  it("masks the access token when Azure DevOps echoes it", function()
    ws:fault { path = OIDCTOKEN, kind = "body", status = 401,
               body = '{"message":"token ' .. ws.creds.ado_access_token .. ' is not valid here"}' }
    local _, err = config({ host = ws.url }, pipeline_env()):authenticate()
    assert.matches("HTTP 401: token *** is not valid here", err.message, 1, true)
    assert.is_nil(tostring(err):find(ws.creds.ado_access_token, 1, true))
  end)

  it("reports an empty ID token", function()
    ws:set { ado_empty_token = true }
    local _, err = config({ host = ws.url }, pipeline_env()):authenticate()
    assert.matches("^default auth: azure%-devops%-oidc: empty OIDC token received from Azure DevOps", err.message)
  end)

  it("refuses a collection URI that is not https", function()
    local cfg = config({ host = ws.url }, pipeline_env {
      SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = "http://dev.azure.example/org/" })
    local _, err = cfg:authenticate()
    assert.matches("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI must be an https:// URL", err.message, 1, true)
    assert.is_nil(ws:counters()["POST " .. OIDCTOKEN])
  end)

  it("gives Go's texts for a missing variable when auth_type names it", function()
    local _, err = config({ host = ws.url, auth_type = "azure-devops-oidc" },
      pipeline_env { SYSTEM_ACCESSTOKEN = false }):authenticate()
    assert.equal("default auth: azure-devops-oidc: SYSTEM_ACCESSTOKEN env var not found, if calling from Azure "
      .. "DevOps Pipeline, please set this env var following https://learn.microsoft.com/en-us/azure/devops/"
      .. "pipelines/build/variables?view=azure-devops&tabs=yaml#systemaccesstoken. Config: host=" .. ws.url
      .. ", account_id=" .. ws.creds.account_id .. ", workspace_id=" .. ws.creds.workspace_id, err.message)
    for _, name in ipairs { "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI", "SYSTEM_PLANID", "SYSTEM_JOBID",
                            "SYSTEM_TEAMPROJECTID", "SYSTEM_HOSTTYPE" } do
      _, err = config({ host = ws.url, auth_type = "azure-devops-oidc" }, pipeline_env { [name] = false })
        :authenticate()
      assert.matches("^default auth: azure%-devops%-oidc: not calling from Azure DevOps Pipeline: missing env var "
        .. name .. "%.", err.message)
    end
  end)

  it("is skipped in the chain when a variable is missing", function()
    local _, err = config({ host = ws.url }, pipeline_env { SYSTEM_JOBID = "" }):authenticate()
    assert.matches("^default auth: cannot configure default credentials", err.message)
  end)
end)

describe("azure-devops-oidc's request (provider context)", function()
  local fake_context = require "spec.support.fake_context"
  local provider = require "dbxauth.providers.azure_devops_oidc"
  -- The Go SDK's fixture (azuredevops_test.go): the collection without its trailing "/".
  local GO_ENV = {
    SYSTEM_ACCESSTOKEN = "test-access-token", SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = "https://dev.azure.com/myorg",
    SYSTEM_PLANID = "test-plan-id", SYSTEM_JOBID = "test-job-id", SYSTEM_TEAMPROJECTID = "test-team-project-id",
    SYSTEM_HOSTTYPE = "test-host-type",
  }
  local WANT = "https://dev.azure.com/myorg/test-team-project-id/_apis/distributedtask/hubs/test-host-type"
    .. "/plans/test-plan-id/jobs/test-job-id/oidctoken?api-version=7.2-preview.1"

  local function run(env, body)
    local ctx = fake_context.new { attrs = { host = "https://h.example.com" }, env = env,
      send = function()
        return { status = 200, headers = {}, body = body or '{"oidcToken":"azure-devops-id-token-42"}' }
      end }
    assert.is_true(provider.applies(ctx))
    local creds = assert(provider.configure(ctx))
    local h, err = creds.headers()
    return ctx, h, err
  end

  it("posts to Go's URL with the access token, with or without the collection's trailing slash", function()
    for _, collection in ipairs { "https://dev.azure.com/myorg", "https://dev.azure.com/myorg/",
                                  "https://dev.azure.com/myorg//" } do
      local env = {}
      for k, v in pairs(GO_ENV) do env[k] = v end
      env.SYSTEM_TEAMFOUNDATIONCOLLECTIONURI = collection
      local ctx, h = run(env)
      assert.same({ Authorization = "Bearer at-1" }, h)
      local req = ctx.send_calls[1]
      assert.equal("POST", req.method)
      assert.equal(WANT, req.url)
      assert.equal("Bearer test-access-token", req.headers.Authorization)
      assert.equal("application/json", req.headers.Accept)
      local form = fake_context.form(ctx.token_calls[1].req.body)
      assert.equal("azure-devops-id-token-42", form.subject_token)
    end
  end)

  it("escapes what a path segment cannot carry", function()
    local env = {}
    for k, v in pairs(GO_ENV) do env[k] = v end
    env.SYSTEM_TEAMPROJECTID, env.SYSTEM_JOBID = "a/b?c", "j#1"
    local ctx = run(env)
    assert.matches("/a%%2Fb%%3Fc/_apis/.*/jobs/j%%231/oidctoken%?api%-version=", ctx.send_calls[1].url)
  end)

  it("reports Go's text for an empty token", function()
    local _, h, err = run(GO_ENV, '{"oidcToken":""}')
    assert.is_nil(h)
    assert.equal("empty OIDC token received from Azure DevOps", err.message)
  end)
end)
