-- cfg:request_all and cfg:app_request_all (batch.lua) against the fake workspace over TLS (HTTP/2
-- offered), and over a scripted transport for the rules that need a clock.
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"
local fake = require "spec.support.fake"
local fake_transport = require "spec.support.fake_transport"
local leakcheck = require "spec.support.leakcheck"

local ws, creds
local ECHO = "/api/2.0/fake/echo"

local function config(opts)
  opts.ca_file = opts.ca_file or ws.ca_file
  local cfg, err = dbxauth.config(opts, { env = {}, home = "/nonexistent-home-for-specs" })
  assert(cfg, err and tostring(err))
  return cfg
end

local function pat() return config { host = ws.url, token = creds.pat } end
local function m2m(extra)
  local o = { host = ws.url, client_id = creds.client_id, client_secret = creds.client_secret }
  for k, v in pairs(extra or {}) do o[k] = v end
  return config(o)
end

local function echoes(n)
  local list = {}
  for i = 1, n do list[i] = { path = ECHO, query = { i = tostring(i) } } end
  return list
end

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
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

describe("cfg:request_all", function()
  it("returns the responses in the order of the list, as cfg:request returns them", function()
    local cfg = pat()
    local responses, errs, failed = cfg:request_all(echoes(30), { concurrency = 16 })
    assert.equal(0, failed)
    for i = 1, 30 do
      assert.is_false(errs[i])
      assert.equal(200, responses[i].status)
      local body = assert(responses[i]:json())
      assert.equal(tostring(i), body.args.i)
      assert.equal("Bearer", body.headers.authorization)
      assert.equal(creds.workspace_id, body.headers["x-databricks-workspace-id"])
      assert.matches("^dbxauth", body.headers["user-agent"])
    end
    assert.same({ {}, {}, 0 }, { cfg:request_all({}) })
  end)

  it("uses HTTP/2 where the server offers it; cfg:request stays on HTTP/1.1", function()
    local cfg = pat()
    local responses = cfg:request_all(echoes(4))
    for i = 1, 4 do assert.equal("2", responses[i].http_version) end
    assert.equal("HTTP/2.0", ws:last(ECHO).protocol)
    local res = assert(cfg:request { path = ECHO })
    assert.equal("1.1", res.http_version)
    assert.equal("HTTP/1.1", ws:last(ECHO).protocol)
  end)

  it("fails only the failing item, with the error cfg:request gives", function()
    local cfg = pat()
    local list = echoes(10)
    list[4] = { path = "/api/2.0/nope" }
    list[7] = { path = "relative" }
    list[9] = { path = ECHO, headers = { ["X-Bad"] = "a\nb" } }
    local responses, errs, failed = cfg:request_all(list)
    assert.equal(3, failed)
    local _, single = cfg:request { path = "/api/2.0/nope" }
    assert.same({ false, single.code, single.status, single.message },
      { responses[4], errs[4].code, errs[4].status, errs[4].message })
    assert.equal(404, errs[4].response.status)
    assert.equal("invalid_request", errs[7].code)
    assert.equal("invalid_header", errs[9].code)
    for _, i in ipairs { 1, 2, 3, 5, 6, 8, 10 } do assert.equal(200, responses[i].status) end
  end)

  it("redacts what a server echoes back, as cfg:request does", function()
    ws:fault { path = ECHO, status = 400, message = "bad credential " .. creds.pat, count = 1 }
    local _, errs = pat():request_all(echoes(3))
    local err = errs[1] or errs[2] or errs[3]
    assert.equal("bad_request", err.code)
    assert.is_nil(leakcheck.find(tostring(err)))
    assert.matches("bad credential ***", err.message, 1, true)
  end)

  it("retries 429/503 per item, and re-sends only the items that need it", function()
    ws:fault { path = ECHO, status = 503, retry_after = "0", count = 3 }
    local t0 = core.now()
    local responses, errs, failed = pat():request_all(echoes(10), { concurrency = 4 })
    assert.equal(0, failed, tostring(errs[1] or errs[2] or errs[3]))
    local retried = 0
    for i = 1, 10 do
      assert.equal(200, responses[i].status)
      if responses[i].attempts == 2 then retried = retried + 1 end
    end
    assert.equal(3, retried)
    assert.equal(13, ws:counters()["GET " .. ECHO])
    assert.is_true(core.now() - t0 >= 1.0)      -- the backoff: min(attempt, 10) s + jitter
  end)

  it("does not retry a POST unless asked, and gives up at the retry budget", function()
    ws:fault { path = ECHO, status = 503, count = -1 }
    local cfg = config { host = ws.url, token = creds.pat, retry_timeout_seconds = 1 }
    local responses, errs, failed = cfg:request_all({
      { method = "POST", path = ECHO, json = { a = 1 } },
      { path = ECHO },
    })
    assert.equal(2, failed)
    assert.is_false(responses[1])
    assert.equal("temporarily_unavailable", errs[1].code)
    assert.equal("temporarily_unavailable", errs[2].code)
    assert.matches("gave up after 1 attempts", errs[2].message, 1, true)
    assert.equal(2, ws:counters()["POST " .. ECHO] + ws:counters()["GET " .. ECHO])
  end)

  it("refreshes a rejected OAuth token once for the batch and repeats those items", function()
    local cfg = m2m()
    assert(cfg:authenticate())
    ws:fault { path = ECHO, status = 401, error_code = "UNAUTHENTICATED", count = 3 }
    local responses, errs, failed = cfg:request_all(echoes(12), { concurrency = 6 })
    assert.equal(0, failed, tostring(errs[1]))
    for i = 1, 12 do assert.equal(200, responses[i].status) end
    local c = ws:counters()
    assert.equal(2, c["POST /oidc/v1/token"])      -- the first token and one refresh
    assert.equal(15, c["GET " .. ECHO])
  end)

  it("refreshes once only: items the new token cannot fix fail", function()
    local cfg = m2m()
    assert(cfg:authenticate())
    ws:fault { path = ECHO, status = 401, error_code = "UNAUTHENTICATED", count = -1 }
    local _, errs, failed = cfg:request_all(echoes(5))
    assert.equal(5, failed)
    for i = 1, 5 do assert.equal("unauthenticated", errs[i].code) end
    local c = ws:counters()
    assert.equal(2, c["POST /oidc/v1/token"])
    assert.equal(10, c["GET " .. ECHO])            -- each item once more with the new token
    -- a PAT has nothing to refresh: one attempt each
    ws:reset()
    ws:fault { path = ECHO, status = 401, count = -1 }
    _, errs, failed = pat():request_all(echoes(3))
    assert.equal(3, failed)
    assert.equal("unauthenticated", errs[2].code)
    assert.equal(3, ws:counters()["GET " .. ECHO])
  end)

  it("cancels what is unfinished when the batch's timeout runs out", function()
    ws:fault { path = ECHO, kind = "pass", delay = 3, count = 2 }
    ws:fault { path = "/api/2.0/clusters/list", status = 503, retry_after = "30", count = 1 }
    local list = echoes(8)
    list[8] = { path = "/api/2.0/clusters/list" }
    local t0 = core.now()
    local responses, errs, failed = pat():request_all(list, { concurrency = 4, timeout = 0.8 })
    assert.is_true(core.now() - t0 < 2, "took " .. (core.now() - t0))
    assert.equal(3, failed)
    local late = 0
    for i = 1, 8 do
      if errs[i] then
        assert.equal("timeout", errs[i].code)
        assert.equal("cancelled", errs[i].reason)
        assert.matches("batch's timeout", errs[i].message, 1, true)
        late = late + 1
      else
        assert.equal(200, responses[i].status)
      end
    end
    assert.equal(3, late)                          -- the two held back and the 503 that wanted 30 s
    assert.matches("could be retried", errs[8].message, 1, true)
  end)

  it("keeps at most `concurrency` requests in flight (8 by default)", function()
    ws:set { count_concurrency = true }
    ws:fault { path = ECHO, kind = "pass", delay = 0.1, count = -1 }
    local cfg = pat()
    assert.equal(0, select(3, cfg:request_all(echoes(20), { concurrency = 5 })))
    assert.same({ now = 0, max = 5 }, ws:concurrency())
    ws:reset()
    ws:set { count_concurrency = true }
    ws:fault { path = ECHO, kind = "pass", delay = 0.1, count = -1 }
    assert.equal(0, select(3, cfg:request_all(echoes(20))))
    assert.same({ now = 0, max = 8 }, ws:concurrency())
  end)

  it("does not grow in memory over many batches", function()
    local cfg = pat()
    local function batches(n)
      for _ = 1, n do
        local _, _, failed = cfg:request_all(echoes(20), { concurrency = 8 })
        assert.equal(0, failed)
      end
      collectgarbage()
      collectgarbage()
    end
    batches(20)
    local lua0, rss0 = collectgarbage("count"), rss_kib()
    batches(200)
    local lua1, rss1 = collectgarbage("count"), rss_kib()
    assert.is_true(lua1 - lua0 < 512, string.format("Lua heap grew %.0f KiB", lua1 - lua0))
    -- Under ASan (make check-asan) freed memory waits in its quarantine, so RSS grows by design;
    -- there LeakSanitizer checks the C side at exit instead.
    if not os.getenv("ASAN_OPTIONS") then
      assert.is_true(rss1 - rss0 < 4096, string.format("RSS grew %d KiB", rss1 - rss0))
    end
  end)

  it("raises on wrong arguments, naming the item", function()
    local cfg = pat()
    for _, case in ipairs {
      { "x", nil, "bad argument #1 to 'request_all' (table expected, got string)" },
      { { { path = ECHO }, "x" }, nil, "item 2: table expected, got string" },
      { { { path = ECHO, bogus = 1 } }, nil, 'item 1: unknown request field "bogus"' },
      { { {} }, nil, 'item 1: request field "path" is required' },
      { { a = 1 }, nil, "a list of request tables expected" },
      { {}, "x", "bad argument #2 to 'request_all'" },
      { {}, { concurrency = 0 }, "concurrency must be an integer from 1 to 256" },
      { {}, { timeout = -1 }, "timeout must be a positive number of seconds" },
      { {}, { retries = 3 }, 'unknown option "retries"' },
    } do
      local ok, err = pcall(cfg.request_all, cfg, case[1], case[2])
      assert.is_false(ok)
      assert.matches(case[3], err, 1, true)
    end
    assert.same({}, ws:counters())
  end)
end)

