-- The `dbxauth` command (bin/dbxauth is a thin wrapper around cli.main):
--   dbxauth login     browser login into the CLI's token cache, profile saved in ~/.databrickscfg
--   dbxauth token     the cached access token, printed exactly as `databricks auth token` prints it
--   dbxauth profiles  the profiles of ~/.databrickscfg, checked
--   dbxauth describe  the resolved configuration, secrets masked
-- JSON goes to stdout, messages to stderr; exit status 0 on success, 1 on any failure.
--
--   local code = require("dbxauth.cli").main(args, { getenv =, home =, stdout = fn(s), stderr = fn(s) })
local dbxauth = require "dbxauth"
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local host = require "dbxauth.host"
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"

local _M = {}

local LOGIN_TIMEOUT = 300
local VALIDATE_TIMEOUT = 10

local output = require "dbxauth.cli.output"
local json, obj = output.json, output.obj
_M.json, _M.obj = json, obj

---------------------------------------------------------------------------------------------
-- Commands: flags, usage, run

local commands = require "dbxauth.cli.commands"
local TOP_USAGE, COMMANDS, ORDER = commands.TOP_USAGE, commands.COMMANDS, commands.ORDER

---------------------------------------------------------------------------------------------
-- Helpers

local ATTRIBUTE_ENV = {}
for _, a in ipairs(config.ATTRIBUTES) do
  for _, name in ipairs(a.env) do ATTRIBUTE_ENV[name] = true end
end

-- The environment without DATABRICKS_* attribute variables (except `keep`): commands that take
-- host and profile from their flags must not pick up credentials from the shell.
local function isolated(getenv, keep)
  keep = keep or {}
  return function(name)
    if ATTRIBUTE_ENV[name] and not keep[name] then return nil end
    return getenv(name)
  end
end

local function usage_error(ctx, message, usage)
  ctx.stderr("Error: " .. message .. "\n\n" .. usage)
  return 1
end

local function report(ctx, err)
  if not errors.is(err) then err = errors.new("error", tostring(err)) end
  ctx.stderr("Error: " .. err.message .. "\n")
  if err.hint and err.hint ~= "" then ctx.stderr("hint: " .. err.hint .. "\n") end
  return 1
end

local function cli_error(message, hint)
  return errors.new("cli", message, { hint = hint })
end

local function fail(message, hint)
  return nil, cli_error(message, hint)
end

-- Seconds from "90", "1.5", "90s", "5m", "1h".
local function duration(s)
  local n, unit = s:match("^(%d+%.?%d*)([smh]?)$")
  n = tonumber(n)
  if not n or n <= 0 then return nil end
  return n * ({ [""] = 1, s = 1, m = 60, h = 3600 })[unit]
end

-- opts, positionals | nil, message
local function parse_flags(spec, args)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-h" or a == "--help" then
      opts.help = true
    elseif a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = spec.flags[name]
      if not kind then return nil, "unknown flag: --" .. name end
      if kind == "bool" then
        if value ~= nil then return nil, "flag --" .. name .. " takes no value" end
        opts[name] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then return nil, "flag needs an argument: --" .. name end
        end
        opts[name] = value
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown shorthand flag: " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if not opts.help and #pos > spec.positional then
    return nil, "unexpected argument: " .. pos[spec.positional + 1]
  end
  return opts, pos
end

local function canonical(h)
  if not h then return nil end
  return host.normalize(h) or h
end

-- The CLI's default profile name for a login: ACCOUNT-<account id>, else the first label of
-- the host (cmd/auth/login.go getProfileName).
local function default_profile_name(h, account_id)
  if account_id then return "ACCOUNT-" .. account_id end
  local rest = h:gsub("^https://", "")
  return (rest:match("^[^.]*"))
end

-- Authenticate without ever opening a browser: external-browser configurations are checked
-- against the token cache only.
local function check_credentials(cfg)
  if cfg:get("auth_type") == "external-browser" then
    local tok, err = cfg:cached_token()
    if tok then return true end
    if tok == false then
      return fail("external-browser auth: no cached login for this configuration",
        "log in with `dbxauth login`")
    end
    return nil, err
  end
  local h, err = cfg:authenticate()
  if h then return true end
  return nil, err
end

---------------------------------------------------------------------------------------------
-- login

