-- dbxauth.azure (environments, authority, tenant discovery, Entra responses and errors) and the
-- Azure providers' place in the chain: applicability and cloud gating as data (the Go SDK's
-- azure_test.go and auth_azure_*_test.go cases), environments over a scripted transport.
local dbxauth = require "dbxauth"
local azure = require "dbxauth.azure"
local chain = require "dbxauth.chain"
local core = require "dbxauth.core"
local fake_context = require "spec.support.fake_context"
local fake_transport = require "spec.support.fake_transport"

local LOGIN = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"

describe("azure.environment", function()
  local cases = {
    { host = "https://adb-1.2.azuredatabricks.net", name = "PUBLIC", app = LOGIN,
      authority = "https://login.microsoftonline.com/", sm = "https://management.core.windows.net/" },
    { host = "https://adb-1.2.dev.azuredatabricks.net", name = "PUBLIC", app = "62a912ac-b58e-4c1d-89ea-b2dbfc7358fc" },
    { host = "https://adb-1.2.staging.azuredatabricks.net", name = "PUBLIC",
      app = "4a67d088-db5c-48f1-9ff2-0aace800ae68" },
    { host = "https://adb-1.2.databricks.azure.us", name = "USGOVERNMENT", app = LOGIN,
      authority = "https://login.microsoftonline.us/", sm = "https://management.core.usgovcloudapi.net/" },
    { host = "https://adb-1.2.databricks.azure.cn", name = "CHINA", app = LOGIN,
      authority = "https://login.chinacloudapi.cn/", sm = "https://management.core.chinacloudapi.cn/" },
    -- no Azure zone: azure_environment decides (the no-host + resource id case), PUBLIC by default
    { attrs = { azure_workspace_resource_id = "/a/b/c" }, name = "PUBLIC", app = LOGIN },
    { attrs = { azure_workspace_resource_id = "/a/b/c", azure_environment = "usgovernment" }, name = "USGOVERNMENT" },
    { host = "https://localhost:8443", attrs = { cloud = "Azure", azure_environment = "CHINA" }, name = "CHINA" },
  }
  for _, c in ipairs(cases) do
    it((c.host or "no host") .. " " .. (c.attrs and c.attrs.azure_environment or "") .. " -> " .. c.name, function()
      local attrs = { host = c.host }
      for k, v in pairs(c.attrs or {}) do attrs[k] = v end
      local env = assert(azure.environment(fake_context.new { attrs = attrs }))
      assert.equal(c.name, env.name)
      if c.app then assert.equal(c.app, env.login_app_id) end
      if c.authority then assert.equal(c.authority, env.authority) end
      if c.sm then assert.equal(c.sm, env.sm) end
    end)
  end

  it("refuses an unknown azure_environment", function()
    local _, err = azure.environment(fake_context.new { attrs = { azure_environment = "MARS" } })
    assert.equal("config", err.code)
    assert.matches("unknown Azure environment: MARS", err.message)
  end)

  it("takes AZURE_AUTHORITY_HOST, normalised to one trailing slash", function()
    for _, v in ipairs { "https://login.example.com", "https://login.example.com/", "https://login.example.com//" } do
      local env = assert(azure.environment(fake_context.new { attrs = { host = "https://adb-1.2.azuredatabricks.net" },
        env = { AZURE_AUTHORITY_HOST = v } }))
      assert.equal("https://login.example.com/", env.authority)
    end
    for _, bad in ipairs { "http://login.example.com/", "ftp://x/", "https://a@b/", "https://x/?q=1", "not a url" } do
      local _, err = azure.environment(fake_context.new { env = { AZURE_AUTHORITY_HOST = bad } })
      assert.equal("config", err and err.code, bad)
    end
  end)
end)