describe("cfg:app_request_all", function()
  it("calls apps by name, by url and with scopes, one lookup and one exchange each", function()
    local cfg = m2m()
    local list = {}
    for i = 1, 6 do list[i] = { app = "my-app", path = "/api/hello" } end
    for i = 7, 9 do list[i] = { url = ws:app_url("my-app"), path = "/api/hello" } end
    for i = 10, 12 do list[i] = { app = "my-app", path = "/api/hello", scopes = { "sql" } } end
    list[13] = { app = "no-such-app", path = "/api/hello" }
    list[14] = { app = "my-app", path = "/api/nope" }
    local responses, errs, failed = cfg:app_request_all(list, { concurrency = 4 })
    assert.equal(2, failed)
    for i = 1, 12 do
      assert.is_false(errs[i], tostring(errs[i]))
      assert.equal("hello from my-app", assert(responses[i]:json()).message)
      assert.equal("2", responses[i].http_version)
    end
    assert.equal("not_found", errs[13].code)
    assert.matches("no app named no-such-app", errs[13].hint, 1, true)
    assert.equal("not_found", errs[14].code)
    assert.equal("my-app", errs[14].app)
    local c = ws:counters()
    assert.equal(1, c["GET /api/2.0/apps/my-app"])
    assert.equal(1, c["exchange app-client-my-app"])      -- the three scoped items share one token
    assert.equal(13, c["APP my-app GET /api/hello"] + c["APP my-app GET /api/nope"])
  end)

  it("retries an app's 503 per item and fails a PAT without an app the same way app_request does", function()
    local cfg = pat()
    ws:fault { path = "/api/hello", host = "my-app", status = 503, retry_after = "0", count = 1 }
    local list = { { app = "my-app", path = "/api/hello" }, { app = "my-app", path = "/api/hello" },
                   { url = ws:app_url("my-app"), path = "/api/hello" } }
    local responses, errs, failed = cfg:app_request_all(list)
    assert.equal(1, failed)
    assert.equal(200, responses[1].status)
    assert.equal(200, responses[2].status)
    local _, single = cfg:app_request(list[3])
    assert.same({ single.code, single.message }, { errs[3].code, errs[3].message })
    assert.equal(3, ws:counters()["APP my-app GET /api/hello"])
  end)

  it("raises on wrong arguments", function()
    local cfg = pat()
    local ok, err = pcall(cfg.app_request_all, cfg, { { path = "/api/hello" } })
    assert.is_false(ok)
    assert.matches("item 1: give app = <name> or url = <https url>", err, 1, true)
    ok, err = pcall(cfg.app_request_all, cfg, { { app = "a", path = "/x", scopes = "sql", nope = 1 } })
    assert.is_false(ok)
    assert.matches('item 1: unknown request field "nope"', err, 1, true)
  end)
end)

