-- auth_type = "databricks-cli" (notes §4.3, §8.4; decision D12): U2M tokens the Databricks CLI
-- manages. The CLI's plaintext cache (~/.databricks/token-cache.json) is read first: a valid
-- entry is used without starting a process, an expired one is refreshed and written back
-- (u2m.cached_token). Otherwise the CLI itself is asked - `databricks auth token` - which also
-- covers its default keyring storage. The token source keeps the token until it nears expiry,
-- so the CLI runs at most once per token lifetime.
--
-- `--force-refresh` (CLI >= 0.296.0) is passed only when the caller forces a refresh
-- (cfg:token{ force_refresh = true }, a 401 retry): otherwise the CLI answers from its own
-- cache and refreshes when less than 5 minutes are left, as it does for every other client,
-- instead of spending a refresh grant on every call. The subprocess is bounded by
-- databricks_cli_timeout_seconds (default 60 s, the Go SDK's budget for a token request):
-- past it GNU timeout stops it (TERM, then KILL 5 s later) and the error says so. Without a
-- `timeout` (or `gtimeout`) executable on PATH the CLI runs unbounded.
--
-- Applies when `host` is set and there is a cache entry for the configuration's keys or a CLI
-- executable (or auth_type names this provider, so that "CLI not found" is the answer). In the
-- default chain a legacy CLI means "does not apply"; with auth_type set it is an error. A CLI
-- saying `databricks OAuth is not configured` for the host means "does not apply" in both
-- (the Python SDK skips silently; forced, the chain reports `databricks-cli auth: not configured`).
local cache = require "dbxauth.cache"
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"
local oauth = require "dbxauth.oauth"
local tokencache = require "dbxauth.tokencache"
local tokensource = require "dbxauth.tokensource"
local u2m = require "dbxauth.u2m"
local subprocess = require "dbxauth.subprocess"

local q, search_path = subprocess.q, subprocess.search_path
local run, bounded = subprocess.run, subprocess.bounded

local NAME = "databricks-cli"
local MIN_SIZE = 1024 * 1024            -- the Go CLI; the legacy Python CLI is a small script
local PROFILE_SINCE = { 0, 207, 1 }     -- `auth token --profile`
local FORCE_REFRESH_SINCE = { 0, 296, 0 }
local VERSION_TIMEOUT = 5
local CLI_TIMEOUT = 60                  -- seconds; databricks_cli_timeout_seconds overrides it

local SCOPES_MESSAGE = "custom scopes are not supported with databricks-cli auth; scopes are determined by "
  .. "what was last used when logging in with `databricks auth login`"
local INSTALL_HINT = "install the Databricks CLI (https://docs.databricks.com/dev-tools/cli/install.html) "
  .. "and run `databricks auth login`, or log in with `dbxauth login`"

local function fail(code, message, fields)
  return nil, errors.new(code, message, fields)
end

local trim = require("dbxauth.text").trim

---------------------------------------------------------------------------------------------
-- Locating the CLI (§8.4 step 1)

-- The configured or found CLI path, or nil (not configured and not on PATH).
local function locate(ctx)
  local name = ctx.get("databricks_cli_path") or ctx.getenv("DATABRICKS_CLI_PATH")
  if name == "" then name = nil end
  name = name or "databricks"
  if name:find("/", 1, true) then return name end
  return search_path(name, ctx.getenv("PATH"))
end

-- path | nil, err: exists, is not a directory, and is the Go CLI (>= 1 MiB).
local function check_cli(path)
  local st = path and core.stat(path)
  if not st or st.type == "dir" then
    return fail("config", "databricks CLI not found", { hint = INSTALL_HINT })
  end
  if st.size < MIN_SIZE then
    return fail("config", "legacy databricks CLI detected; upgrade to >= 0.100.0", {
      hint = "found " .. path .. ", the old Python CLI; " .. INSTALL_HINT,
    })
  end
  return path
end

---------------------------------------------------------------------------------------------
-- Running it

-- Environment the CLI must share with this configuration: its home (token cache, default
-- config file) and the config file it was resolved from.
local function env_prefix(ctx)
  local parts = {}
  if type(ctx.home) == "string" and ctx.home ~= "" then parts[#parts + 1] = "HOME=" .. q(ctx.home) end
  local file = ctx.get("config_file")
  if file then parts[#parts + 1] = "DATABRICKS_CONFIG_FILE=" .. q(file) end
  if #parts == 0 then return "" end
  return table.concat(parts, " ") .. " "
end

local function parse_version(text)
  local a, b, p = (text or ""):match("Databricks CLI v(%d+)%.(%d+)%.(%d+)")
  if not a then return nil end
  return { tonumber(a), tonumber(b), tonumber(p) }
end

local function at_least(v, want)
  if not v then return false end
  for i = 1, 3 do
    if v[i] ~= want[i] then return v[i] > want[i] end
  end
  return true
end

-- `<cli> version` once per executable (path, size and mtime) per process (the shared
-- "cli_versions" cache, cleared by dbxauth.clear_caches()); nil when unknown.
local VERSION_TTL = 24 * 3600
local function version(ctx, path)
  local versions = cache.shared("cli_versions", VERSION_TTL)
  local st = core.stat(path)
  local key = path .. "\0" .. tostring(st and st.size) .. "\0" .. tostring(st and st.mtime)
  local now = ctx.now()
  local v = versions:get(key, now)
  if v == nil then
    local out, _, rc = run(env_prefix(ctx) .. bounded(VERSION_TIMEOUT) .. q(path) .. " version")
    v = rc == 0 and parse_version(out) or false
    versions:set(key, v, now)
  end
  return v or nil
end

-- The `auth token` arguments (§8.4 step 3, case 61); --force-refresh only when forced.
-- Returns them quoted for the shell, and as the command line a message may show.
local function token_args(ctx, v, force)
  local words = { "auth", "token" }
  local function add(...)
    for _, w in ipairs { ... } do words[#words + 1] = w end
  end
  local profile, host = ctx.get("profile"), ctx.get("host")
  if profile and at_least(v, PROFILE_SINCE) then
    add("--profile", profile)
  else
    if not host then
      return fail("config", "cannot configure CLI token source: neither profile nor host is configured: "
        .. "host is not set")
    end
    add("--host", host)
    if ctx.is_account() and ctx.get("account_id") then add("--account-id", ctx.get("account_id")) end
  end
  if force and at_least(v, FORCE_REFRESH_SINCE) then add("--force-refresh") end
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = w:find("^[%w%-]+$") and w or q(w) end
  return table.concat(quoted, " "), table.concat(words, " ")
end

local function not_configured(text)
  return text:find("databricks OAuth is not", 1, true) ~= nil
end

local function cli_timeout(ctx)
  local secs = ctx.get("databricks_cli_timeout_seconds")
  if type(secs) ~= "number" or secs <= 0 then return CLI_TIMEOUT end
  return secs
end

-- token | nil, err | false (the CLI says OAuth is not configured for this host).
local function cli_token(ctx, path, v, force)
  local args, shown = token_args(ctx, v, force)
  if not args then return nil, shown end
  local secs = cli_timeout(ctx)
  local t0 = core.now()
  local out, err, rc = run(env_prefix(ctx) .. bounded(secs) .. q(path) .. " " .. args)
  if not rc then
    return fail("databricks_cli", "cannot get access token: could not start " .. path)
  end
  -- GNU timeout exits 124 after TERM, 128 + 9 when it had to KILL
  if (rc == 124 or rc == 137) and core.now() - t0 >= secs - 0.5 then
    return fail("timeout", "cannot get access token: `" .. path .. " " .. shown .. "` did not finish within "
      .. secs .. " s and was stopped", {
      hint = "run that command in a terminal to see what it waits for (the network, a keyring prompt); "
        .. "if it is only slow, raise databricks_cli_timeout_seconds",
    })
  end
  if rc ~= 0 then
    if not_configured(err) or not_configured(out) then return false end
    -- Only stderr is quoted (as Go does): stdout is where the CLI prints tokens.
    local text = ctx.redact(trim(err))
    if text == "" then text = "(no error output)" end
    return fail("databricks_cli", "cannot get access token: " .. text .. ": exit status " .. rc, {
      hint = "run `" .. u2m.login_command(ctx) .. "` (or `dbxauth login`) and try again",
    })
  end
  -- The output holds the token: it is never quoted in a message.
  local doc, jerr = cjson.decode(out)
  if type(doc) ~= "table" then
    return fail("databricks_cli", "cannot parse CLI response: " .. tostring(jerr or "not a JSON object"))
  end
  -- visible ASCII only: the token goes into an Authorization header as it is
  if type(doc.access_token) ~= "string" or not doc.access_token:find("^[\33-\126]+$") then
    return fail("databricks_cli", "cannot parse CLI response: no access_token")
  end
  local expiry
  if doc.expiry ~= nil then
    expiry = tokencache.parse_time(doc.expiry)
    if not expiry then
      return fail("databricks_cli", "cannot parse CLI response: expiry is not an RFC 3339 time")
    end
  else
    expiry = oauth.jwt_expiry(doc.access_token)
  end
  return oauth.token {
    access_token = doc.access_token,
    token_type = type(doc.token_type) == "string" and doc.token_type ~= "" and doc.token_type or "Bearer",
    expiry = expiry,
  }
end

---------------------------------------------------------------------------------------------
-- The provider

local function forced(ctx)
  return ctx.get("auth_type") == NAME
end

local function has_cache_entry(ctx)
  local path = u2m.cache_path(ctx)
  return path ~= nil and tokencache.lookup(path, u2m.cache_keys(ctx)) and true or false
end

-- token | nil, err | false. The cache first; the CLI when the cache has nothing (or fails: the
-- CLI may hold the login in its keyring).
local function fetch_token(ctx, cli, force)
  local tok, err = u2m.cached_token(ctx, { force_refresh = force })
  if tok then return tok end
  local cache_err = err
  if not cli.path then
    if cache_err then return nil, cache_err end
    return nil, cli.err
  end
  local v = version(ctx, cli.path)
  -- Unless forced, the CLI hands back its own cached token until that has less than 5 minutes
  -- left: asking it earlier (refresh-ahead) would only start processes for nothing.
  local last = cli.last
  if not force and last and last.expiry and ctx.now() < last.expiry - tokensource.CLI_REFRESH_AHEAD then
    return last
  end
  tok, err = cli_token(ctx, cli.path, v, force)
  if tok then cli.last = tok end
  if tok == false and cache_err then return nil, cache_err end
  return tok, err
end

return {
  name = NAME,
  applies = function(ctx)
    if ctx.get("host") == nil then return false end
    return forced(ctx) or has_cache_entry(ctx) or locate(ctx) ~= nil
  end,
  configure = function(ctx)
    if ctx.get("scopes") ~= nil and ctx.source("scopes") ~= "file" then
      return fail("config", SCOPES_MESSAGE)
    end
    local cli = {}
    cli.path, cli.err = check_cli(locate(ctx))
    -- In the chain, a legacy CLI without a cache entry is no way in: the next provider's turn.
    if cli.err and not forced(ctx) and not has_cache_entry(ctx) then return false end
    local tok, err = fetch_token(ctx, cli, false)
    if tok == false then return false end   -- the CLI has no login for this host
    if not tok then return nil, err end
    local function fetch(force)
      local t, ferr = fetch_token(ctx, cli, force)
      if t == false then
        return fail("unauthenticated", "cannot get access token: databricks OAuth is not configured for this host",
          { hint = "run `" .. u2m.login_command(ctx) .. "` or `dbxauth login`" })
      end
      return t, ferr
    end
    local source = tokensource.new { fetch = function() return fetch(false) end, now = ctx.now }
    source:set(tok)
    local creds = tokensource.credentials(source)
    creds.force_refresh = function()
      local t, ferr = fetch(true)
      if t then source:set(t) end
      return t, ferr
    end
    return creds
  end,
  -- for specs
  _parse_version = parse_version,
  _token_args = token_args,
}
