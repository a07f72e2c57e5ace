-- azure-cli (notes cloud-auth §3, G auth_azure_cli.go): tokens from the Azure CLI's login
-- (`az login`), one process per token:
--   az account show --output json            who is logged in (a managed identity takes no --tenant)
--   az account get-access-token --resource <R> --output json [--tenant <T>] [--subscription <S>]
-- R is the Azure Databricks login app (Authorization) and, when the login may use it, the
-- service-management endpoint (X-Databricks-Azure-SP-Management-Token; a user without access to
-- it simply goes without the header, as in Go). The tenant is azure_tenant_id or the workspace's
-- (from /aad/auth). Each az run is bounded (GNU timeout, 60 s); its stderr is shown redacted.
--
-- In the default chain, "No subscription found" and a missing `az` mean "does not apply"; any
-- other failure is the answer. Forced (auth_type = "azure-cli"), a missing az says how to get it.
local cjson = require "cjson.safe"
local core = require "dbxauth.core"
local azure = require "dbxauth.azure"
local errors = require "dbxauth.errors"
local oauth = require "dbxauth.oauth"
local trim = require("dbxauth.text").trim
local subprocess = require "dbxauth.subprocess"

local q, is_executable = subprocess.q, subprocess.is_executable
local run, bounded = subprocess.run, subprocess.bounded

local NAME = "azure-cli"
local TIMEOUT = 60
local LOGIN_HINT = "run `az login` (for a service principal: `az login --service-principal ...`) and try again"
local INSTALL_HINT = "install the Azure CLI (https://learn.microsoft.com/cli/azure/install-azure-cli) and run "
  .. "`az login`"

local function fail(code, message, fields)
  return nil, errors.new(code, message, fields)
end

local function search_path(name, path_var)
  for dir in ((path_var or "") .. ":"):gmatch("([^:]*):") do
    if dir ~= "" and is_executable(dir .. "/" .. name) then return dir .. "/" .. name end
  end
end

