-- Configuration resolution: explicit options > environment > .databrickscfg profile, with the Go
-- SDK's semantics and error texts (notes §1, §2, decisions D2-D7, D18, D19, D24, D25).
--
--   local state, err = config.resolve(opts, { getenv = os.getenv, home = os.getenv("HOME") })
--   state.values.host      -- typed values; nil when unset (never "", false or 0)
--   state.sources.host     -- "explicit" | "env" | "file"
--   state.env_names.host   -- the env var that supplied it
--   state.config_file      -- path of the profile file that was read (nil: skipped or absent)
--   state.profile_fallback -- true when the DEFAULT fallback supplied values
--   state.host_error       -- "no host configured" when the host has no hostname (kept raw)
--   state.env_present      -- non-empty env vars per attribute (for the debug suffix)
--   config.with_suffix("default auth: ...", state)   -- Go's ". Config: ... Env: ..." suffix
--
-- Aliases (D24): values are stored under `token_audience` and `oidc_token_filepath`; the Go
-- spellings `audience` and `databricks_id_token_filepath` are accepted as options and profile
-- keys, and the debug suffix prints `databricks_id_token_filepath` as Go does.
--
-- Pure apart from reading the config file; the environment comes in through ctx.getenv so that
-- specs and embedders (nginx workers) decide what the process environment is.
local core = require("dbxauth.core")
local errors = require("dbxauth.errors")
local host = require("dbxauth.host")
local ini = require("dbxauth.ini")

local _M = {}

local SETTINGS_SECTION = "__settings__"
local DEFAULT_PROFILE = "DEFAULT"
local DEFAULT_CONFIG_FILE = "~/.databrickscfg"
local DEFAULT_SCOPES = { "all-apis" }

-----------------------------------------------------------------------------------------------
-- Attributes, in the Go SDK's declaration order: that order is visible in the debug suffix
-- ("Config: host=..., token=***") and decides which env parse error is reported first.
-- group: auth group for the conflict rule; label: name printed in debug strings when it is not
-- `name` (Go prints its own spelling); aliases: other accepted option / profile-key names.

