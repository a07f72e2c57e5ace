-- OIDC federation providers over a scripted transport: what is sent, and the errors.
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"
local fake_transport = require "spec.support.fake_transport"
local files = require "spec.support.files"

local HOST = "https://ws.example.com"

local function transport(metadata)
  return fake_transport.new {
    { pattern = "databricks%-config$", respond = function()
      return { status = 200, body = metadata or '{"oidc_endpoint":"' .. HOST .. '/oidc","workspace_id":"1",'
        .. '"token_federation_default_oidc_audiences":["' .. HOST .. '/oidc/v1/token"]}' } end },
    { pattern = "/oidc/v1/token$", respond = function()
      return { status = 200, body = '{"access_token":"dbx-token","token_type":"Bearer","expires_in":3600}' } end },
    { pattern = "^https://gh%.example%.com/idtoken", respond = function(req)
      if req.headers.Authorization ~= "Bearer actions-request-token" then return { status = 401 } end
      local aud = core.parse_query(req.url:match("%?(.*)$")).audience
      return { status = 200, body = '{"value":"gh-jwt-for-' .. aud .. '"}' }
    end },
  }
end

local function form(req)
  return core.parse_query(req.body)
end

local function last_token_request(t)
  for i = #t.calls, 1, -1 do
    if t.calls[i].url:find("/oidc/v1/token$") then return t.calls[i] end
  end
end

describe("env-oidc", function()
  it("exchanges the JWT from DATABRICKS_OIDC_TOKEN", function()
    local t = transport()
    local cfg = assert(dbxauth.config({ host = HOST, client_id = "sp-id", transport = t },
      { env = { DATABRICKS_OIDC_TOKEN = "idp.jwt.value\n" }, home = "/nonexistent" }))
    local h = assert(cfg:authenticate())
    assert.equal("Bearer dbx-token", h.Authorization)
    assert.equal("env-oidc", cfg.auth_type)
    local f = form(last_token_request(t))
    assert.same({ grant_type = "urn:ietf:params:oauth:grant-type:token-exchange", subject_token = "idp.jwt.value",
      subject_token_type = "urn:ietf:params:oauth:token-type:jwt", scope = "all-apis", client_id = "sp-id" }, f)
    assert.is_nil(last_token_request(t).headers.Authorization)
  end)

  it("reads the variable named by DATABRICKS_OIDC_TOKEN_ENV, without client_id", function()
    local t = transport()
    local cfg = assert(dbxauth.config({ host = HOST, transport = t },
      { env = { DATABRICKS_OIDC_TOKEN_ENV = "MY_JWT", MY_JWT = "other.jwt.x" }, home = "/nonexistent" }))
    assert(cfg:authenticate())
    local f = form(last_token_request(t))
    assert.equal("other.jwt.x", f.subject_token)
    assert.is_nil(f.client_id)
  end)

  it("reports the missing variable when forced", function()
    local cfg = assert(dbxauth.config({ host = HOST, auth_type = "env-oidc", transport = transport() },
      { env = {}, home = "/nonexistent" }))
    local _, err = cfg:authenticate()
    assert.matches("^env%-oidc auth: not configured", err.message)
  end)
end)

describe("file-oidc", function()
  it("exchanges the file's JWT, read again at every refresh", function()
    local dir = files.tmpdir()
    files.write(dir .. "/jwt", "first.jwt.token\n")
    local t = transport()
    local now = 1000000
    local cfg = assert(dbxauth.config({ host = HOST, transport = t },
      { env = { DATABRICKS_OIDC_TOKEN_FILEPATH = dir .. "/jwt" }, home = "/nonexistent",
        clock = function() return now end }))
    assert(cfg:authenticate())
    assert.equal("file-oidc", cfg.auth_type)
    assert.equal("first.jwt.token", form(last_token_request(t)).subject_token)
    files.write(dir .. "/jwt", "second.jwt.token")
    now = now + 3600
    assert(cfg:authenticate())
    assert.equal("second.jwt.token", form(last_token_request(t)).subject_token)
  end)

  it("says when the file is missing or empty", function()
    local dir = files.tmpdir()
    local cfg = assert(dbxauth.config({ host = HOST, oidc_token_filepath = dir .. "/nope", transport = transport() },
      { env = {}, home = "/nonexistent" }))
    local _, err = cfg:authenticate()
    assert.equal('default auth: file-oidc: file "' .. dir .. '/nope" does not exist. Config: host=' .. HOST
      .. ", workspace_id=1, databricks_id_token_filepath=" .. dir .. "/nope", err.message)
    files.write(dir .. "/empty", "  \n")
    cfg = assert(dbxauth.config({ host = HOST, oidc_token_filepath = dir .. "/empty", transport = transport() },
      { env = {}, home = "/nonexistent" }))
    _, err = cfg:authenticate()
    assert.matches('file "' .. dir:gsub("%p", "%%%0") .. '/empty" is empty', err.message)
  end)
end)

describe("github-oidc", function()
  local env = { ACTIONS_ID_TOKEN_REQUEST_URL = "https://gh.example.com/idtoken?api-version=2.0",
                ACTIONS_ID_TOKEN_REQUEST_TOKEN = "actions-request-token" }

  it("asks GitHub for a token with the host's default audience and exchanges it", function()
    local t = transport()
    local cfg = assert(dbxauth.config({ host = HOST, client_id = "sp-id", transport = t },
      { env = env, home = "/nonexistent" }))
    assert(cfg:authenticate())
    assert.equal("github-oidc", cfg.auth_type)
    assert.equal("gh-jwt-for-" .. HOST .. "/oidc/v1/token", form(last_token_request(t)).subject_token)
  end)

  it("uses the account id as audience on account hosts without metadata", function()
    local t = fake_transport.new {
      { pattern = "databricks%-config$", respond = function() return { status = 404 } end },
      { pattern = "/v1/token$", respond = function(req)
        assert.matches("/oidc/accounts/acc%-1/v1/token$", req.url)
        return { status = 200, body = '{"access_token":"t","expires_in":60}' } end },
      { pattern = "^https://gh", respond = function(req)
        return { status = 200, body = '{"value":"' .. req.url:match("audience=([^&]*)") .. '"}' } end },
    }
    local cfg = assert(dbxauth.config({ host = "https://accounts.cloud.databricks.com", account_id = "acc-1",
      transport = t }, { env = env, home = "/nonexistent" }))
    assert(cfg:authenticate())
    assert.equal("acc-1", form(last_token_request(t) or t.calls[#t.calls]).subject_token)
  end)

  it("reports a rejected request token without echoing it", function()
    local cfg = assert(dbxauth.config({ host = HOST, transport = transport() }, { env = {
      ACTIONS_ID_TOKEN_REQUEST_URL = env.ACTIONS_ID_TOKEN_REQUEST_URL,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN = "wrong-request-token" }, home = "/nonexistent" }))
    local _, err = cfg:authenticate()
    assert.matches("failed to request ID token from https://gh.example.com/idtoken: HTTP 401", err.message, 1, true)
    assert.not_matches("wrong%-request%-token", tostring(err))
  end)
end)