-- The environment az runs in: the configuration's, when it was given one in place of the
-- process's (exactly that, as `env -i`), else the process's; and its home (~/.azure).
local function env_prefix(ctx)
  local parts = {}
  local environ = ctx.environ and ctx.environ()
  if type(environ) == "table" then
    parts[1] = "env -i"
    local names = {}
    for k, v in pairs(environ) do
      if type(k) == "string" and k:find("^[%a_][%w_]*$") and type(v) == "string" and k ~= "HOME" then
        names[#names + 1] = k
      end
    end
    table.sort(names)
    for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. q(environ[k]) end
  end
  if type(ctx.home) == "string" and ctx.home ~= "" then parts[#parts + 1] = "HOME=" .. q(ctx.home) end
  return #parts > 0 and (table.concat(parts, " ") .. " ") or ""
end

-- stdout | nil, err. err.stderr is az's own text (redacted), for the skip rules.
local function az(ctx, path, args)
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local shown = "az " .. table.concat(args, " ")
  local t0 = core.now()
  local out, err, rc = run(env_prefix(ctx) .. bounded(TIMEOUT) .. q(path) .. " " .. table.concat(words, " "))
  if not rc then return fail("azure_cli", "cannot get access token: could not start " .. path) end
  if (rc == 124 or rc == 137) and core.now() - t0 >= TIMEOUT - 0.5 then
    return fail("timeout", "cannot get access token: `" .. shown .. "` did not finish within " .. TIMEOUT
      .. " s and was stopped", { hint = "run it in a terminal to see what it waits for" })
  end
  if rc ~= 0 then
    -- Only stderr is quoted: stdout is where az prints tokens.
    local text = ctx.redact(trim(err))
    if text == "" then text = "exit status " .. rc end
    return fail("azure_cli", text, { hint = LOGIN_HINT, exit_status = rc })
  end
  return out
end

-- `az account show`: { type, name } of the logged-in user | nil, err
local function account(ctx, path)
  local out, err = az(ctx, path, { "account", "show", "--output", "json" })
  if not out then return nil, errors.wrap("cannot get account info: ", err) end
  local doc = cjson.decode(out)
  if type(doc) ~= "table" then return fail("azure_cli", "cannot unmarshal account info: not a JSON object") end
  local user = type(doc.user) == "table" and doc.user or {}
  return { type = user.type, name = user.name }
end

-- "2026-12-02 10:11:12[.123456]" in local time (az's expiresOn) -> epoch | nil
local function local_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[ T](%d%d):(%d%d):(%d%d)%.?%d?%d?%d?%d?%d?%d?$")
  if not y then return nil end
  return os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
                   min = tonumber(mi), sec = tonumber(sec), isdst = nil }
end

-- az's JSON -> token | nil, err. expires_on (epoch, az >= 2.54) is exact; expiresOn is local time.
local function parse(out)
  local doc, jerr = cjson.decode(out)
  if type(doc) ~= "table" then
    return fail("azure_cli", "cannot unmarshal CLI result: " .. tostring(jerr or "not a JSON object"))
  end
  local at = doc.accessToken
  if type(at) ~= "string" or not at:find("^[\33-\126]+$") then
    return fail("azure_cli", "cannot unmarshal CLI result: no accessToken")
  end
  local expiry
  if type(doc.expires_on) == "number" or (type(doc.expires_on) == "string" and doc.expires_on:match("^%d+$")) then
    expiry = tonumber(doc.expires_on)
  else
    expiry = local_time(doc.expiresOn)
    if not expiry then
      return fail("azure_cli", "cannot parse expiry: expiresOn is not a \"YYYY-MM-DD HH:MM:SS\" time")
    end
  end
  return oauth.token { access_token = at, token_type = type(doc.tokenType) == "string" and doc.tokenType or "Bearer",
                       expiry = expiry - azure.EARLY }
end

-- The third part of /subscriptions/<id>/..., or nil.
local function subscription(ctx)
  local id = ctx.get("azure_workspace_resource_id")
  if not id then return nil end
  local parts = {}
  for p in (id .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = p end
  return parts[3] ~= "" and parts[3] or nil
end

local function get_token(ctx, path, resource, tenant, configured_tenant)
  local args = { "account", "get-access-token", "--resource", resource, "--output", "json" }
  if tenant then args[#args + 1] = "--tenant"; args[#args + 1] = tenant end
  local sub = subscription(ctx)
  if sub and not configured_tenant then
    -- fails when the login may use the workspace but not its subscription: then without it
    local with = { "--subscription", sub }
    for i = #args, 1, -1 do table.insert(with, 1, args[i]) end
    local out = az(ctx, path, with)
    if out then return out end
  end
  local out, err = az(ctx, path, args)
  if not out then return nil, errors.wrap("cannot get access token: ", err) end
  return out
end

-- token | nil, err, as G azureCliTokenSource.Token: who is logged in first, then the token.
local function fetch(ctx, path, resource, tenant)
  local who, err = account(ctx, path)
  if not who then return nil, err end
  local msi = who.type == "servicePrincipal"
    and (who.name == "systemAssignedIdentity" or who.name == "userAssignedIdentity")
  local out
  if msi then
    out, err = get_token(ctx, path, resource, nil, tenant)
  else
    out, err = get_token(ctx, path, resource, tenant, tenant)
    if not out and who.type == "servicePrincipal" and tenant then
      -- federated-token service principals (AKS) take no --tenant
      out, err = get_token(ctx, path, resource, nil, tenant)
    end
  end
  if not out then return nil, err end
  return parse(out)
end

local function not_configured(err)
  local m = err and err.message or ""
  return m:find("No subscription found", 1, true) ~= nil
end

return {
  name = NAME,
  applies = function(ctx)
    return (ctx.get("host") ~= nil or ctx.get("azure_workspace_resource_id") ~= nil) and azure.applies(ctx, NAME)
  end,
  configure = function(ctx)
    local forced = ctx.get("auth_type") == NAME
    local path = search_path("az", ctx.getenv("PATH"))
    if not path then
      if not forced then return false end
      return fail("config", "cannot get access token: the Azure CLI (az) is not on PATH", { hint = INSTALL_HINT })
    end
    local env, err = azure.environment(ctx)
    if not env then return nil, err end
    local tenant = ctx.get("azure_tenant_id")
    if not tenant and ctx.get("host") then
      tenant, err = azure.tenant(ctx)
      if not tenant then return nil, err end
    end
    local tok
    tok, err = fetch(ctx, path, env.login_app_id, tenant)
    if not tok then
      if not_configured(err) and not forced then return false end
      return nil, err
    end
    local ok
    ok, err = azure.ensure_host(ctx, env, function() return fetch(ctx, path, env.arm, tenant) end)
    if not ok then return nil, err end
    -- The management token only when az can get one (a user may lack access to it).
    local sm = fetch(ctx, path, env.sm, tenant)
    local creds = azure.credentials(ctx, {
      primary = function() return fetch(ctx, path, env.login_app_id, tenant) end,
      primary_token = tok,
      management = sm and function() return fetch(ctx, path, env.sm, tenant) end or nil,
      management_token = sm or nil,
    })
    return creds
  end,
  -- for specs
  _local_time = local_time,
  _parse = parse,
}
