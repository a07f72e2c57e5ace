-- `dbxauth profiles` and `dbxauth switch`, as `databricks auth profiles` / `auth switch`
-- (cmd/auth/profiles.go, switch.go).
local config = require "dbxauth.config"
local profiles = require "dbxauth.profiles"
local output = require "dbxauth.cli.output"
local util = require "dbxauth.cli.util"

local fail = util.fail

local VALIDATE_TIMEOUT = 5   -- seconds per profile, as the CLI (v1.9.0)

local function nonempty(s) return s ~= nil and s ~= "" end

-- The API call that proves a configuration works (describe uses it too): the workspace list
-- of an account, the current user of a workspace. Never opens a browser: a login that is not
-- cached fails here. response | nil, err
local function verify(cfg, timeout)
  if cfg.auth_type == "external-browser" then
    local tok, err = cfg:cached_token()
    if tok == false then
      return fail("external-browser auth: no cached login for this configuration", "log in with `dbxauth login`")
    end
    if not tok then return nil, err end
  end
  local path = "/api/2.0/preview/scim/v2/Me"
  if cfg:is_account() then
    if not cfg.account_id then return fail("an account configuration needs account_id") end
    path = "/api/2.0/accounts/" .. cfg.account_id .. "/workspaces"
  end
  return cfg:request { path = path, timeout = timeout }
end

local function cloud_of(cfg)
  local c = cfg and cfg:describe().cloud
  return c and c:lower() or nil
end

-- One profile's row: name, host, account_id, workspace_id, cloud, auth_type, valid, default.
local function load(ctx, path, p, skip, default_name)
  local v = p.values
  local getenv = util.isolated(ctx.getenv, { DATABRICKS_CLI_PATH = true })
  local cfg = util.config(ctx, { profile = p.name, config_file = path,
    http_timeout_seconds = VALIDATE_TIMEOUT, retry_timeout_seconds = VALIDATE_TIMEOUT,
    databricks_cli_timeout_seconds = VALIDATE_TIMEOUT }, getenv)
  local h = cfg and cfg.host or util.canonical(v.host)
  local auth_type = nonempty(v.auth_type) and v.auth_type or ""
  local valid = false
  if not skip and cfg then
    valid = verify(cfg, VALIDATE_TIMEOUT) ~= nil
    auth_type = cfg.auth_type or auth_type
  end
  return {
    name = p.name, host = h, account_id = nonempty(v.account_id) and v.account_id or nil,
    workspace_id = nonempty(v.workspace_id) and v.workspace_id or nil, cloud = cloud_of(cfg) or "",
    auth_type = auth_type, valid = valid, default = p.name == default_name,
  }
end

local function render(ctx, opts, rows)
  if opts.output == "json" then
    local list = output.NULL
    if #rows > 0 then
      list = {}
      for i, r in ipairs(rows) do
        list[i] = output.obj("name", r.name, "host", r.host, "account_id", r.account_id,
          "workspace_id", r.workspace_id, "cloud", r.cloud, "auth_type", r.auth_type, "valid", r.valid,
          "default", r.default or nil)
      end
    end
    ctx.stdout(output.json(output.obj("profiles", list)) .. "\n")
    return
  end
  local tbl = { { "Name", "Host", "Valid" } }
  for _, r in ipairs(rows) do
    tbl[#tbl + 1] = { r.name .. (r.default and " (Default)" or ""), r.host or "", r.valid and "YES" or "NO" }
  end
  ctx.stdout(output.table(tbl))
end

local function run_profiles(ctx, opts)
  local path, perr = util.path(ctx)
  if not path then return nil, perr end
  local list, lerr = util.profiles(path)
  if not list then return nil, lerr end
  local default_name = profiles.default_profile(path)
  local rows = {}
  for _, p in ipairs(list) do
    rows[#rows + 1] = load(ctx, path, p, opts["skip-validate"], default_name)
  end
  render(ctx, opts, rows)
  return true
end

local function run_switch(ctx, opts)
  local path, perr = util.path(ctx)
  if not path then return nil, perr end
  local name = opts.profile
  if not name then
    if not util.interactive(ctx) then
      return fail("the command is being run in a non-interactive environment, please specify a profile using "
        .. "--profile")
    end
    local list = util.profiles(path) or {}
    if #list == 0 then return fail("no profiles configured. Run 'databricks auth login' to create a profile") end
    local current = profiles.default_profile(path)
    ctx.stderr((current and ("Current default: " .. current .. ". Select a new default") or
      "Select a profile to set as default") .. " (" .. table.concat(util.names(list), ", ") .. "): ")
    name = (ctx.read_line() or ""):gsub("^%s+", ""):gsub("%s+$", "")
  end
  local values, gerr = profiles.get(path, name)
  if gerr then return nil, gerr end
  if not values or name == "" or name == config.SETTINGS_SECTION then
    return fail('profile "' .. name .. '" not found')
  end
  local ok, serr = profiles.set_setting(path, "default_profile", name)
  if not ok then return nil, serr end
  ctx.stderr('Default profile set to "' .. name .. '".\n')
  return true
end

return { run = run_profiles, switch = run_switch, verify = verify }
