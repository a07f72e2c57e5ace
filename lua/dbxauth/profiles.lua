-- Profiles in ~/.databrickscfg (or DATABRICKS_CONFIG_FILE), for the `dbxauth` command:
--   profiles.path(getenv, home)            the file the SDKs and the CLI read
--   profiles.list(path)                    { { name =, values = { key = value } }, ... } in file order
--   profiles.get(path, name)               values | nil
--   profiles.default_profile(path)         [__settings__] default_profile | nil
--   profiles.save(path, name, entries)     write one profile, everything else kept
--   profiles.remove(path, name)            drop one profile, everything else kept
--   profiles.set_setting(path, key, value) [__settings__] key = value (nil: removed)
--
-- save() edits the file as text: the profile's section is rewritten in place (or appended), and
-- every other line - other profiles, comments, blank lines, odd formatting - stays byte for
-- byte. Like `databricks auth login`, the section's old keys are dropped except the compute
-- selection (cluster_id, warehouse_id, serverless_compute_id), which a login does not change.
-- The file is replaced atomically with mode 0600 under an advisory lock (`<path>.lock`), after
-- a copy of the previous version is kept as `<path>.bak` (as the CLI does).
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local ini = require "dbxauth.ini"
local config = require "dbxauth.config"

local _M = {}

local MAX_FILE = 4 * 1024 * 1024
local LOCK_TIMEOUT_MS = 10000
local MODE = tonumber("600", 8)
local KEEP = { cluster_id = true, warehouse_id = true, serverless_compute_id = true }

local function fail(message, fields)
  return nil, errors.new("config", message, fields)
end

local texts = require "dbxauth.text"
local trim, ltrim = texts.trim, texts.ltrim

function _M.path(getenv, home)
  local p = getenv("DATABRICKS_CONFIG_FILE")
  if p == nil or p == "" then p = "~/.databrickscfg" end
  if p:sub(1, 1) == "~" then
    if type(home) ~= "string" or home == "" then return fail("cannot find homedir: $HOME is not defined") end
    p = home .. p:sub(2)
  end
  return p
end

-- text ("" when the file does not exist), existed | nil, err
local function read(path)
  local data, code, msg = core.read_file(path, MAX_FILE)
  if data then return data, true end
  if code == "not_found" then return "", false end
  return fail("cannot read " .. path .. ": " .. tostring(msg or code))
end

local function parse(path)
  local text, err = read(path)
  if not text then return nil, err end
  local sections, perr = ini.parse(text, path)
  if not sections then return fail("cannot parse config file: " .. perr) end
  return sections
end

