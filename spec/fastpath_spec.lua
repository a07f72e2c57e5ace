-- The fast paths of issue 12 keep the slow paths' answers: the headers table handed out again
-- only while nobody changed it, the kept request headers and URLs following the token and the
-- path, app_request's kept work following the app lookup's lifetime and the token.
local dbxauth = require "dbxauth"
local fake_transport = require "spec.support.fake_transport"
local tokensource = require "dbxauth.tokensource"

local HOST = "https://h.example.com"
local APP_URL = "https://my-app-123.apps.example.com"

-- A scripted workspace: metadata, OIDC, token endpoint (tokens t1, t2, ...), the Apps API,
-- the app's /api/hello and any /api/2.0/x/<n> path; ok = 200 for everything it knows.
local function workspace()
  local n = 0
  local t
  t = fake_transport.new {
    { pattern = "databricks%-config$", respond = function()
      return { status = 200, body = '{"oidc_endpoint":"' .. HOST .. '/oidc","workspace_id":"123"}' } end },
    { pattern = "oauth%-authorization%-server$", respond = function()
      return { status = 200, body = '{"token_endpoint":"' .. HOST .. '/oidc/v1/token",'
        .. '"authorization_endpoint":"' .. HOST .. '/oidc/v1/authorize"}' } end },
    { pattern = "/oidc/v1/token$", respond = function()
      n = n + 1
      return { status = 200, body = '{"access_token":"t' .. n .. '","token_type":"Bearer","expires_in":3600,'
        .. '"scope":"all-apis"}' } end },
    { pattern = "/api/2.0/apps/my%-app$", respond = function()
      return { status = 200, body = '{"name":"my-app","url":"' .. APP_URL .. '","oauth2_app_client_id":"cid",'
        .. '"user_api_scopes":["sql"],"app_status":{"state":"RUNNING"},"compute_status":{"state":"ACTIVE"}}' } end },
    { pattern = "^" .. APP_URL:gsub("%p", "%%%0") .. "/api/hello$", respond = function()
      return { status = 200, body = "{}" } end },
    { pattern = "/api/2%.0/x/%d+$", respond = function() return { status = 200, body = "{}" } end },
  }
  return t
end

local function config(opts, t, clock)
  opts.host = HOST
  opts.transport = t
  return assert(dbxauth.config(opts, { env = {}, home = "/nonexistent", clock = clock }))
end

describe("cfg:authenticate()", function()
  it("hands out the same table while it is unchanged, and a fresh one once someone changed it", function()
    local cfg = config({ token = "dapi-fast" }, workspace())
    local a = assert(cfg:authenticate())
    assert.equal(a, cfg:authenticate())
    a["Content-Type"] = "application/json"               -- the caller's own now
    local b = assert(cfg:authenticate())
    assert.are_not.equal(a, b)
    assert.same({ Authorization = "Bearer dapi-fast" }, b)
    assert.equal("application/json", a["Content-Type"])
    b.Authorization = "Bearer other"                     -- a changed value: not handed out again
    local c = assert(cfg:authenticate())
    assert.are_not.equal(b, c)
    assert.same({ Authorization = "Bearer dapi-fast" }, c)
    c.Authorization = nil                                -- removed, then given back
    c.Authorization = "Bearer dapi-fast"
    c.extra = "x"
    assert.same({ Authorization = "Bearer dapi-fast" }, cfg:authenticate())
  end)

  it("follows a refreshed OAuth token, and never changes a table handed out before", function()
    local now = 1000
    local cfg = config({ client_id = "c", client_secret = "s" }, workspace(), function() return now end)
    local a = assert(cfg:authenticate())
    assert.same({ Authorization = "Bearer t1" }, a)
    assert.equal(a, cfg:authenticate())
    now = now + 2500                                     -- in the refresh-ahead window
    local b = assert(cfg:authenticate())
    assert.same({ Authorization = "Bearer t2" }, b)
    assert.same({ Authorization = "Bearer t1" }, a)
    now = now + 3600                                     -- expired: a refresh must succeed
    assert.same({ Authorization = "Bearer t3" }, cfg:authenticate())
  end)
end)

describe("tokensource.credentials", function()
  it("authorization() and headers() agree through refreshes and invalidation", function()
    local now, n = 0, 0
    local source = tokensource.new {
      now = function() return now end,
      fetch = function() n = n + 1; return { access_token = "a" .. n, expiry = now + 100 } end,
    }
    local creds = tokensource.credentials(source)
    assert.equal("Bearer a1", creds.authorization())
    assert.equal("Bearer a1", creds.headers().Authorization)
    now = 50                                             -- stale at expiry - min(50, 1200)
    assert.equal("Bearer a2", creds.headers().Authorization)
    assert.equal("Bearer a2", creds.authorization())
    source:invalidate()
    assert.equal("Bearer a3", creds.headers().Authorization)
    now = 200                                            -- past a3's expiry - margin
    assert.equal("Bearer a4", creds.authorization())
    assert.equal(4, n)
  end)
end)

