-- cfg:request_all inside nginx (Debian's nginx + ngx_lua, LuaJIT): the batch runs on light
-- threads over cosockets (transport/ngx.lua's send_all) in a content handler of a gateway nginx
-- with one worker (spec/support/nginx_gw.lua, /t/batch), in front of the fake workspace.
local fake = require "spec.support.fake"
local ngw = require "spec.support.nginx_gw"
local files = require "spec.support.files"
local curl = require "dbxauth.transport.curl"
local core = require "dbxauth.core"
local cjson = require "cjson.safe"

local ECHO = "/api/2.0/fake/echo"

describe("cfg:request_all in nginx", function()
  local ws, gw, home
  local client = curl.new()

  local function get(url, timeout)
    local res, err = client:send { url = url, timeout = timeout or 20 }
    assert(res, err and tostring(err))
    return res
  end

  local function batch(args)
    local q = {}
    for k, v in pairs(args) do q[#q + 1] = k .. "=" .. tostring(v) end
    local res = get(gw.url .. "/t/batch?profile=pat&path=" .. ECHO .. "&" .. table.concat(q, "&"))
    assert.equal(200, res.status, res.body)
    return assert(cjson.decode(res.body), res.body)
  end

  setup(function()
    ws = fake.start()
    home = files.tmpdir()
    files.write(home .. "/.databrickscfg", "[pat]\nhost = " .. ws.url .. "\ntoken = " .. ws.creds.pat .. "\n")
    gw = ngw.start { ws = ws, workers = 1, env = { HOME = home } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if ws then ws:stop() end
    if home then os.execute("rm -rf " .. files.q(home)) end
  end)

  before_each(function() ws:reset() end)

  it("sends the items over cosockets, in order, at most `concurrency` at once", function()
    ws:set { count_concurrency = true }
    ws:fault { path = ECHO, kind = "pass", delay = 0.3, count = -1 }
    local out = batch { n = 12, concurrency = 4 }
    assert.equal(0, out.failed)
    for i = 1, 12 do
      assert.equal(200, out.results[i].status)
      assert.equal(tostring(i), out.results[i].i)
      assert.equal("1.1", out.results[i].http_version)      -- cosockets speak HTTP/1.1
    end
    assert.same({ now = 0, max = 4 }, ws:concurrency())
    -- 3 rounds of 0.3 s, not 12 one after the other
    assert.is_true(out.took >= 0.85 and out.took < 2.5, "took " .. out.took)
    assert.equal("HTTP/1.1", ws:last(ECHO).protocol)
  end)

  it("never blocks the worker while the batch waits", function()
    ws:fault { path = ECHO, kind = "pass", delay = 1.5, count = -1 }
    local out = os.tmpname()
    os.execute("(curl -s -o " .. files.q(out) .. " " .. files.q(gw.url .. "/t/batch?profile=pat&n=4&path=" .. ECHO)
      .. ") &")
    core.sleep(0.3)
    local worst = 0
    for _ = 1, 10 do
      local t0 = core.now()
      get(gw.url .. "/fast")
      worst = math.max(worst, core.now() - t0)
      core.sleep(0.05)
    end
    assert.is_true(worst < 0.2, "slowest /fast: " .. worst .. " s")
    local deadline = core.now() + 10
    local body
    repeat
      core.sleep(0.1)
      body = files.read(out)
    until (body and body ~= "") or core.now() > deadline
    os.remove(out)
    local res = assert(cjson.decode(body), body)
    assert.equal(0, res.failed)
    assert.is_true(res.took >= 1.4 and res.took < 3, "took " .. res.took)   -- the 4 at once
  end)

  it("retries per item, and cancels what the batch's timeout leaves unfinished", function()
    ws:fault { path = ECHO, status = 503, retry_after = "0", count = 2 }
    local out = batch { n = 6 }
    assert.equal(0, out.failed)
    assert.equal(8, ws:counters()["GET " .. ECHO])
    ws:reset()
    ws:fault { path = ECHO, kind = "pass", delay = 5, count = 2 }
    out = batch { n = 6, concurrency = 6, timeout = 0.5 }
    assert.equal(2, out.failed)
    assert.is_true(out.took < 2, "took " .. out.took)
    local cancelled = 0
    for i = 1, 6 do
      local e = out.results[i].err
      if e then
        assert.same({ "timeout", "cancelled" }, { e.code, e.reason })
        cancelled = cancelled + 1
      end
    end
    assert.equal(2, cancelled)
  end)
end)
