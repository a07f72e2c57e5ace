-- dbxauth.core listener: the one-shot loopback HTTP server behind the U2M browser callback.
-- Real clients are the curl CLI and bash's /dev/tcp (for bytes curl will not send), run in
-- the background while the listener waits.
local core = require "dbxauth.core"
local files = require "spec.support.files"

local IS54 = _VERSION == "Lua 5.4"
-- Time bounds are wall-clock; under valgrind (make check) everything runs several times slower.
local TIME_SCALE = tonumber(os.getenv("HOSTILE_TIME_SCALE") or "") or 1
local q = files.q

local tmp = files.tmpdir()
local seq = 0

-- Runs `cmd` in the background; returns the path its output lands in once it is done.
local function background(cmd)
  seq = seq + 1
  local out = tmp .. "/out" .. seq
  os.execute("((" .. cmd .. ") > " .. q(out .. ".part") .. " 2>&1; mv " .. q(out .. ".part") .. " "
    .. q(out) .. ") </dev/null >/dev/null 2>&1 &")
  return out
end

local function curl(args)
  return background("curl -s -i --max-time 10 " .. args)
end

-- Raw bytes over TCP with bash, then everything the server answers (until it closes).
local function raw(port, bytes, host)
  return background("exec bash -c " .. q("exec 3<>/dev/tcp/" .. (host or "127.0.0.1") .. "/" .. port
    .. "; printf '%s' " .. q(bytes) .. " >&3; cat <&3"))
end

-- Raw bytes, then hang up without reading anything.
local function send_and_hang_up(port, bytes)
  return background("exec bash -c " .. q("exec 3<>/dev/tcp/127.0.0.1/" .. port
    .. "; printf '%s' " .. q(bytes) .. " >&3"))
end

-- The finished output of a background command (waits up to `secs`).
local function result(path, secs)
  local deadline = core.now() + (secs or 10)
  repeat
    local s = files.read(path)
    if s then return s end
    core.sleep(0.02)
  until core.now() > deadline
  error("background command did not finish: " .. path)
end

local function url(l, target)
  return q("http://127.0.0.1:" .. l:port() .. target)
end

-- An ephemeral port that was free a moment ago.
local function free_port()
  local l = assert(core.listen { ports = { 0 } })
  local p = l:port()
  l:close()
  return p
end

local function has_ipv6_loopback()
  local s = files.read("/proc/net/if_inet6") or ""
  return s:find("^00000000000000000000000000000001 ") ~= nil
    or s:find("\n00000000000000000000000000000001 ") ~= nil
end

-- Open descriptors of this process: { [fd] = link target }.
local function fds()
  local out, dir = {}, "/proc/" .. core.getpid() .. "/fd"
  local p = assert(io.popen("ls " .. q(dir)))
  for name in p:lines() do
    local fd = tonumber(name)
    if fd then
      local lp = io.popen("readlink " .. q(dir .. "/" .. name) .. " 2>/dev/null")
      out[fd] = lp:read("*l") or "?"
      lp:close()
    end
  end
  p:close()
  return out
end

local function cloexec(fd)
  local s = files.read("/proc/" .. core.getpid() .. "/fdinfo/" .. fd) or ""
  local flags = tonumber(s:match("flags:%s*(%d+)") or "0", 8)
  return math.floor(flags / 524288) % 2 == 1   -- O_CLOEXEC = 02000000
end

