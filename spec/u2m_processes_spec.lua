-- The CLI's token cache shared by processes (issue 11, "Processes, files and workers"): many
-- processes refreshing one expired login send one refresh grant between them, also with the
-- fake's rotating refresh tokens; and the files around the cache - its directory's mode, the
-- lock file, temp files of a writer that died, no home directory. Through the public API,
-- against the fake workspace over TLS; the other processes are child interpreters of the
-- kind running the specs.
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"
local curl = require "dbxauth.transport.curl"
local tokencache = require "dbxauth.tokencache"
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local q = files.q
local IS54 = _VERSION == "Lua 5.4"
local LUA = IS54 and "lua5.4" or "luajit"
local function oct(s) return tonumber(s, 8) end

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local ROOT = sh("pwd"):gsub("%s+$", "")
local CPATH = ROOT .. (IS54 and "/build/5.4/?.so" or "/build/jit/?.so")
local IS_ROOT = sh("id -u"):match("^%s*0%s*$") ~= nil

local ws

local function resolve_flags()
  local out = {}
  for _, r in ipairs(ws.resolve) do out[#out + 1] = "--resolve " .. q(r) end
  return table.concat(out, " ")
end

-- The browser: follows the authorize URL (the fake approves) back to the listener.
local function browser(url)
  os.execute("(sleep 0.1; curl -s -L --max-time 10 --cacert " .. q(ws.ca_file) .. " " .. resolve_flags()
    .. " -o /dev/null " .. q(url) .. ") >/dev/null 2>&1 &")
end

local function config(home, opts)
  opts = opts or {}
  opts.host = opts.host or ws.url
  opts.profile = opts.profile or "dev"
  opts.auth_type = opts.auth_type or "databricks-cli"
  opts.transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  return assert(dbxauth.config(opts, { env = { PATH = "" }, home = home }))
end

local function cache_path(home) return home .. "/.databricks/token-cache.json" end

-- A fresh home with a login of profile "dev" whose access token has expired.
local function expired_login()
  local home = files.tmpdir()
  local cfg = config(home, { auth_type = "external-browser" })
  assert(cfg:login { open = browser, timeout = 10 })
  local doc = assert(tokencache.read(cache_path(home)))
  for _, e in pairs(doc.tokens) do e.expiry = "2001-01-01T00:00:00Z" end
  files.write(cache_path(home), tokencache.encode(doc))
  return home
end

local function token_requests() return ws:counters()["POST /oidc/v1/token"] or 0 end

local function fingerprint(s) return core.b64url_encode(core.sha256(s)) end

setup(function() ws = fake.start() end)
teardown(function() if ws then ws:stop() end end)
before_each(function()
  ws:reset()
  dbxauth.clear_caches()
end)

describe("processes sharing the token cache", function()
  -- Each child waits for a start file, then asks for a token once and writes what it got
  -- (a fingerprint of the token, never the token) to its own file outside HOME.
  local CHILD = [[
    package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
    package.cpath = %q .. ";" .. package.cpath
    local dbxauth = require "dbxauth"
    local core = require "dbxauth.core"
    local curl = require "dbxauth.transport.curl"
    local home, ca, url, go, out = arg[1], arg[2], arg[3], arg[4], arg[5]
    local resolve = {}
    for i = 6, #arg do resolve[#resolve + 1] = arg[i] end
    local cfg = assert(dbxauth.config({ host = url, profile = "dev", auth_type = "databricks-cli",
      transport = curl.new { ca_file = ca, resolve = resolve } }, { env = { PATH = "" }, home = home }))
    while not io.open(go) do core.sleep(0.002) end
    local tok, err = cfg:token()
    local f = assert(io.open(out .. ".part", "w"))
    f:write(tok and ("ok " .. core.b64url_encode(core.sha256(tok.access_token)))
      or ("err " .. tostring(err.code) .. " " .. tostring(err.message)))
    f:close()
    os.rename(out .. ".part", out)
  ]]

  local function run_children(home, n)
    local dir = files.tmpdir()
    local script = dir .. "/child.lua"
    files.write(script, CHILD:format(ROOT, ROOT, CPATH))
    local go = dir .. "/go"
    local outs, cmd = {}, {}
    for i = 1, n do
      outs[i] = dir .. "/out" .. i
      local args = { q(script), q(home), q(ws.ca_file), q(ws.url), q(go), q(outs[i]) }
      for _, r in ipairs(ws.resolve) do args[#args + 1] = q(r) end
      cmd[#cmd + 1] = LUA .. " " .. table.concat(args, " ") .. " >/dev/null 2>&1 &"
    end
    assert(os.execute(table.concat(cmd, " ")))
    core.sleep(0.3)                                    -- let them load and wait at the start line
    files.write(go, "")
    local got, deadline = {}, core.now() + 60
    for i = 1, n do
      while not files.read(outs[i]) do
        assert(core.now() < deadline, "child " .. i .. " did not finish")
        core.sleep(0.02)
      end
      got[i] = files.read(outs[i])
    end
    os.execute("rm -rf " .. q(dir))
    return got
  end

  it("8 processes refreshing one expired login send one refresh grant and all get the new token", function()
    local home = expired_login()
    -- a slow grant (0.5 s) keeps the first refresh in flight while the others find the token due
    ws:fault { path = "/oidc/v1/token", kind = "pass", delay = 0.5, count = -1 }
    local before = token_requests()
    local got = run_children(home, 8)
    ws:clear_faults()
    assert.equal(1, token_requests() - before, "refresh grants at the token endpoint")
    local cached = assert(tokencache.get(cache_path(home), "dev"))
    for i = 1, 8 do
      assert.equal("ok " .. fingerprint(cached.access_token), got[i], "child " .. i)
    end
    -- the token they share is the one the workspace accepts, and the rotated refresh token works
    assert.equal(cached.access_token, assert(tokencache.get(cache_path(home), ws.url)).access_token)
    local cfg = config(home)
    assert.equal("user@example.com", assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
    assert(cfg:token { force_refresh = true })
    assert.equal(2, token_requests() - before)
  end)
end)

describe("the files around the token cache", function()
  it("removes the temp copy a writer killed mid-write left behind, on the next write", function()
    local home = expired_login()
    local dir = home .. "/.databricks"
    local stale = dir .. "/.token-cache.json-Ab12Cd.tmp"
    files.write(stale, files.read(cache_path(home)))   -- what a killed writer leaves: tokens
    assert(os.execute("chmod 600 " .. q(stale)))
    local unrelated = dir .. "/.token-cache.json-notours.tmp"
    files.write(unrelated, "x")
    assert(config(home):token())                        -- a refresh: the cache is written
    assert.is_nil(files.read(stale))
    assert.equal("x", files.read(unrelated))            -- only the names write_atomic makes
  end)

  it("makes the cache directory 0700 when it writes into it", function()
    local home = expired_login()
    local dir = home .. "/.databricks"
    assert(os.execute("chmod 0777 " .. q(dir)))
    assert(config(home):token())
    assert.equal(oct"700", core.stat(dir).mode)
    assert.equal(oct"600", core.stat(cache_path(home)).mode)
  end)

  it("refuses a cache directory that others may write into and that it cannot make private", function()
    local home = expired_login()
    local dir = home .. "/.databricks"
    if IS_ROOT then
      assert(os.execute("chown nobody " .. q(dir) .. " && chmod 0777 " .. q(dir)))
    else
      -- not ours: a link to the sticky, world-writable /tmp (never changed: it is not ours)
      local real = home .. "/real"
      assert(os.execute("mv " .. q(dir) .. " " .. q(real) .. " && ln -s /tmp " .. q(dir)))
      files.write("/tmp/token-cache.json", files.read(real .. "/token-cache.json"))
    end
    local before = token_requests()
    local _, err = config(home):token()
    assert.equal("token_cache", err.code)
    assert.matches("is writable by its group and others %(mode %d+%) and cannot be made private", err.message)
    assert.matches("chmod 700", err.hint)
    assert.equal(0, token_requests() - before)          -- nothing was spent on a refresh
    if not IS_ROOT then os.remove("/tmp/token-cache.json") end
  end)

  it("does not follow a symlink planted as the lock file", function()
    local home = expired_login()
    local target = home .. "/elsewhere"
    local lock = cache_path(home) .. ".lock"
    assert(os.execute("rm -f " .. q(lock) .. " && ln -s " .. q(target) .. " " .. q(lock)))
    local _, err = config(home):token()
    assert.equal("token_cache", err.code)
    assert.matches("is a symbolic link, which dbxauth does not follow; remove it", err.message, 1, true)
    assert.is_nil(core.stat(target))                     -- not created through the link
  end)

  it("has no token cache without a home directory, rather than one under /", function()
    local opts = { host = ws.url, auth_type = "databricks-cli",
                   transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve } }
    local cfg = assert(dbxauth.config(opts, { env = { PATH = "" } }))   -- no HOME
    local _, err = cfg:token()
    assert.equal("token_cache", err.code)
    assert.matches("cannot find homedir: $HOME is not defined", err.message, 1, true)
    assert.matches("set HOME", err.hint)
    opts.auth_type = "external-browser"
    local opened = false
    local _, lerr = assert(dbxauth.config(opts, { env = {} })):login { open = function() opened = true end,
                                                                         timeout = 5 }
    assert.equal("token_cache", lerr.code)
    assert.is_false(opened, "no login is started that could not be stored")
  end)
end)
