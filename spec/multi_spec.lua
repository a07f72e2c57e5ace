-- dbxauth.core's multi handle (csrc/dbx_multi.c, csrc/ldbx_multi.c) against the fake workspace
-- over TLS: argument checks before anything is sent, per-item outcomes, the easy client's limits
-- and checks, HTTP/2 multiplexing where offered, the concurrency cap, the run's timeout.
local core = require "dbxauth.core"
local fake = require "spec.support.fake"
local cjson = require "cjson.safe"

local IS54 = _VERSION == "Lua 5.4" and not rawget(_G, "jit")

local ws, auth
local ECHO = "/api/2.0/fake/echo"

setup(function()
  ws = fake.start()
  auth = "Bearer " .. ws.creds.pat
end)

teardown(function()
  if ws then ws:stop() end
end)

before_each(function() ws:reset() end)

local function echo(i, extra)
  local r = { url = ws.url .. "/api/2.0/fake/echo?i=" .. i, headers = { Authorization = auth } }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

local function opts(extra)
  local o = { ca_file = ws.ca_file }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("dbxauth.multi handle", function()
  it("has a named metatable, close shared with __gc, and refuses use once closed", function()
    local m = core.multi()
    local mt = getmetatable(m)
    assert.equal("dbxauth.multi", mt.__name)
    assert.equal("dbxauth.multi (open)", tostring(m))
    if IS54 then assert.equal(mt.__gc, mt.__close) end
    m:close()
    m:close()
    mt.__gc(m)
    assert.equal("dbxauth.multi (closed)", tostring(m))
    local ok, err = pcall(m.perform, m, {})
    assert.is_false(ok)
    assert.matches("closed dbxauth.multi handle", err, 1, true)
  end)

  it("is collected once unreachable, connections and all", function()
    local weak = setmetatable({}, { __mode = "k" })
    for _ = 1, 5 do
      local m = core.multi()
      assert(m:perform({ echo(1) }, opts())[1])
      weak[m] = true
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("raises on wrong arguments before sending anything, naming the item and field", function()
    local m = core.multi()
    for _, case in ipairs {
      { { "x" }, "item 1: table expected" },
      { { echo(1), { url = 1 } }, "item 2: field 'url' must be a string" },
      { { echo(1), {} }, "item 2: field 'url' is required" },
      { { echo(1, { headers = { A = 1 } }) }, "item 1: field 'headers' has a non-string value for \"A\"" },
      { { echo(1, { timeout_ms = 0 }) }, "item 1: field 'timeout_ms'" },
      { { echo(1, { timeout = -1 }) }, "item 1: field 'timeout'" },
    } do
      local ok, err = pcall(m.perform, m, case[1], opts())
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    for _, case in ipairs {
      { { concurrency = 0 }, "field 'concurrency'" }, { { concurrency = 257 }, "field 'concurrency'" },
      { { timeout = 0 }, "field 'timeout'" }, { { skip_verify = "no" }, "field 'skip_verify'" },
      { { resolve = { "nocolons" } }, "field 'resolve'" },
    } do
      local ok, err = pcall(m.perform, m, { echo(1) }, opts(case[1]))
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
    assert.has_error(function() m:perform("x") end)
    assert.has_error(function() m:perform({}, "x") end)
    assert.same({}, ws:counters())
    m:close()
  end)

  it("returns each item's outcome in order, a failure failing that item alone", function()
    local m = core.multi()
    local list = {}
    for i = 1, 12 do list[i] = echo(i) end
    list[3] = { url = ws.url .. "/api/2.0/nope", headers = { Authorization = auth } }
    list[5] = { url = "ftp://example.com/" }
    list[7] = echo(7, { headers = { ["X-Bad"] = "a\r\nInjected: yes" } })
    list[9] = echo(9, { method = "post" })
    list[11] = echo(11, { method = "POST", body = "a=b", headers = { Authorization = auth, ["Content-Length"] = "1" } })
    local res, codes, msgs = m:perform(list, opts { concurrency = 4 })
    for i = 1, 12 do
      if i == 5 or i == 7 or i == 9 then
        assert.is_false(res[i], "item " .. i)
      else
        assert.is_false(codes[i], "item " .. i .. ": " .. tostring(msgs[i]))
        assert.is_false(msgs[i])
      end
    end
    assert.equal(404, res[3].status)
    assert.same({ "invalid_url", "url must start with http:// or https://" }, { codes[5], msgs[5] })
    assert.same({ "invalid_header", 'header "X-Bad" contains CR or LF' }, { codes[7], msgs[7] })
    assert.equal("invalid_header", codes[9])
    for _, i in ipairs { 1, 2, 4, 6, 8, 10, 12 } do
      assert.equal(200, res[i].status)
      assert.equal("i=" .. i, res[i].body:match('"query":"([^"]*)"'))
      assert.equal("application/json", res[i].headers["content-type"])
    end
    assert.equal("POST", res[11].body:match('"method":"(%u+)"'))
    assert.equal("a=b", res[11].body:match('"body":"([^"]*)"'))
    -- the rejected requests never left: 9 reached the server
    assert.equal(9, ws:counters().total)
    m:close()
  end)

  it("sends each item its own headers, whether items share a headers table or not", function()
    local m = core.multi()
    local a = { Authorization = auth, ["X-A"] = "one" }
    local b = { Authorization = auth, ["X-A"] = "two", ["X-B"] = "b" }
    local bad = { Authorization = auth, ["X-A"] = "x\0y" }
    local list = {}
    for i, h in ipairs { a, a, b, a, bad, bad, a, b, b } do
      list[i] = { url = ws.url .. ECHO, headers = h }
    end
    local res, codes = m:perform(list, opts { concurrency = 2 })
    for i, want in ipairs { "one", "one", "two", "one", false, false, "one", "two", "two" } do
      if want then
        local echoed = assert(cjson.decode(res[i].body)).headers
        assert.equal(want, echoed["x-a"], "item " .. i)
        assert.equal(want == "two" and "b" or nil, echoed["x-b"], "item " .. i)
      else
        assert.equal("invalid_header", codes[i], "item " .. i)
      end
    end
    m:close()
  end)

  it("multiplexes over one HTTP/2 connection where the server offers it", function()
    local m = core.multi()
    local list = {}
    for i = 1, 16 do list[i] = echo(i) end
    local res = m:perform(list, opts { concurrency = 16 })
    local fresh = 0
    for i = 1, 16 do
      assert.equal("2", res[i].http_version)
      if not res[i].reused then fresh = fresh + 1 end
    end
    assert.equal(1, fresh)
    assert.equal("HTTP/2.0", ws:last("/api/2.0/fake/echo").protocol)
    -- and the connection outlives the run
    res = m:perform({ echo(1) }, opts())
    assert.is_true(res[1].reused)
    m:close()
  end)

  it("keeps a pool of HTTP/1.1 connections where h2 is not offered", function()
    local m = core.multi()
    local list = {}
    for i = 1, 8 do
      list[i] = { url = ws.http_url .. "/api/2.0/fake/echo", headers = { Authorization = auth } }
    end
    local fresh = 0
    for _ = 1, 3 do
      local res = m:perform(list, { concurrency = 4 })
      for i = 1, 8 do
        assert.equal("1.1", res[i].http_version)
        if not res[i].reused then fresh = fresh + 1 end
      end
    end
    -- 24 requests, never more than 4 at once: at most 4 connections, kept between runs
    assert.is_true(fresh >= 1 and fresh <= 4, fresh .. " connections")
    m:close()
  end)

  it("falls back to HTTP/1.1 over TLS when the server does not offer h2", function()
    local h1 = fake.start { http2 = false }
    local m = core.multi()
    local list = {}
    for i = 1, 8 do list[i] = { url = h1.url .. ECHO, headers = { Authorization = "Bearer " .. h1.creds.pat } } end
    local ok, res = pcall(m.perform, m, list, { ca_file = h1.ca_file, concurrency = 4 })
    h1:stop()
    assert(ok, res)
    for i = 1, 8 do
      assert.equal(200, res[i].status)
      assert.equal("1.1", res[i].http_version)
    end
    m:close()
  end)

  it("never has more than `concurrency` requests in flight", function()
    ws:set { count_concurrency = true }
    ws:fault { path = "/api/2.0/fake/echo", kind = "pass", delay = 0.1, count = -1 }
    local m = core.multi()
    local list = {}
    for i = 1, 12 do list[i] = echo(i) end
    local res = m:perform(list, opts { concurrency = 3 })
    for i = 1, 12 do assert.equal(200, res[i].status) end
    assert.same({ now = 0, max = 3 }, ws:concurrency())
    ws:reset()
    ws:set { count_concurrency = true }
    ws:fault { path = "/api/2.0/fake/echo", kind = "pass", delay = 0.2, count = -1 }
    m:perform(list, opts { concurrency = 12 })
    assert.same({ now = 0, max = 12 }, ws:concurrency())
    m:close()
  end)

  it("fails what is unfinished when the run's timeout runs out, and only that", function()
    ws:fault { path = "/api/2.0/fake/echo", kind = "pass", delay = 0.5, count = 2 }
    local m = core.multi()
    local list = { echo(1), echo(2), echo(3), echo(4), echo(5), echo(6) }
    local t0 = core.now()
    local res, codes, msgs = m:perform(list, opts { concurrency = 4, timeout = 0.3 })
    assert.is_true(core.now() - t0 < 0.45)
    local sent, late = 0, 0
    for i = 1, 6 do
      if res[i] then
        sent = sent + 1
      else
        assert.equal("timeout", codes[i])
        assert.matches("^the batch's timeout %(300 ms%) ran out before this request", msgs[i])
        late = late + 1
      end
    end
    assert.same({ 4, 2 }, { sent, late })    -- the delayed two are cancelled, the rest done
    -- the handle stays usable
    assert.equal(200, m:perform({ echo(1) }, opts())[1].status)
    m:close()
  end)

  it("applies the easy client's limits to each item", function()
    ws:fault { path = "/api/2.0/fake/echo", kind = "oversize", size = 100000, count = 1 }
    local m = core.multi()
    local res, codes, msgs = m:perform({ echo(1), echo(2) }, opts { max_body = 50000 })
    assert.same({ "too_large", "response body exceeds 50000 bytes" }, { codes[1], msgs[1] })
    assert.equal(200, res[2].status)
    res, codes = m:perform({ echo(1, { max_body = 10 }) }, opts())
    assert.same({ false, "too_large" }, { res[1], codes[1] })
    -- a per-item timeout
    ws:fault { path = "/api/2.0/fake/echo", kind = "pass", delay = 1, count = 1 }
    res, codes = m:perform({ echo(1, { timeout_ms = 200 }), echo(2) }, opts())
    assert.equal("timeout", codes[1])
    assert.equal(200, res[2].status)
    m:close()
  end)

  it("verifies TLS: the wrong CA fails every item, skip_verify only when asked", function()
    local m = core.multi()
    local _, codes = m:perform({ echo(1), echo(2) }, { ca_file = ws.other_ca_file })
    assert.same({ "tls", "tls" }, codes)
    local res = m:perform({ echo(1) }, { skip_verify = true })
    assert.equal(200, res[1].status)
    _, codes = m:perform({ echo(1) }, { ca_file = ws.other_ca_file })
    assert.same({ "tls" }, codes)
    m:close()
  end)

  it("maps names for one run only (resolve), as the easy client does", function()
    local m = core.multi()
    local url = "http://dbx-test.invalid:" .. ws.http_port .. "/api/2.0/fake/echo"
    local list = { { url = url, headers = { Authorization = auth } } }
    local map = { resolve = { "dbx-test.invalid:" .. ws.http_port .. ":127.0.0.1" } }
    local res, _, msgs = m:perform(list, map)
    assert.is_table(res[1], msgs[1])
    -- the server drops that connection: the next run must look the name up again
    -- (twice: libcurl repeats a request once when a reused connection dies silently)
    ws:fault { path = "/api/2.0/fake/echo", kind = "close", count = 2 }
    local codes
    res, codes = m:perform(list, map)
    assert.same({ false, "recv" }, { res[1], codes[1] })
    res, codes = m:perform(list)
    assert.same({ false, "resolve" }, { res[1], codes[1] })
    m:close()
  end)

  it("runs an empty list", function()
    local m = core.multi()
    assert.same({ {}, {}, {} }, { m:perform({}) })
    m:close()
  end)
end)