describe("core.listen", function()
  it("binds 127.0.0.1 on the first port of the list and reports it", function()
    local p = free_port()
    local l = assert(core.listen { ports = { p } })
    assert.equal(p, l:port())
    assert.matches("^dbxauth.listener %(127%.0%.0%.1:" .. p, tostring(l))
    l:close()
  end)

  it("port 0 asks for any free port", function()
    local l = assert(core.listen { ports = { 0 } })
    assert.is_true(l:port() > 0)
    l:close()
  end)

  it("falls back to the next port when one is taken", function()
    local first = assert(core.listen { ports = { 0 } })
    local taken, spare = first:port(), free_port()
    local l = assert(core.listen { ports = { taken, spare } })
    assert.equal(spare, l:port())
    l:close()
    first:close()
    -- and the port is usable again once its listener is gone
    local again = assert(core.listen { ports = { taken, spare } })
    assert.equal(taken, again:port())
    again:close()
  end)

  it("returns port_busy, naming the ports, when all are taken", function()
    local a = assert(core.listen { ports = { 0 } })
    local b = assert(core.listen { ports = { 0 } })
    local l, code, msg = core.listen { ports = { a:port(), b:port() } }
    assert.is_nil(l)
    assert.equal("port_busy", code)
    assert.matches(tostring(a:port()), msg, 1, true)
    assert.matches(tostring(b:port()), msg, 1, true)
    -- a consecutive run is shown as a range
    if b:port() == a:port() + 1 then
      assert.matches(a:port() .. "-" .. b:port(), msg, 1, true)
    end
    a:close()
    b:close()
  end)

  it("never binds a non-loopback address", function()
    local l = assert(core.listen { ports = { 0 } })
    local hex = string.format("%04X", l:port())
    for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
      for addr in (files.read(f) or ""):gmatch("\n%s*%d+: (%x+):" .. hex .. " 00000000") do
        assert.is_true(addr == "0100007F" or addr == "00000000000000000000000001000000", addr)
      end
    end
    l:close()
  end)

  it("uses close-on-exec descriptors and releases every one of them", function()
    -- by socket inode, not descriptor number: a keep-alive socket that other specs left behind
    -- may be collected meanwhile and its number reused
    local before = {}
    for _, target in pairs(fds()) do before[target] = true end
    local l = assert(core.listen { ports = { 0 } })
    local c = curl(url(l, "/?code=x"))
    assert(l:wait(5000))
    local new = 0
    for fd, target in pairs(fds()) do
      if not before[target] and target:match("^socket:") then
        new = new + 1
        assert.is_true(cloexec(fd), "fd " .. fd .. " lacks O_CLOEXEC")
      end
    end
    assert.is_true(new >= 2, "listening socket(s) and the connection")
    l:close()
    result(c)
    for fd, target in pairs(fds()) do
      if target:match("^socket:") then assert.is_truthy(before[target], "fd " .. fd .. " leaked") end
    end
  end)

  it("raises on bad options", function()
    assert.has_error(function() core.listen() end)
    assert.has_error(function() core.listen {} end)
    assert.has_error(function() core.listen { ports = {} } end)
    assert.has_error(function() core.listen { ports = { 70000 } } end)
    assert.has_error(function() core.listen { ports = { -1 } } end)
    assert.has_error(function() core.listen { ports = { 80.5 } } end)
    assert.has_error(function() core.listen { ports = { "8020" } } end)
  end)
end)