function COMMANDS.login.run(ctx, opts, pos)
  if opts.host and pos[1] then
    return fail("please only provide a host as an argument or a flag, not both")
  end
  local path, perr = profiles.path(ctx.getenv, ctx.home)
  if not path then return nil, perr end
  local name = opts.profile
  local existing
  if name then
    local err
    existing, err = profiles.get(path, name)
    if err then return nil, err end
  end
  local raw_host = opts.host or pos[1] or (existing and existing.host)
  if not raw_host or raw_host == "" then
    return fail("no host given", "dbxauth login --host https://<workspace>.cloud.databricks.com")
  end
  local h, herr = host.normalize(raw_host)
  if not h then return fail(herr .. " (host " .. raw_host .. ")") end
  local account_id = opts["account-id"]
  local is_account = host.is_account_url(h)
  if is_account and not account_id and existing and existing.account_id ~= "" then
    account_id = existing.account_id
  end
  if is_account and not account_id then
    return fail("an account id is required to log in to an account console",
      "dbxauth login --host " .. h .. " --account-id <account id>")
  end
  local timeout = LOGIN_TIMEOUT
  if opts.timeout then
    timeout = duration(opts.timeout)
    if not timeout then return fail("invalid --timeout " .. string.format("%q", opts.timeout)
      .. ": want seconds, or a number with s, m or h") end
  end
  local getenv = isolated(ctx.getenv, { DATABRICKS_OAUTH_CALLBACK_PORT = true,
    DATABRICKS_DISABLE_OAUTH_REFRESH_TOKEN = true })
  local cfg, cerr = dbxauth.config({ host = h, account_id = account_id, auth_type = "external-browser",
    scopes = opts.scopes }, { getenv = getenv, home = ctx.home })
  if not cfg then return nil, cerr end
  -- The URL is always printed too: u2m cannot tell whether a browser really opened, and over
  -- SSH the user opens it elsewhere.
  name = name or default_profile_name(cfg.host, account_id)
  -- The login is cached under the host key and under the profile name, which is what the CLI
  -- and the databricks-cli auth type look up first.
  local tok, lerr = cfg:login { timeout = timeout, print_url = true, cache_keys = { name }, stderr = ctx.stderr }
  if not tok then return nil, lerr end
  local entries = { { "host", cfg.host } }
  if account_id and cfg:is_account() then entries[#entries + 1] = { "account_id", account_id } end
  entries[#entries + 1] = { "auth_type", "databricks-cli" }
  if opts.scopes then
    entries[#entries + 1] = { "scopes", table.concat(config.parse_scopes(opts.scopes), ",") }
  end
  local ok, serr = profiles.save(path, name, entries)
  if not ok then return nil, serr end
  ctx.stderr("Profile " .. name .. " was successfully saved\n")
  ctx.stdout(json(obj("profile", name, "host", cfg.host)) .. "\n")
  return true
end

---------------------------------------------------------------------------------------------
-- token

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

-- The profile whose host (and account id) is `h`, when exactly one matches.
local function profile_for_host(path, h, account_id)
  local list = profiles.list(path) or {}
  local found
  for _, p in ipairs(list) do
    local v = p.values
    if v.host and canonical(v.host) == h and (not account_id or v.account_id == account_id) then
      if found then return nil end
      found = p.name
    end
  end
  return found
end

-- profile, host (either may be nil) | nil, nil, err: the CLI's order (notes §2.3).
local function token_target(ctx, opts, pos, path)
  local profile, h = opts.profile, opts.host
  if pos[1] then
    if profile or h then return nil, nil, cli_error("providing both a profile and host is not supported") end
    local p = profiles.get(path, pos[1])
    if p then profile = pos[1] else h = pos[1] end
  end
  if not profile and not h then
    local env_host, env_profile = ctx.getenv("DATABRICKS_HOST"), ctx.getenv("DATABRICKS_CONFIG_PROFILE")
    if env_host and env_host ~= "" then
      h = env_host
    elseif env_profile and env_profile ~= "" then
      profile = env_profile
    else
      local dp = profiles.default_profile(path)
      if dp and profiles.get(path, dp) then
        profile = dp
      else
        local list = profiles.list(path) or {}
        if #list == 0 then
          return nil, nil, cli_error("no profiles configured. Run 'databricks auth login' to create a profile",
            "or log in with dbxauth: dbxauth login --host <url>")
        end
        return nil, nil, cli_error("no profile specified. Use --profile <name> to specify which profile to use")
      end
    end
  end
  return profile, h
end

function COMMANDS.token.run(ctx, opts, pos)
  local path, perr = profiles.path(ctx.getenv, ctx.home)
  if not path then return nil, perr end
  local profile, h, terr = token_target(ctx, opts, pos, path)
  if terr then return nil, terr end
  local account_id = opts["account-id"]
  if profile then
    local values, gerr = profiles.get(path, profile)
    if gerr then return nil, gerr end
    if not values then
      return fail(path .. " has no " .. profile .. " profile configured", "dbxauth login --profile " .. profile
        .. " --host <url>")
    end
    if values.client_id and values.client_secret then
      return fail('profile "' .. profile .. '" uses M2M authentication (client_id/client_secret); '
        .. "`dbxauth token` serves logins made with `dbxauth login` or `databricks auth login`")
    end
    -- A profile of another identity must never print a user login cached for the same host.
    local other = other_auth(values)
    if other then
      return fail('profile "' .. profile .. '" uses ' .. other .. "; `dbxauth token` serves only user logins "
        .. "(auth_type = databricks-cli, made with `dbxauth login` or `databricks auth login`)")
    end
  elseif h then
    h = canonical(h)
    profile = profile_for_host(path, h, account_id)
  end
  local cfg, cerr = dbxauth.config({ profile = profile, host = h, account_id = account_id, config_file = path },
    { getenv = isolated(ctx.getenv), home = ctx.home })
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
  local expires_in
  if tok.issued_at and tok.expiry then expires_in = math.ceil(tok.expiry - tok.issued_at) end
  ctx.stdout(json(obj(
    "access_token", tok.access_token,
    "token_type", tok.token_type or "Bearer",
    "expiry", tok.expiry and tokencache.format_time(tok.expiry),
    "expires_in", expires_in)))
  return true
end

---------------------------------------------------------------------------------------------
-- profiles

function COMMANDS.profiles.run(ctx, opts)
  local path, perr = profiles.path(ctx.getenv, ctx.home)
  if not path then return nil, perr end
  local list, lerr = profiles.list(path)
  if not list then return nil, lerr end
  local out = {}
  for _, p in ipairs(list) do
    local v = p.values
    local auth_type = v.auth_type ~= "" and v.auth_type or nil
    local valid
    if not opts["skip-validate"] then
      local cfg = dbxauth.config({ profile = p.name, config_file = path,
        http_timeout_seconds = VALIDATE_TIMEOUT, retry_timeout_seconds = VALIDATE_TIMEOUT },
        { getenv = isolated(ctx.getenv, { DATABRICKS_CLI_PATH = true }), home = ctx.home })
      valid = cfg ~= nil and check_credentials(cfg) == true
      if valid then auth_type = cfg.auth_type end
    end
    out[#out + 1] = obj("name", p.name, "host", v.host ~= "" and v.host or nil,
      "account_id", v.account_id ~= "" and v.account_id or nil, "auth_type", auth_type, "valid", valid)
  end
  ctx.stdout(json(obj("profiles", out)) .. "\n")
  return true
end

---------------------------------------------------------------------------------------------
-- describe

function COMMANDS.describe.run(ctx, opts)
  local cfg, cerr = dbxauth.config({ profile = opts.profile, host = opts.host },
    { getenv = ctx.getenv, home = ctx.home })
  if not cfg then return nil, cerr end
  local ok, err = check_credentials(cfg)
  local d = cfg:describe()
  local attrs = obj()
  for _, a in ipairs(d.attributes) do
    attrs:set(a.name, obj("value", a.value, "source", a.source, "env", a.env))
  end
  ctx.stdout(json(obj(
    "status", ok and "ok" or "error",
    "auth_type", ok and cfg.auth_type or nil,
    "error", not ok and err.message or nil,
    "hint", not ok and err.hint or nil,
    "config_file", d.config_file,
    "attributes", attrs)) .. "\n")
  return true
end

---------------------------------------------------------------------------------------------
-- Entry point

local function default_ctx(ctx)
  ctx = ctx or {}
  local getenv = ctx.getenv or os.getenv
  return {
    getenv = getenv,
    home = ctx.home or getenv("HOME"),
    stdout = ctx.stdout or function(s) io.stdout:write(s) end,
    stderr = ctx.stderr or function(s) io.stderr:write(s) end,
  }
end

-- args: the command line after the program name. Returns the exit status.
function _M.main(args, ctx)
  ctx = default_ctx(ctx)
  local name = args[1]
  if name == "-h" or name == "--help" or name == "help" then
    local c = COMMANDS[args[2] or ""]
    ctx.stdout(c and c.usage or TOP_USAGE)
    return 0
  end
  if name == nil then return usage_error(ctx, "no command given", TOP_USAGE) end
  local cmd = COMMANDS[name]
  if not cmd then
    return usage_error(ctx, 'unknown command "' .. tostring(name) .. '" for "dbxauth"', TOP_USAGE)
  end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local opts, pos = parse_flags(cmd, rest)
  if not opts then return usage_error(ctx, pos, cmd.usage) end
  if opts.help then
    ctx.stdout(cmd.usage)
    return 0
  end
  local ok, err = cmd.run(ctx, opts, pos)
  if not ok then return report(ctx, err) end
  return 0
end

_M.COMMANDS = ORDER
return _M
