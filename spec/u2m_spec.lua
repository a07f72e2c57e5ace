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

local function config(opts, ctx)
  opts.transport = opts.transport or curl.new { ca_file = ws.ca_file, resolve = ws.resolve }
  opts.auth_type = opts.auth_type or "external-browser"
  ctx = ctx or {}
  ctx.env = ctx.env or {}
  ctx.home = ctx.home or files.tmpdir()
  return assert(dbxauth.config(opts, ctx)), ctx.home
end

local function count(k) return ws:counters()[k] or 0 end

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
    local tok = assert(cfg:login { open = browser, timeout = 10 })
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
    assert(cfg:login { open = browser, timeout = 10 })
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

  it("rejects a callback whose state does not match, without exchanging", function()
    ws:set { authorize_state = "forged-state" }
    local cfg = config { host = ws.url }
    local tok, err = cfg:login { open = browser, timeout = 10 }
    assert.is_nil(tok)
    assert.equal("state_mismatch", err.code)
    assert.equal("state mismatch in 3-legged-OAuth flow", err.message)
    assert.equal(0, count("POST /oidc/v1/token"))
  end)

  it("reports an error callback with its description", function()
    ws:set { authorize_error = "access_denied" }
    local _, err = config({ host = ws.url }):login { open = browser, timeout = 10 }
    assert.equal("login_failed", err.code)
    assert.equal("access_denied", err.oauth_error)
    assert.matches("^access_denied: The user denied the request", err.message)
  end)

  it("ignores an error callback that does not carry the login's state", function()
    local port
    local _, err = config({ host = ws.url }):login { timeout = 1.5, open = function(url)
      port = url:match("localhost%%3A(%d+)")
      os.execute("(sleep 0.2; curl -s -o /dev/null 'http://127.0.0.1:" .. port
        .. "/?error=access_denied&error_description=forged') >/dev/null 2>&1 &")
    end }
    assert.equal("timeout", err.code)   -- not login_failed: the forged error was answered and ignored
  end)

  it("times out when no browser comes back", function()
    local t0 = core.now()
    local _, err = config({ host = ws.url }):login { open = function() end, timeout = 0.5 }
    assert.equal("timeout", err.code)
    assert.is_true(core.now() - t0 < 3)
  end)

  it("falls back to the next port when 8020 is busy, and fails when all are", function()
    local l8020 = core.listen { ports = { 8020 } }
    local cfg = config { host = ws.url }
    local seen
    assert(cfg:login { timeout = 10, open = function(url) seen = url; browser(url) end })
    assert.matches("redirect_uri=http%%3A%%2F%%2Flocalhost%%3A80[2-4]%d", seen)
    assert.not_matches("localhost%%3A8020&", seen)
    local held = { l8020 }
    for p = 8021, 8040 do held[#held + 1] = core.listen { ports = { p } } end
    local _, err = config({ host = ws.url }):login { open = browser, timeout = 2 }
    assert.equal("port_busy", err.code)
    for _, l in ipairs(held) do if l then l:close() end end
  end)
end)

describe("refresh", function()
  it("refreshes an expired login once, and writes it back", function()
    local now = os.time()
    local cfg, home = config({ host = ws.url, profile = "dev" }, { clock = function() return now end })
    local first = assert(cfg:login { open = browser, timeout = 10 })
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
    assert(cfg:login { open = browser, timeout = 10 })
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
    local tok = assert(cfg0:login { open = browser, timeout = 10 })
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
