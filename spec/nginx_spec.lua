-- dbxauth inside Debian's nginx + ngx_lua (LuaJIT): the cosocket transport, the shared-dict
-- token store and the gateway (dbxauth.nginx). Each block starts a gateway nginx with 2 workers
-- from a temp prefix (spec/support/nginx_gw.lua) in front of the fake workspace.
local fake = require "spec.support.fake"
local ngw = require "spec.support.nginx_gw"
local files = require "spec.support.files"
local curl = require "dbxauth.transport.curl"
local core = require "dbxauth.core"
local cjson = require "cjson.safe"

local CLIENT_AUTH = "Bearer client-own-token-0000"   -- what clients send; must never go upstream

local function url_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function sleep(s)
  core.sleep(s)
end

local function now()
  return core.now()
end

-- Everything clients received, scanned for secrets at the end.
local received = {}

local function remember(res)
  local parts = { tostring(res.status), res.body or "" }
  for k, v in pairs(res.headers or {}) do parts[#parts + 1] = k .. ": " .. v end
  received[#received + 1] = table.concat(parts, "\n")
end

-- One HTTP client per describe block (keep-alive), or a fresh connection with `fresh`.
local client = curl.new()

local function get(url, opts)
  opts = opts or {}
  local t = opts.fresh and curl.new() or client
  local res, err = t:send { method = "GET", url = url, headers = opts.headers or { Authorization = CLIENT_AUTH },
                            timeout = opts.timeout or 20 }
  if opts.fresh then t:close() end
  assert(res, err and tostring(err))
  remember(res)
  return res
end

local function json(res)
  return assert(cjson.decode(res.body), "not JSON: " .. tostring(res.body))
end

local function status(gw, opts)
  return json(get(gw.url .. "/t/status?opts=" .. url_encode(cjson.encode(opts))))
end

local function wait_for(what, secs, fn)
  local deadline = now() + secs
  while true do
    local v = fn()
    if v then return v end
    if now() > deadline then error("timed out waiting for " .. what, 2) end
    sleep(0.05)
  end
end

-- Token exchanges for my-app's audience (the PAT gateway's token requests; the M2M gateways'
-- client_credentials requests are not counted here).
local function exchanges(ws)
  return ws:counters()["exchange app-client-my-app"] or 0
end

-- Profiles for the gateways; HOME of the gateway nginx points here (env HOME).
local function write_home(ws)
  local home = files.tmpdir()
  files.write(home .. "/.databrickscfg", table.concat({
    "[m2m]",
    "host = " .. ws.url,
    "client_id = " .. ws.creds.client_id,
    "client_secret = " .. ws.creds.client_secret,
    "",
    "[pat]",
    "host = " .. ws.url,
    "token = " .. ws.creds.pat,
    "",
  }, "\n"))
  return home
end

-- A location proxying /<prefix>/ to an app of the fake, with the gateway's access handler.
local function app_location(prefix, app, access_opts)
  return ([[
    location /@PREFIX@/ {
      access_by_lua_block { require("dbxauth.nginx").access(@OPTS@) }
      proxy_pass https://fake/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${APP_HOST:@APP@}:${WS_PORT};
      proxy_ssl_name ${APP_HOST:@APP@};
      proxy_ssl_server_name on;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${CA};
    }
  ]]):gsub("@PREFIX@", prefix):gsub("@APP@", app):gsub("@OPTS@", access_opts)
end

local function wrk(url, connections, seconds)
  local p = assert(io.popen("wrk -t2 -c" .. connections .. " -d" .. seconds .. "s --timeout 10s -H "
    .. files.q("Authorization: " .. CLIENT_AUTH) .. " " .. files.q(url) .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  local n = tonumber(out:match("(%d+) requests in"))
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)") or "0")
  local c, r, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  local sock = (tonumber(c) or 0) + (tonumber(r) or 0) + (tonumber(w) or 0) + (tonumber(t) or 0)
  return { requests = n, non2xx = non2xx, socket_errors = sock, output = out }
end

describe("nginx", function()
  local ws, home

  setup(function()
    ws = fake.start { workers = 2 }
    home = write_home(ws)
  end)

  teardown(function()
    if ws then ws:stop() end
    if home then os.execute("rm -rf " .. files.q(home)) end
  end)

  before_each(function()
    ws:reset()
  end)

  describe("cosocket transport", function()
    local gw

    setup(function()
      gw = ngw.start { ws = ws }
    end)

    teardown(function()
      if gw then gw:stop() end
    end)

    local function send(url, extra)
      return json(get(gw.url .. "/t/send?url=" .. url_encode(url) .. (extra or "")))
    end

    it("verifies TLS against the host name, resolves localhost from /etc/hosts, reuses connections", function()
      local out = send(ws.url .. "/api/2.0/preview/scim/v2/Me",
        "&repeat=2&header=" .. url_encode("Authorization:Bearer " .. ws.creds.pat))
      assert.equal(200, out[1].status, cjson.encode(out[1]))
      assert.equal("user@example.com", cjson.decode(out[1].body).userName)
      assert.equal("application/json", out[1].headers["content-type"])
      assert.is_false(out[1].reused)
      assert.is_true(out[2].reused)
    end)

    -- repeated: Debian's ngx_lua loses the verification error when the handshake had to wait
    -- for the network (see transport/ngx.lua); both paths must fail
    it("fails TLS for a name the certificate does not carry, and for a bare IP", function()
      for _ = 1, 5 do
        local out = send("https://wrong.example:" .. ws.port .. "/api/2.0/preview/scim/v2/Me",
          "&resolve=" .. url_encode("wrong.example:" .. ws.port .. ":127.0.0.1")
          .. "&header=" .. url_encode("Authorization:Bearer " .. ws.creds.pat))
        assert.is_table(out[1].err, cjson.encode(out[1]))
        assert.equal("tls", out[1].err.code, cjson.encode(out[1]))
        assert.matches("lua_ssl_trusted_certificate", out[1].err.hint)
        out = send("https://127.0.0.1:" .. ws.port .. "/")
        assert.equal("tls", out[1].err.code, cjson.encode(out[1]))
      end
      -- and the credentials never reached the server
      assert.is_nil(ws:counters()["GET /api/2.0/preview/scim/v2/Me"])
    end)

    it("fails TLS when lua_ssl_trusted_certificate does not hold the server's CA", function()
      local other = ngw.start { ws = ws, trusted_ca = ws.other_ca_file }
      local ok, err = pcall(function()
        for _ = 1, 3 do
          local out = json(get(other.url .. "/t/send?url=" .. url_encode(ws.url .. "/")))
          assert.equal("tls", out[1].err.code, cjson.encode(out[1]))
        end
      end)
      other:stop()
      assert(ok, err)
    end)

    it("says that nginx has no resolver for names outside /etc/hosts", function()
      local out = send("https://no-such-host.example:" .. ws.port .. "/")
      assert.equal("network", out[1].err.code)
      assert.equal("resolve", out[1].err.reason)
      assert.matches("nginx has no resolver configured", out[1].err.message)
      assert.matches("resolver", out[1].err.hint)
    end)

    it("reads chunked, close-delimited, 1xx-prefixed and HTTP/1.0 responses", function()
      local function raw(case) return send(gw.url .. "/t/raw?case=" .. case)[1] end
      local r = raw("chunked")
      assert.equal(200, r.status)
      assert.equal("hello, world", r.body)
      assert.equal("1, 2", r.headers["x-a"])
      assert.equal("until the end", raw("close").body)
      r = raw("continue")
      assert.equal(201, r.status)
      assert.equal("ok", r.body)
      assert.equal("old", raw("http10").body)
      r = raw("no_reason")
      assert.equal(204, r.status)
      assert.equal("", r.body)
      -- a pooled connection the server closes meanwhile is dropped from the pool, or (linger:
      -- closed after the request went out on it) retried once on a fresh one; never an error
      for _, linger in ipairs { "", "&linger=0.3" } do
        local out = send(gw.url .. "/t/raw?case=pooled" .. linger, "&repeat=3")
        for i = 1, 3 do
          assert.equal(200, out[i].status, cjson.encode(out[i]))
          assert.equal("ok", out[i].body)
        end
      end
    end)

    it("rejects malformed responses", function()
      for _, case in ipairs { "te_and_cl", "folded", "ctl", "bad_status", "not_http", "bad_name", "cl_mismatch",
                              "cl_negative", "bad_chunk", "huge_chunk", "chunk_no_crlf", "gzip_te",
                              "switch", "many_continue" } do
        local r = send(gw.url .. "/t/raw?case=" .. case)[1]
        assert.is_table(r.err, case)
        assert.equal("invalid_response", r.err.code, case .. ": " .. cjson.encode(r))
      end
      local r = send(gw.url .. "/t/raw?case=short_body")[1]
      assert.equal("network", r.err.code)
      assert.equal("recv", r.err.reason)
    end)

    it("enforces the curl transport's header limits: 256 KiB of header block, 1000 fields", function()
      for _, case in ipairs { "huge_headers", "many_headers" } do
        local r = send(gw.url .. "/t/raw?case=" .. case)[1]
        assert.is_table(r.err, case)
        assert.equal("too_large", r.err.code, case .. ": " .. cjson.encode(r))
      end
      local r = send(gw.url .. "/t/raw?case=near_limits")[1]
      assert.equal(200, r.status, cjson.encode(r.err))
      assert.equal("ok", r.body)
      assert.equal(200 * 1024, #r.headers["x-big"])
      assert.equal(string.rep("1", 998, ", "), r.headers["x-m"])
    end)

    it("enforces max_body for Content-Length, chunked and close-delimited bodies", function()
      for _, case in ipairs { "big_cl", "big_chunked", "big_close" } do
        local r = send(gw.url .. "/t/raw?case=" .. case, "&max_body=100000")[1]
        assert.equal("too_large", r.err.code, case)
      end
      ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "oversize", size = 3 * 1024 * 1024 }
      local r = send(ws.url .. "/api/2.0/preview/scim/v2/Me", "&max_body=1048576")[1]
      assert.equal("too_large", r.err.code)
    end)

    it("times out, and reports a dropped connection", function()
      ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "pass", delay = 2 }
      local t0 = now()
      local r = send(ws.url .. "/api/2.0/preview/scim/v2/Me", "&timeout=0.3")[1]
      assert.equal("timeout", r.err.code)
      assert.is_true(now() - t0 < 1.5)
      ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "close" }
      r = send(ws.url .. "/api/2.0/preview/scim/v2/Me")[1]
      assert.equal("network", r.err.code)
    end)

    it("refuses CR/LF in header values and framing headers from callers", function()
      local r = send(ws.url .. "/", "&header=" .. url_encode("X-A:a\r\nX-Injected: 1"))[1]
      assert.equal("invalid_header", r.err.code)
      r = send(ws.url .. "/", "&header=" .. url_encode("Content-Length:5"))[1]
      assert.equal("invalid_header", r.err.code)
    end)

    it("is selected inside nginx and fails clearly where cosockets do not exist", function()
      get(gw.url .. "/t/log")
      local phases = wait_for("the log phase check", 5, function()
        local p = json(get(gw.url .. "/t/phases"))
        return p.log and p
      end)
      for _, phase in ipairs { "init_worker", "log" } do
        local p = phases[phase]
        assert.equal("dbxauth.transport.ngx (TLS verified)", p.transport)
        assert.is_false(p.ok)
        assert.equal("unavailable", p.code)
        assert.matches("cosockets are not available in the " .. phase
          .. " phase; call this from a request handler or ngx.timer.at", p.message, 1, true)
      end
    end)
  end)

  -- Each case gets its own gateway: a worker's configuration caches tokens, and ws:reset() makes
  -- the fake forget them.
  describe("gateway", function()
    local gw
    local logs = {}
    local M2M = '{ profile = "m2m", app = "my-app" }'
    local PAT = '{ profile = "pat", app = "my-app" }'
    local API = '{ config = { profile = "m2m", retry_timeout_seconds = 1 }, backoff_max = 1 }'
    local BROKEN = '{ profile = "nope", app = "my-app" }'

    local function start_gateway()
      gw = ngw.start {
        ws = ws,
        env = { HOME = home },
        init_worker = 'require("dbxauth.nginx").init' .. M2M .. '\n'
          .. 'require("dbxauth.nginx").init' .. PAT .. '\n'
          .. 'require("dbxauth.nginx").init' .. API,
        server = app_location("m2m", "my-app", M2M) .. app_location("pat", "my-app", PAT)
          .. app_location("broken", "my-app", BROKEN) .. [[
          location /api/ {
            access_by_lua_block {
              require("dbxauth.nginx").access]] .. API .. [[
            }
            proxy_pass https://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost:${WS_PORT};
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate ${CA};
          }
        ]],
      }
    end

    after_each(function()
      if gw then
        logs[#logs + 1] = gw:error_log()
        gw:stop()
        gw = nil
      end
    end)

    it("M2M: sends the service principal's token to the app; the client's Authorization never goes upstream",
      function()
        start_gateway()
        local res = get(gw.url .. "/m2m/api/hello")
        assert.equal(200, res.status, res.body)
        assert.equal(ws.creds.client_id, json(res).user)
        local last = ws:last("/api/hello")
        assert.equal("my-app", last.app)
        assert.matches("^Bearer fake%-at%-", last.headers.authorization)
        assert.not_matches("client%-own", last.headers.authorization)
      end)

    it("PAT: exchanges the token for the app's audience (RFC 8693) once, for every worker", function()
      start_gateway()
      local before = wait_for("the background refresh", 5, function()
        local st = status(gw, { profile = "pat", app = "my-app" })
        -- the other worker may read between the token's store and the count's increment
        return st.valid and st.refreshes >= 1 and st
      end)
      for _ = 1, 5 do
        local res = get(gw.url .. "/pat/api/hello", { fresh = true })
        assert.equal(200, res.status, res.body)
        assert.equal("user@example.com", json(res).user)
      end
      local last = ws:last("/api/hello")
      assert.matches("^Bearer fake%-at%-", last.headers.authorization)
      assert.not_equal("Bearer " .. ws.creds.pat, last.headers.authorization)
      local after = status(gw, { profile = "pat", app = "my-app" })
      assert.equal(before.refreshes, after.refreshes)   -- the background refresh had it ready
      assert.is_true(after.valid)
    end)

    it("answers 502 JSON when the credentials cannot be used, and logs why", function()
      start_gateway()
      local res = get(gw.url .. "/broken/api/hello")
      assert.equal(502, res.status)
      assert.equal("application/json", res.headers["content-type"])
      local body = json(res)
      assert.equal("BAD_GATEWAY", body.error_code)
      assert.is_string(body.message)
      wait_for("the log line", 5, function()
        return gw:error_log():find("token refresh for app my-app (profile nope) failed", 1, true)
      end)
    end)

    it("token endpoint down: serves the valid token, then 503 JSON, and recovers by itself", function()
      ws:set { token_lifetime = 4 }
      start_gateway()
      local opts = { config = { profile = "m2m", retry_timeout_seconds = 1 }, backoff_max = 1 }
      -- a token issued under the short lifetime, freshly refreshed
      assert.equal(200, get(gw.url .. "/api/2.0/preview/scim/v2/Me").status)
      local st = wait_for("a short-lived token", 10, function()
        local s = status(gw, opts)
        return s.expiry and s.expiry - s.usable_until < 5 and s.refreshes >= 1 and s
      end)
      local n = st.refreshes
      st = wait_for("a refresh", 10, function()
        local s = status(gw, opts)
        return s.refreshes > n and s
      end)
      ws:fault { path = "/oidc/v1/token", status = 503, count = -1 }
      -- the current token keeps working until it expires
      local ok_count = 0
      while now() < st.usable_until - 0.3 do
        local res = get(gw.url .. "/api/2.0/preview/scim/v2/Me")
        assert.equal(200, res.status, res.body)
        ok_count = ok_count + 1
        sleep(0.1)
      end
      assert.is_true(ok_count >= 5)
      -- then a clean 503
      local res = wait_for("503", 5, function()
        local r = get(gw.url .. "/api/2.0/preview/scim/v2/Me")
        return r.status ~= 200 and r
      end)
      assert.equal(503, res.status)
      assert.equal("application/json", res.headers["content-type"])
      assert.equal("TEMPORARILY_UNAVAILABLE", json(res).error_code)
      assert.matches("token refresh for token %(profile m2m%) failed", gw:error_log())
      -- recovery once the endpoint answers again, without restarting nginx
      ws:clear_faults()
      wait_for("recovery", 10, function()
        return get(gw.url .. "/api/2.0/preview/scim/v2/Me").status == 200
      end)
      assert.is_true(status(gw, opts).valid)
    end)

    it("a slow token endpoint (3 s) never blocks the worker", function()
      local opts = { profile = "pat", app = "my-app" }
      ws:fault { path = "/oidc/v1/token", kind = "pass", delay = 3, count = -1 }
      start_gateway()                                 -- no token yet: the first refresh is slow
      local out = os.tmpname()
      os.execute("(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H "
        .. files.q("Authorization: " .. CLIENT_AUTH) .. " " .. files.q(gw.url .. "/pat/api/hello")
        .. " > " .. files.q(out) .. ") &")
      local refresher = wait_for("the refresh to start", 5, function()
        return status(gw, opts).refreshing
      end)
      local worst, served_by_refresher, t_end = 0, 0, now() + 2
      while now() < t_end do
        local t0 = now()
        local res = get(gw.url .. "/fast", { fresh = true })
        local dt = now() - t0
        if dt > worst then worst = dt end
        if tonumber(res.body:match("fast (%d+)")) == refresher then served_by_refresher = served_by_refresher + 1 end
        sleep(0.02)
      end
      assert.is_true(status(gw, opts).refreshing ~= false, "the refresh was still running")
      assert.is_true(served_by_refresher > 0, "the refreshing worker answered /fast")
      assert.is_true(worst < 0.2, "slowest /fast: " .. worst .. " s")
      local line = wait_for("the waiting request", 10, function()
        local s = files.read(out)
        return s and s:match("^%d+ ") and s
      end)
      os.remove(out)
      local code, secs = line:match("^(%d+) ([%d.]+)")
      assert.equal("200", code)
      assert.is_true(tonumber(secs) >= 2, "the request waited for the token")
      ws:clear_faults()
    end)

    it("a worker killed while refreshing: another takes over within the lock's lease", function()
      local opts = { profile = "pat", app = "my-app" }
      local function fresh_status()
        return json(get(gw.url .. "/t/status?opts=" .. url_encode(cjson.encode(opts)), { fresh = true }))
      end
      -- the token endpoint hangs: the first refresh (at start, in one worker's timer) stays in flight
      ws:fault { path = "/oidc/v1/token", kind = "pass", delay = 60, count = -1 }
      gw = ngw.start { ws = ws, env = { HOME = home }, init_worker = 'require("dbxauth.nginx").init' .. PAT,
                       server = app_location("pat", "my-app", PAT) }
      local refresher = wait_for("the refresh to start", 10, function() return fresh_status().refreshing end)
      assert(os.execute(string.format("kill -KILL %d", refresher)))
      ws:clear_faults()                               -- and the token endpoint recovers at once
      -- before: no token until the dead worker's lock expired, 130 s later
      local st = wait_for("a token from another worker", 15, function()
        local s = fresh_status()
        return s.valid and s
      end)
      assert.equal(1, st.refreshes)
      local res = get(gw.url .. "/pat/api/hello", { fresh = true })
      assert.equal(200, res.status, res.body)
      assert.equal("user@example.com", json(res).user)
    end)

    it("gw.refresh from both workers at once: one token request, every caller sees the token", function()
      local opts = { profile = "pat", app = "my-app" }
      gw = ngw.start { ws = ws, env = { HOME = home } }   -- no background refresh: the callers race
      -- a slow token endpoint keeps the first refresh in flight while the others arrive
      ws:fault { path = "/oidc/v1/token", kind = "pass", delay = 1, count = -1 }
      local c0 = exchanges(ws)
      local outs = {}
      local u = gw.url .. "/t/refresh?opts=" .. url_encode(cjson.encode(opts))
      for i = 1, 16 do
        outs[i] = os.tmpname()
        os.execute("(curl -s -o " .. files.q(outs[i]) .. " " .. files.q(u) .. ") &")
      end
      local pids = {}
      for i = 1, 16 do
        local body = wait_for("refresh " .. i, 20, function()
          local b = files.read(outs[i])
          return b and b ~= "" and b
        end)
        os.remove(outs[i])
        local r = cjson.decode(body)
        assert.is_table(r.status, body)             -- a lost race is not an error
        if r.status.valid then pids[r.pid] = true end
      end
      wait_for("the token", 10, function() return status(gw, opts).valid end)
      ws:clear_faults()
      assert.equal(1, exchanges(ws) - c0)
      assert.equal(1, status(gw, opts).refreshes)
      assert.is_true(next(pids) ~= nil)
    end)

    it("200 clients for 10 s: every request succeeds, one token request per refresh", function()
      local opts = { profile = "pat", app = "my-app" }
      ws:set { token_lifetime = 4 }
      start_gateway()
      wait_for("a short-lived token", 15, function()
        local s = status(gw, opts)
        return s.valid and s.expiry - now() < 5
      end)
      local c0, s0 = exchanges(ws), status(gw, opts)
      local r = wrk(gw.url .. "/pat/api/hello", 200, 10)
      local c1, s1 = exchanges(ws), status(gw, opts)
      assert.is_number(r.requests, r.output)
      assert.equal(0, r.non2xx, r.output)
      assert.equal(0, r.socket_errors, r.output)
      assert.is_true(r.requests > 5000, r.output)
      local refreshes = s1.refreshes - s0.refreshes
      local requests = c1 - c0
      -- refreshed at half-life: every 2 s for 4 s tokens, so about 5 in 10 s
      assert.is_true(refreshes >= 4 and refreshes <= 7, "refreshes: " .. refreshes)
      assert.equal(refreshes, requests, "token requests per refresh")
    end)

    it("never writes a secret to error.log or a response", function()
      local log = table.concat(logs, "\n")
      assert.matches("dbxauth: token refresh", log)    -- the failures above were logged
      -- every secret the specs used, and every token the fake issues ("fake-at-...")
      local secrets = { ws.creds.pat, ws.creds.client_secret, ws.creds.password, "fake-at-", "client-own-token",
                        core.b64_encode(ws.creds.client_id .. ":" .. ws.creds.client_secret) }
      assert.is_true(#received > 50)
      for _, s in ipairs(secrets) do
        assert.is_nil(log:find(s, 1, true), "error.log contains a secret: " .. s)
        for _, r in ipairs(received) do
          assert.is_nil(r:find(s, 1, true), "a response contains a secret: " .. s)
        end
      end
    end)
  end)
end)
