-- The Databricks CLI's plaintext token cache, ~/.databricks/token-cache.json (notes §8.2,
-- decision D11), read and written in exactly the CLI's format so a login by either tool
-- serves the other:
--   { "version": 1, "tokens": { "<key>": { access_token, token_type, refresh_token,
--                                          expiry (RFC 3339), expires_in } } }
-- Other entries and unknown fields are kept. Writes replace the file atomically (temp file,
-- fsync, rename; 0600 in a 0700 directory) under an flock on a sibling .lock file, so
-- concurrent writers (processes, nginx workers) never lose an entry or leave broken JSON.
-- A file that cannot be parsed is reported, never overwritten.
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"

local _M = {}

local MAX_FILE = 16 * 1024 * 1024
local LOCK_TIMEOUT_MS = 10000
local ENTRY_ORDER = { "access_token", "token_type", "refresh_token", "expiry", "expires_in" }

function _M.path(home)
  return home .. "/.databricks/token-cache.json"
end

---------------------------------------------------------------------------------------------
-- Time: RFC 3339 both ways, without os.time's local-time interpretation.

local function days_from_civil(y, m, d)
  y = (m <= 2) and (y - 1) or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- "2026-01-02T15:04:05.123456789+01:00", "...Z", or "2026-01-02 15:04:05[.f]" (UTC, as Go
-- reads it) -> epoch seconds (fraction kept), or nil.
function _M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac, tz = rest:match("^(%.%d+)(.*)$")
  if not frac then frac, tz = "", rest end
  local offset = 0
  if not (tz == "Z" or tz == "z" or tz == "") then
    local sign, oh, om = tz:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - offset
  if frac ~= "" then t = t + tonumber("0" .. frac) end
  return t
end

function _M.format_time(t)
  local whole = math.floor(t)
  local ns = math.floor((t - whole) * 1e9 + 0.5)
  local frac = ""
  if ns > 0 and ns < 1e9 then frac = ("." .. string.format("%09d", ns)):gsub("0+$", "") end
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. frac .. "Z"
end

---------------------------------------------------------------------------------------------
-- JSON with the CLI's layout: two-space indent, known token fields first.

local function scalar(v)
  local s = assert(cjson.encode(v))
  return (s:gsub("\\/", "/"))   -- Debian's lua-cjson escapes "/"; Go does not
end

local function sorted_keys(t, first)
  local keys, seen = {}, {}
  for _, k in ipairs(first or {}) do
    if t[k] ~= nil then keys[#keys + 1] = k; seen[k] = true end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(rest) do keys[#keys + 1] = k end
  return keys
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and #t == n
end

local function encode(v, indent, order, out)
  if type(v) ~= "table" then
    out[#out + 1] = scalar(v)
    return
  end
  local inner = indent .. "  "
  if is_array(v) then
    out[#out + 1] = "["
    for i, item in ipairs(v) do
      out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner
      encode(item, inner, nil, out)
    end
    out[#out + 1] = "\n" .. indent .. "]"
    return
  end
  local keys = sorted_keys(v, order and order.self)
  if #keys == 0 then out[#out + 1] = "{}"; return end
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner .. scalar(tostring(k)) .. ": "
    encode(v[k], inner, order and order[k] or (order and order["*"]), out)
  end
  out[#out + 1] = "\n" .. indent .. "}"
end

local DOC_ORDER = { self = { "version", "tokens" }, tokens = { ["*"] = { self = ENTRY_ORDER } } }

function _M.encode(doc)
  local out = {}
  encode(doc, "", DOC_ORDER, out)
  return table.concat(out)
end

---------------------------------------------------------------------------------------------
-- Reading and writing

local function file_error(path, what, fields)
  return errors.new("token_cache", "token cache " .. path .. ": " .. what, fields)
end

-- Returns the parsed document ({version = 1, tokens = {}} when the file does not exist).
function _M.read(path)
  local data, code, msg = core.read_file(path, MAX_FILE)
  if not data then
    if code == "not_found" then return { version = 1, tokens = {} } end
    return nil, file_error(path, msg or code)
  end
  local doc = cjson.decode(data)
  if type(doc) ~= "table" or type(doc.tokens) ~= "table" and doc.tokens ~= nil then
    return nil, file_error(path, "not valid JSON in the token cache format", {
      hint = "the file is left as it is; move it away (the CLI and dbxauth recreate it on the next login)",
    })
  end
  if doc.version ~= 1 then
    return nil, file_error(path, "needs version 1, got version " .. tostring(doc.version))
  end
  doc.tokens = doc.tokens or {}
  return doc
end

-- The entry for `key` as a token table, or nil.
function _M.get(path, key)
  local doc, err = _M.read(path)
  if not doc then return nil, err end
  local e = doc.tokens[key]
  -- An entry whose token could not go into a header (hand-edited, corrupted) is no entry.
  if type(e) ~= "table" or type(e.access_token) ~= "string" or not e.access_token:find("^[\33-\126]+$") then
    return nil
  end
  return {
    access_token = e.access_token,
    token_type = type(e.token_type) == "string" and e.token_type or "Bearer",
    refresh_token = type(e.refresh_token) == "string" and e.refresh_token or nil,
    expiry = _M.parse_time(e.expiry),
  }
end

local function entry(old, tok, now)
  local e = {}
  if type(old) == "table" then
    for k, v in pairs(old) do e[k] = v end   -- unknown fields stay
  end
  e.access_token = tok.access_token
  e.token_type = tok.token_type or "Bearer"
  e.refresh_token = tok.refresh_token or e.refresh_token
  e.expiry = tok.expiry and _M.format_time(tok.expiry) or nil
  e.expires_in = tok.expiry and math.max(0, math.floor(tok.expiry - (tok.issued_at or now))) or nil
  if e.expires_in == 0 then e.expires_in = nil end
  return e
end

-- Store `tok` under every key in `keys` (the profile key and its host mirror).
function _M.put(path, keys, tok, now)
  local dir = path:match("^(.*)/[^/]+$")
  local ok, code, msg = core.mkdir(dir, tonumber("700", 8))
  if not ok then return nil, file_error(path, msg or code) end
  local lock
  lock, code, msg = core.lock(path .. ".lock", LOCK_TIMEOUT_MS)
  if not lock then return nil, file_error(path, "cannot lock: " .. tostring(msg or code)) end
  -- Whatever happens in between, the lock is released before returning or raising.
  local done, err = pcall(function()
    local doc, rerr = _M.read(path)
    if not doc then return rerr end
    for _, key in ipairs(keys) do doc.tokens[key] = entry(doc.tokens[key], tok, now) end
    local wok, wcode, wmsg = core.write_atomic(path, _M.encode(doc), tonumber("600", 8))
    if not wok then return file_error(path, wmsg or wcode) end
    return nil
  end)
  lock:unlock()
  if not done then error(err, 0) end
  if err then return nil, err end
  return true
end

return _M