local ATTRIBUTES = {
  { name = "host", env = { "DATABRICKS_HOST" } },
  { name = "cluster_id", env = { "DATABRICKS_CLUSTER_ID" } },
  { name = "warehouse_id", env = { "DATABRICKS_WAREHOUSE_ID" } },
  { name = "serverless_compute_id", env = { "DATABRICKS_SERVERLESS_COMPUTE_ID" } },
  { name = "metadata_service_url", env = { "DATABRICKS_METADATA_SERVICE_URL" },
    group = "metadata-service", sensitive = true },
  { name = "account_id", env = { "DATABRICKS_ACCOUNT_ID" } },
  { name = "workspace_id", env = { "DATABRICKS_WORKSPACE_ID" } },
  { name = "token", env = { "DATABRICKS_TOKEN" }, group = "pat", sensitive = true },
  { name = "username", env = { "DATABRICKS_USERNAME" }, group = "basic" },
  { name = "password", env = { "DATABRICKS_PASSWORD" }, group = "basic", sensitive = true },
  { name = "profile", env = { "DATABRICKS_CONFIG_PROFILE" } },
  { name = "config_file", env = { "DATABRICKS_CONFIG_FILE" } },
  { name = "google_service_account", env = { "DATABRICKS_GOOGLE_SERVICE_ACCOUNT" }, group = "google" },
  { name = "google_credentials", env = { "GOOGLE_CREDENTIALS" }, group = "google", sensitive = true },
  { name = "azure_workspace_resource_id", env = { "DATABRICKS_AZURE_RESOURCE_ID" }, group = "azure" },
  { name = "azure_use_msi", type = "bool", env = { "ARM_USE_MSI" }, group = "azure" },
  { name = "azure_client_secret", env = { "ARM_CLIENT_SECRET" }, group = "azure", sensitive = true },
  { name = "azure_client_id", env = { "ARM_CLIENT_ID" }, group = "azure" },
  { name = "azure_tenant_id", env = { "ARM_TENANT_ID" }, group = "azure" },
  { name = "actions_id_token_request_url", env = { "ACTIONS_ID_TOKEN_REQUEST_URL" } },
  -- Go does not mark it sensitive, but it is a bearer credential (D23).
  { name = "actions_id_token_request_token", env = { "ACTIONS_ID_TOKEN_REQUEST_TOKEN" }, sensitive = true },
  { name = "azure_environment", env = { "ARM_ENVIRONMENT" } },
  { name = "azure_login_app_id", env = { "DATABRICKS_AZURE_LOGIN_APP_ID" }, group = "azure" },
  { name = "client_id", env = { "DATABRICKS_CLIENT_ID" }, group = "oauth" },
  { name = "client_secret", env = { "DATABRICKS_CLIENT_SECRET" }, group = "oauth", sensitive = true },
  { name = "databricks_cli_path", env = { "DATABRICKS_CLI_PATH" } },
  { name = "oidc_token_filepath", label = "databricks_id_token_filepath",
    aliases = { "databricks_id_token_filepath" },
    env = { "DATABRICKS_OIDC_TOKEN_FILEPATH", "DATABRICKS_OIDC_TOKEN_FILE" }, group = "file-oidc" },
  { name = "oidc_token_env", env = { "DATABRICKS_OIDC_TOKEN_ENV" }, group = "env-oidc" },
  -- Internal: never counted by the conflict rule, never printed.
  { name = "oauth_callback_port", type = "int", env = { "DATABRICKS_OAUTH_CALLBACK_PORT" }, internal = true },
  { name = "scopes", type = "list", internal = true },
  { name = "disable_oauth_refresh_token", type = "bool", env = { "DATABRICKS_DISABLE_OAUTH_REFRESH_TOKEN" },
    internal = true },
  { name = "auth_type", env = { "DATABRICKS_AUTH_TYPE" }, internal = true },
  { name = "token_audience", aliases = { "audience" }, env = { "DATABRICKS_TOKEN_AUDIENCE" }, internal = true },
  { name = "discovery_url", env = { "DATABRICKS_DISCOVERY_URL" }, internal = true },
  { name = "cloud", env = { "DATABRICKS_CLOUD" }, internal = true },
  { name = "skip_verify", type = "bool", internal = true },
  { name = "http_timeout_seconds", type = "int", internal = true },
  { name = "retry_timeout_seconds", type = "int", internal = true },
  { name = "rate_limit", type = "int", env = { "DATABRICKS_RATE_LIMIT" }, internal = true },
  { name = "debug_truncate_bytes", type = "int", env = { "DATABRICKS_DEBUG_TRUNCATE_BYTES" }, internal = true },
  { name = "debug_headers", type = "bool", env = { "DATABRICKS_DEBUG_HEADERS" }, internal = true },
  -- dbxauth extras (no env var): CA bundle for the curl transport, response size cap.
  { name = "ca_file", internal = true },
  { name = "max_response_bytes", type = "int", internal = true },
}

local BY_NAME = {}
for _, a in ipairs(ATTRIBUTES) do
  a.type = a.type or "str"
  a.env = a.env or {}
  a.aliases = a.aliases or {}
  a.label = a.label or a.name
  a.sensitive = a.sensitive or false
  a.internal = a.internal or false
  BY_NAME[a.name] = a
  for _, alias in ipairs(a.aliases) do BY_NAME[alias] = a end
end

_M.ATTRIBUTES = ATTRIBUTES
_M.BY_NAME = BY_NAME

-----------------------------------------------------------------------------------------------
-- Typed parsing with Go's strconv texts (D3): the messages are part of the conformance suite.

local BOOLS = {
  ["1"] = true, t = true, T = true, TRUE = true, ["true"] = true, True = true,
  ["0"] = false, f = false, F = false, FALSE = false, ["false"] = false, False = false,
}

local QUOTE_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }

