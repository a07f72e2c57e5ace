-- What the `dbxauth` commands share: errors in the CLI's words, the environment a command
-- reads, configurations (with the --debug logger), profile lookups by name or host.
local dbxauth = require "dbxauth"
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local host = require "dbxauth.host"
local profiles = require "dbxauth.profiles"

local _M = {}

function _M.error(message, hint)
  return errors.new("cli", message, { hint = hint })
end

function _M.fail(message, hint)
  return nil, _M.error(message, hint)
end

local ATTRIBUTE_ENV = {}
for _, a in ipairs(config.ATTRIBUTES) do
  for _, name in ipairs(a.env) do ATTRIBUTE_ENV[name] = true end
end

-- The environment without DATABRICKS_* attribute variables (except `keep`): commands that take
-- the profile from the file alone (profiles, token) must not pick up credentials from the shell.
function _M.isolated(getenv, keep)
  keep = keep or {}
  return function(name)
    if ATTRIBUTE_ENV[name] and not keep[name] then return nil end
    return getenv(name)
  end
end

-- One --debug record per logger entry: the library's ready-made summary (`entry.text`, its
-- secrets already redacted), continued on following lines as the CLI prints a round trip.
local function debug_line(entry)
  if type(entry) ~= "table" then return tostring(entry) end
  if type(entry.text) == "string" then return entry.text end
  return tostring(entry.type or "") .. " " .. tostring(entry.method or "") .. " " .. tostring(entry.url or "")
end

-- dbxauth.config with the command's environment and home, and, under --debug, a logger that
-- prints what the library reports to stderr.
function _M.config(ctx, attrs, getenv)
  local c = { getenv = getenv or ctx.getenv, home = ctx.home }
  if ctx.debug then
    c.logger = function(entry)
      ctx.stderr(os.date("!%H:%M:%S") .. " Debug: " .. debug_line(entry) .. "\n")
    end
  end
  return dbxauth.config(attrs, c)
end

function _M.canonical(h)
  if not h or h == "" then return nil end
  return host.normalize(h) or h
end

-- The config file's path | nil, err.
function _M.path(ctx)
  return profiles.path(ctx.getenv, ctx.home)
end

-- Profiles (in file order) with a host or an account id, as the CLI lists them.
function _M.profiles(path)
  local list, err = profiles.list(path)
  if not list then return nil, err end
  local out = {}
  for _, p in ipairs(list) do
    local v = p.values
    if (v.host and v.host ~= "") or (v.account_id and v.account_id ~= "") then out[#out + 1] = p end
  end
  return out
end

local function names(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p.name end
  return out
end
_M.names = names

-- The profiles whose canonical host is `h` (and account id, when given).
function _M.matching(path, h, account_id)
  local list = _M.profiles(path) or {}
  local found = {}
  for _, p in ipairs(list) do
    local v = p.values
    if _M.canonical(v.host) == h and (not account_id or v.account_id == account_id) then
      found[#found + 1] = p
    end
  end
  return found
end

-- The CLI's test for "this argument is a host, not a profile name" (cmd/auth/resolve.go).
function _M.looks_like_host(s)
  return s:find(".", 1, true) ~= nil or s:find("^https?://") ~= nil or s:find(":%d+$") ~= nil
end

-- A host argument of describe / logout mapped to its one profile (cmd/auth/resolve.go):
-- name | nil, err
function _M.profile_for_host(path, raw)
  local h = _M.canonical(raw)
  local found = _M.matching(path, h)
  if #found == 1 then return found[1].name end
  if #found == 0 then
    return _M.fail('no profile found matching host "' .. raw .. '". Available profiles: '
      .. table.concat(names(_M.profiles(path) or {}), ", "))
  end
  local dp = profiles.default_profile(path)
  for _, p in ipairs(found) do
    if p.name == dp then return dp end
  end
  return _M.fail('multiple profiles found matching host "' .. raw .. '": ' .. table.concat(names(found), ", ")
    .. ". Please specify the profile name directly")
end

-- May the command ask questions? Only with a terminal on stdin and stderr and colour allowed
-- (libs/cmdio/capabilities.go: NO_COLOR or TERM=dumb also turn prompts off).
function _M.interactive(ctx)
  local nc, term = ctx.getenv("NO_COLOR"), ctx.getenv("TERM")
  if (nc and nc ~= "") or term == "dumb" then return false end
  return ctx.tty()
end

return _M
