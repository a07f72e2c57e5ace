-- `make gateway-demo` (examples/nginx/run.lua): the fake workspace and Debian's nginx with
-- examples/nginx/nginx.conf as written (its marked values filled in), requests through the
-- gateway, the status location, and everything stopped afterwards: at the end, on Ctrl-C, and
-- when the demo is killed.
local files = require "spec.support.files"

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local function alive(pid)
  local _, rc = run("kill -0 " .. pid)
  return rc == 0
end

-- the two nginx masters and the gateway's prefix, as the demo printed them
local function started(out)
  return {
    ws = out:match("fake workspace: https://localhost:%d+ %(nginx pid (%d+)%)"),
    gw = out:match("gateway: http://127%.0%.0%.1:%d+ %(nginx pid (%d+)%)"),
    prefix = out:match("nginx %-p (/%S+)/ %-c conf/nginx%.conf"),
  }
end

local function wait_gone(s, seconds)
  for _ = 1, seconds * 10 do
    if not alive(s.ws) and not alive(s.gw) and not files.read(s.prefix .. "/conf/nginx.conf") then return true end
    run("sleep 0.1")
  end
  return false
end

describe("make gateway-demo", function()
  it("sends requests through the gateway, shows the identity and the token state, and stops it all", function()
    local out, rc = run("make -s gateway-demo")
    assert.equal(0, rc, out)
    local n = 0
    for i in out:gmatch("request (%d): GET /api/hello %-> HTTP 200, the app saw user fake%-client%-id "
      .. "%(scopes all%-apis%)\n") do
      n = n + 1
      assert.equal(tostring(n), i)
    end
    assert.equal(3, n, out)
    -- the status location's JSON: a valid token, one refresh, no failures (never the token)
    local status = assert(require("cjson.safe").decode(out:match("/_dbxauth/status\n(%b{})\n") or ""), out)
    assert.is_true(status.valid)
    assert.equal(1, status.refreshes)
    assert.equal(0, status.failures)
    assert.is_nil(status.access_token)
    assert.matches("token requests to the workspace: 1, requests the app answered: 3\n", out, 1, true)
    assert.matches("DATABRICKS_CLIENT_SECRET=*** nginx", out, 1, true)
    assert.not_matches(require("spec.support.fake").CREDS.client_secret, out, 1, true)
    assert.matches("stopped the gateway and the fake workspace\n$", out)
    local s = started(out)
    assert.is_truthy(s.ws and s.gw and s.prefix, out)
    assert.is_true(wait_gone(s, 2), "a server or the prefix is left: " .. out)
  end)

  -- the demo in the background with many requests; `signal` once its first request is answered
  local function interrupted(signal)
    local dir = run("mktemp -d -t dbxauth-demo.XXXXXX"):gsub("%s+$", "")
    local log = dir .. "/out"
    local pid = run("lua5.4 examples/nginx/run.lua 100000 >" .. files.q(log) .. " 2>&1 & echo $!"):match("%d+")
    local out = ""
    for _ = 1, 300 do
      out = files.read(log) or ""
      if out:find("request 2:", 1, true) then break end
      run("sleep 0.1")
    end
    assert.matches("request 1: GET /api/hello -> HTTP 200", out, 1, true)
    run("kill -" .. signal .. " " .. pid)
    for _ = 1, 100 do
      if not alive(pid) then break end
      run("sleep 0.1")
    end
    assert.is_false(alive(pid))
    out = files.read(log)
    run("rm -rf " .. files.q(dir))
    return out, started(out)
  end

  it("stops the gateway and the fake workspace on Ctrl-C", function()
    local out, s = interrupted("INT")
    assert.matches("stopped the gateway and the fake workspace\ngateway demo failed: interrupted\n", out, 1, true)
    assert.is_true(wait_gone(s, 2), "a server or the prefix is left: " .. out)
  end)

  it("stops them when the demo is killed outright", function()
    local out, s = interrupted("KILL")
    assert.not_matches("stopped the gateway", out, 1, true)
    -- the watchdog polls every 0.5 s; the fake workspace checks its controller every second
    assert.is_true(wait_gone(s, 6), "a server or the prefix is left: " .. out)
  end)
end)