function _M.list(path)
  local sections, err = parse(path)
  if not sections then return nil, err end
  local out = {}
  for _, name in ipairs(sections.__order) do
    if name ~= config.SETTINGS_SECTION then
      out[#out + 1] = { name = name, values = sections[name] }
    end
  end
  return out
end

function _M.get(path, name)
  local sections, err = parse(path)
  if not sections then return nil, err end
  if name == "__order" then return nil end
  return sections[name]
end

function _M.default_profile(path)
  local sections, err = parse(path)
  if not sections then return nil, err end
  local s = sections[config.SETTINGS_SECTION]
  local dp = s and s.default_profile and trim(s.default_profile) or ""
  if dp == "" then return nil end
  return dp
end

---------------------------------------------------------------------------------------------
-- Editing

local function split_lines(text)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  if text:sub(-1) == "\n" or text == "" then lines[#lines] = nil end
  return lines
end

local function last_index(s, needle)
  local last, from = nil, 1
  while true do
    local i = s:find(needle, from, true)
    if not i then return last end
    last, from = i, i + 1
  end
end

-- The key of a key line and the index of the last line its value spans (the same rules as
-- ini.lua: `"""` and backtick values may span lines, a trailing `\` continues the value).
local function key_span(lines, i, line)
  local key, rest
  local quote = (line:sub(1, 3) == '"""' and #line > 6) and '"""'
    or ((line:sub(1, 1) == '"' or line:sub(1, 1) == "`") and line:sub(1, 1)) or nil
  if quote then
    local close = line:find(quote, #quote + 1, true)
    local delim = close and line:find("[=:]", close + #quote)
    if not delim then return nil end
    key, rest = trim(line:sub(#quote + 1, close - 1)), line:sub(delim + 1)
  else
    local delim = line:find("[=:]")
    if not delim or delim == 1 then return nil end
    key, rest = trim(line:sub(1, delim - 1)), line:sub(delim + 1)
  end
  local v = ltrim(rest)
  local raw = (#v > 3 and v:sub(1, 3) == '"""' and '"""') or (v:sub(1, 1) == "`" and "`") or nil
  if raw then
    if last_index(v:sub(#raw + 1), raw) then return key, i end
    for j = i + 1, #lines do
      if last_index(lines[j], raw) then return key, j end
    end
    return key, #lines
  end
  v = trim(v)
  if v:sub(-1) ~= "\\" then return key, i end
  local val, j = v:sub(1, -2), i
  while lines[j + 1] do
    local nxt = trim(lines[j + 1])
    if nxt == "" then return key, j end
    j = j + 1
    val = val .. nxt
    if val:sub(-1) ~= "\\" then return key, j end
    val = val:sub(1, -2)
  end
  return key, j
end

-- Sections of the file as line ranges: { name, header (line index, 0 for the keys before the
-- first header), last (last line), keys = { { key, first, last } } }.
local function scan(lines)
  local sections = {}
  local cur = { name = ini.DEFAULT_SECTION, header = 0, keys = {}, implicit = true }
  sections[1] = cur
  local i = 1
  while i <= #lines do
    local raw = lines[i]
    if i == 1 and raw:sub(1, 3) == "\239\187\191" then raw = raw:sub(4) end
    local line = ltrim(raw)
    local first = line:sub(1, 1)
    if first == "[" then
      local close = last_index(line, "]")
      cur.last = i - 1
      cur = { name = close and line:sub(2, close - 1) or "", header = i, keys = {} }
      sections[#sections + 1] = cur
    elseif line ~= "" and first ~= "#" and first ~= ";" then
      local key, last = key_span(lines, i, line)
      if key then
        cur.keys[#cur.keys + 1] = { key = key, first = i, last = last }
        i = last
      end
    end
    i = i + 1
  end
  cur.last = #lines
  return sections
end

-- A value as a line of the file: as it is when ini.lua reads it back unchanged, else wrapped
-- in """ (raw, no comment or quote processing).
local function format_value(v)
  v = tostring(v)
  if v:find("[\r\n]") then return nil, "contains a line break" end
  local plain = v == trim(v) and not v:find(" #", 1, true) and not v:find(" ;", 1, true)
    and not v:find("^[\"'`]") and not v:find("[\"'\\]$")
  if plain then return v end
  if v:find('"""', 1, true) or v:sub(-1) == '"' then return nil, 'cannot be written (contains """)' end
  return '"""' .. v .. '"""'
end

local function check_name(name)
  if type(name) ~= "string" or name == "" or name:find("[\r\n]") or trim(name) ~= name then
    return "invalid profile name " .. string.format("%q", tostring(name))
  end
  if name == config.SETTINGS_SECTION or name == "__order" then
    return name .. " is a reserved section name and cannot be used as a profile"
  end
end

-- The new text of the file with profile `name` holding `entries` ({ {key, value}, ... }).
function _M.edit(text, name, entries)
  local bad = check_name(name)
  if bad then return fail(bad) end
  local new_lines, setting = {}, {}
  for _, e in ipairs(entries) do
    local v, verr = format_value(e[2])
    if not v then return fail("value of " .. e[1] .. " " .. verr) end
    new_lines[#new_lines + 1] = e[1] .. " = " .. v
    setting[e[1]] = true
  end
  local lines = split_lines(text)
  local targets = {}
  for _, s in ipairs(scan(lines)) do
    if s.name == name and not (s.implicit and #s.keys == 0) then targets[#targets + 1] = s end
  end
  if #targets == 0 then
    -- A new section at the end, after a blank line.
    local out = {}
    for _, l in ipairs(lines) do out[#out + 1] = l end
    if #out > 0 and trim(out[#out]) ~= "" then out[#out + 1] = "" end
    out[#out + 1] = "[" .. name .. "]"
    for _, l in ipairs(new_lines) do out[#out + 1] = l end
    return table.concat(out, "\n") .. "\n"
  end
  -- Drop the old keys (in every section of that name: go-ini merges duplicates), keep the
  -- compute selection unless it is being set, and put the new keys where the first key was.
  local drop, insert_at = {}, nil
  for n, s in ipairs(targets) do
    for _, k in ipairs(s.keys) do
      if n == 1 and not insert_at then insert_at = k.first end
      if setting[k.key] or not KEEP[k.key] then
        for j = k.first, k.last do drop[j] = true end
      end
    end
  end
  if not insert_at then
    local s = targets[1]
    insert_at = s.header + 1
    for j = s.last, s.header + 1, -1 do
      if trim(lines[j]) ~= "" then insert_at = j + 1; break end
    end
  end
  local out = {}
  for j = 1, #lines + 1 do
    if j == insert_at then
      for _, l in ipairs(new_lines) do out[#out + 1] = l end
    end
    if j <= #lines and not drop[j] then out[#out + 1] = lines[j] end
  end
  return table.concat(out, "\n") .. "\n"
end

-- Replace the file at `path` by edit(text) (nil: no change), under the lock, with a backup.
local function rewrite(path, edit)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local st = core.stat(dir)
    if not st then
      local ok, code, msg = core.mkdir(dir, tonumber("700", 8))
      if not ok then return fail("cannot create " .. dir .. ": " .. tostring(msg or code)) end
    end
  end
  local lock, lcode, lmsg = core.lock(path .. ".lock", LOCK_TIMEOUT_MS)
  if not lock then return fail("cannot lock " .. path .. ": " .. tostring(lmsg or lcode)) end
  local ok, err = pcall(function()
    local text, existed = read(path)
    if not text then return existed end
    -- Refuse to rewrite a file the SDKs could not read either.
    local _, perr = ini.parse(text, path)
    if perr then return errors.new("config", "cannot parse config file: " .. perr) end
    local new, eerr = edit(text)
    if eerr then return eerr end
    if new == nil or new == text then return nil end
    -- temp copies a writer killed mid-write left (every writer holds this lock): profiles hold tokens
    core.clean_temps(path, 0)
    core.clean_temps(path .. ".bak", 0)
    local wok, code, msg
    if existed then
      wok, code, msg = core.write_atomic(path .. ".bak", text, MODE)
      if not wok then return errors.new("config", "backup: " .. tostring(msg or code)) end
    end
    wok, code, msg = core.write_atomic(path, new, MODE)
    if not wok then return errors.new("config", "cannot write " .. path .. ": " .. tostring(msg or code)) end
  end)
  lock:unlock()
  if not ok then error(err, 0) end
  if err then return nil, err end
  return true
end

-- Write profile `name` with `entries` ({ {key, value}, ... }) into the file at `path`.
function _M.save(path, name, entries)
  return rewrite(path, function(text) return _M.edit(text, name, entries) end)
end

-- The text without section `name` (every section of that name; comments above other sections
-- and everything else stay).
function _M.without(text, name)
  local lines, drop = split_lines(text), {}
  for _, s in ipairs(scan(lines)) do
    if s.name == name then
      -- the header through its last key: comments and blank lines after it head the next section
      local first = math.max(s.header, 1)
      local last = s.keys[#s.keys] and s.keys[#s.keys].last or s.header
      for j = first, last do drop[j] = true end
      local after = lines[last + 1]
      if first > 1 and trim(lines[first - 1]) == "" and (after == nil or trim(after) == "") then
        drop[first - 1] = true
      end
    end
  end
  local out = {}
  for j, l in ipairs(lines) do
    if not drop[j] then out[#out + 1] = l end
  end
  if #out == 0 then return "" end
  return table.concat(out, "\n") .. "\n"
end

function _M.remove(path, name)
  return rewrite(path, function(text) return _M.without(text, name) end)
end

-- The text with `key = value` in section `section` (created at the end if missing), or the
-- key removed when value is nil; the section's other keys stay ([__settings__] auth_storage).
function _M.with_key(text, section, key, value)
  local lines = split_lines(text)
  local target
  for _, s in ipairs(scan(lines)) do
    if s.name == section and s.header > 0 then target = s end
  end
  local line = value ~= nil and (key .. " = " .. value) or nil
  if not target then
    if not line then return text end
    local out = {}
    for _, l in ipairs(lines) do out[#out + 1] = l end
    if #out > 0 and trim(out[#out]) ~= "" then out[#out + 1] = "" end
    out[#out + 1] = "[" .. section .. "]"
    out[#out + 1] = line
    return table.concat(out, "\n") .. "\n"
  end
  local drop, at = {}, nil
  for _, k in ipairs(target.keys) do
    if k.key == key then
      at = at or k.first
      for j = k.first, k.last do drop[j] = true end
    end
  end
  at = at or (target.keys[#target.keys] and target.keys[#target.keys].last + 1) or target.header + 1
  local out = {}
  for j = 1, #lines + 1 do
    if j == at and line then out[#out + 1] = line end
    if j <= #lines and not drop[j] then out[#out + 1] = lines[j] end
  end
  return table.concat(out, "\n") .. "\n"
end

-- [__settings__] key = value (nil: removed).
function _M.set_setting(path, key, value)
  if value ~= nil and (tostring(value):find("[\r\n]") or trim(tostring(value)) ~= tostring(value)) then
    return fail("invalid value for " .. key)
  end
  return rewrite(path, function(text) return _M.with_key(text, config.SETTINGS_SECTION, key, value) end)
end

return _M
