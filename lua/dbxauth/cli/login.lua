-- `dbxauth login`, as `databricks auth login` (cmd/auth/login.go): the browser flow over the
-- loopback listener, or with --no-browser the headless one (the redirect URL pasted on stdin).
local config = require "dbxauth.config"
local host = require "dbxauth.host"
local profiles = require "dbxauth.profiles"
local args = require "dbxauth.cli.args"
local output = require "dbxauth.cli.output"
local util = require "dbxauth.cli.util"

local fail = util.fail

local DEFAULT_TIMEOUT = 3600   -- the CLI's 1h0m0s

-- The CLI's suggestion for the profile name: ACCOUNT-<account id>, else the first DNS label of
-- the host.
local function suggested_name(h, account_id)
  if account_id then return "ACCOUNT-" .. account_id end
  return (h:gsub("^https://", ""):match("^[^.]*"))
end

-- A line typed at a prompt on stderr (interactive runs only).
local function ask(ctx, label, default)
  ctx.stderr(label .. (default and (" [" .. default .. "]") or "") .. ": ")
  local line = ctx.read_line()
  if line == nil then return nil end
  line = line:gsub("^%s+", ""):gsub("%s+$", "")
  if line == "" then return default end
  return line
end

-- profile name, host, existing values | nil, nil, nil, err
local function target(opts, pos, path)
  local name, raw_host = opts.profile, opts.host
  if pos[1] then
    if opts.given.host or opts.given.profile then
      return nil, nil, nil, util.error('argument "' .. pos[1] .. '" cannot be combined with --host or --profile. '
        .. "Use the --host and --profile flags instead")
    end
    if profiles.get(path, pos[1]) then
      name = pos[1]
    elseif util.looks_like_host(pos[1]) then
      raw_host = pos[1]
    else
      return nil, nil, nil, util.error('no matching profile found: "' .. pos[1] .. '"')
    end
  end
  local existing
  if name then
    local err
    existing, err = profiles.get(path, name)
    if err then return nil, nil, nil, err end
  end
  local from_profile = existing and existing.host ~= "" and existing.host or nil
  if raw_host and from_profile and util.canonical(raw_host) ~= util.canonical(from_profile) then
    return nil, nil, nil, util.error('--profile "' .. name .. '" has host "' .. from_profile
      .. '", which conflicts with --host "' .. raw_host .. '". Use --profile only to select a profile')
  end
  return name, raw_host or from_profile, existing
end

local function prompt_host(ctx)
  if not util.interactive(ctx) then
    return fail("the command is being run in a non-interactive environment, please specify a host using --host")
  end
  ctx.stderr("Example: https://<databricks-instance>.cloud.databricks.com\n")
  local h = ask(ctx, "Databricks host")
  if not h or h == "" then return fail("no host given") end
  return h
end

local function prompt_account(ctx)
  if not util.interactive(ctx) then
    return fail("the command is being run in a non-interactive environment, please specify an account ID using "
      .. "--account-id")
  end
  local a = ask(ctx, "Databricks account ID")
  if not a or a == "" then return fail("no account ID given") end
  return a
end

local function check_flags(opts)
  if opts["configure-cluster"] and opts["configure-serverless"] then
    return fail("please either configure serverless or cluster, not both")
  end
  if opts["configure-cluster"] then
    return fail("--configure-cluster is not supported by dbxauth (it picks a cluster for Databricks Connect)",
      "log in without it and set cluster_id = <cluster id> in the profile, or use `databricks auth login "
      .. "--configure-cluster`")
  end
  if opts.timeout and not args.duration(opts.timeout) then
    return fail('invalid argument "' .. opts.timeout .. '" for "--timeout" flag: time: invalid duration "'
      .. opts.timeout .. '"')
  end
  return true
end

-- The keys the profile gets (cmd/auth/login.go: host, account_id, scopes, compute, auth_type).
local function entries(cfg, account_id, opts, scopes)
  local list = { { "host", cfg.host } }
  if account_id and cfg:is_account() then list[#list + 1] = { "account_id", account_id } end
  if scopes then list[#list + 1] = { "scopes", table.concat(config.parse_scopes(scopes), ",") } end
  if opts["configure-serverless"] then list[#list + 1] = { "serverless_compute_id", "auto" } end
  list[#list + 1] = { "auth_type", "databricks-cli" }
  return list
end

-- The first profile with a host becomes the default (libs/databrickscfg/ops.go).
local function first_with_host(path, name)
  local list = util.profiles(path) or {}
  for _, p in ipairs(list) do
    if p.name ~= name and p.values.host and p.values.host ~= "" then return false end
  end
  return profiles.default_profile(path) == nil
end

local function run(ctx, opts, pos)
  local ok, ferr = check_flags(opts)
  if not ok then return nil, ferr end
  local path, perr = util.path(ctx)
  if not path then return nil, perr end
  local name, raw_host, existing, terr = target(opts, pos, path)
  if terr then return nil, terr end
  if not raw_host or raw_host == "" then
    local herr
    raw_host, herr = prompt_host(ctx)
    if not raw_host then return nil, herr end
  end
  local h, bad = host.normalize(raw_host)
  if not h then return fail(bad .. " (host " .. raw_host .. ")") end
  local account_id = opts["account-id"] or (existing and existing.account_id ~= "" and existing.account_id) or nil
  if host.is_account_url(h) and not account_id then
    local aerr
    account_id, aerr = prompt_account(ctx)
    if not account_id then return nil, aerr end
  end
  local scopes = opts.scopes or (existing and existing.scopes ~= "" and existing.scopes) or nil
  -- Only the callback settings come from the environment: a login is for the host it is given.
  local getenv = util.isolated(ctx.getenv, { DATABRICKS_OAUTH_CALLBACK_PORT = true,
    DATABRICKS_DISABLE_OAUTH_REFRESH_TOKEN = true })
  local cfg, cerr = util.config(ctx, { host = h, account_id = account_id, auth_type = "external-browser",
    scopes = scopes }, getenv)
  if not cfg then return nil, cerr end
  if not name and util.interactive(ctx) then
    name = ask(ctx, "Databricks profile name", suggested_name(cfg.host, account_id))
  end
  if name == config.SETTINGS_SECTION then
    return fail('profile name "' .. name .. '" is reserved for internal use')
  end
  local tok, lerr = cfg:login { timeout = args.duration(opts.timeout or "") or DEFAULT_TIMEOUT, print_url = true,
    cache_keys = { name }, stderr = ctx.stderr, read = opts["no-browser"] and ctx.read_line or nil }
  if not tok then return nil, lerr end
  -- Without a name (no terminal to ask on) the login is cached under the host only, as the CLI does.
  if name then
    local make_default = first_with_host(path, name)
    local sok, serr = profiles.save(path, name, entries(cfg, account_id, opts, scopes))
    if not sok then return nil, serr end
    if make_default then
      sok, serr = profiles.set_setting(path, "default_profile", name)
      if not sok then return nil, serr end
    end
    ctx.stderr("Profile " .. name .. " was successfully saved\n")
  end
  if opts.output == "json" then ctx.stdout(output.json(output.obj("profile", name, "host", cfg.host)) .. "\n") end
  return true
end

return { run = run, suggested_name = suggested_name }