describe("listener:wait and :respond", function()
  local l
  before_each(function() l = assert(core.listen { ports = { 0 } }) end)
  after_each(function() l:close() end)

  it("times out when nobody calls", function()
    local t0 = core.now()
    local r, code, msg = l:wait(200)
    local dt = core.now() - t0
    assert.is_nil(r)
    assert.equal("timeout", code)
    assert.equal("no request within 200 ms", msg)
    assert.is_true(dt >= 0.19 and dt < 2, tostring(dt))
    r, code = l:wait(0)
    assert.is_nil(r)
    assert.equal("timeout", code)
  end)

  it("returns the callback request, decoded, and the client gets the page", function()
    local out = curl(url(l, "/callback?code=abc%2Fdef&state=s+1&state=second&flag&e=%C3%A9"))
    local req = assert(l:wait(5000))
    assert.same({
      method = "GET",
      target = "/callback?code=abc%2Fdef&state=s+1&state=second&flag&e=%C3%A9",
      path = "/callback",
      raw_query = "code=abc%2Fdef&state=s+1&state=second&flag&e=%C3%A9",
      query = { code = "abc/def", state = "s 1", flag = "", e = "\195\169" },
    }, req)
    local page = "<!doctype html><title>Authenticated</title><p>You can close this tab.</p>"
    assert.is_true(l:respond(200, "text/html; charset=utf-8", page))
    local got = result(out)
    local head, body = got:match("^(.-\r\n)\r\n(.*)$")
    assert.matches("^HTTP/1.1 200 OK\r\n", head)
    assert.equal(page, body)
    local want = {
      "Content-Type: text/html; charset=utf-8",
      "Content-Length: " .. #page,
      "Connection: close",
      "Cache-Control: no-store",
      "X-Content-Type-Options: nosniff",
      "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'",
      "Referrer-Policy: no-referrer",
    }
    for _, h in ipairs(want) do assert.matches("\r\n" .. h .. "\r\n", head, 1, true) end
  end)

  it("gives an empty query for a target without one", function()
    local out = curl(url(l, "/"))
    local req = assert(l:wait(5000))
    assert.equal("/", req.path)
    assert.equal("", req.raw_query)
    assert.same({}, req.query)
    assert.is_true(l:respond(400, "text/plain", "Missing Query"))
    assert.matches("^HTTP/1.1 400 Bad Request\r\n.*\r\n\r\nMissing Query$", result(out))
  end)

  it("accepts HTTP/1.0 and bare LF line endings", function()
    local out = raw(l:port(), "\r\nGET /?code=lf HTTP/1.0\nHost: x\n\n")
    local req = assert(l:wait(5000))
    assert.equal("lf", req.query.code)
    assert.is_true(l:respond(200, "text/plain", "ok"))
    assert.matches("^HTTP/1.1 200 OK\r\n.*\r\n\r\nok$", result(out))
  end)

  it("rejects an oversized request head with 431", function()
    local out = curl("-H " .. q("X-Big: " .. string.rep("b", 9000)) .. " " .. url(l, "/?code=big"))
    local r, code, msg = l:wait(5000)
    assert.is_nil(r)
    assert.equal("bad_request", code)
    assert.equal("bad request: request head larger than 8192 bytes", msg)
    assert.matches("^HTTP/1.1 431 ", result(out))
  end)

  it("rejects methods other than GET", function()
    local out = curl("-X POST -d x=1 " .. url(l, "/?code=post"))
    local r, code, msg = l:wait(5000)
    assert.is_nil(r)
    assert.equal("bad_request", code)
    assert.equal("bad request: method POST is not allowed, only GET", msg)
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", result(out))
  end)

  it("rejects malformed request heads and keeps serving", function()
    local cases = {
      { "garbage\r\n\r\n", "bad request: malformed request line" },
      { "GET  / HTTP/1.1\r\n\r\n", "bad request: malformed request line" },
      { "GET http://localhost/ HTTP/1.1\r\n\r\n", "bad request: request target must start with '/'" },
      { "GET / HTTP/2.0\r\n\r\n", "bad request: not an HTTP/1.x request" },
      { "GET /\r\n\r\n", "bad request: malformed request line" },
      { "GET /?code=%zz HTTP/1.1\r\n\r\n", "bad request: invalid percent-encoding in the query" },
      { "GET / HTTP/1.1\r\nNo-Colon\r\n\r\n", "bad request: malformed header line" },
      { "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "bad request: bare CR in the request head" },
      { "GET / HTTP/1.1\r\n folded\r\n\r\n", "bad request: malformed header line" },
    }
    for _, c in ipairs(cases) do
      local out = raw(l:port(), c[1])
      local r, code, msg = l:wait(5000)
      assert.is_nil(r, c[1])
      assert.equal("bad_request", code)
      assert.equal(c[2], msg)
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", result(out))
    end
    -- the caller may wait again
    local out = curl(url(l, "/?code=after"))
    assert.equal("after", assert(l:wait(5000)).query.code)
    assert.is_true(l:respond(200, "text/plain", "ok"))
    assert.matches("ok$", result(out))
  end)

  it("answers a request left without a response with 500 on the next wait", function()
    local first = curl(url(l, "/?code=1"))
    assert.equal("1", assert(l:wait(5000)).query.code)
    local second = curl(url(l, "/?code=2"))
    assert.equal("2", assert(l:wait(5000)).query.code)
    assert.matches("^HTTP/1.1 500 Internal Server Error\r\n", result(first))
    assert.is_true(l:respond(200, "text/plain", "second"))
    assert.matches("second$", result(second))
  end)

  it("is not held up by an idle connection that sends nothing", function()
    local idle = raw(l:port(), "")          -- connects, says nothing
    core.sleep(0.2)
    local out = curl(url(l, "/?code=real"))
    local t0 = core.now()
    assert.equal("real", assert(l:wait(5000)).query.code)
    assert.is_true(core.now() - t0 < 1.5)
    assert.is_true(l:respond(200, "text/plain", "ok"))
    assert.matches("ok$", result(out))
    l:close()
    assert.equal("", result(idle))          -- closed without a word
  end)

  it("serves the callback within a second while more idle and slow clients than it reads at once hang on", function()
    -- 40 clients that connect and say nothing, 40 that never finish their head: more than the
    -- listener reads at once, each with a read deadline of seconds
    local idlers = {}
    for i = 1, 40 do idlers[#idlers + 1] = raw(l:port(), i % 2 == 0 and "" or "GET /?code=slow HTTP/1.1\r\n") end
    core.sleep(0.5)
    assert.equal("timeout", select(2, l:wait(300)))   -- all accepted or queued by now
    local t0 = core.now()
    local out = curl(url(l, "/?code=real"))
    local req = assert(l:wait(5000))
    assert.equal("real", req.query.code)
    local dt = core.now() - t0
    assert.is_true(dt < 1.2 * TIME_SCALE, string.format("%.2f s", dt))
    assert.is_true(l:respond(200, "text/plain", "ok"))
    assert.matches("ok$", result(out))
    l:close()
    for _, idle in ipairs(idlers) do result(idle) end
  end)

  it("returns interrupted when a signal arrives, so that Ctrl-C reaches the Lua code", function()
    -- lua.c and luajit.c turn SIGINT into an "interrupted!" error at the next Lua instruction;
    -- a wait that went on polling would hold it back until its timeout (20 s here)
    local code = [[
      local core = require "dbxauth.core"
      local l = assert(core.listen { ports = { 0 } })
      io.stdout:write(core.getpid(), "\n")
      io.stdout:flush()
      local r, why = l:wait(20000)
      print("not interrupted", r, why)
    ]]
    local cpath = (IS54 and "build/5.4/?.so" or "build/jit/?.so")
    local out = tmp .. "/sigint.out"
    os.execute("((" .. (IS54 and "lua5.4" or "luajit")
      .. " -e " .. q("package.cpath = '" .. cpath .. ";' .. package.cpath")
      .. " -e " .. q(code) .. "; echo \"exit $?\") > " .. q(out) .. " 2>&1 &)")
    local pid
    local deadline = core.now() + 5
    repeat
      core.sleep(0.05)
      pid = (files.read(out) or ""):match("^(%d+)\n")
    until pid or core.now() > deadline
    assert(pid, "the child did not start")
    core.sleep(0.3)
    local t0 = core.now()
    os.execute("kill -INT " .. pid)
    local got
    repeat
      core.sleep(0.05)
      got = files.read(out) or ""
    until got:find("\nexit %d+\n$") or core.now() > t0 + 10
    assert.is_true(core.now() - t0 < 2 * TIME_SCALE, string.format("%.2f s", core.now() - t0))
    assert.matches("interrupted!", got, 1, true)
    assert.not_matches("not interrupted", got, 1, true)
    assert.matches("\nexit 1\n$", got)
  end)

  it("drops a client too slow to send its head, and keeps waiting", function()
    local slow = raw(l:port(), "GET /?code=slow HTTP/1.1\r\n")   -- never finishes the head
    local t0 = core.now()
    local r, code = l:wait(5500)
    assert.is_nil(r)
    assert.equal("timeout", code)
    assert.is_true(core.now() - t0 >= 5.4)
    assert.matches("^HTTP/1.1 408 Request Timeout\r\n", result(slow))
  end)

  it("does not spin when out of file descriptors, and recovers", function()
    -- a child with every descriptor in use: accept fails with EMFILE while a client waits
    local code = [[
      local core = require "dbxauth.core"
      local l = assert(core.listen { ports = { 0 } })
      os.execute("curl -s --max-time 5 http://127.0.0.1:" .. l:port() .. "/?code=fd >/dev/null 2>&1 &")
      core.sleep(0.3)
      local keep = {}
      repeat local f = io.open("/dev/null"); keep[#keep + 1] = f until not f
      local cpu = os.clock()
      local r, why = l:wait(500)
      cpu = os.clock() - cpu
      for _, f in ipairs(keep) do f:close() end
      local req = l:wait(3000)
      print(r, why, cpu < 0.25, req and req.query.code)
    ]]
    local cpath = (IS54 and "build/5.4/?.so" or "build/jit/?.so")
    -- descriptors this process leaves inheritable (libcurl's sockets) are closed first: with
    -- more than 64 of them the child could not even load its modules
    local close_inherited = "for f in /proc/$$/fd/*; do n=${f##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done"
    local p = assert(io.popen("bash -c " .. q(close_inherited .. " 2>/dev/null; ulimit -n 64; exec "
      .. (IS54 and "lua5.4" or "luajit") .. " -e " .. q("package.cpath = '" .. cpath .. ";' .. package.cpath")
      .. " -e " .. q(code) .. " 2>&1")))
    local out = p:read("*a")
    p:close()
    assert.equal("nil\ttimeout\ttrue\tfd\n", out)
  end)

  it("raises when there is nothing to respond to, or on bad arguments", function()
    assert.has_error(function() l:respond(200, "text/plain", "x") end,
      "dbxauth.listener: no request to respond to")
    local out = curl(url(l, "/?code=args"))
    assert(l:wait(5000))
    assert.has_error(function() l:respond(99, "text/plain", "x") end)
    assert.has_error(function() l:respond(600, "text/plain", "x") end)
    assert.has_error(function() l:respond(200, "text/plain\r\nSet-Cookie: a=b", "x") end)
    assert.has_error(function() l:respond(200, "", "x") end)
    assert.has_error(function() l:respond(200, string.rep("a", 257), "x") end)
    assert.has_error(function() l:wait(-1) end)
    assert.has_error(function() l:wait(1.5) end)
    assert.has_error(function() l:wait() end)
    -- the request survived the failed calls
    assert.is_true(l:respond(204, "text/plain"))
    assert.matches("^HTTP/1.1 204 No Content\r\n.*Content%-Length: 0\r\n", result(out))
  end)

  it("reports a client that went away before the response", function()
    local ok, code, msg
    for _ = 1, 3 do                          -- the first write after the hang-up may still be accepted
      result(send_and_hang_up(l:port(), "GET /?code=gone HTTP/1.1\r\n\r\n"))
      assert(l:wait(5000))
      core.sleep(0.1)
      ok, code, msg = l:respond(200, "text/plain", string.rep("x", 8 * 1024 * 1024))
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.equal("io", code)
    assert.matches("^respond: ", msg)
  end)

  it("reaches the listener over ::1 when the machine has IPv6 loopback", function()
    if has_ipv6_loopback() then
      assert.matches("%[::1%]:" .. l:port(), tostring(l))
      local out = curl("-g " .. q("http://[::1]:" .. l:port() .. "/?code=six"))
      assert.equal("six", assert(l:wait(5000)).query.code)
      assert.is_true(l:respond(200, "text/plain", "v6"))
      assert.matches("v6$", result(out))
    else
      assert.not_matches("::1", tostring(l))
    end
    -- IPv4 always works, and `localhost` reaches us whichever family it resolves to
    local out = curl(q("http://localhost:" .. l:port() .. "/?code=local"))
    assert.equal("local", assert(l:wait(5000)).query.code)
    assert.is_true(l:respond(200, "text/plain", "v4"))
    assert.matches("v4$", result(out))
  end)
end)

describe("dbxauth.listener handle", function()
  it("has a named metatable, __tostring, and close/__gc/__close are one idempotent function", function()
    local l = assert(core.listen { ports = { 0 } })
    local mt = getmetatable(l)
    assert.equal("dbxauth.listener", mt.__name)
    assert.equal("function", type(mt.__gc))
    if IS54 then assert.equal(mt.__gc, mt.__close) else assert.is_nil(mt.__close) end
    l:close()
    l:close()
    mt.__gc(l)
    assert.equal("dbxauth.listener (closed)", tostring(l))
  end)

  it("refuses use after close", function()
    local l = assert(core.listen { ports = { 0 } })
    l:close()
    for _, f in ipairs { function() l:wait(0) end, function() l:port() end,
                         function() l:respond(200, "text/plain", "") end } do
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches("attempt to use a closed dbxauth.listener", err, 1, true)
    end
  end)

  it("frees the port on close, also in the middle of a request", function()
    local l = assert(core.listen { ports = { 0 } })
    local p = l:port()
    local half = raw(p, "GET /?code=half")  -- an unfinished head, accepted and kept
    assert.equal("timeout", select(2, l:wait(300)))
    local pending = curl(url(l, "/?code=mid"))
    assert(l:wait(5000))                     -- a request owed a response
    l:close()
    assert.matches("^HTTP/1.1 500 ", result(pending))
    assert.equal("", result(half))
    local again = assert(core.listen { ports = { p } })
    assert.equal(p, again:port())
    again:close()
  end)

  it("is collected once unreachable, releasing the port", function()
    local weak = setmetatable({}, { __mode = "k" })
    local l = assert(core.listen { ports = { 0 } })
    local p = l:port()
    local out = curl(url(l, "/?code=gc"))
    assert(l:wait(5000))                     -- a pending request too
    weak[l] = true
    l = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
    assert.matches("^HTTP/1.1 500 ", result(out))
    local again = assert(core.listen { ports = { p } })
    again:close()
  end)

  it("supports <close> in Lua 5.4", function()
    if not IS54 then
      assert.is_nil(getmetatable(assert(core.listen { ports = { 0 } })).__close)
      return
    end
    local f = assert(load([[
      local core = ...
      local keep
      do
        local l <close> = assert(core.listen { ports = { 0 } })
        keep = l
      end
      return keep
    ]]))
    assert.equal("dbxauth.listener (closed)", tostring(f(core)))
  end)
end)
