-- The Databricks attributes: names, environment variables, types, groups and secrecy, and the
-- Go SDK's typed parsing of their values (notes §1, §2.3; decisions D2, D3, D18, D24). Pure.
--
--   attributes.LIST / attributes.BY_NAME      the table below (BY_NAME also has the aliases)
--   attributes.FROM_STRING[type](s)           env / profile text -> value | nil, Go's message
--   attributes.from_explicit(a, v)            a value given in code -> its typed form
--   attributes.check_options(opts, extra)     nil | why opts are not valid options
--   attributes.parse_scopes(list_or_string)   D18 rules; all-apis when nothing is left
local _M = {}

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
  -- dbxauth extras (no env var): CA bundle for the curl transport, response size cap, the
  -- bound on a `databricks auth token` subprocess.
  { name = "ca_file", internal = true },
  { name = "max_response_bytes", type = "int", internal = true },
  { name = "databricks_cli_timeout_seconds", type = "int", internal = true },
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

_M.LIST = ATTRIBUTES
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

local trim = require("dbxauth.text").trim

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
function _M.check_types(opts)
  if type(opts) ~= "table" then return "options must be a table, got " .. type(opts) end
  for _, k in ipairs(sorted_keys(opts)) do
    local a = type(k) == "string" and BY_NAME[k]
    local msg = a and check_value(a, opts[k])
    if msg then return 'attribute "' .. k .. '" ' .. msg end
  end
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

-- Effective OAuth scopes of resolved values: the configured list (sorted, unique) or all-apis.
function _M.effective_scopes(values)
  local s = values and values.scopes
  local out = {}
  for i, v in ipairs(s or DEFAULT_SCOPES) do out[i] = v end
  if #out == 0 then out[1] = DEFAULT_SCOPES[1] end
  return out
end

_M.go_quote = go_quote
_M.trim = trim
_M.is_zero = is_zero
_M.is_integer = is_integer
_M.from_explicit = from_explicit
_M.FROM_STRING = FROM_STRING

return _M