describe("azure.tenant", function()
  local function ctx(res, err, attrs)
    attrs = attrs or { host = "https://adb-xyz.c.azuredatabricks.net" }
    return fake_context.new { attrs = attrs, send = function() return res, err end }
  end

  it("is the first path segment of /aad/auth's Location (the redirect is not followed)", function()
    local c = ctx { status = 302, headers = { location = "https://login.microsoftonline.com/123-abc/oauth2/token" } }
    assert.equal("123-abc", azure.tenant(c))
    assert.equal("https://adb-xyz.c.azuredatabricks.net/aad/auth", c.send_calls[1].url)
    assert.equal("GET", c.send_calls[1].method)
  end)

  it("is not asked for when azure_tenant_id is set", function()
    local c = ctx(nil, nil, { host = "https://adb-xyz.c.azuredatabricks.net", azure_tenant_id = "123" })
    assert.equal("123", azure.tenant(c))
    assert.equal(0, #c.send_calls)
  end)

  it("returns transport errors and missing redirects as errors", function()
    local _, err = azure.tenant(ctx(nil, require("dbxauth.errors").new("network", "Failed to fetch login page")))
    assert.equal("load tenant id: Failed to fetch login page", err.message)
    _, err = azure.tenant(ctx { status = 200, headers = {} })
    assert.matches("^load tenant id: .* did not redirect to an Entra ID login page %(HTTP 200%)", err.message)
    assert.matches("azure_tenant_id", err.hint)
  end)

  it("reads only a plain tenant segment", function()
    assert.equal("t-1", azure.tenant_from_location("/t-1/oauth2/authorize"))
    assert.is_nil(azure.tenant_from_location(""))
    assert.is_nil(azure.tenant_from_location("https://login.microsoftonline.com/"))
    assert.is_nil(azure.tenant_from_location("https://login.microsoftonline.com/a%0Db/x"))
  end)
end)

describe("azure.parse", function()
  local NOW = 1000000
  local function parse(body, status)
    return azure.parse({ status = status or 200, headers = { ["content-type"] = "application/json" },
                         body = body }, NOW)
  end

  it("prefers expires_in, then expires_on (number or string), and moves the expiry 40 s earlier", function()
    local both = '{"access_token":"aaaaaa","expires_in":"3599","expires_on":"5"}'
    assert.equal(NOW + 3599 - 40, assert(parse(both)).expiry)
    assert.equal(2000000 - 40, assert(parse('{"access_token":"aaaaaa","expires_on":"2000000"}')).expiry)
    assert.equal(2000000 - 40, assert(parse('{"access_token":"aaaaaa","expires_on":2000000}')).expiry)
    local tok = assert(parse('{"access_token":"aaaaaa","token_type":"access-token","expires_on":"0"}'))
    assert.equal("access-token", tok.token_type)
  end)

  it("refuses an expires_on it cannot read (the Go SDK's invalid token expiry)", function()
    for _, v in ipairs { '"12345678912345678901234567890123456789"', '"soon"', "-5", "1.5" } do
      local _, err = parse('{"access_token":"aaaaaa","expires_on":' .. v .. '}')
      assert.matches("invalid token expiry", err.message, 1, false, v)
    end
    local _, err = parse('{"token_type":"Bearer"}')
    assert.matches("no access_token", err.message)
  end)

  it("says Entra's error in its words: the description up to the Trace ID, then the error URI", function()
    local body = '{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.'
      .. '\\r\\nTrace ID: 1\\r\\nCorrelation ID: 2","error_codes":[7000215],'
      .. '"error_uri":"https://login.microsoftonline.com/error?code=7000215"}'
    local _, err = parse(body, 401)
    assert.equal("Entra ID token request failed: AADSTS7000215: Invalid client secret provided. See "
      .. "https://login.microsoftonline.com/error?code=7000215", err.message)
    assert.equal("unauthenticated", err.code)
    assert.equal("invalid_client", err.oauth_error)
    _, err = parse('{"error":"x","error_description":"AADSTS1: Broken. Trace ID: 9 Correlation ID: 8"}', 400)
    assert.equal("Entra ID token request failed: AADSTS1: Broken", err.message)
    _, err = azure.parse({ status = 404, headers = {}, body = "404 page not found" }, NOW, "MSI token request")
    assert.equal("not_found", err.code)
  end)
end)

-- Which provider the chain picks (or the auth_type error), from attributes alone.
describe("Azure providers in the chain", function()
  local ADB = "https://adb-123.4.azuredatabricks.net"
  local function transport()
    return fake_transport.new {
      { pattern = "databricks%-config$", respond = function() return { status = 404 } end },
      { pattern = "/aad/auth$", respond = function()
        local to = "https://login.microsoftonline.com/disc-tenant/oauth2/authorize"
        return { status = 302, headers = { location = to } }
      end },
      { pattern = "/oauth2/token$", respond = function(req)
        local f = core.parse_query(req.body)
        return { status = 200, body = '{"access_token":"entra-' .. (f.resource == LOGIN and "db" or "sm")
          .. '-token","token_type":"Bearer","expires_in":"3599"}' }
      end },
      { pattern = "169%.254%.169%.254", respond = function()
        return { status = 200, body = '{"access_token":"msi-token-xyz","expires_on":"1999999999"}' }
      end },
    }
  end
  local SP = { azure_client_id = "c", azure_client_secret = "s", azure_tenant_id = "t" }
  local function with(a, b)
    local o = {}
    for k, v in pairs(a) do o[k] = v end
    for k, v in pairs(b or {}) do o[k] = v end
    return o
  end
  local cases = {
    { "client secret on an Azure host", with(SP, { host = ADB }), "azure-client-secret" },
    { "client secret, tenant from /aad/auth", { host = ADB, azure_client_id = "c", azure_client_secret = "s" },
      "azure-client-secret" },
    { "client secret on AWS: skipped", with(SP, { host = "https://x.cloud.databricks.com" }), nil },
    { "client secret on GCP: skipped", with(SP, { host = "https://1.2.gcp.databricks.com" }), nil },
    { "client secret, cloud = azure on a custom host", with(SP, { host = "https://ws.example.com", cloud = "azure" }),
      "azure-client-secret" },
    { "client secret, a resource id makes it Azure", with(SP, { host = "https://ws.example.com",
      azure_workspace_resource_id = "/s/r/w" }), "azure-client-secret" },
    { "client secret forced on AWS", with(SP, { host = "https://x.cloud.databricks.com",
      auth_type = "azure-client-secret" }), "azure-client-secret" },
    { "msi", { host = ADB, azure_use_msi = true }, "azure-msi" },
    { "msi before client secret (Go order)", with(SP, { host = ADB, azure_use_msi = true }), "azure-msi" },
    { "msi needs azure_use_msi", { host = ADB, azure_client_id = "c" }, nil },
    { "pat on an Azure host", { host = ADB, token = "dapi-xyz-123" }, "pat" },
    { "github-oidc-azure forced", with(SP, { host = ADB, auth_type = "github-oidc-azure" }), false },
    { "azure-cli forced without az", { host = ADB, auth_type = "azure-cli" }, false },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local o = with(c[2], { transport = transport() })
      local cfg = assert(dbxauth.config(o, { env = { PATH = "/nonexistent" }, home = "/nonexistent-home" }))
      local h, err = cfg:authenticate()
      if c[3] then
        assert(h, err and tostring(err))
        assert.equal(c[3], cfg.auth_type)
      elseif c[3] == false then
        assert.is_nil(h)
        local name = o.auth_type:gsub("%-", "%%-")
        assert.matches("^" .. name .. "[: ]", (err.message:gsub("^default auth: ", "")))
      else
        assert.is_nil(h)
        assert.matches("cannot configure default credentials", err.message)
      end
    end)
  end

  it("are no longer 'not supported'", function()
    for _, name in ipairs { "azure-client-secret", "azure-msi", "azure-cli", "github-oidc-azure" } do
      assert.is_nil(chain.FOREIGN[name])
      assert.is_table(chain.BY_NAME[name])
    end
  end)

  it("send US Government tokens to its authority and management endpoint", function()
    local t = transport()
    local cfg = assert(dbxauth.config(with(SP, { host = "https://adb-1.2.databricks.azure.us", transport = t }),
      { env = {}, home = "/nonexistent-home" }))
    assert(cfg:authenticate())
    local urls, resources = {}, {}
    for _, call in ipairs(t.calls) do
      if call.method == "POST" then
        urls[#urls + 1] = call.url
        resources[#resources + 1] = core.parse_query(call.body).resource
      end
    end
    local us = "https://login.microsoftonline.us/t/oauth2/token"
    assert.same({ us, us }, urls)
    assert.same({ LOGIN, "https://management.core.usgovcloudapi.net/" }, resources)
  end)
end)

-- The Go SDK's auth_azure_msi_test.go: no host, the workspace found from its resource id.
describe("the host from azure_workspace_resource_id", function()
  local IMDS = "^http://169%.254%.169%.254/metadata/identity/oauth2/token%?api%-version=2018%-02%-01"
  local function transport(routes)
    local list = {
      { pattern = "databricks%-config$", respond = function() return { status = 404 } end },
      { pattern = "/api/2%.0/fake/echo$", respond = function(req)
        return { status = 200, body = require("cjson").encode(req.headers) }
      end },
    }
    for _, r in ipairs(routes) do table.insert(list, 1, r) end
    return fake_transport.new(list)
  end
  local function token(value)
    return function(req)
      if req.headers.Metadata ~= "true" then return { status = 400, body = "no Metadata header" } end
      return { status = 200, body = '{"token_type":"Bearer","access_token":"' .. value .. '","expires_on":'
        .. (os.time() + 300) .. '}' }
    end
  end
  local function msi(t, extra)
    local o = { azure_use_msi = true, azure_workspace_resource_id = "/a/b/c", auth_type = "azure-msi", transport = t }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(dbxauth.config(o, { env = {}, home = "/nonexistent-home", clock = os.time }))
  end

  it("asks ARM for the workspace URL with an ARM token, then sends the three headers there", function()
    local t = transport {
      { url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
        .. "https%3A%2F%2Fmanagement.azure.com%2F", respond = token("bcd-arm-token") },
      { url = "https://management.azure.com/a/b/c?api-version=2018-04-01", respond = function(req)
        assert.equal("Bearer bcd-arm-token", req.headers.Authorization)
        return { status = 200, body = '{"properties": {"workspaceUrl": "adb-9.9.azuredatabricks.net"}}' }
      end },
      { url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" .. LOGIN,
        respond = token("cde-login-token") },
      { url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
        .. "https%3A%2F%2Fmanagement.core.windows.net%2F", respond = token("def-sm-token") },
    }
    local cfg = msi(t)
    local res = assert(cfg:request { path = "/api/2.0/fake/echo" })
    local h = res:json()
    assert.equal("Bearer cde-login-token", h.Authorization)
    assert.equal("def-sm-token", h["X-Databricks-Azure-SP-Management-Token"])
    assert.equal("/a/b/c", h["X-Databricks-Azure-Workspace-Resource-Id"])
    assert.equal("https://adb-9.9.azuredatabricks.net", cfg.host)
    assert.equal("https://adb-9.9.azuredatabricks.net/api/2.0/fake/echo", t.calls[#t.calls].url)
  end)

  it("reports ARM's refusal as not found, in ARM's words", function()
    local t = transport {
      { pattern = IMDS, respond = token("bcd-arm-token") },
      { pattern = "^https://management%.azure%.com/", respond = function()
        return { status = 404, body = '{"error":{"code":"ResourceNotFound","message":"nope."}}' }
      end },
    }
    local _, err = msi(t):authenticate()
    assert.equal("not_found", err.code)
    assert.matches("^default auth: azure%-msi: resolve host: resolve workspace: nope%. Config:", err.message)
  end)

  it("reports a missing identity (IMDS 404) as not found", function()
    local t = transport { { pattern = IMDS, respond = function() return { status = 404, body = "..." } end } }
    local _, err = msi(t, { azure_client_id = "abc" }):authenticate()
    assert.equal("not_found", err.code)
    assert.matches("client_id=abc", t.calls[#t.calls].url)
  end)
end)

describe("Azure credential headers in messages", function()
  it("are masked like the Authorization credential", function()
    local redact = require "dbxauth.redact"
    local list = redact.of_request { headers = { Authorization = "Bearer entra-primary-123",
      ["X-Databricks-Azure-SP-Management-Token"] = "entra-management-456", ["X-IDENTITY-HEADER"] = "identity-789",
      ["X-Databricks-Azure-Workspace-Resource-Id"] = "/subscriptions/s" } }
    table.sort(list)
    assert.same({ "entra-management-456", "entra-primary-123", "identity-789" }, list)
    assert.equal("got *** and ***", redact.text("got entra-management-456 and identity-789", list))
  end)
end)
