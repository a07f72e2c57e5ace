-- azure-cli through the public API: a stub `az` on PATH (the Go SDK's testdata/az, ported:
-- behaviours chosen by a control file beside it), an Azure Databricks host on a scripted transport.
local dbxauth = require "dbxauth"
local fake_transport = require "spec.support.fake_transport"
local files = require "spec.support.files"
local leakcheck = require "spec.support.leakcheck"

local HOST = "https://adb-123.4.azuredatabricks.net"
local LOGIN_APP = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
local SM = "https://management.core.windows.net/"

-- Control keys: FAIL (yes | logout | corrupt), FAIL_IF (an argument), FAIL_IF_TENANT_ID_SET,
-- AZ_USER_NAME, AZ_USER_TYPE, EXPIRE (seconds), EPOCH (1: expires_on instead of expiresOn),
-- STDERR_TOKEN (1: echo the token az would print on stderr, then fail).
local STUB = [=[#!/bin/bash
dir="$(/usr/bin/dirname "$0")"
[ -f "$dir/control" ] && . "$dir/control"
echo "$*" >> "$dir/calls"
if [ "$1" == "account" ] && [ "$2" == "show" ]; then
  user="{\"name\": \"${AZ_USER_NAME:-someone@example.com}\", \"type\": \"${AZ_USER_TYPE:-user}\"}"
  echo "{\"id\": \"sub-1\", \"tenantId\": \"tenant-from-az\", \"user\": $user}"
  exit 0
fi
if [ "yes" == "$FAIL" ]; then >&2 echo "This is just a failing script."; exit 1; fi
if [ "logout" == "$FAIL" ]; then
  >&2 echo "No subscription found. Run 'az account set' to select a subscription."; exit 1
fi
if [ "corrupt" == "$FAIL" ]; then echo "{accessToken: ..corrupt"; exit 0; fi
for arg in "$@"; do
  if [[ -n "$FAIL_IF" && "$arg" == "$FAIL_IF" ]]; then >&2 echo "Failed for $arg"; exit 1; fi
  if [[ -n "$FAIL_IF_TENANT_ID_SET" && "$arg" == "--tenant" ]]; then
    >&2 echo "ERROR: Tenant shouldn't be specified for managed identity account"; exit 1
  fi
done
resource=""
prev=""
for arg in "$@"; do [ "$prev" == "--resource" ] && resource="$arg"; prev="$arg"; done
case "$resource" in
  https://management.core.windows.net/) token="az-sm-token-0001" ;;
  *) token="az-login-token-0001" ;;
esac
if [ -n "$STDERR_TOKEN" ]; then >&2 echo "ERROR: the secret $SECRET was refused"; exit 2; fi
secs="${EXPIRE:-3600}"
if [ -n "$EPOCH" ]; then
  echo "{\"accessToken\": \"$token\", \"expires_on\": $(( $(/bin/date +%s) + secs )), \"tokenType\": \"Bearer\"}"
else
  on="$(/bin/date --date=+${secs}seconds +'%F %T.123456')"
  echo "{\"accessToken\": \"$token\", \"expiresOn\": \"$on\", \"subscription\": \"sub-1\", \"tokenType\": \"Bearer\"}"
fi
]=]

leakcheck.secret("az-sm-token-0001")
leakcheck.secret("az-login-token-0001")

local dir

local function control(lines)
  files.write(dir .. "/control", table.concat(lines or {}, "\n") .. "\n")
end

