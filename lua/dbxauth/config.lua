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
local attributes = require("dbxauth.attributes")
local core = require("dbxauth.core")
local errors = require("dbxauth.errors")
local host = require("dbxauth.host")
local ini = require("dbxauth.ini")

local _M = {}

local SETTINGS_SECTION = "__settings__"
local DEFAULT_PROFILE = "DEFAULT"
local DEFAULT_CONFIG_FILE = "~/.databrickscfg"

local ATTRIBUTES = attributes.LIST
local BY_NAME = attributes.BY_NAME
local FROM_STRING = attributes.FROM_STRING
local from_explicit, is_zero, is_integer = attributes.from_explicit, attributes.is_zero, attributes.is_integer
local check_types, trim = attributes.check_types, attributes.trim
_M.ATTRIBUTES = ATTRIBUTES
_M.BY_NAME = BY_NAME
_M.check_options = attributes.check_options

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
      if err then
        st.bad_value = { attribute = a.name, source = var, type = a.type }
        return err
      end
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
        if err then
          st.bad_value = { attribute = a.name, source = "profile " .. profile .. " of " .. path, type = a.type }
          return path .. " " .. profile .. " profile: " .. err
        end
        set(st, a, v, "file")
      end
    end
  end
end

-- The profiles a file has, in file order (sections with keys; not __settings__).
local function profile_names(sections)
  local out = {}
  for _, n in ipairs(sections.__order or {}) do
    local sec = sections[n]
    if n ~= SETTINGS_SECTION and type(sec) == "table" and next(sec) ~= nil then out[#out + 1] = n end
  end
  return out
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
    st.missing_profile = { name = name, known = profile_names(sections) }
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

-- Attributes sent as they are in an HTTP header field (Authorization: Bearer <value>): RFC 9110
-- token68-like credentials are visible ASCII; anything else would be mangled or refused later.
local HEADER_VALUES = { token = true, actions_id_token_request_token = true }

local function source_of(st, a)
  return st.sources[a.name] == "env" and (" (from " .. st.env_names[a.name] .. ")")
    or st.sources[a.name] == "file" and " (from the config file)" or ""
end

local function control_characters(st)
  for _, a in ipairs(ATTRIBUTES) do
    local v = st.values[a.name]
    if type(v) == "string" and not MULTILINE[a.name] and v:find("[\r\n%z]") then
      return a.label .. source_of(st, a) .. " contains a CR, LF or NUL character"
    end
    if type(v) == "string" and HEADER_VALUES[a.name] and v:find("[^\33-\126]") then
      return a.label .. source_of(st, a) .. " contains characters that cannot be sent in an HTTP header "
        .. "(only visible ASCII is allowed: no blanks, control or non-ASCII characters)"
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

local WANT = {
  bool = "true or false (Go's strconv.ParseBool also takes 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
  int = "a decimal integer such as 30 (no hex, exponent, fraction or blanks)",
}

-- Go's text stays the message (the conformance suite checks it); which attribute and where it
-- came from go in the hint and fields.
local function fail(st, stage, msg)
  st.alias_conflict = nil
  local bad, missing, fields = st.bad_value, st.missing_profile, nil
  if bad then
    fields = { attribute = bad.attribute, source = bad.source,
      hint = bad.attribute .. " (from " .. bad.source .. ") must be " .. (WANT[bad.type] or "valid") }
    st.bad_value = nil
  elseif missing then
    local known = #missing.known > 0 and ("the profiles there are " .. table.concat(missing.known, ", "))
      or "the file has no profiles"
    fields = { profiles = missing.known,
      hint = known .. "; run `databricks auth login --profile " .. missing.name .. "` (or dbxauth login) to "
        .. "create it" }
    st.missing_profile = nil
  end
  return nil, errors.new("config", stage .. ": " .. msg .. _M.debug_suffix(st), fields)
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

_M.parse_scopes = attributes.parse_scopes

-- Effective OAuth scopes: the configured list (sorted, unique) or all-apis.
function _M.scopes(state)
  return attributes.effective_scopes(state and state.values)
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

-- "host=https://x, token=***, ...": every set attribute, secrets masked (tostring(cfg)).
function _M.describe_values(state)
  local parts = {}
  for _, a in ipairs(ATTRIBUTES) do
    local val = state.values[a.name]
    if val ~= nil then
      -- a host kept raw (it did not normalise) may carry user:password@: masked like the suffix
      parts[#parts + 1] = a.name .. "=" .. (a.sensitive and "***" or format_value(val, a.name))
    end
  end
  return table.concat(parts, ", ")
end

-- cfg:describe(): where every set attribute came from, secrets masked.
function _M.describe(state)
  local list = {}
  for _, a in ipairs(ATTRIBUTES) do
    local v = state.values[a.name]
    if v ~= nil then
      local source = state.sources[a.name]
      if type(v) == "string" and not a.sensitive then v = shown(a.name, v) end
      list[#list + 1] = { name = a.name, value = a.sensitive and "***" or v, source = source,
        env = source == "env" and state.env_names[a.name] or nil, sensitive = a.sensitive }
    end
  end
  return { config_file = state.config_file, cloud = state.values.host and _M.cloud(state), attributes = list }
end

_M.SETTINGS_SECTION = SETTINGS_SECTION
return _M
