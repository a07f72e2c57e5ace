-- The Databricks CLI's plaintext token cache, ~/.databricks/token-cache.json (notes §8.2,
-- decision D11), read and written in exactly the CLI's format so a login by either tool
-- serves the other:
--   { "version": 1, "tokens": { "<key>": { access_token, token_type, refresh_token,
--                                          expiry (RFC 3339), expires_in } } }
-- Other entries and unknown fields are kept. Writes replace the file atomically (temp file,
-- fsync, rename; 0600) under an flock on a sibling .lock file, so concurrent writers
-- (processes, nginx workers) never lose an entry or leave broken JSON. A file that cannot be
-- parsed is reported, never overwritten.
--
--   tokencache.path(home)                  ~/.databricks/token-cache.json | nil, err (no home)
--   tokencache.read(path) / get(path, key) / lookup(path, keys)
--   tokencache.locked(path, fn, {wait})    fn() with the lock held: what fn returns | nil, err
--   tokencache.put_locked(path, keys, tok, now)   read-modify-write, the lock already held
--   tokencache.put(path, keys, tok, now)   the same, taking the lock
--   tokencache.remove(path, keys)          delete entries (logout): how many | nil, err
--
-- Under the lock: the directory is made private first (created 0700; an existing one of
-- ours set to 0700; one that others may write into and that is not ours is refused), the
-- lock file is never a symlink (O_NOFOLLOW), and the temp files a writer killed between
-- creating and renaming left behind are removed before the next write (every writer of
-- this file holds the lock, so any found then is stale). Waiting for the lock blocks the
-- thread outside nginx; inside nginx it yields (ngx.sleep) where the phase allows it, and
-- elsewhere it is one attempt: nothing blocks a worker.
local core = require "dbxauth.core"
local cjson = require "cjson.safe"
local errors = require "dbxauth.errors"

local _M = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

local MAX_FILE = 16 * 1024 * 1024
-- Longest wait for the lock: a holder may be refreshing the login, one token request with the
-- token retry budget (60 s) plus a request in flight. A holder that dies releases it at once.
local LOCK_WAIT = 120
_M.LOCK_WAIT = LOCK_WAIT
local ENTRY_ORDER = { "access_token", "token_type", "refresh_token", "expiry", "expires_in" }

-- The cache's path under `home`; without a home directory there is none (never "/...").
function _M.path(home)
  if type(home) ~= "string" or home == "" then
    return nil, errors.new("token_cache", "cannot find homedir: $HOME is not defined, so there is no token "
      .. "cache (~/.databricks/token-cache.json)", {
      hint = "set HOME (in nginx: `env HOME;`), or pass the home directory: dbxauth.config(opts, { home = dir })",
    })
  end
  return (home:gsub("/+$", "")) .. "/.databricks/token-cache.json"
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

-- The entry for `key` as a token table, or nil (nil, err: the file cannot be read).
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

-- The entry of the first key in `keys` that has one | false (none) | nil, err.
function _M.lookup(path, keys)
  for _, key in ipairs(keys) do
    local tok, err = _M.get(path, key)
    if err then return nil, err end
    if tok then return tok end
  end
  return false
end

-- ngx.sleep where waiting may yield (cosocket phases of nginx); false elsewhere in nginx (no
-- wait at all); nil outside nginx (core.lock waits, blocking the thread).
local function yielding_sleep()
  local transport = require "dbxauth.transport"
  if not transport.in_nginx() then return nil end
  local n = rawget(_G, "ngx")
  if require("dbxauth.transport.ngx").COSOCKET_PHASES[n.get_phase()] then return n.sleep end
  return false
end

local function acquire(lock_path, wait)
  local sleep = yielding_sleep()
  if sleep == nil then return core.lock(lock_path, math.floor(wait * 1000)) end
  local deadline = core.now() + (sleep and wait or 0)
  local step = 0.002
  while true do
    local lock, code, msg = core.lock(lock_path, 0)
    if lock or code ~= "timeout" or core.now() >= deadline then return lock, code, msg end
    sleep(step)
    step = math.min(step * 2, 0.05)
  end
end

-- fn() with the cache's lock held, in its private directory (see the top). Returns what fn
-- returns, or nil, err when the lock cannot be had (err.busy: another process held it for
-- opts.wait seconds, LOCK_WAIT by default; 0 = one attempt). fn may raise: the lock is
-- released on every path.
function _M.locked(path, fn, opts)
  local wait = opts and opts.wait or LOCK_WAIT
  local dir = path:match("^(.*)/[^/]+$")
  local ok, code, msg = core.private_dir(dir)
  if not ok then
    return nil, file_error(path, msg or code, code == "insecure" and {
      hint = "others could replace the tokens there; make the directory yours and private: chmod 700 " .. dir,
    } or nil)
  end
  local lock
  lock, code, msg = acquire(path .. ".lock", wait)
  if not lock then
    if code == "timeout" then
      return nil, file_error(path, "cannot lock: another process has held " .. path .. ".lock for "
        .. wait .. " s", { busy = true,
          hint = "another dbxauth is using the token cache (a login or a refresh); try again" })
    end
    return nil, file_error(path, "cannot lock: " .. tostring(msg or code))
  end
  local res = pack(pcall(fn))
  lock:unlock()
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- Store `tok` under every key in `keys` (the profile key and its host mirror); the lock is held.
function _M.put_locked(path, keys, tok, now)
  local doc, rerr = _M.read(path)
  if not doc then return nil, rerr end
  for _, key in ipairs(keys) do doc.tokens[key] = entry(doc.tokens[key], tok, now) end
  core.clean_temps(path, 0)   -- best effort: a failure here shows in the write below
  local ok, code, msg = core.write_atomic(path, _M.encode(doc), tonumber("600", 8))
  if not ok then return nil, file_error(path, msg or code) end
  return true
end

-- The same, taking the lock.
function _M.put(path, keys, tok, now)
  return _M.locked(path, function() return _M.put_locked(path, keys, tok, now) end)
end

-- Delete the entries of `keys`: the number removed | nil, err. No file, no entries: 0.
function _M.remove(path, keys)
  local doc, rerr = _M.read(path)
  if not doc then return nil, rerr end
  local n = 0
  for _, key in ipairs(keys) do
    if doc.tokens[key] ~= nil then n = n + 1 end
  end
  if n == 0 then return 0 end
  return _M.locked(path, function()
    local cur, err = _M.read(path)
    if not cur then return nil, err end
    local removed = 0
    for _, key in ipairs(keys) do
      if cur.tokens[key] ~= nil then cur.tokens[key], removed = nil, removed + 1 end
    end
    local ok, code, msg = core.write_atomic(path, _M.encode(cur), tonumber("600", 8))
    if not ok then return nil, file_error(path, msg or code) end
    return removed
  end)
end

return _M