describe("batches over a transport without send_all", function()
  -- scripted answers, and a clock that moves only when the batch sleeps
  local function scripted(answers)
    local seen = {}
    local t = fake_transport.new { { pattern = "/api/", respond = function(req)
      local i = tonumber(req.url:match("i=(%d+)"))
      seen[i] = (seen[i] or 0) + 1
      local a = answers[i] and answers[i][seen[i]] or { 200 }
      return { status = a[1], headers = a.headers or {}, body = '{"i":' .. i .. "}" }
    end } }
    return t, seen
  end

  local function cfg_over(t)
    return assert(dbxauth.config({ host = "https://h.example.com", token = "dapi-scripted-0001", transport = t },
      { env = {} }))
  end

  it("sends one by one, each item waiting for its own backoff", function()
    local t, seen = scripted { [2] = { { 503, headers = { ["retry-after"] = "20" } } }, [3] = { { 429 }, { 429 } } }
    local responses, _, failed = cfg_over(t):request_all(echoes(4))
    assert.equal(0, failed)
    assert.same({ 1, 2, 3, 1 }, { seen[1], seen[2], seen[3], seen[4] })
    assert.equal(3, responses[3].attempts)
    -- item 3's first retry comes after ~1 s, before item 2's (20 s); the batch slept in between
    local total = 0
    for _, s in ipairs(t.slept) do total = total + s end
    assert.is_true(total >= 20 and total < 24, tostring(total))
  end)

  it("fails what would be retried after the batch's timeout, without waiting for it", function()
    local t = scripted { [1] = { { 503, headers = { ["retry-after"] = "60" } } } }
    local responses, errs = cfg_over(t):request_all(echoes(2), { timeout = 10 })
    assert.is_false(responses[1])
    assert.equal("timeout", errs[1].code)
    assert.equal(200, responses[2].status)
    assert.same({}, t.slept)
  end)
end)