describe("cfg:request's kept headers and URLs", function()
  it("send the current token and the right URL for every path", function()
    local now = 1000
    local t = workspace()
    local cfg = config({ client_id = "c", client_secret = "s" }, t, function() return now end)
    for i = 1, 300 do                                    -- more paths than the URL cache keeps
      assert(cfg:request { path = "/api/2.0/x/" .. i })
    end
    assert(cfg:request { path = "/api/2.0/x/1" })
    now = now + 3600                                     -- a new token
    assert(cfg:request { path = "/api/2.0/x/2" })
    local seen = {}
    for _, req in ipairs(t.calls) do
      local i = req.url:match("^" .. HOST:gsub("%p", "%%%0") .. "/api/2%.0/x/(%d+)$")
      if i then seen[#seen + 1] = i .. " " .. req.headers.Authorization end
    end
    assert.equal(302, #seen)
    assert.equal("1 Bearer t1", seen[1])
    assert.equal("300 Bearer t1", seen[300])
    assert.equal("1 Bearer t1", seen[301])
    assert.equal("2 Bearer t2", seen[302])
    assert.equal("123", t.calls[#t.calls].headers["X-Databricks-Workspace-Id"])
  end)

  it("encodes json once per call, with the same body as before", function()
    local t = workspace()
    local cfg = config({ token = "dapi-fast" }, t)
    assert(cfg:request { method = "POST", path = "/api/2.0/x/7", json = { a = 1 } })
    local req = t.calls[#t.calls]
    assert.equal('{"a":1}', req.body)
    assert.equal("application/json", req.headers["Content-Type"])
    assert.equal("POST", req.method)
  end)
end)

describe("app_request's kept work", function()
  it("looks the app up again when the lookup expires, and follows the exchanged token", function()
    local now = 1000
    local t = workspace()
    local cfg = config({ token = "dapi-fast" }, t, function() return now end)
    for _ = 1, 3 do assert(cfg:app_request { app = "my-app", path = "/api/hello" }) end
    assert.equal(1, t:count("GET", "/api/2.0/apps/my%-app$"))
    assert.equal(1, t:count("POST", "/oidc/v1/token$"))
    now = now + 61                                       -- the app lookup lives 60 s
    assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    assert.equal(2, t:count("GET", "/api/2.0/apps/my%-app$"))
    cfg:invalidate()                                     -- a new exchange, its token sent
    assert(cfg:app_request { app = "my-app", path = "/api/hello" })
    assert.equal(2, t:count("POST", "/oidc/v1/token$"))
    local last = t.calls[#t.calls]
    assert.equal(APP_URL .. "/api/hello", last.url)
    assert.equal("Bearer t2", last.headers.Authorization)
    assert.is_nil(last.headers.app)
  end)

  it("keeps the API's and the app's headers apart when calls interleave", function()
    local t = workspace()
    local cfg = config({ token = "dapi-fast" }, t)
    local sent = {}
    for _ = 1, 2 do
      assert(cfg:app_request { app = "my-app", path = "/api/hello" })
      sent[#sent + 1] = t.calls[#t.calls].headers
      assert(cfg:request { path = "/api/2.0/x/1" })
      sent[#sent + 1] = t.calls[#t.calls].headers
    end
    for i, h in ipairs(sent) do
      if i % 2 == 1 then
        assert.equal("Bearer t1", h.Authorization)
        assert.is_nil(h["X-Databricks-Workspace-Id"])
      else
        assert.equal("Bearer dapi-fast", h.Authorization)
        assert.equal("123", h["X-Databricks-Workspace-Id"])
      end
      assert.equal("application/json", h.Accept)
      assert.matches("^dbxauth/", h["User-Agent"])
    end
  end)

  it("takes the full path for scopes, and reports the same scope error every time", function()
    local t = workspace()
    local cfg = config({ token = "dapi-fast" }, t)
    for _ = 1, 2 do
      local res, err = cfg:app_request { app = "my-app", path = "/api/hello", scopes = { "files" } }
      assert.is_nil(res)
      assert.equal("insufficient_scopes", err.code)
    end
    assert(cfg:app_request { app = "my-app", path = "/api/hello" })
  end)
end)
