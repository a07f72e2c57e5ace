-- The request log (httplog.lua) through the public API: dbxauth.config(opts, { logger = fn })
-- against the fake workspace over TLS, with libcurl, and inside nginx over cosockets. Nothing
-- secret may reach the logger: every entry is searched for every secret the suite registers.
local dbxauth = require "dbxauth"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local leakcheck = require "spec.support.leakcheck"
local cjson = require "cjson.safe"

local ws, creds
local ECHO = "/api/2.0/fake/echo"
local ME = "/api/2.0/preview/scim/v2/Me"

-- A configuration whose entries are collected in `log`.
local function config(opts, ctx)
  local log = {}
  opts.ca_file = opts.ca_file or ws.ca_file
  ctx = ctx or {}
  ctx.env = ctx.env or {}
  ctx.home = ctx.home or "/nonexistent-home-for-specs"
  ctx.logger = ctx.logger or function(e) log[#log + 1] = e end
  local cfg, err = dbxauth.config(opts, ctx)
  assert(cfg, err and tostring(err))
  return cfg, log
end

local function pat(extra)
  local o = { host = ws.url, token = creds.pat }
  for k, v in pairs(extra or {}) do o[k] = v end
  return config(o)
end

local function m2m(extra)
  local o = { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
  for k, v in pairs(extra or {}) do o[k] = v end
  return config(o)
end

-- The entries for a path (any host), in order.
local function for_path(log, path)
  local out = {}
  for _, e in ipairs(log) do
    local p = e.url:match("^https?://[^/]+([^?]*)")
    if p == path then out[#out + 1] = e end
  end
  return out
end

-- Every string an entry holds must be free of every registered secret; the entries also go to
-- the suite-end leak check.
local function no_secrets(log, where)
  for i, e in ipairs(log) do
    for _, s in ipairs(leakcheck.strings(e)) do
      local k = leakcheck.find(s)
      assert(not k, (where or "logger") .. ": entry " .. i .. " holds registered secret #" .. tostring(k))
    end
    leakcheck.text(e.text, "a logger entry")
  end
end

setup(function()
  ws = fake.start()
  creds = ws.creds
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function()
  ws:reset()
  dbxauth.clear_caches()
end)

describe("logger", function()
  it("gets a request and a response entry for host metadata and a PAT call", function()
    local cfg, log = pat()
    assert(cfg:request { path = ME })
    local md = for_path(log, "/.well-known/databricks-config")
    assert.equal(2, #md)
    local me = for_path(log, ME)
    assert.equal(2, #me)
    local req, res = me[1], me[2]
    assert.equal("request", req.type)
    assert.equal("GET", req.method)
    assert.equal(ws.url .. ME, req.url)
    assert.equal(1, req.attempt)
    assert.equal("GET " .. ws.url .. ME, req.text)
    assert.is_nil(req.headers)
    assert.is_nil(req.body)
    assert.equal("response", res.type)
    assert.equal(200, res.status)
    assert.equal("1.1", res.http_version)
    assert.equal(1, res.attempt)
    assert.is_true(type(res.elapsed) == "number" and res.elapsed >= 0 and res.elapsed < 30)
    assert.is_nil(res.headers)
    assert.matches('^< HTTP/1%.1 200 OK %(GET ' .. ws.url:gsub("%p", "%%%0") .. ME:gsub("%p", "%%%0")
      .. ', %d+%.%d%d%d s%)\n< {\n<   "active": true,', res.text)
    assert.matches('<   "userName": "user@example.com"', res.text, 1, true)
    assert.not_matches("> * ", req.text, 1, true)
    no_secrets(log)
  end)

  it("shows headers only with debug_headers, credentials as REDACTED", function()
    local cfg, log = pat { debug_headers = true }
    assert(cfg:request { path = ME })
    local me = for_path(log, ME)
    assert.equal("REDACTED", me[1].headers.Authorization)
    assert.matches("^dbxauth/", me[1].headers["User-Agent"])
    assert.matches("\n> * Authorization: REDACTED\n", me[1].text, 1, true)
    assert.equal("application/json", me[2].headers["content-type"])
    assert.matches("\n< * content-type: application/json\n", me[2].text, 1, true)
    no_secrets(log)

    -- the environment variable, as the SDKs read it
    local cfg2, log2 = config({ host = ws.url, token = creds.pat }, { env = { DATABRICKS_DEBUG_HEADERS = "true" } })
    assert(cfg2:request { path = ME })
    assert.equal("REDACTED", for_path(log2, ME)[1].headers.Authorization)
    local cfg3, log3 = config({ host = ws.url, token = creds.pat }, { env = { DATABRICKS_DEBUG_HEADERS = "false" } })
    assert(cfg3:request { path = ME })
    assert.is_nil(for_path(log3, ME)[1].headers)
  end)

  it("logs an M2M token request with its form body and the token masked, then the API call", function()
    local cfg, log = m2m { debug_headers = true }
    assert(cfg:request { path = ME })
    local tok = for_path(log, "/oidc/v1/token")
    assert.equal(2, #tok)
    assert.equal("POST", tok[1].method)
    assert.equal("REDACTED", tok[1].headers.Authorization)          -- client_id:client_secret, Basic
    assert.equal("> grant_type=client_credentials&scope=all-apis", tok[1].body)
    assert.equal(200, tok[2].status)
    assert.matches('"access_token": "**REDACTED**"', tok[2].body, 1, true)
    assert.matches('"token_type": "Bearer"', tok[2].body, 1, true)
    local me = for_path(log, ME)
    assert.equal(2, #me)
    assert.equal(200, me[2].status)
    -- the order of the whole exchange: metadata, (discovery), token, API
    local order = {}
    for _, e in ipairs(log) do if e.type == "request" then order[#order + 1] = e.url:match("//[^/]+([^?]*)") end end
    assert.equal("/.well-known/databricks-config", order[1])
    assert.equal(ME, order[#order])
    no_secrets(log)
  end)

  it("masks credential form fields of user-login token requests, and logs their error response", function()
    local code, verifier = leakcheck.secret("logger-spec-code-0001"), leakcheck.secret(dbxauth.pkce().verifier)
    local refresh = leakcheck.secret("logger-spec-refresh-token-0003")
    local cfg, log = config { host = ws.url }
    assert.is_nil(cfg:exchange_code { code = code, verifier = verifier, redirect_uri = "http://localhost:8020" })
    assert.is_nil(cfg:refresh { refresh_token = refresh })
    local tok = for_path(log, "/oidc/v1/token")
    assert.equal(4, #tok)
    assert.matches("code=**REDACTED**", tok[1].body, 1, true)
    assert.matches("code_verifier=**REDACTED**", tok[1].body, 1, true)
    assert.matches("grant_type=authorization_c... (", tok[1].body, 1, true)   -- cut at 96 bytes
    assert.equal(400, tok[2].status)
    assert.matches('"error": "invalid_grant"', tok[2].body, 1, true)
    assert.matches("refresh_token=**REDACTED**", tok[3].body, 1, true)
    assert.equal(400, tok[4].status)
    no_secrets(log)
  end)

  it("logs every attempt of a retried call, numbered", function()
    ws:fault { path = ECHO, status = 429, retry_after = "1", count = 1 }
    local cfg, log = pat()
    assert(cfg:request { path = ECHO })
    local e = for_path(log, ECHO)
    assert.equal(4, #e)
    assert.same({ "request", 1 }, { e[1].type, e[1].attempt })
    assert.same({ "response", 1, 429 }, { e[2].type, e[2].attempt, e[2].status })
    assert.matches("^< HTTP/1%.1 429 Too Many Requests", e[2].text)
    assert.matches('"error_code": "REQUEST_LIMIT_EXCEEDED"', e[2].body, 1, true)
    assert.same({ "request", 2 }, { e[3].type, e[3].attempt })
    assert.matches(" %(attempt 2%)$", e[3].text)
    assert.same({ "response", 2, 200 }, { e[4].type, e[4].attempt, e[4].status })
  end)

  it("logs an error response, and a failure with no response at all", function()
    ws:fault { path = ECHO, status = 404, error_code = "RESOURCE_DOES_NOT_EXIST", message = "no such thing" }
    local cfg, log = pat()
    local res, err = cfg:request { path = ECHO }
    assert.is_nil(res)
    assert.equal(404, err.status)
    local e = for_path(log, ECHO)
    assert.equal(404, e[2].status)
    assert.equal('< {\n<   "error_code": "RESOURCE_DOES_NOT_EXIST",\n<   "message": "no such thing"\n< }', e[2].body)

    -- a POST is not retried after the connection broke (libcurl itself repeats it once)
    ws:fault { path = ECHO, kind = "close", count = 2 }
    res, err = cfg:request { method = "POST", path = ECHO, json = { n = 2 } }
    assert.is_nil(res)
    e = for_path(log, ECHO)
    local last = e[#e]
    assert.equal("response", last.type)
    assert.is_nil(last.status)
    assert.equal(err.code, last.code)
    assert.equal("string", type(last.error))
    assert.matches("^< Error: ", last.text)
  end)

  it("logs each item of a batch, over HTTP/2", function()
    local cfg, log = pat()
    local list = {}
    for i = 1, 5 do list[i] = { path = ECHO, query = { i = tostring(i) } } end
    local _, _, failed = cfg:request_all(list, { concurrency = 5 })
    assert.equal(0, failed)
    local e = for_path(log, ECHO)
    assert.equal(10, #e)
    local seen = {}
    for _, x in ipairs(e) do
      local i = x.url:match("%?i=(%d)$")
      seen[x.type .. i] = true
      if x.type == "response" then
        assert.equal(200, x.status)
        assert.equal("2", x.http_version)
      end
    end
    for i = 1, 5 do assert.is_true(seen["request" .. i] and seen["response" .. i]) end
  end)

  it("cuts bodies at debug_truncate_bytes (96 by default)", function()
    local long = string.rep("x", 150)
    local cfg, log = pat()
    assert(cfg:request { method = "POST", path = ECHO, json = { long = long, n = 1 } })
    local req = for_path(log, ECHO)[1]
    assert.equal('> {\n>   "long": "' .. string.rep("x", 96) .. '... (54 more bytes)",\n>   "n": 1\n> }', req.body)

    cfg, log = pat { debug_truncate_bytes = 10 }
    assert(cfg:request { method = "POST", path = ECHO, body = string.rep("y", 30) .. "\nnext line" })
    req = for_path(log, ECHO)[1]
    assert.equal("> yyyyyyyyyy... (30 more bytes)", req.body)

    cfg, log = config({ host = ws.url, token = creds.pat }, { env = { DATABRICKS_DEBUG_TRUNCATE_BYTES = "20" } })
    assert(cfg:request { method = "POST", path = ECHO, json = { s = long } })
    req = for_path(log, ECHO)[1]
    assert.matches('"s": "' .. string.rep("x", 20) .. '... (130 more bytes)"', req.body, 1, true)
    -- header values are cut too
    cfg, log = pat { debug_headers = true, debug_truncate_bytes = 8 }
    assert(cfg:request { path = ECHO })
    assert.equal("dbxauth/... ", for_path(log, ECHO)[1].headers["User-Agent"]:sub(1, 12))
  end)

  it("never hands the logger a secret: queries, bodies, echoes, headers, apps", function()
    local all = {}
    local function keep(log) for _, e in ipairs(log) do all[#all + 1] = e end end
    -- a configured secret in a query string and a JSON body; the fake echoes both back
    local cfg, log = pat { debug_headers = true, debug_truncate_bytes = 4096 }
    assert(cfg:request { method = "POST", path = ECHO, query = { x = creds.pat, token = "abcdef-query-tok" },
                         json = { note = "pat is " .. creds.pat, password = "anything" } })
    local e = for_path(log, ECHO)
    assert.matches("token=**REDACTED**", e[1].url, 1, true)
    assert.matches('"password": "**REDACTED**"', e[1].body, 1, true)
    assert.matches("***", e[2].body, 1, true)
    keep(log)
    -- Basic credentials
    cfg, log = config { host = ws.url, username = creds.username, password = creds.password, debug_headers = true }
    assert(cfg:request { path = ME })
    keep(log)
    -- M2M, then an app: lookup, token exchange (the subject token in the form), the app call
    cfg, log = config { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret,
                        debug_headers = true, transport = curl.new { ca_file = ws.ca_file, resolve = ws.resolve } }
    assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    assert.equal(2, #for_path(log, "/api/2.0/apps/my-app"))
    assert.equal(2, #for_path(log, "/api/hello"))
    keep(log)
    -- GitHub OIDC: the ID token endpoint answers {"value": "<jwt>"}
    cfg, log = config({ host = ws.url, auth_type = "github-oidc", client_id = creds.client_id },
      { env = { ACTIONS_ID_TOKEN_REQUEST_URL = creds.actions_request_url,
                ACTIONS_ID_TOKEN_REQUEST_TOKEN = creds.actions_request_token } })
    assert(cfg:request { path = ME })
    local gh = for_path(log, "/__idp/github/token")
    assert.equal(2, #gh)
    assert.matches('"value": "**REDACTED**"', gh[2].body, 1, true)
    keep(log)
    no_secrets(all)
  end)

  it("is never the reason a request fails: a logger that raises is ignored", function()
    local calls = 0
    local cfg = config({ host = ws.url, token = creds.pat }, { logger = function()
      calls = calls + 1
      error("logger exploded")
    end })
    local res, err = cfg:request { path = ME }
    assert(res, err and tostring(err))
    assert.equal(200, res.status)
    assert.is_true(calls >= 4)
    local _, _, failed = cfg:request_all { { path = ECHO }, { path = ECHO } }
    assert.equal(0, failed)
  end)

  it("is the exact usage the command's --debug makes", function()
    local out = {}
    local capture = { write = function(_, ...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end }
    local cfg = config({ host = ws.url, token = creds.pat }, {
      logger = function(entry) io.stderr:write(entry.text, "\n") end })
    local real = io.stderr
    io.stderr = capture   -- luacheck: ignore 122
    local ok, res = pcall(cfg.request, cfg, { path = ME })
    io.stderr = real      -- luacheck: ignore 122
    assert(ok and res, tostring(res))
    local text = table.concat(out)
    assert.matches("GET " .. ws.url .. ME .. "\n< HTTP/1.1 200 OK", text, 1, true)
    no_secrets({ { text = text } })
  end)

  it("must be a function", function()
    assert.has_error(function() dbxauth.config({}, { logger = "stderr" }) end,
      "bad argument #2 to 'config' (logger must be a function, got string)")
  end)
end)

describe("logger over any transport", function()
  local fake_transport = require "spec.support.fake_transport"
  local HOST = "https://logger.example.com"

  local function scripted(answers)
    local n = 0
    return fake_transport.new {
      { url = HOST .. "/.well-known/databricks-config", respond = function() return { status = 404 } end },
      { pattern = "/api/", respond = function(_, t)
        n = n + 1
        t:sleep(0.25)      -- the scripted clock: elapsed is measured on the transport's
        local a = answers[math.min(n, #answers)]
        return { status = a, headers = { ["retry-after"] = a == 429 and "2" or nil }, body = '{"n":' .. n .. '}' }
      end },
    }
  end

  it("wraps a transport given in opts, numbering the attempts, and times on its clock", function()
    local t = scripted { 429, 200 }
    local log = {}
    local cfg = assert(dbxauth.config({ host = HOST, token = "dapi-scripted-logger-token-1", transport = t },
      { env = {}, home = "/nonexistent", logger = function(e) log[#log + 1] = e end }))
    leakcheck.secret("dapi-scripted-logger-token-1")
    assert(cfg:request { path = ME })
    local e = for_path(log, ME)
    assert.same({ 1, 1, 2, 2 }, { e[1].attempt, e[2].attempt, e[3].attempt, e[4].attempt })
    assert.same({ 429, 200 }, { e[2].status, e[4].status })
    assert.equal(0.25, e[2].elapsed)
    assert.equal('< {\n<   "n": 2\n< }', e[4].body)
    assert.is_nil(e[2].http_version)
    assert.matches("^< 429 Too Many Requests %(GET ", e[2].text)
    no_secrets(log)
  end)

  it("logs a batch over a transport without send_all, item by item", function()
    local log = {}
    local cfg = assert(dbxauth.config({ host = HOST, token = "dapi-scripted-logger-token-1",
      transport = scripted { 200 } }, { env = {}, home = "/nonexistent", logger = function(e) log[#log + 1] = e end }))
    local _, _, failed = cfg:request_all { { path = ECHO }, { path = ECHO }, { path = ECHO } }
    assert.equal(0, failed)
    assert.equal(6, #for_path(log, ECHO))
  end)

  it("leaves the transport alone without a logger: nothing runs between a request and it", function()
    local t = scripted { 200 }
    local seen
    local send = t.send
    t.send = function(self, req)
      seen = debug.traceback()
      return send(self, req)
    end
    local cfg = assert(dbxauth.config({ host = HOST, token = "dapi-scripted-logger-token-1", transport = t },
      { env = {}, home = "/nonexistent" }))
    assert(cfg:request { path = ME })
    -- called straight from the session (session:send_api's first attempt) or http.lua's retries
    assert.truthy(seen:find("dbxauth/session.lua", 1, true) or seen:find("dbxauth/http.lua", 1, true), seen)
    assert.not_matches("httplog", seen, 1, true)
    -- and with one, the wrapper is what calls it
    cfg = assert(dbxauth.config({ host = HOST, token = "dapi-scripted-logger-token-1", transport = t },
      { env = {}, home = "/nonexistent", logger = function() end }))
    assert(cfg:request { path = ME })
    assert.matches("httplog", seen, 1, true)
  end)
end)

describe("logger inside nginx", function()
  local ngw = require "spec.support.nginx_gw"
  local gw, home
  local client = curl.new()

  setup(function()
    home = files.tmpdir()
    files.write(home .. "/.databrickscfg", "[pat]\nhost = " .. ws.url .. "\ntoken = " .. ws.creds.pat .. "\n")
    gw = ngw.start { ws = ws, workers = 1, env = { HOME = home }, server = [[
      location = /t/logger {
        content_by_lua_block {
          local cjson = require "cjson.safe"
          local log = {}
          local cfg = assert(require("dbxauth").config({ profile = "pat", debug_headers = true },
            { logger = function(e) log[#log + 1] = e end }))
          local res = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
          local _, _, failed = cfg:request_all { { path = "/api/2.0/fake/echo" }, { path = "/api/2.0/fake/echo" } }
          ngx.header["Content-Type"] = "application/json"
          ngx.print(cjson.encode { status = res and res.status, failed = failed, log = log })
        }
      }
    ]] }
  end)

  teardown(function()
    if gw then gw:stop() end
    if home then os.execute("rm -rf " .. files.q(home)) end
  end)

  it("logs calls and batches over cosockets the same way", function()
    local res = assert(client:send { url = gw.url .. "/t/logger", timeout = 30 })
    assert.equal(200, res.status, res.body)
    local out = assert(cjson.decode(res.body))
    assert.equal(200, out.status)
    assert.equal(0, out.failed)
    local me, echo = for_path(out.log, ME), for_path(out.log, ECHO)
    assert.equal(2, #me)
    assert.equal(4, #echo)
    assert.equal("REDACTED", me[1].headers.Authorization)
    assert.equal(200, me[2].status)
    assert.equal("1.1", me[2].http_version)
    for _, e in ipairs(echo) do
      if e.type == "response" then assert.equal(200, e.status) end
    end
    no_secrets(out.log, "nginx logger")
  end)
end)