-- strconv.Quote for the characters that matter here.
local function go_quote(s)
  local body = s:gsub('[%c"\\]', function(c)
    return QUOTE_ESCAPES[c] or string.format("\\x%02x", c:byte())
  end)
  return '"' .. body .. '"'
end

local function parse_bool(s)
  local b = BOOLS[s]
  if b == nil then return nil, "strconv.ParseBool: parsing " .. go_quote(s) .. ": invalid syntax" end
  return b
end

local INT64_LIMIT = { ["+"] = "9223372036854775807", [""] = "9223372036854775807", ["-"] = "9223372036854775808" }

-- strconv.Atoi: optional sign, decimal digits, int64 range.
local function parse_int(s)
  local sign, digits = s:match("^([+-]?)(%d+)$")
  if not digits then return nil, "strconv.Atoi: parsing " .. go_quote(s) .. ": invalid syntax" end
  local significant = digits:gsub("^0+", "")
  local limit = INT64_LIMIT[sign]
  if #significant > #limit or (#significant == #limit and significant > limit) then
    return nil, "strconv.Atoi: parsing " .. go_quote(s) .. ": value out of range"
  end
  local n = tonumber(digits)
  if sign == "-" then n = -n end
  return n
end

-- Linear in #s: the usual gsub("%s+$", "") is quadratic in a long run of inner blanks.
local function trim(s)
  local i = s:find("%S")
  if not i then return "" end
  return s:match(".*%S", i)
end

