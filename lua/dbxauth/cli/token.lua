-- `dbxauth token`, as `databricks auth token` (cmd/auth/token.go): the cached U2M login,
-- refreshed when due, printed as the CLI prints an oauth2.Token.
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"
local args = require "dbxauth.cli.args"
local output = require "dbxauth.cli.output"
local util = require "dbxauth.cli.util"

local fail = util.fail

local U2M_TYPES = { ["databricks-cli"] = true, ["external-browser"] = true }
-- Credentials of a profile that make it something other than a user login, in words.
local OTHER_CREDENTIALS = {
  { "token", "a personal access token (token)" }, { "password", "basic authentication (username/password)" },
  { "azure_client_secret", "Azure client secret authentication" },
  { "google_credentials", "Google credentials" }, { "google_service_account", "Google service account authentication" },
  { "oidc_token_filepath", "OIDC token federation (oidc_token_filepath)" },
  { "databricks_id_token_filepath", "OIDC token federation (databricks_id_token_filepath)" },
  { "oidc_token_env", "OIDC token federation (oidc_token_env)" },
  { "metadata_service_url", "the metadata service" },
}

-- nil for a user-login profile, else what it uses instead.
local function other_auth(values)
  local t = values.auth_type
  if t and t ~= "" then
    if U2M_TYPES[t] then return nil end
    return "auth_type = " .. t
  end
  for _, c in ipairs(OTHER_CREDENTIALS) do
    local v = values[c[1]]
    if v and v ~= "" then return c[2] end
  end
  return nil
end

local function nonempty(s) return s ~= nil and s ~= "" end

-- Without an argument, a flag or DATABRICKS_CONFIG_PROFILE: DATABRICKS_HOST, then the
-- default profile, then a [DEFAULT] with a host. profile, host | nil, nil, err
local function fallback(ctx, path)
  local env_host = ctx.getenv("DATABRICKS_HOST")
  if nonempty(env_host) then return nil, env_host end
  local dp = profiles.default_profile(path)
  if dp and profiles.get(path, dp) then return dp end
  local d = profiles.get(path, "DEFAULT")
  if d and nonempty(d.host) then return "DEFAULT" end
  if #(util.profiles(path) or {}) == 0 then
    return nil, nil, util.error("no profiles configured. Run 'databricks auth login' to create a profile",
      "or log in with dbxauth: dbxauth login --host <url>")
  end
  return nil, nil, util.error("no profile specified. Use --profile <name> to specify which profile to use")
end

-- profile, host (either may be nil) | nil, nil, err: the CLI's order (notes §3).
local function target(ctx, opts, pos, path)
  local profile, h = opts.profile, opts.host
  if pos[1] then
    if profile then return nil, nil, util.error("providing both a profile and host is not supported") end
    if profiles.get(path, pos[1]) then
      profile = pos[1]
    elseif util.looks_like_host(pos[1]) then
      h = pos[1]
    else
      return nil, nil, util.error('no matching profile found: "' .. pos[1] .. '"')
    end
  end
  if not profile and not h then
    local env_profile = ctx.getenv("DATABRICKS_CONFIG_PROFILE")
    if nonempty(env_profile) then return env_profile end
    return fallback(ctx, path)
  end
  return profile, h
end

-- A profile must be a user login; its name and host are checked against the flags.
local function check_profile(path, profile, opts)
  local values, gerr = profiles.get(path, profile)
  if gerr then return nil, gerr end
  if not values then
    return fail(path .. " has no " .. profile .. " profile configured", "dbxauth login --profile " .. profile
      .. " --host <url>")
  end
  if opts.given.host and nonempty(values.host) and util.canonical(values.host) ~= util.canonical(opts.host) then
    return fail('--profile "' .. profile .. '" has host "' .. values.host .. '", which conflicts with --host "'
      .. opts.host .. '". Use --profile only to select a profile')
  end
  if nonempty(values.client_id) and nonempty(values.client_secret) then
    return fail('profile "' .. profile .. '" uses M2M authentication (client_id/client_secret). '
      .. "`databricks auth token` only supports U2M authentication (dbxauth login or databricks auth login)")
  end
  -- A profile of another identity must never print a user login cached for the same host.
  local other = other_auth(values)
  if other then
    return fail('profile "' .. profile .. '" uses ' .. other .. "; `dbxauth token` serves only user logins "
      .. "(auth_type = databricks-cli, made with `dbxauth login` or `databricks auth login`)")
  end
  return true
end

-- With only a host: its one profile, or none (the host key alone).
local function profile_for_host(path, h, account_id)
  local found = util.matching(path, h, account_id)
  if #found <= 1 then return found[1] and found[1].name end
  return nil, util.error(table.concat(util.names(found), " and ") .. " match " .. h .. " in " .. path
    .. ". Use --profile to specify which profile to use")
end

local function print_token(ctx, opts, tok)
  if opts.given.output and opts.output == "text" then
    ctx.stdout(tok.access_token .. "\n")
    return
  end
  local expires_in
  if tok.issued_at and tok.expiry then expires_in = math.ceil(tok.expiry - tok.issued_at) end
  -- The refresh token stays in the cache: dbxauth never prints a refresh token.
  ctx.stdout(output.json(output.obj(
    "access_token", tok.access_token,
    "token_type", tok.token_type or "Bearer",
    "expiry", tok.expiry and tokencache.format_time(tok.expiry) or "0001-01-01T00:00:00Z",
    "expires_in", expires_in)))
end

local function run(ctx, opts, pos)
  if opts.timeout and not args.duration(opts.timeout) then
    return fail('invalid argument "' .. opts.timeout .. '" for "--timeout" flag: time: invalid duration "'
      .. opts.timeout .. '"')
  end
  local path, perr = util.path(ctx)
  if not path then return nil, perr end
  local profile, h, terr = target(ctx, opts, pos, path)
  if terr then return nil, terr end
  local account_id = opts["account-id"] or (not profile and ctx.getenv("DATABRICKS_ACCOUNT_ID")) or nil
  if account_id == "" then account_id = nil end
  if profile then
    local ok, err = check_profile(path, profile, opts)
    if not ok then return nil, err end
  else
    h = util.canonical(h)
    local err
    profile, err = profile_for_host(path, h, account_id)
    if err then return nil, err end
  end
  local timeout = opts.timeout and math.ceil(args.duration(opts.timeout)) or nil
  local cfg, cerr = util.config(ctx, { profile = profile, host = h, account_id = account_id, config_file = path,
    http_timeout_seconds = timeout, retry_timeout_seconds = timeout }, util.isolated(ctx.getenv))
  if not cfg then return nil, cerr end
  if not cfg.host then return fail("no host configured for profile " .. tostring(profile)) end
  local tok, err = cfg:cached_token { force_refresh = opts["force-refresh"] }
  if tok == false then
    local login = profile and ("dbxauth login --profile " .. profile) or ("dbxauth login --host " .. cfg.host
      .. (cfg:is_account() and cfg.account_id and (" --account-id " .. cfg.account_id) or ""))
    return fail("cache: databricks OAuth is not configured for this host. no cached credentials; "
      .. "run `databricks auth login` to sign in", "or log in with dbxauth: " .. login)
  end
  if not tok then return nil, err end
  print_token(ctx, opts, tok)
  return true
end

return { run = run }
