local http = require "dbxauth.http"
local fake_transport = require "spec.support.fake_transport"

local function script(list)
  local i = 0
  return fake_transport.new { { pattern = ".", respond = function()
    i = i + 1
    local r = list[math.min(i, #list)]
    if r.err then return nil, r.err end
    return { status = r[1], headers = r.headers or {}, body = r.body or "" }
  end } }
end

describe("http.send retries", function()
  it("retries 503 and 429 on GET, honouring Retry-After", function()
    local t = script { { 503, headers = { ["retry-after"] = "7" } }, { 429 }, { 200 } }
    local res = http.send(t, { method = "GET", url = "https://h/x" }, { kind = "api", budget = 300 })
    assert.equal(200, res.status)
    assert.equal(3, res.attempts)
    assert.is_true(t.slept[1] >= 7)
    assert.is_true(t.slept[2] >= 1.05 and t.slept[2] <= 2.75)   -- min(attempt,10) + jitter
  end)

  it("reads an HTTP-date Retry-After against the configuration's clock, not the system's", function()
    local apierror = require "dbxauth.apierror"
    local at = apierror.utc_epoch(2015, 10, 21, 7, 28, 0)
    local t = script { { 503, headers = { ["retry-after"] = "Wed, 21 Oct 2015 07:28:30 GMT" } }, { 200 } }
    local res = http.send(t, { method = "GET", url = "https://h/x" },
      { kind = "api", budget = 300, now = function() return at end })
    assert.equal(200, res.status)
    assert.is_true(t.slept[1] >= 30 and t.slept[1] < 31, tostring(t.slept[1]))
  end)

  it("does not retry POST unless asked, and retries it when asked", function()
    local t = script { { 503 }, { 200 } }
    assert.equal(503, http.send(t, { method = "POST", url = "https://h/x" }, { kind = "api", budget = 300 }).status)
    t = script { { 503 }, { 200 } }
    assert.equal(200, http.send(t, { method = "POST", url = "https://h/x" },
      { kind = "api", retry = true, budget = 300 }).status)
  end)

  it("never retries other 4xx or 500", function()
    for _, st in ipairs { 400, 401, 403, 404, 500 } do
      local t = script { { st }, { 200 } }
      local res = http.send(t, { method = "GET", url = "https://h/x" }, { kind = "api", budget = 300 })
      assert.equal(st, res.status)
      assert.equal(1, #t.calls)
    end
  end)

  it("retries token requests on 429/502/503/504 with exponential backoff", function()
    local t = script { { 502 }, { 504 }, { 503 }, { 200 } }
    local res = http.send(t, { method = "POST", url = "https://h/token" }, { kind = "token", budget = 60 })
    assert.equal(200, res.status)
    assert.equal(4, #t.calls)
    for i, s in ipairs(t.slept) do assert.is_true(s >= 0 and s <= 2 ^ (i - 1)) end
  end)

  it("stops when the budget would be exceeded and says so", function()
    local t = script { { 503, headers = { ["retry-after"] = "100" } } }
    local res = http.send(t, { method = "GET", url = "https://h/x" }, { kind = "api", budget = 250 })
    assert.equal(503, res.status)
    assert.equal(3, #t.calls)
    assert.matches("gave up after 3 attempts", res.gave_up)
  end)

  it("retries connection failures that happened before sending, not TLS errors", function()
    local errors = require "dbxauth.errors"
    local t = script { { err = errors.new("network", "refused", { retryable = true }) }, { 200 } }
    assert.equal(200, http.send(t, { method = "GET", url = "https://h/x" }, { kind = "api", budget = 300 }).status)
    t = script { { err = errors.new("tls", "bad cert") }, { 200 } }
    local res, err = http.send(t, { method = "GET", url = "https://h/x" }, { kind = "api", budget = 300 })
    assert.is_nil(res)
    assert.equal("tls", err.code)
    assert.equal(1, #t.calls)
  end)
end)
