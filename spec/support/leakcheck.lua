-- busted helper (see .busted) and registry: no secret the specs use may show up anywhere a
-- user or an operator could read it. When the suite ends, every registered secret is searched
-- for in
--   * every error object created in the run (message, hint, every string field, nested causes,
--     tostring), as they are by then;
--   * every tostring() of a dbxauth object (configs, tokens, transports, PKCE pairs, ...);
--   * everything written to this process's stdout and stderr (print, io.write, io.stdout/err);
--   * texts and files the specs hand in (leakcheck.text, leakcheck.scan_file);
--   * the nginx error.log/access.log of every fake workspace and gateway started (read just
--     before their prefix is deleted) and of every /tmp/dbxauth-* prefix created during the run;
--   * every file under the temp HOME directories the specs created (spec.support.files tmpdir
--     and home) except the token cache itself (token-cache.json); a secret that a spec itself
--     wrote into a file (files.write) is not a leak in that file nor in its `.bak` copy.
-- A leak fails the run. The summary line prints before busted's own (priority = 1).
--
-- From any spec:
--   local leakcheck = require "spec.support.leakcheck"
--   leakcheck.secret("my-secret")          -- register (strings shorter than 6 bytes are ignored)
--   leakcheck.text(captured, "where")      -- add captured output
--   leakcheck.scan_file(path)              -- add a file's current contents
--   leakcheck.scan_logs(prefix)            -- add <prefix>/logs/*.log now (before deleting it)
--   leakcheck.find(s)                      -- index of the first registered secret in s, or nil
--   leakcheck.strings(v)                   -- every string a user can read of a value (errors
--                                             walked field by field, tostring of objects)
-- Access and refresh tokens that pass through oauth.parse_token_response, and the Google tokens
-- of google.token, are registered too.
local NAME = "spec.support.leakcheck"
do
  local existing = package.loaded[NAME]
  if type(existing) == "table" and existing._registry then return existing end
end

local M = { _registry = true }
package.loaded[NAME] = M   -- survives busted's per-file insulation: loaded before any spec

local errors = require "dbxauth.errors"
local core = require "dbxauth.core"
local files = require "spec.support.files"

local MIN_SECRET = 6          -- shorter strings match by accident
local MIN_TOKEN = 12          -- tokens registered automatically

---------------------------------------------------------------------------------------------
-- The registry

local secrets, secret_set = {}, {}

function M.secret(s)
  if type(s) == "string" and #s >= MIN_SECRET and not secret_set[s] then
    secret_set[s] = true
    secrets[#secrets + 1] = s
  end
  return s
end

-- The fake workspace's credentials, the credential values of the conformance data and the
-- constants other specs use as secrets.
for _, s in ipairs {
  "dapi-fake-pat-0123456789abcdef", "fake-password-123", "fake-client-secret-xyz",
  core.b64_encode("admin@example.com:fake-password-123"),
  core.b64_encode("fake-client-id:fake-client-secret-xyz"),
  "fake-actions-request-token", "fake-ado-system-accesstoken-9876",
  -- Azure (fake/entra.lua): the service principal's secret and the App Service identity secret
  "fake-azure-secret-0123", core.b64_encode("fake-azure-client-id:fake-azure-secret-0123"),
  "fake-identity-header-secret",
  "PT0+IC9kZXYvdXJhbmRvbSA8PT0KYFZ", "dapiXYZ", "dapiOLD", "dapiOTHER", "dapiDEFAULT",
  "dapi-explicit-secret-1", "env-secret-password-2", "file-secret-token-3", "file-client-secret-4",
  "wrong-client-secret-5", "header-secret-6", "wrong-secret-value", "secret-looking-token-value",
  "dapi0123456789abcdef", "dapi-wrong-token", "dapi-not-valid",
  "password-without-quotes", "password-with-single-quotes", "password-with-double-quotes",
} do M.secret(s) end

-- Tokens handed out by token endpoints (the fake's, scripted ones) are secrets too.
do
  local oauth = require "dbxauth.oauth"
  local parse = oauth.parse_token_response
  oauth.parse_token_response = function(...)
    local tok, err = parse(...)
    if tok then
      for _, k in ipairs { "access_token", "refresh_token" } do
        local v = rawget(tok, k)
        if type(v) == "string" and #v >= MIN_TOKEN then M.secret(v) end
      end
    end
    return tok, err
  end
end

-- So are Google's ID and access tokens (google.lua builds every one of them in google.token).
do
  local google = require "dbxauth.google"
  local make = google.token
  google.token = function(value, expiry)
    if type(value) == "string" and #value >= MIN_TOKEN then M.secret(value) end
    return make(value, expiry)
  end
end

function M.find(s)
  if type(s) ~= "string" then return nil end
  for i, secret in ipairs(secrets) do
    if s:find(secret, 1, true) then return i end
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- What users can read

-- Every string of v a user could see: strings as they are; for error objects their tostring,
-- concatenation and every field (the server's `response` only through its tostring: its body
-- is the server's text); for other objects their tostring.
local function strings_of(v, out, seen)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = v
  elseif t == "table" and not seen[v] then
    seen[v] = true
    if errors.is(v) then
      out[#out + 1] = tostring(v)
      for k, x in pairs(v) do
        if k == "response" then out[#out + 1] = tostring(x) else strings_of(x, out, seen) end
      end
    elseif getmetatable(v) and getmetatable(v).__tostring then
      out[#out + 1] = tostring(v)
    else
      for k, x in pairs(v) do strings_of(k, out, seen); strings_of(x, out, seen) end
    end
  elseif t == "number" or t == "boolean" or t == "userdata" then
    out[#out + 1] = tostring(v)
  end
  return out
end

function M.strings(v)
  return strings_of(v, {}, {})
end

local texts = {}   -- { where, text }

function M.text(s, where)
  if type(s) == "string" and s ~= "" then texts[#texts + 1] = { where or "text", s } end
end

-- Error objects, from creation on.
local created = {}
local new = errors.new
errors.new = function(...)
  local e = new(...)
  created[#created + 1] = e
  return e
end

-- tostring of dbxauth objects.
local tostrings = {}
local raw_tostring = tostring
_G.tostring = function(v)
  local s = raw_tostring(v)
  local t = type(v)
  if t == "table" or t == "userdata" then
    local mt = getmetatable(v)
    local name = type(mt) == "table" and rawget(mt, "__name")
    if type(name) == "string" and name:sub(1, 7) == "dbxauth" then tostrings[#tostrings + 1] = s end
  end
  return s
end

-- This process's stdout and stderr.
local output = {}
local function capture(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" or type(v) == "number" then output[#output + 1] = raw_tostring(v) end
  end
end
do
  local raw_print, raw_write = print, io.write
  _G.print = function(...)
    local n = select("#", ...)
    for i = 1, n do capture(tostring((select(i, ...)))) end
    return raw_print(...)
  end
  io.write = function(...)   -- luacheck: ignore 122
    capture(...)
    return raw_write(...)
  end
  local methods = getmetatable(io.stdout).__index
  local fwrite = methods.write
  methods.write = function(f, ...)
    if f == io.stdout or f == io.stderr then capture(...) end
    return fwrite(f, ...)
  end
end

---------------------------------------------------------------------------------------------
-- Files

local q = files.q

local function sh_lines(cmd)
  local p = io.popen(cmd)
  if not p then return {} end
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- Secrets that a spec itself wrote into a file are input, not a leak.
local written = {}   -- path -> { [secret] = true } filled lazily from the contents
local written_text = {}
local raw_files_write = files.write
files.write = function(path, data)
  local list = written_text[path]
  if not list then list = {}; written_text[path] = list end
  if type(data) == "string" then list[#list + 1] = data end
  return raw_files_write(path, data)
end

local function allowed_in(path, secret)
  local cache = written[path]
  if not cache then cache = {}; written[path] = cache end
  if cache[secret] == nil then
    cache[secret] = false
    -- `<path>.bak` is the copy profile saving keeps of what the spec wrote to <path>
    for _, p in ipairs { path, (path:match("^(.*)%.bak$")) } do
      for _, d in ipairs(written_text[p] or {}) do
        if d:find(secret, 1, true) then cache[secret] = true; break end
      end
    end
  end
  return cache[secret]
end

local file_texts = {}   -- { path, text }

function M.scan_file(path)
  local s = files.read(path)
  if s and s ~= "" then file_texts[#file_texts + 1] = { path, s } end
end

-- nginx logs of a prefix, now (call before deleting the prefix).
local scanned_logs = {}
function M.scan_logs(prefix)
  for _, f in ipairs(sh_lines("ls " .. q(prefix .. "/logs") .. " 2>/dev/null")) do
    if f:match("%.log$") then
      local path = prefix .. "/logs/" .. f
      M.scan_file(path)
      scanned_logs[path] = true
    end
  end
end

-- HOME directories made by spec.support.files.
local homes = {}
local raw_tmpdir = files.tmpdir
files.tmpdir = function(...)
  local dir = raw_tmpdir(...)
  homes[#homes + 1] = dir
  return dir
end

-- Fake workspaces and gateways: their logs are read just before stop() deletes them, and at
-- suite end for those still running.
local servers = {}
local function watch_servers(modname)
  local ok, mod = pcall(require, modname)
  if not ok or type(mod) ~= "table" or type(mod.start) ~= "function" then return end
  local start = mod.start
  mod.start = function(...)
    local srv = start(...)
    if type(srv) == "table" and type(srv.dir) == "string" then
      servers[srv] = true
      local stop = srv.stop
      srv.stop = function(self, ...)
        if servers[self] then
          servers[self] = nil
          M.scan_logs(self.dir)
        end
        return stop(self, ...)
      end
    end
    return srv
  end
end
watch_servers("spec.support.fake")
watch_servers("spec.support.nginx_gw")

-- /tmp/dbxauth-* prefixes created during the run (kept dirs, detached servers, anything else).
local marker = os.tmpname()
do
  local f = io.open(marker, "w")
  if f then f:close() end
end

local function tmp_prefixes()
  local tmp = (marker:match("^(.*)/[^/]*$")) or "/tmp"
  return sh_lines("find " .. q(tmp) .. " -maxdepth 1 -name 'dbxauth-*' -type d -newer " .. q(marker)
    .. " 2>/dev/null")
end

---------------------------------------------------------------------------------------------
-- The check

-- Returns the number of leaks and writes where each was found (never the secret itself).
function M.check()
  local leaks = 0
  local function report(where, s, allow)
    for i, secret in ipairs(secrets) do
      if s:find(secret, 1, true) and not (allow and allow(secret)) then
        leaks = leaks + 1
        io.stderr:write("leakcheck: secret #" .. i .. " appears in " .. where .. "\n")
      end
    end
  end
  local n = 0
  for _, e in ipairs(created) do
    for _, s in ipairs(strings_of(e, {}, {})) do report("an error's text", s) end
    n = n + 1
  end
  for _, s in ipairs(tostrings) do report("a tostring() result", s) end
  report("this process's stdout/stderr", table.concat(output))
  for _, t in ipairs(texts) do report(t[1], t[2]) end

  for srv in pairs(servers) do M.scan_logs(srv.dir) end
  for _, dir in ipairs(tmp_prefixes()) do
    for _, f in ipairs(sh_lines("ls " .. q(dir .. "/logs") .. " 2>/dev/null")) do
      local path = dir .. "/logs/" .. f
      if f:match("%.log$") and not scanned_logs[path] then M.scan_file(path) end
    end
  end
  local nfiles = #file_texts
  for _, ft in ipairs(file_texts) do report(ft[1], ft[2]) end

  -- Every file under the spec-made homes, in one `find`.
  if #homes > 0 then
    local quoted = {}
    for i, d in ipairs(homes) do quoted[i] = q(d) end
    for _, path in ipairs(sh_lines("find " .. table.concat(quoted, " ") .. " -type f ! -name token-cache.json"
        .. " 2>/dev/null")) do
      local s = files.read(path)
      if s then
        nfiles = nfiles + 1
        report(path, s, function(secret) return allowed_in(path, secret) end)
      end
    end
  end
  return leaks, n, nfiles
end

local ok_busted, busted = pcall(require, "busted")
if ok_busted and type(busted) == "table" and busted.subscribe then
  local leaks = 0
  -- The summary line comes before busted's own summary ...
  busted.subscribe({ "suite", "end" }, function()
    local nerr, nfiles
    leaks, nerr, nfiles = M.check()
    os.remove(marker)
    io.stdout:write(string.format("\nleakcheck: %d error objects, %d tostrings, %d output bytes, %d texts and "
      .. "%d files searched for %d secrets: %d leaks\n", nerr, #tostrings, #table.concat(output), #texts, nfiles,
      #secrets, leaks))
    return nil, true
  end, { priority = 1 })
  -- ... and a leak fails the run after it, so that failing specs are still listed.
  busted.subscribe({ "suite", "end" }, function()
    if leaks > 0 then
      io.stderr:write("leakcheck: " .. leaks .. " leak(s): failing the run\n")
      os.exit(1)
    end
    return nil, true
  end)
end

return M