local function calls()
  local out = {}
  for line in (files.read(dir .. "/calls") or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function transport()
  return fake_transport.new {
    { pattern = "databricks%-config$", respond = function() return { status = 404 } end },
    { pattern = "/aad/auth$", respond = function()
      local to = "https://login.microsoftonline.com/tenant-1/oauth2/authorize?x=1"
      return { status = 302, headers = { location = to } }
    end },
    { pattern = "/api/2%.0/fake/echo", respond = function(req)
      local h = {}
      for k, v in pairs(req.headers) do h[k] = v end
      return { status = 200, body = require("cjson").encode(h) }
    end },
  }
end

local function config(opts, env)
  local o = { host = HOST, transport = transport() }
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.host == false then o.host = nil end
  local e = { PATH = dir }
  for k, v in pairs(env or {}) do e[k] = v end
  return assert(dbxauth.config(o, { env = e, home = "/nonexistent-home-for-specs", clock = os.time })), o.transport
end

local function echo(cfg)
  local res, err = cfg:request { path = "/api/2.0/fake/echo" }
  assert(res, err and tostring(err))
  return res:json()
end

before_each(function()
  dir = files.tmpdir()
  files.write(dir .. "/az", STUB)
  assert(os.execute("chmod 0755 " .. files.q(dir .. "/az")))
  control()
  dbxauth.clear_caches()
end)

describe("azure-cli", function()
  it("uses az's login for Authorization and the management token beside it", function()
    local cfg, t = config()
    local h = echo(cfg)
    assert.equal("azure-cli", cfg.auth_type)
    assert.equal("Bearer az-login-token-0001", h.Authorization)
    assert.equal("az-sm-token-0001", h["X-Databricks-Azure-SP-Management-Token"])
    assert.is_nil(h["X-Databricks-Azure-Workspace-Resource-Id"])
    assert.equal(1, t:count("GET", "/aad/auth$"))
    local c = calls()
    assert.equal("account show --output json", c[1])
    assert.equal("account get-access-token --resource " .. LOGIN_APP .. " --output json --tenant tenant-1", c[2])
    assert.equal("account get-access-token --resource " .. SM .. " --output json --tenant tenant-1", c[4])
    -- the tokens are reused: no new az run for the next request
    echo(cfg)
    assert.equal(4, #calls())
  end)

  it("goes without the management token when az cannot get one (a user without access)", function()
    control { "FAIL_IF=" .. SM }
    local h = echo(config())
    assert.equal("Bearer az-login-token-0001", h.Authorization)
    assert.is_nil(h["X-Databricks-Azure-SP-Management-Token"])
  end)

  it("sends the workspace resource id, and does not ask the tenant when it is set", function()
    local id = "/subscriptions/123/resourceGroups/abc/providers/Microsoft.Databricks/workspaces/abc123"
    local cfg, t = config { azure_workspace_resource_id = id, azure_tenant_id = "123" }
    local h = echo(cfg)
    assert.equal(id, h["X-Databricks-Azure-Workspace-Resource-Id"])
    assert.equal(0, t:count("GET", "/aad/auth$"))
    -- a tenant is known, so no --subscription (Go)
    assert.equal("account get-access-token --resource " .. LOGIN_APP .. " --output json --tenant 123", calls()[2])
  end)

  it("takes no --tenant for a managed identity login", function()
    for _, name in ipairs { "systemAssignedIdentity", "userAssignedIdentity" } do
      control { "FAIL_IF_TENANT_ID_SET=1", "AZ_USER_NAME=" .. name, "AZ_USER_TYPE=servicePrincipal" }
      assert(config({ azure_tenant_id = "123" }):authenticate())
    end
  end)

  it("retries a service principal's token without --tenant (federated tokens)", function()
    control { "FAIL_IF_TENANT_ID_SET=1", "AZ_USER_NAME=sp-app-id", "AZ_USER_TYPE=servicePrincipal" }
    assert(config({ azure_tenant_id = "123" }):authenticate())
    local c = calls()
    assert.equal("account get-access-token --resource " .. LOGIN_APP .. " --output json", c[3])
  end)

  it("reads the epoch expires_on of newer az versions, and expiresOn as local time", function()
    control { "EPOCH=1", "EXPIRE=1800" }
    local now = os.time()
    local tok = assert(config():token())
    assert.is_true(math.abs(tok.expiry - (now + 1800 - 40)) <= 2)
    control { "EXPIRE=1800" }
    dbxauth.clear_caches()
    tok = assert(config():token())
    assert.is_true(math.abs(tok.expiry - (now + 1800 - 40)) <= 2)
  end)

  it("runs az again when the token is about to expire", function()
    control { "EXPIRE=10" }
    local cfg = config()
    assert(cfg:authenticate())
    local n = #calls()
    assert(cfg:authenticate())
    assert.is_true(#calls() > n)
  end)

  it("does not apply when az is missing or not logged in, unless auth_type names it", function()
    local _, err = config({}, { PATH = "/nonexistent" }):authenticate()
    assert.matches("cannot configure default credentials", err.message)
    _, err = config({ auth_type = "azure-cli" }, { PATH = "/nonexistent" }):authenticate()
    assert.matches("^azure%-cli", (err.message:gsub("^default auth: ", "")))
    assert.matches("install the Azure CLI", err.hint)
    control { "FAIL=logout" }
    _, err = config():authenticate()
    assert.matches("cannot configure default credentials", err.message)
  end)

  it("reports az's error with the fix", function()
    control { "FAIL=yes" }
    local _, err = config():authenticate()
    assert.matches("^default auth: azure%-cli: cannot get access token: This is just a failing script%. Config: host=",
      err.message)
    assert.matches("az login", err.hint)
  end)

  it("runs az in the configuration's environment when it was given one", function()
    local _, err = config({}, { FAIL = "yes" }):authenticate()
    assert.matches("This is just a failing script", err.message)
    assert(config({}, { FAIL = "" }):authenticate())
  end)

  it("reports output it cannot read", function()
    control { "FAIL=corrupt" }
    local _, err = config():authenticate()
    assert.matches("^default auth: azure%-cli: cannot unmarshal CLI result:", err.message)
  end)

  it("reports an expiresOn it cannot read", function()
    control { "EXPIRE=corrupt" }
    local _, err = config():authenticate()
    assert.matches("^default auth: azure%-cli: cannot parse expiry:", err.message)
  end)

  it("sends a resource id it cannot take a subscription from (the Go SDK's fallback case)", function()
    local h = echo(config { azure_workspace_resource_id = "invalidResourceId" })
    assert.equal("invalidResourceId", h["X-Databricks-Azure-Workspace-Resource-Id"])
    assert.equal("az-sm-token-0001", h["X-Databricks-Azure-SP-Management-Token"])
  end)

  it("tries --subscription first when no tenant is known, then without it", function()
    control { "FAIL_IF=--subscription" }
    local id = "/subscriptions/sub-9/resourceGroups/abc/providers/Microsoft.Databricks/workspaces/w"
    local t = fake_transport.new {
      { pattern = "management%.azure%.com", respond = function()
        return { status = 200, body = '{"properties":{"workspaceUrl":"adb-5.6.azuredatabricks.net"}}' }
      end },
      { pattern = "databricks%-config$", respond = function() return { status = 404 } end },
      { pattern = "/aad/auth$", respond = function() return { status = 404 } end },
    }
    local cfg = config { host = false, azure_workspace_resource_id = id, transport = t }
    assert(cfg:authenticate())
    assert.equal("https://adb-5.6.azuredatabricks.net", cfg.host)
    local c = calls()
    assert.equal("account get-access-token --resource " .. LOGIN_APP .. " --output json --subscription sub-9", c[2])
    assert.equal("account get-access-token --resource " .. LOGIN_APP .. " --output json", c[3])
  end)

  it("masks secrets az echoes on stderr", function()
    local secret = leakcheck.secret("client-secret-in-stderr-9")
    control { "STDERR_TOKEN=1", "SECRET=" .. secret }
    local _, err = config({ azure_client_secret = secret, auth_type = "azure-cli" }):authenticate()
    assert.is_nil(tostring(err):find(secret, 1, true))
    assert.matches("%*%*%*", err.message)
  end)

  it("does not apply off Azure", function()
    local _, err = config({ host = "https://xyz.cloud.databricks.com" }):authenticate()
    assert.matches("cannot configure default credentials", err.message)
    assert.same({}, calls())
  end)
end)

describe("azure-cli expiresOn", function()
  local cli = require "dbxauth.providers.azure_cli"
  it("is local time with up to six fractional digits", function()
    local t = os.time { year = 2026, month = 12, day = 2, hour = 10, min = 11, sec = 12 }
    assert.equal(t, cli._local_time("2026-12-02 10:11:12"))
    assert.equal(t, cli._local_time("2026-12-02 10:11:12.123456"))
    assert.is_nil(cli._local_time(""))
    assert.is_nil(cli._local_time("2026-12-02"))
    assert.is_nil(cli._local_time("2026-12-02 10:11:12.1234567"))
  end)

  it("must be there when expires_on is not", function()
    local _, err = cli._parse('{"accessToken":"abcdefgh","tokenType":"Bearer"}')
    assert.matches("^cannot parse expiry", err.message)
  end)
end)
