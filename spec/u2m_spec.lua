-- U2M end to end: browser login (the spec plays the browser with curl against the fake
-- workspace, which auto-approves), manual PKCE, refresh, and the CLI's token cache.
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"
local cjson = require "cjson"
local curl = require "dbxauth.transport.curl"
local tokencache = require "dbxauth.tokencache"
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local ws, creds
local q = files.q
local TIME_SCALE = tonumber(os.getenv("HOSTILE_TIME_SCALE") or "") or 1

local function resolve_flags()
  local out = {}
  for _, r in ipairs(ws.resolve) do out[#out + 1] = "--resolve " .. q(r) end
  return table.concat(out, " ")
end

-- A browser that follows the authorize URL (and the redirect to our listener) in the background.
local function browser(url)
  os.execute("(sleep 0.1; curl -s -L --max-time 10 --cacert " .. q(ws.ca_file) .. " " .. resolve_flags()
    .. " -o /dev/null " .. q(url) .. ") >/dev/null 2>&1 &")
end

-- An ephemeral port that was free a moment ago.
local function free_port()
  local l = assert(core.listen { ports = { 0 } })
  local p = l:port()
  l:close()
  return p
end

-- Logins listen on a free port of their own (oauth_callback_port) unless the test is about
-- 8020: other runs of these specs on this machine may hold 8020. oauth_callback_port = false
-- leaves it unset.
local function config(opts, ctx)
  opts.transport = opts.transport or curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  opts.auth_type = opts.auth_type or "external-browser"
  if opts.oauth_callback_port == nil then opts.oauth_callback_port = free_port()
  elseif opts.oauth_callback_port == false then opts.oauth_callback_port = nil end
  ctx = ctx or {}
  ctx.env = ctx.env or {}
  ctx.home = ctx.home or files.tmpdir()
  return assert(dbxauth.config(opts, ctx)), ctx.home
end

local function count(k) return ws:counters()[k] or 0 end
local function quiet() end   -- the login's "Waiting up to ..." line, not for the spec's output

local function port_of(url) return tonumber(url:match("redirect_uri=http%%3A%%2F%%2Flocalhost%%3A(%d+)")) end

-- Runs `fn` while this process holds port 8020 (waiting up to 20 s for another run of these
-- specs to let go of it); fn(release) may call release() to free it early.
local function holding_8020(fn)
  local l
  local deadline = core.now() + 20
  repeat
    l = core.listen { ports = { 8020 } }
    if not l then core.sleep(0.2) end
  until l or core.now() > deadline
  assert(l, "port 8020 stayed busy for 20 s")
  local ok, e = pcall(fn, function() l:close() end)
  l:close()
  if not ok then error(e, 0) end
end

-- A login on 8020 itself: retried while another run of these specs holds the port.
local function login_on_8020(cfg, opts)
  local deadline = core.now() + 20
  while true do
    local tok, err = cfg:login(opts)
    if tok or err.code ~= "port_in_use" or core.now() > deadline then return tok, err end
    core.sleep(0.2)
  end
end

-- Plain-HTTP GETs to the login's listener in the background; each status code lands in a file.
local function stray_gets(port, targets)
  local files_out, cmds = {}, {}
  for i, t in ipairs(targets) do
    files_out[i] = os.tmpname()
    cmds[#cmds + 1] = "curl -s -o /dev/null -w '%{http_code}' --max-time 5 " .. q("http://127.0.0.1:" .. port .. t)
      .. " > " .. q(files_out[i])
  end
  return table.concat(cmds, "; "), files_out
end

setup(function()
  ws = fake.start()
  creds = ws.creds
end)
teardown(function() if ws then ws:stop() end end)
before_each(function()
  ws:reset()
  dbxauth.clear_discovery_cache()
end)

describe("browser login", function()
  it("logs in at workspace level and stores the tokens in the CLI's cache", function()
    local cfg, home = config { host = ws.url, profile = "dev" }
    local tok = assert(cfg:login { stderr = quiet, open = browser, timeout = 10 })
    assert.truthy(tok.refresh_token)
    assert.same({ "all-apis", "offline_access" }, (function() table.sort(tok.scopes); return tok.scopes end)())
    local last = ws:last("/oidc/v1/token")
    assert.matches("grant_type=authorization_code", last.body)
    assert.matches("client_id=databricks%-cli", last.body)
    assert.matches("code_verifier=", last.body)
    -- the file, as the CLI writes it
    local path = home .. "/.databricks/token-cache.json"
    local doc = cjson.decode(files.read(path))
    assert.equal(1, doc.version)
    for _, key in ipairs { "dev", ws.url } do
      local e = doc.tokens[key]
      assert.equal(tok.access_token, e.access_token)
      assert.equal("Bearer", e.token_type)
      assert.equal(tok.refresh_token, e.refresh_token)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[.%d]*Z$", e.expiry)
    end
    assert.equal(tonumber("600", 8), core.stat(path).mode)
    assert.equal(tonumber("700", 8), core.stat(home .. "/.databricks").mode)
    -- and the config now authenticates from the cache without another login
    assert.equal("Bearer " .. tok.access_token, assert(cfg:authenticate()).Authorization)
    assert.equal("user@example.com", assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" }):json().userName)
  end)

  it("logs in at account level", function()
    local cfg, home = config { host = ws.account_url, account_id = creds.account_id }
    assert(cfg:login { stderr = quiet, open = browser, timeout = 10 })
    assert.equal(1, count("POST /oidc/accounts/" .. creds.account_id .. "/v1/token"))
    local doc = cjson.decode(files.read(home .. "/.databricks/token-cache.json"))
    assert.truthy(doc.tokens[ws.account_url .. "/oidc/accounts/" .. creds.account_id])
  end)

  it("authenticates with auth_type external-browser by logging in when nothing is cached", function()
    -- BROWSER comes from the injected environment; %s stands for the URL
    local cfg = config({ host = ws.url }, { env = { BROWSER = "curl -s -L --max-time 10 --cacert "
      .. q(ws.ca_file) .. " " .. resolve_flags() .. " -o /dev/null %s" } })
    assert(cfg:authenticate())
    assert.equal("external-browser", cfg.auth_type)
    assert.equal(1, count("POST /oidc/v1/token"))
  end)

  it("answers callbacks with another state 400 and logs in with the real one", function()
    -- what any web page can make the browser send: a code or an error with a state of its own
    local cfg = config { host = ws.url }
    local statuses
    local tok = assert(cfg:login { stderr = quiet, timeout = 10, open = function(url)
      local cmd
      cmd, statuses = stray_gets(port_of(url), { "/?code=forged&state=forged", "/?code=forged",
        "/?error=access_denied&error_description=forged&state=forged", "/favicon.ico" })
      os.execute("(" .. cmd .. "; curl -s -L --max-time 10 --cacert " .. q(ws.ca_file) .. " " .. resolve_flags()
        .. " -o /dev/null " .. q(url) .. ") >/dev/null 2>&1 &")
    end })
    assert.truthy(tok.access_token)
    assert.same({ "400", "400", "400", "404" }, (function()
      local out = {}
      for i, f in ipairs(statuses) do out[i] = files.read(f); os.remove(f) end
      return out
    end)())
    assert.equal(1, count("POST /oidc/v1/token"))
    assert.matches("code=[^&]", ws:last("/oidc/v1/token").body)
    assert.not_matches("code=forged", ws:last("/oidc/v1/token").body)
  end)

  it("keeps waiting after a redirect with another state, and says so when it times out", function()
    ws:set { authorize_state = "forged-state" }
    local cfg = config { host = ws.url }
    local tok, err = cfg:login { stderr = quiet, open = browser, timeout = 1.5 }
    assert.is_nil(tok)
    assert.equal("timeout", err.code)
    assert.equal("no browser login arrived in time (waited 1.5 s); 1 callback with another login's state "
      .. "was refused", err.message)
    assert.matches("start the login again", err.hint)
    assert.equal(0, count("POST /oidc/v1/token"))
  end)

  it("reports an error callback with its description", function()
    ws:set { authorize_error = "access_denied" }
    local _, err = config({ host = ws.url }):login { stderr = quiet, open = browser, timeout = 10 }
    assert.equal("login_failed", err.code)
    assert.equal("access_denied", err.oauth_error)
    assert.matches("^access_denied: The user denied the request", err.message)
  end)

  it("ignores an error callback that does not carry the login's state", function()
    local port
    local _, err = config({ host = ws.url }):login { stderr = quiet, timeout = 1.5, open = function(url)
      port = url:match("localhost%%3A(%d+)")
      os.execute("(sleep 0.2; curl -s -o /dev/null 'http://127.0.0.1:" .. port
        .. "/?error=access_denied&error_description=forged') >/dev/null 2>&1 &")
    end }
    assert.equal("timeout", err.code)   -- not login_failed: the forged error was answered and ignored
  end)

  it("times out when no browser comes back, and says where it waited and how to cancel", function()
    local t0 = core.now()
    local said = {}
    local cfg = config { host = ws.url }
    local _, err = cfg:login { open = function() end, timeout = 0.5,
      stderr = function(text) said[#said + 1] = text end }
    assert.equal("timeout", err.code)
    assert.equal("no browser login arrived in time (waited 0.5 s)", err.message)
    assert.matches("timeout = <seconds>", err.hint, 1, true)
    assert.is_true(core.now() - t0 < 3)
    assert.same({ "Waiting up to 0.5 s for the browser to come back to http://localhost:"
      .. cfg:get("oauth_callback_port") .. " (press Ctrl-C to cancel)\n" }, said)
    assert.has_error(function() cfg:login { stderr = quiet, timeout = 0 } end,
      "bad argument #1 to 'login' (timeout must be a positive number of seconds)")
    assert.has_error(function() cfg:login { stderr = quiet, timeout = math.huge } end)
    assert.has_error(function() cfg:login { stderr = quiet, timeout = "10" } end)
  end)

  it("is not held up by idle and slow local connections", function()
    local cfg = config { host = ws.url }
    local t0
    local tok = assert(cfg:login { stderr = quiet, timeout = 20, open = function(url)
      -- 40 connections that say nothing or never finish their head, then the browser
      local port = port_of(url)
      local cmd = {}
      for i = 1, 40 do
        cmd[#cmd + 1] = "(exec 3<>/dev/tcp/127.0.0.1/" .. port
          .. (i % 2 == 0 and "" or "; printf 'GET / HTTP/1.1\\r\\n' >&3") .. "; sleep 8) &"
      end
      os.execute("bash -c " .. q(table.concat(cmd, " ") .. " wait") .. " >/dev/null 2>&1 &")
      core.sleep(0.5)
      t0 = core.now()
      os.execute("(curl -s -L --max-time 10 --cacert " .. q(ws.ca_file) .. " " .. resolve_flags()
        .. " -o /dev/null " .. q(url) .. ") >/dev/null 2>&1 &")
    end })
    assert.truthy(tok.access_token)
    local dt = core.now() - t0
    assert.is_true(dt < 2 * TIME_SCALE, string.format("%.2f s", dt))
  end)
end)

describe("the callback port", function()
  it("is 8020 for the databricks-cli client", function()
    local cfg = config { host = ws.url, oauth_callback_port = false }
    local seen
    assert(login_on_8020(cfg, { stderr = quiet, timeout = 10, open = function(url) seen = url; browser(url) end }))
    assert.equal(8020, port_of(seen))
    assert.equal("http://localhost:8020", ws:last("/oidc/v1/token").body:match("redirect_uri=([^&]+)")
      :gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end)

  it("fails at once with port_in_use when 8020 is busy, and tries no other port", function()
    holding_8020(function()
      for _, opts in ipairs { { host = ws.url }, { host = ws.url, client_id = creds.client_id } } do
        opts.oauth_callback_port = false
        local cfg = config(opts)
        local opened = false
        local t0 = core.now()
        local tok, err = cfg:login { stderr = quiet, timeout = 30, open = function() opened = true end }
        assert.is_nil(tok)
        assert.is_true(core.now() - t0 < 2, "took " .. (core.now() - t0) .. " s")
        assert.equal("port_in_use", err.code)
        assert.equal(8020, err.port)
        assert.matches("^failed to listen on localhost:8020: address already in use", err.message)
        assert.matches("accepts only the redirect URL http://localhost:8020", err.hint, 1, true)
        assert.matches("lsof -i :8020", err.hint, 1, true)
        assert.matches("set client_id and oauth_callback_port", err.hint, 1, true)
        assert.is_false(opened)
        for k in pairs(ws:counters()) do assert.not_matches("/oidc/", k) end   -- no discovery, no authorize
      end
    end)
  end)

  it("is oauth_callback_port when set, and names it when busy", function()
    local held = assert(core.listen { ports = { 0 } })
    local p = held:port()
    local cfg = config({ host = ws.url, oauth_callback_port = false },
      { env = { DATABRICKS_OAUTH_CALLBACK_PORT = tostring(p) } })
    local _, err = cfg:login { stderr = quiet, timeout = 30, open = browser }
    assert.equal("port_in_use", err.code)
    assert.matches("localhost:" .. p .. ": address already in use", err.message, 1, true)
    assert.matches("port " .. p .. " (oauth_callback_port, from DATABRICKS_OAUTH_CALLBACK_PORT)", err.message, 1, true)
    assert.matches("set oauth_callback_port to another port", err.hint, 1, true)
    held:close()
    local seen
    assert(cfg:login { stderr = quiet, timeout = 10, open = function(url) seen = url; browser(url) end })
    assert.equal(p, port_of(seen))
    _, err = config({ host = ws.url, oauth_callback_port = 70000 }):login { stderr = quiet, timeout = 1,
      open = browser }
    assert.equal("config", err.code)
    assert.matches("oauth_callback_port must be a port number from 1 to 65535, got 70000", err.message, 1, true)
  end)
end)

describe("refresh", function()
  it("refreshes an expired login once, and writes it back", function()
    local now = os.time()
    local cfg, home = config({ host = ws.url, profile = "dev" }, { clock = function() return now end })
    local first = assert(cfg:login { stderr = quiet, open = browser, timeout = 10 })
    assert(cfg:authenticate())
    now = now + 3600
    for _ = 1, 20 do assert(cfg:authenticate()) end
    assert.equal(1, count("refresh"))
    local cached = tokencache.get(home .. "/.databricks/token-cache.json", "dev")
    assert.are_not.equal(first.access_token, cached.access_token)
    assert.are_not.equal(first.refresh_token, cached.refresh_token)
  end)

  it("asks for a new login when the refresh token is invalid", function()
    local now = os.time()
    local cfg = config({ host = ws.url, profile = "test-profile" }, { clock = function() return now end })
    assert(cfg:login { stderr = quiet, open = browser, timeout = 10 })
    ws:revoke_refresh_tokens()
    now = now + 3600
    local _, err = cfg:authenticate()
    assert.equal("invalid_refresh_token", err.code)
    assert.truthy(err.message:find("A new access token could not be retrieved because the refresh token is invalid. "
      .. "To reauthenticate, run the following command:\n  $ databricks auth login --profile test-profile", 1, true))
    assert.matches("dbxauth login %-%-profile test%-profile", err.hint)
  end)
end)

describe("the CLI's token cache", function()
  it("serves a login written by the CLI and keeps its other entries and fields", function()
    -- log in once to get tokens the fake accepts, then lay them out as the Go CLI writes them
    local cfg0 = config { host = ws.url }
    local tok = assert(cfg0:login { stderr = quiet, open = browser, timeout = 10 })
    local home = files.tmpdir()
    local text = [[
{
  "version": 1,
  "tokens": {
    "other-profile": {
      "access_token": "other-access",
      "token_type": "Bearer",
      "refresh_token": "other-refresh",
      "expiry": "2030-01-02T15:04:05.123456789+01:00",
      "future_field": {"kept": true}
    },
    "mine": {
      "access_token": "]] .. tok.access_token .. [[",
      "token_type": "Bearer",
      "refresh_token": "]] .. tok.refresh_token .. [[",
      "expiry": "2001-01-01T00:00:00Z",
      "expires_in": 3600,
      "unknown": 7
    }
  }
}]]
    files.write(home .. "/.databricks/token-cache.json", text)
    local cfg = config({ host = ws.url, profile = "mine" }, { home = home })
    assert(cfg:request { path = "/api/2.0/preview/scim/v2/Me" })   -- expired: refreshed from the file's token
    assert.equal(1, count("refresh"))
    local doc = cjson.decode(files.read(home .. "/.databricks/token-cache.json"))
    assert.same({ kept = true }, doc.tokens["other-profile"].future_field)
    assert.equal("2030-01-02T15:04:05.123456789+01:00", doc.tokens["other-profile"].expiry)
    assert.equal(7, doc.tokens.mine.unknown)
    assert.are_not.equal(tok.access_token, doc.tokens.mine.access_token)
    assert.truthy(doc.tokens[ws.url])   -- mirrored under the host key
  end)

  it("reports a corrupt cache naming the file, and leaves it alone", function()
    local home = files.tmpdir()
    files.write(home .. "/.databricks/token-cache.json", "{not json")
    local cfg = config({ host = ws.url }, { home = home })
    local _, err = cfg:authenticate()
    assert.equal("token_cache", err.code)
    assert.truthy(err.message:find(home .. "/.databricks/token-cache.json", 1, true))
    assert.equal("{not json", files.read(home .. "/.databricks/token-cache.json"))
    files.write(home .. "/.databricks/token-cache.json", '{"version": 2, "tokens": {}}')
    _, err = config({ host = ws.url }, { home = home }):authenticate()
    assert.matches("needs version 1, got version 2", err.message)
  end)

  it("keeps every entry when 8 processes write 50 entries each at once", function()
    local dir = files.tmpdir()
    local path = dir .. "/.databricks/token-cache.json"
    local script = dir .. "/writer.lua"
    files.write(script, [[
      local tc = require "dbxauth.tokencache"
      local w = tonumber(arg[2])
      for i = 1, 50 do
        assert(tc.put(arg[1], { "w" .. w .. "-" .. i }, { access_token = "a", token_type = "Bearer",
          expiry = 2000000000 }, 1))
      end
    ]])
    local cmd = {}
    for w = 1, 8 do
      cmd[#cmd + 1] = "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' lua5.4 "
        .. q(script) .. " " .. q(path) .. " " .. w .. " &"
    end
    assert(os.execute(table.concat(cmd, " ") .. " wait"))
    local doc = cjson.decode(files.read(path))
    local n = 0
    for _ in pairs(doc.tokens) do n = n + 1 end
    assert.equal(400, n)
    local leftovers = io.popen("ls -A " .. q(dir .. "/.databricks")):read("*a")
    assert.not_matches("%.tmp", leftovers)
  end)
end)

describe("cfg:token from the token cache", function()
  local tokenshape = require "spec.support.tokenshape"

  it("has the one token shape for databricks-cli and external-browser: fresh, refreshed, forced", function()
    local now = os.time()
    local clock = function() return now end
    local cfg0, home = config { host = ws.url }
    assert(cfg0:login { open = browser, timeout = 10 })
    for _, auth_type in ipairs { "databricks-cli", "external-browser" } do
      local cfg = config({ host = ws.url, auth_type = auth_type }, { home = home, clock = clock })
      -- a valid cache entry (read as the file has it, refresh token and all)
      local tok = tokenshape.check(assert(cfg:token()), auth_type .. " cached")
      assert.equal(auth_type, cfg.auth_type)
      assert.is_number(tok.expiry)
      -- expired: refreshed with the refresh token and written back
      now = now + 7200
      local refreshed = tokenshape.check(assert(cfg:token()), auth_type .. " refreshed")
      assert.are_not.equal(tok.access_token, refreshed.access_token)
      tokenshape.check(assert(cfg:token { force_refresh = true }), auth_type .. " forced")
    end
    assert.equal(4, count("refresh"))
  end)
end)

describe("manual PKCE (seed 004's steps)", function()
  it("walks verifier, authorize URL, code exchange and refresh", function()
    local p = dbxauth.pkce()
    assert.equal(86, #p.verifier)
    assert.equal(core.b64url_encode(core.sha256(p.verifier)), p.challenge)
    assert.not_matches(p.verifier, tostring(p), 1, true)
    local cfg = config { host = ws.url }
    local url, state = cfg:authorize_url { redirect_uri = "http://localhost:8020", challenge = p.challenge }
    assert.matches("^" .. ws.url:gsub("%p", "%%%0") .. "/oidc/v1/authorize%?client_id=databricks%-cli&", url)
    assert.matches("code_challenge_method=S256", url)
    assert.matches("scope=offline_access%+all%-apis", url)
    -- the browser step, by hand: the fake approves and redirects with the code
    local loc = io.popen("curl -s -o /dev/null -w '%{redirect_url}' --cacert " .. q(ws.ca_file) .. " "
      .. q(url)):read("*a")
    local code, got_state = loc:match("code=([^&]+)"), loc:match("state=([^&]+)")
    assert.equal(state, core.url_decode(got_state))
    local tok = assert(cfg:exchange_code { code = core.url_decode(code), verifier = p.verifier,
      redirect_uri = "http://localhost:8020" })
    assert.truthy(tok.refresh_token)
    local again = assert(cfg:refresh { refresh_token = tok.refresh_token })
    assert.are_not.equal(tok.access_token, again.access_token)
    local _, err = cfg:exchange_code { code = "x", verifier = "short", redirect_uri = "http://localhost:8020" }
    assert.equal("invalid_request", err.code)
  end)
end)
