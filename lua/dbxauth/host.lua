-- Host normalisation, account-host and cloud detection (notes §3, decisions D7, D8).
--
--   host.normalize("adb-1.2.azuredatabricks.net/?o=123")
--     --> "https://adb-1.2.azuredatabricks.net", { workspace_id = "123" }
--   host.is_account_url("https://accounts.cloud.databricks.com") --> true
--   host.cloud("https://adb-1.2.azuredatabricks.net")             --> "Azure"
--
-- Go rules: a URL copied from the browser (path, `?o=` query, trailing slash) works as a host,
-- the scheme and an explicit port are kept as written.
local urls = require "dbxauth.url"

local _M = {}

local NO_HOST = "no host configured"

-- DNS suffixes in match order (first wins); the default is AWS (notes §3.4).
local LOGIN_APP_PROD = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
local ENVIRONMENTS = {
  { suffix = ".dev.databricks.com", cloud = "AWS" },
  { suffix = ".staging.cloud.databricks.com", cloud = "AWS" },
  { suffix = ".cloud.databricks.us", cloud = "AWS" },
  { suffix = ".cloud.databricks.com", cloud = "AWS" },
  { suffix = ".dev.azuredatabricks.net", cloud = "Azure", azure_environment = "PUBLIC",
    azure_login_app_id = "62a912ac-b58e-4c1d-89ea-b2dbfc7358fc" },
  { suffix = ".staging.azuredatabricks.net", cloud = "Azure", azure_environment = "PUBLIC",
    azure_login_app_id = "4a67d088-db5c-48f1-9ff2-0aace800ae68" },
  { suffix = ".azuredatabricks.net", cloud = "Azure", azure_environment = "PUBLIC",
    azure_login_app_id = LOGIN_APP_PROD },
  { suffix = ".databricks.azure.us", cloud = "Azure", azure_environment = "USGOVERNMENT",
    azure_login_app_id = LOGIN_APP_PROD },
  { suffix = ".databricks.azure.cn", cloud = "Azure", azure_environment = "CHINA",
    azure_login_app_id = LOGIN_APP_PROD },
  { suffix = ".dev.gcp.databricks.com", cloud = "GCP" },
  { suffix = ".staging.gcp.databricks.com", cloud = "GCP" },
  { suffix = ".gcp.databricks.com", cloud = "GCP" },
}
local DEFAULT_ENVIRONMENT = { suffix = ".cloud.databricks.com", cloud = "AWS" }

local ACCOUNT_PREFIXES = { "https://accounts.", "https://accounts-dod." }

local function unescape(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- First value of every key, like Go's url.Values.Get. Pairs containing ';' are skipped, as Go's
-- ParseQuery rejects them.
local function parse_query(q)
  local out = {}
  for pair in q:gmatch("[^&]+") do
    if not pair:find(";", 1, true) then
      local k, v = pair:match("^([^=]*)=?(.*)$")
      k = unescape(k)
      if out[k] == nil then out[k] = unescape(v) end
    end
  end
  return out
end

local function nonempty(v)
  if v ~= nil and v ~= "" then return v end
end

local function numeric(v)
  if v and v:match("^%d+$") then return v end
end

-- ?w= (any value) beats the numeric ?o= / ?workspace_id=; ?a= beats ?account_id=.
local function promoted_ids(query)
  local q = parse_query(query)
  return {
    workspace_id = nonempty(q.w) or numeric(q.o) or numeric(q.workspace_id),
    account_id = nonempty(q.a) or nonempty(q.account_id),
  }
end

-- Splits raw into scheme and the text after "//". Like Go's fixHostIfNeeded, anything without an
-- authority (`x`, `abc.def.ghi:443`, which Go parses as scheme "abc.def.ghi") is re-read with
-- "https://" in front.
local function split_url(raw)
  local scheme, rest = raw:match("^([A-Za-z][A-Za-z0-9+.%-]*):(.*)$")
  if scheme and rest:sub(1, 2) == "//" then
    return scheme:lower(), rest:sub(3)
  end
  return "https", raw
end

-- raw host (any form) -> canonical "scheme://host[:port]", promoted { workspace_id, account_id }
-- or nil, "no host configured" when there is no hostname (empty, "https://:443"), or nil and
-- "invalid host: <why>" when it is not an http(s) URL of a DNS name or IP address and port.
function _M.normalize(raw)
  if type(raw) ~= "string" or raw == "" then return nil, NO_HOST end
  local scheme, rest = split_url(raw)
  local authority, tail = rest:match("^([^/?#]*)(.*)$")
  -- Never reinterpreted: "https://a.cloud.databricks.com@evil.example.com" is evil.example.com
  -- to every URL parser, and certainly not the workspace its author meant.
  if authority:find("@", 1, true) then
    return nil, "invalid host: user information (user:password@) is not allowed; give the workspace URL only"
  end
  if authority:find("%", 1, true) then
    return nil, "invalid host: percent-encoded characters are not allowed in the host name"
  end
  if urls.hostname(authority) == "" then return nil, NO_HOST end
  local why = urls.bad_authority(scheme, authority)
  if why then return nil, "invalid host: " .. why end
  local query = tail:match("^[^?#]*%?([^#]*)") or ""
  return scheme .. "://" .. authority, promoted_ids(query)
end

-- URL rule of §3.3 (both SDKs): account consoles are accounts.* / accounts-dod.* over https.
function _M.is_account_url(h)
  if type(h) ~= "string" then return false end
  if not h:find("://", 1, true) then h = "https://" .. h end
  for _, prefix in ipairs(ACCOUNT_PREFIXES) do
    if h:sub(1, #prefix) == prefix then return true end
  end
  return false
end

-- The §3.4 row for a canonical host. The suffix is matched against the end of the whole URL,
-- so a host with a port matches nothing and gets the AWS default, as in Go.
function _M.environment(canonical)
  if type(canonical) == "string" then
    for _, env in ipairs(ENVIRONMENTS) do
      if canonical:sub(-#env.suffix) == env.suffix then return env end
    end
  end
  return DEFAULT_ENVIRONMENT
end

-- "AWS" | "Azure" | "GCP" from DNS alone (config.cloud adds the overrides).
function _M.cloud(canonical)
  return _M.environment(canonical).cloud
end

_M.NO_HOST = NO_HOST
_M.ENVIRONMENTS = ENVIRONMENTS
return _M