-- D18: trim, drop empties, de-duplicate, sort. nil when nothing is left, so that an empty
-- list means "unset" and config.scopes() falls back to all-apis.
local function normalise_scopes(items)
  local seen, out = {}, {}
  for _, s in ipairs(items) do
    s = trim(s)
    if s ~= "" and not seen[s] then
      seen[s] = true
      out[#out + 1] = s
    end
  end
  if #out == 0 then return nil end
  table.sort(out)
  return out
end

-- D18: strings split on commas and/or any whitespace (Py), not on commas only (Go).
local function parse_scopes(s)
  local items = {}
  for item in s:gmatch("[^,%s]+") do items[#items + 1] = item end
  return normalise_scopes(items)
end

local FROM_STRING = {
  str = function(s) return s end,
  bool = parse_bool,
  int = parse_int,
  list = parse_scopes,
}

local function is_integer(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge and math.floor(v) == v
end

-- Explicit (code) values: typed values as they are, strings parsed like env values.
-- check_value has already rejected anything else.
local function from_explicit(a, v)
  if type(v) == "string" then return FROM_STRING[a.type](v) end
  if a.type == "int" then return math.floor(v) end
  if a.type == "list" then return normalise_scopes(v) end
  return v
end

-- Go treats zero values as unset (D2): "" and nil, and also false and 0 for bool/int attributes.
local function is_zero(v)
  return v == nil or v == "" or v == false or v == 0
end

-----------------------------------------------------------------------------------------------
-- Option checking (programmer errors; the caller raises the message).

local function check_list(v)
  local t = type(v)
  if t == "string" then return nil end
  if t ~= "table" then return "must be a string or a list of strings, got " .. t end
  for _, item in pairs(v) do
    if type(item) ~= "string" then
      return "must be a string or a list of strings, got a list containing a " .. type(item)
    end
  end
end

local CHECKS = {
  str = function(v)
    if type(v) ~= "string" then return "must be a string, got " .. type(v) end
  end,
  bool = function(v)
    if type(v) == "string" then
      if BOOLS[v] == nil then return "must be a boolean, got string " .. go_quote(v) end
    elseif type(v) ~= "boolean" then
      return "must be a boolean, got " .. type(v)
    end
  end,
  int = function(v)
    if type(v) == "string" then
      if not parse_int(v) then return "must be an integer, got string " .. go_quote(v) end
    elseif type(v) ~= "number" then
      return "must be an integer, got " .. type(v)
    elseif not is_integer(v) then
      return "must be an integer, got number " .. tostring(v)
    end
  end,
  list = check_list,
}

local function check_value(a, v)
  if v == "" then return nil end -- empty means unset for every type
  return CHECKS[a.type](v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  return keys
end

local function as_set(extra)
  local set = {}
  for k, v in pairs(extra or {}) do
    if type(k) == "number" then set[v] = true else set[k] = v end
  end
  return set
end

-- opts: caller options; extra: names that are not attributes but allowed (set or list).
-- Returns nil or a message (`unknown configuration attribute "hots"`, `attribute "host" must be
-- a string, got number`). Keys are checked in sorted order so the message is deterministic.
function _M.check_options(opts, extra)
  if opts == nil then return nil end
  if type(opts) ~= "table" then return "options must be a table, got " .. type(opts) end
  local allowed = as_set(extra)
  for _, k in ipairs(sorted_keys(opts)) do
    if not allowed[k] then
      local a = type(k) == "string" and BY_NAME[k]
      if not a then return "unknown configuration attribute " .. go_quote(tostring(k)) end
      local msg = check_value(a, opts[k])
      if msg then return 'attribute "' .. k .. '" ' .. msg end
    end
  end
  return nil
end

-- Like check_options, but names that are not attributes are ignored (the caller's business).
local function check_types(opts)
  if type(opts) ~= "table" then return "options must be a table, got " .. type(opts) end
  for _, k in ipairs(sorted_keys(opts)) do
    local a = type(k) == "string" and BY_NAME[k]
    local msg = a and check_value(a, opts[k])
    if msg then return 'attribute "' .. k .. '" ' .. msg end
  end
end

-----------------------------------------------------------------------------------------------
-- Resolution steps. Each returns nil or an error message without the "resolve:" prefix.

local function new_state(getenv)
  local st = { values = {}, sources = {}, env_names = {}, env_present = {} }
  -- Snapshot of the non-empty env vars per attribute: the debug suffix's "Env:" part lists them
  -- for every printed attribute (whatever source won), exactly like Go's DebugString.
  for _, a in ipairs(ATTRIBUTES) do
    local present = {}
    for _, var in ipairs(a.env) do
      local v = getenv(var)
      if type(v) == "string" and v ~= "" then present[#present + 1] = var end
    end
    if #present > 0 then st.env_present[a.name] = present end
  end
  return st
end

local function set(st, a, v, source, env_name)
  if is_zero(v) then return end
  st.values[a.name], st.sources[a.name], st.env_names[a.name] = v, source, env_name
end

-- Raw value of attribute a from a key lookup, trying its aliases too (D24). Two different
-- non-empty spellings in the same source are recorded for the validate step.
local function pick(st, a, lookup)
  local raw, used = lookup(a.name), a.name
  for _, alias in ipairs(a.aliases) do
    local other = lookup(alias)
    if other ~= nil and other ~= "" then
      if raw == nil or raw == "" then
        raw, used = other, alias
      elseif other ~= raw and not st.alias_conflict then
        st.alias_conflict = used .. " and " .. alias
          .. " name the same attribute but have different values"
      end
    end
  end
  return raw
end

local function load_explicit(st, opts)
  local lookup = function(k) return opts[k] end
  for _, a in ipairs(ATTRIBUTES) do
    local raw = pick(st, a, lookup)
    if raw ~= nil and raw ~= "" then set(st, a, from_explicit(a, raw), "explicit") end
  end
end

local function load_env_attr(st, a, getenv)
  for _, var in ipairs(a.env) do -- primary first, then aliases
    local raw = getenv(var)
    if type(raw) == "string" and raw ~= "" then
      local v, err = FROM_STRING[a.type](raw)
      if err then return err end
      set(st, a, v, "env", var)
      return nil
    end
  end
end

local function load_env(st, getenv)
  for _, a in ipairs(ATTRIBUTES) do
    if st.values[a.name] == nil then
      local err = load_env_attr(st, a, getenv)
      if err then return err end
    end
  end
end

-- §2.2: without a profile, credentials or a host already given mean "don't read the file"
-- (databricks-sdk-go issue 304: a DEFAULT profile must not leak into explicit setups).
local function file_skipped(st)
  local v = st.values
  if v.profile then return false end
  if v.host or v.azure_workspace_resource_id then return true end
  for _, a in ipairs(ATTRIBUTES) do
    if a.group and not a.internal and v[a.name] ~= nil then return true end
  end
  return false
end

local function config_path(st, home)
  local path = st.values.config_file or DEFAULT_CONFIG_FILE
  if path:sub(1, 1) == "~" then
    if type(home) ~= "string" or home == "" then
      return nil, "cannot find homedir: $HOME is not defined"
    end
    path = home .. path:sub(2)
  end
  return path
end

-- Go's os error text: "open /p: permission denied" (Lua gives "/p: Permission denied").
local function os_error(op, path, msg)
  msg = tostring(msg or "unknown error")
  if msg:sub(1, #path + 2) == path .. ": " then msg = msg:sub(#path + 3) end
  return op .. " " .. path .. ": " .. msg:sub(1, 1):lower() .. msg:sub(2)
end

local ENOENT = 2
local MAX_CONFIG_FILE = 16 * 1024 * 1024

-- text | nil, message | nil, nil, true when the file does not exist (silently skipped).
-- Read with a size limit and without blocking: DATABRICKS_CONFIG_FILE=/dev/zero or a FIFO
-- must fail, not hang or eat the memory.
local function read_file(path)
  local text, code, cmsg = core.read_file(path, MAX_CONFIG_FILE)
  if text then return text end
  if code == "not_found" then return nil, nil, true end
  if code == "too_large" then
    return nil, "read " .. path .. ": larger than " .. MAX_CONFIG_FILE .. " bytes; not a config file"
  end
  -- The OS's words in Go's form ("open /p: permission denied", "read /p: is a directory").
  local f, msg, ocode = io.open(path, "rb")
  if not f then
    if ocode == ENOENT then return nil, nil, true end
    return nil, os_error("open", path, msg)
  end
  local _, rmsg = f:read(0)
  f:close()
  return nil, os_error("read", path, rmsg or (cmsg and cmsg:match(": ([^:]*)$")) or cmsg)
end

local function reserved_error(path)
  return path .. ": " .. SETTINGS_SECTION .. " is a reserved section name and cannot be used as a profile"
end

-- §2.3: requested profile, else [__settings__].default_profile, else DEFAULT as a fallback.
-- Returns name, is_fallback | nil, nil, message.
local function select_profile(st, sections, path)
  local requested = st.values.profile
  if requested then
    if requested == SETTINGS_SECTION then return nil, nil, reserved_error(path) end
    return requested, false
  end
  local settings = sections[SETTINGS_SECTION]
  local dp = settings and settings.default_profile and trim(settings.default_profile) or ""
  if dp == "" then return DEFAULT_PROFILE, true end
  if dp == SETTINGS_SECTION then return nil, nil, reserved_error(path) end
  return dp, false
end

local function get_section(sections, name)
  if name == "__order" then return nil end -- ini.parse's order list, not a section
  return sections[name]
end

-- `profile` and `config_file` keys inside a profile are ignored: the profile is already chosen.
local NOT_FROM_FILE = { profile = true, config_file = true }

local function load_section(st, section, path, profile)
  local lookup = function(k) return section[k] end
  for _, a in ipairs(ATTRIBUTES) do
    if st.values[a.name] == nil and not NOT_FROM_FILE[a.name] then
      local raw = pick(st, a, lookup)
      if raw ~= nil and raw ~= "" then
        local v, err = FROM_STRING[a.type](raw)
        if err then return path .. " " .. profile .. " profile: " .. err end
        set(st, a, v, "file")
      end
    end
  end
end

-- Reads the selected profile into unset attributes and pins its name (Go does, and the CLI
-- token cache is keyed by it). A missing or key-less section is an error unless it is the
-- DEFAULT fallback, which is silently skipped and not pinned.
local function apply_profile(st, sections, path)
  local name, fallback, err = select_profile(st, sections, path)
  if err then return err end
  local section = get_section(sections, name)
  if not section or next(section) == nil then
    if fallback then return nil end
    return path .. " has no " .. name .. " profile configured"
  end
  err = load_section(st, section, path, name)
  if err then return err end
  if st.values.profile == nil then
    st.values.profile, st.sources.profile = name, "file"
  end
  st.profile_fallback = fallback or nil
end

local function load_file(st, home)
  if file_skipped(st) then return nil end
  local path, perr = config_path(st, home)
  if not path then return perr end
  local text, rerr, missing = read_file(path)
  if missing then return nil end
  if not text then return "cannot parse config file: " .. rerr end
  local sections, ierr = ini.parse(text, path)
  if not sections then return "cannot parse config file: " .. ierr end
  st.config_file = path
  return apply_profile(st, sections, path)
end

-- Auth groups of the set, non-internal attributes, sorted (the message lists them so).
local function auth_groups(st)
  local seen, list = {}, {}
  for _, a in ipairs(ATTRIBUTES) do
    if a.group and not a.internal and st.values[a.name] ~= nil and not seen[a.group] then
      seen[a.group] = true
      list[#list + 1] = a.group
    end
  end
  table.sort(list)
  return list
end

-- Values end up in URLs and HTTP headers: CR, LF or NUL in them is never intended and could
-- split a request. google_credentials is JSON and may span lines.
local MULTILINE = { google_credentials = true }

local function control_characters(st)
  for _, a in ipairs(ATTRIBUTES) do
    local v = st.values[a.name]
    if type(v) == "string" and not MULTILINE[a.name] and v:find("[\r\n%z]") then
      local src = st.sources[a.name] == "env" and (" (from " .. st.env_names[a.name] .. ")")
        or st.sources[a.name] == "file" and " (from the config file)" or ""
      return a.label .. src .. " contains a CR, LF or NUL character"
    end
  end
end

local function validate(st)
  if st.alias_conflict then return st.alias_conflict end
  local ctl = control_characters(st)
  if ctl then return ctl end
  local groups = auth_groups(st)
  if #groups > 1 and st.values.auth_type == nil then
    return "more than one authorization method configured: " .. table.concat(groups, " and ")
  end
end

-- After validation (so messages above show the raw host, as in Go). `?o=`/`?a=` values only
-- fill unset attributes. A host without hostname is kept raw: authenticate reports it (Go).
local function normalise_host(st)
  local raw = st.values.host
  if not raw then return end
  local canonical, promoted = host.normalize(raw)
  if not canonical then
    st.host_error = promoted
    return
  end
  st.values.host = canonical
  for _, name in ipairs({ "workspace_id", "account_id" }) do
    if promoted[name] and st.values[name] == nil then
      st.values[name], st.sources[name] = promoted[name], st.sources.host
    end
  end
end

local function fail(st, stage, msg)
  st.alias_conflict = nil
  return nil, errors.new("config", stage .. ": " .. msg .. _M.debug_suffix(st))
end

-- opts: attribute values by name (unknown names are ignored: check_options reports them).
-- ctx: { getenv = fn(name) -> string|nil, home = dir }; defaults os.getenv and $HOME.
-- Returns state | nil, err (code "config"). Raises on a wrongly typed option.
function _M.resolve(opts, ctx)
  opts = opts or {}
  local bad = check_types(opts)
  if bad then error("bad argument #1 to 'resolve' (" .. bad .. ")", 2) end
  ctx = ctx or {}
  local getenv = ctx.getenv or os.getenv
  local home = ctx.home
  if home == nil then home = os.getenv("HOME") end
  local st = new_state(getenv)
  load_explicit(st, opts)
  local err = load_env(st, getenv)
  if err then return fail(st, "resolve", err) end
  err = load_file(st, home)
  if err then return fail(st, "resolve", err) end
  err = validate(st)
  if err then return fail(st, "validate", err) end
  normalise_host(st)
  return st
end

-----------------------------------------------------------------------------------------------
-- Messages and derived values.

local MAX_SHOWN = 200

-- What the debug suffix shows of a value: a URL's userinfo (user:password@) masked, control
-- characters escaped and very long values cut, so that a hostile value cannot smuggle a
-- secret, a terminal escape or megabytes into an error message.
local function shown(name, s)
  if name == "host" or name:find("_url$") then
    s = s:gsub("^([%a][%w+.%-]*://)[^/?#]*@", "%1***@")
  end
  if #s > MAX_SHOWN then s = s:sub(1, MAX_SHOWN) .. "..." end
  return (s:gsub("%c", function(c) return string.format("\\x%02x", c:byte()) end))
end

local function format_value(v, name)
  if type(v) == "table" then return shown(name, table.concat(v, ",")) end
  if is_integer(v) then return string.format("%d", v) end
  return shown(name, tostring(v))
end

-- ". Config: host=https://x, token=***. Env: DATABRICKS_HOST, DATABRICKS_TOKEN" or "" (§2.8).
function _M.debug_suffix(state)
  if not state then return "" end
  local cfg, envs = {}, {}
  for _, a in ipairs(ATTRIBUTES) do
    local v = state.values[a.name]
    if v ~= nil and not a.internal then
      cfg[#cfg + 1] = a.label .. "=" .. (a.sensitive and "***" or format_value(v, a.name))
      for _, var in ipairs(state.env_present and state.env_present[a.name] or {}) do
        envs[#envs + 1] = var
      end
    end
  end
  local parts = {}
  if #cfg > 0 then parts[#parts + 1] = "Config: " .. table.concat(cfg, ", ") end
  if #envs > 0 then parts[#parts + 1] = "Env: " .. table.concat(envs, ", ") end
  if #parts == 0 then return "" end
  return ". " .. table.concat(parts, ". ")
end

-- Trailing dots are stripped first (Py), so texts ending in "." and Go's texts give one result.
function _M.with_suffix(message, state)
  local m = tostring(message):gsub("%.+$", "")
  return m .. _M.debug_suffix(state)
end

-- Scopes given anywhere else in the API (a list or a string), by the same D18 rules;
-- all-apis when nothing is left.
function _M.parse_scopes(v)
  local list
  if type(v) == "string" then
    list = parse_scopes(v)
  elseif type(v) == "table" then
    local items = {}
    for _, item in ipairs(v) do items[#items + 1] = tostring(item) end
    list = normalise_scopes(items)
  end
  return list or { DEFAULT_SCOPES[1] }
end

-- Effective OAuth scopes: the configured list (sorted, unique) or all-apis.
function _M.scopes(state)
  local s = state and state.values.scopes
  local out = {}
  for i, v in ipairs(s or DEFAULT_SCOPES) do out[i] = v end
  if #out == 0 then out[1] = DEFAULT_SCOPES[1] end
  return out
end

local HOST_TYPES = { workspace = true, account = true, unified = true }

-- "account" | "workspace" | "unified": host metadata's host_type wins (D8), else the URL rule.
function _M.host_type(state, metadata_host_type)
  if type(metadata_host_type) == "string" and HOST_TYPES[metadata_host_type:lower()] then
    return metadata_host_type:lower()
  end
  if host.is_account_url(state.values.host) then return "account" end
  return "workspace"
end

local CLOUDS = { aws = "AWS", azure = "Azure", gcp = "GCP" }

-- "AWS" | "Azure" | "GCP": an Azure resource id wins, then the `cloud` attribute (matched
-- case-insensitively, D25), then host metadata's cloud, then the DNS suffix (§3.4).
function _M.cloud(state, metadata_cloud)
  local v = state.values
  if v.azure_workspace_resource_id then return "Azure" end
  local known = type(v.cloud) == "string" and CLOUDS[v.cloud:lower()]
  if known then return known end
  known = type(metadata_cloud) == "string" and CLOUDS[metadata_cloud:lower()]
  if known then return known end
  return host.cloud(v.host)
end

_M.SETTINGS_SECTION = SETTINGS_SECTION
return _M
