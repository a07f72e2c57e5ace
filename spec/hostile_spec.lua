-- Hostile inputs through the public API (issue 7): every case of spec/fixtures/hostile.lua
-- must end in an error object (code, message) within its time bound, with no secret in any of
-- its fields or in tostring(cfg), and without sending anything malformed or to another host.
-- Server answers are scripted (spec/support/fake_transport.lua) where possible; 20 MB bodies,
-- CR/LF inside tokens, faults, timeouts and dripping answers go over real sockets to the fake
-- workspace and to a small nginx of this spec that answers byte by byte.
local dbxauth = require "dbxauth"
local errors = require "dbxauth.errors"
local oauth = require "dbxauth.oauth"
local urls = require "dbxauth.url"
local core = require "dbxauth.core"
local files = require "spec.support.files"
local fake = require "spec.support.fake"
local fake_transport = require "spec.support.fake_transport"
local leakcheck = require "spec.support.leakcheck"
local hostile = require "spec.fixtures.hostile"
-- the files around the token cache: their cases join the list (same format, three more fields)
local hostile_files = require "spec.fixtures.hostile_files"
for _, c in ipairs(hostile_files.cases) do hostile.cases[#hostile.cases + 1] = c end
for _, s in ipairs(hostile_files.SECRETS) do hostile.SECRETS[#hostile.SECRETS + 1] = s end

local q = files.q
local H = hostile.HOST
-- Time bounds are wall-clock; under valgrind (make check) everything runs several times slower.
local TIME_SCALE = tonumber(os.getenv("HOSTILE_TIME_SCALE") or "") or 1

for _, s in ipairs(hostile.SECRETS) do leakcheck.secret(s) end

---------------------------------------------------------------------------------------------
-- A server that answers slowly or malformed, byte by byte (nginx + ngx_lua, raw socket).

local DRIP_LUA = [==[
local mode, what = ngx.var.uri:match("^/(%w+)/(%w+)$")
if not mode then return ngx.exit(404) end
if what == "discovery" then
  ngx.header["Content-Type"] = "application/json"
  return ngx.print('{"token_endpoint":"http://' .. ngx.var.http_host .. '/' .. mode .. '/token"}')
end
ngx.req.read_body()
local sock = assert(ngx.req.socket(true))
local function drip(first, unit, n)
  if not sock:send(first) then return end
  for _ = 1, n do
    if ngx.worker.exiting() then return end
    ngx.sleep(0.1)
    if not sock:send(unit) then return end
  end
end
if mode == "body" then
  drip("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", " ", 200)
elseif mode == "head" then
  drip("HTTP/1.1 200 OK\r\n", "X-Drip: x\r\n", 200)
elseif mode == "flood" then
  local lines = { "HTTP/1.1 200 OK\r\n" }
  for i = 1, 2000 do lines[#lines + 1] = "X-Flood-" .. i .. ": " .. i .. "\r\n" end
  lines[#lines + 1] = "Content-Length: 2\r\n\r\n{}"
  sock:send(table.concat(lines))
elseif mode == "status" then
  sock:send("HTTP/2 20p\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
end
]==]

local DRIP_CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
%s
worker_processes 1;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 64; }
http {
    access_log logs/access.log;
    lua_socket_log_errors off;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    server {
        listen 127.0.0.1:%d;
        location = /.well-known/databricks-config { return 404; }
        location / { content_by_lua_block {
%s
        } }
    }
}
]]

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local function start_drip()
  local dir = sh("mktemp -d -t dbxauth-hostile.XXXXXX"):gsub("%s+$", "")
  sh("mkdir -p " .. q(dir .. "/conf") .. " " .. q(dir .. "/logs") .. " " .. q(dir .. "/temp"))
  local is_root = sh("id -u"):match("^%s*0%s*$") ~= nil
  local nginx = io.open("/usr/sbin/nginx", "rb") and "/usr/sbin/nginx" or "nginx"
  for _ = 1, 5 do
    local port = require("spec.support.nginx_gw").free_port()
    files.write(dir .. "/conf/nginx.conf", DRIP_CONF:format(is_root and "user root root;" or "", port, DRIP_LUA))
    local out, rc = sh(q(nginx) .. " -p " .. q(dir .. "/") .. " -c conf/nginx.conf -e logs/error.log")
    if rc == 0 then
      local url = "http://127.0.0.1:" .. port
      local _, ready = sh("for i in $(seq 1 100); do curl -s -o /dev/null --max-time 1 " .. q(url .. "/x/discovery")
        .. " && exit 0; sleep 0.05; done; exit 1")
      assert(ready == 0, "drip server does not answer")
      return { dir = dir, url = url }
    end
    if not out:find("Address already in use", 1, true) then error("drip server: " .. out) end
  end
  error("drip server: no free port")
end

local function stop_drip(d)
  if not d then return end
  leakcheck.scan_logs(d.dir)
  local pid = files.read(d.dir .. "/logs/nginx.pid")
  if pid then
    sh("kill -QUIT " .. pid:gsub("%s", "") .. "; for i in $(seq 1 100); do kill -0 " .. pid:gsub("%s", "")
      .. " 2>/dev/null || break; sleep 0.02; done")
  end
  sh("rm -rf " .. q(d.dir))
end

---------------------------------------------------------------------------------------------
-- Running a case

local GROUPS = {
  config = { call = "authenticate", opts = { profile = "p" } },
  env = { call = "authenticate", opts = {} },
  token = { call = "token", opts = { host = H, client_id = "hostile-client", client_secret = hostile.SECRET } },
  discovery = { call = "token", opts = { host = H, client_id = "hostile-client", client_secret = hostile.SECRET } },
  apps = { call = "app_request", opts = { host = H, token = hostile.PAT } },
  wire = { call = "token", opts = { host = "${WS}", client_id = "${WS_CLIENT_ID}",
                                    client_secret = "${WS_SECRET}", ca_file = "${WS_CA}" } },
  files = { call = "token", opts = { host = H, auth_type = "databricks-cli" } },
  login = { call = "login", opts = { host = "${WS}", ca_file = "${WS_CA}", auth_type = "external-browser" } },
}

local DEFAULT_ANSWERS = {
  metadata = { status = 404, body = "" },
  discovery = { status = 200, headers = { ["content-type"] = "application/json" },
                body = '{"token_endpoint":"${HOST}/oidc/v1/token",'
                  .. '"authorization_endpoint":"${HOST}/oidc/v1/authorize"}' },
  token = { status = 200, headers = { ["content-type"] = "application/json" },
            body = '{"access_token":"' .. hostile.ACCESS .. '","token_type":"Bearer","expires_in":3600}' },
  app = { status = 200, headers = { ["content-type"] = "application/json" },
          body = '{"name":"my-app","url":"' .. hostile.APP_URL .. '","oauth2_app_client_id":"app-client-1",'
            .. '"app_status":{"state":"RUNNING"},"compute_status":{"state":"ACTIVE"}}' },
  app_call = { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' },
  api = { status = 401, headers = { ["content-type"] = "application/json" },
          body = '{"error_code":"UNAUTHENTICATED","message":"Invalid access token."}' },
}

-- In match order: app calls first (their URL has no /api/2.0/apps), then by path; nothing with
-- a query or fragment matches the token route.
local ROUTES = {
  { "app_call", "^" .. hostile.APP_URL:gsub("%p", "%%%0") .. "/" },
  { "metadata", "/%.well%-known/databricks%-config$" },
  { "discovery", "/%.well%-known/oauth%-authorization%-server$" },
  { "token", "^[^?#]*/v1/token$" },
  { "app", "/api/2%.0/apps/" },
  { "api", "/api/2%.0/preview/scim/v2/Me$" },
}

local ws, drip

local function subst(s, vars)
  if type(s) ~= "string" then return s end
  return (s:gsub("%${([%w_]+)}", function(k) return vars[k] end))
end

local function scripted(case, host_url)
  local vars = { HOST = host_url, HOSTNAME = (host_url or ""):match("^%a+://(.*)$") or "" }
  local answers = {}
  for k, v in pairs(DEFAULT_ANSWERS) do answers[k] = v end
  for k, v in pairs(case.answers or {}) do answers[k] = v end
  local routes = {}
  for _, r in ipairs(ROUTES) do
    local a = answers[r[1]]
    routes[#routes + 1] = { pattern = r[2], respond = function()
      local headers = {}
      for k, v in pairs(a.headers or {}) do headers[k] = v end
      return { status = a.status, headers = headers, body = subst(a.body, vars) }
    end }
  end
  return fake_transport.new(routes)
end

-- A login case's "browser": its steps, in the background, against the login's listener.
local function browse(case, url)
  local port = url:match("redirect_uri=http%%3A%%2F%%2Flocalhost%%3A(%d+)")
  local cmd = {}
  for _, step in ipairs(case.browser or {}) do
    local what, arg = step:match("^(%a+)%s*(.*)$")
    if what == "idle" or what == "slow" then
      for _ = 1, tonumber(arg) do
        cmd[#cmd + 1] = "(exec 3<>/dev/tcp/127.0.0.1/" .. port
          .. (what == "slow" and "; printf 'GET / HTTP/1.1\\r\\n' >&3" or "") .. "; sleep 6) &"
      end
      cmd[#cmd + 1] = "sleep 0.5;"
    elseif what == "get" then
      cmd[#cmd + 1] = "curl -s -o /dev/null --max-time 5 " .. q("http://127.0.0.1:" .. port .. arg) .. ";"
    elseif what == "follow" then
      cmd[#cmd + 1] = "curl -s -L -o /dev/null --max-time 10 --cacert " .. q(ws.ca_file) .. " " .. q(url) .. ";"
    else
      error("unknown browser step " .. step)
    end
  end
  os.execute("bash -c " .. q(table.concat(cmd, " ")) .. " >/dev/null 2>&1 &")
end

local CALLS = {
  authenticate = function(cfg) return cfg:authenticate() end,
  token = function(cfg) return cfg:token() end,
  request = function(cfg) return cfg:request { path = "/api/2.0/preview/scim/v2/Me" } end,
  app_request = function(cfg, case)
    return cfg:app_request { app = case.app or "my-app", path = "/api/hello", scopes = case.scopes,
                             audience = case.audience }
  end,
  login = function(cfg, case)
    return cfg:login { timeout = case.timeout or 2, stderr = function() end,
                       open = function(url) browse(case, url) end }
  end,
}

-- A case's files and symlinks under HOME (spec/fixtures/hostile_files.lua).
local function lay_out(case, home, vars)
  for rel, v in pairs(case.files or {}) do
    local path = home .. "/" .. rel
    files.write(path, subst(type(v) == "table" and v.text or v, vars))
    if type(v) == "table" and v.mode then assert(os.execute("chmod " .. v.mode .. " " .. q(path))) end
  end
  for rel, target in pairs(case.links or {}) do
    local path = home .. "/" .. rel
    assert(os.execute("mkdir -p " .. q(path:match("^(.*)/")) .. " && ln -s " .. q(subst(target, vars)) .. " "
      .. q(path)))
  end
end

local function run(case)
  dbxauth.clear_discovery_cache()
  local g = assert(GROUPS[case.group], "unknown group " .. tostring(case.group))
  local home = case.home ~= false and files.home(case.file) or nil
  local vars = { HOME = home }
  if home then lay_out(case, home, vars) end
  if ws then
    vars.WS, vars.WS_PAT, vars.WS_CA = ws.url, ws.creds.pat, ws.ca_file
    vars.WS_CLIENT_ID, vars.WS_SECRET = ws.creds.client_id, ws.creds.client_secret
  end
  if drip then vars.WIRE = drip.url end
  local env = {}
  for k, v in pairs(case.env or {}) do env[k] = subst(v, vars) end
  local opts = {}
  for k, v in pairs(g.opts) do opts[k] = subst(v, vars) end
  for k, v in pairs(case.opts or {}) do
    if v == hostile.NIL then opts[k] = nil else opts[k] = subst(v, vars) end
  end
  local t
  if case.group ~= "wire" then
    -- the host the scripted server answers as: whatever the configuration resolves to
    local probe = dbxauth.config(opts, { env = env, home = home })
    t = scripted(case, probe and probe.host or H)
    opts.transport = t
  elseif case.fault then
    ws:reset()
    ws:fault(case.fault)
  end
  local held
  if case.group == "login" then
    ws:reset()
    if case.set then ws:set(case.set) end
    -- a port of its own: other runs on this machine may hold 8020
    held = assert(core.listen { ports = { 0 } })
    opts.oauth_callback_port = held:port()
    if not case.hold then held:close() end
  end
  local call = case.call or g.call
  local t0 = core.now()
  local cfg, err = dbxauth.config(opts, { env = env, home = home })
  local res
  if cfg and call ~= "config" then res, err = CALLS[call](cfg, case) end
  if held then held:close() end
  return { cfg = cfg, res = res, err = err, elapsed = core.now() - t0, transport = t, call = call }
end

---------------------------------------------------------------------------------------------
-- What every case must show

local function check_secrets(r)
  local texts = leakcheck.strings(r.err)
  if r.cfg then texts[#texts + 1] = tostring(r.cfg) end
  for i, s in ipairs(texts) do
    local which = leakcheck.find(s)
    -- say where, never the secret itself
    assert(which == nil, "secret #" .. tostring(which) .. " appears in string #" .. i .. " of the error")
  end
end

local function check_requests(r)
  if not r.transport then return end
  local allowed = {}
  if r.cfg and r.cfg.host then allowed[urls.origin(r.cfg.host) or "?"] = true end
  allowed[urls.origin(hostile.APP_URL)] = true
  for i, req in ipairs(r.transport.calls) do
    assert(not req.url:find("[%c%s]"), "request #" .. i .. " has a URL with blanks or control characters")
    local o = urls.origin(req.url)
    assert(o and allowed[o], "request #" .. i .. " went to another origin: " .. tostring(o))
    for k, v in pairs(req.headers or {}) do
      assert(type(k) == "string" and type(v) == "string", "request #" .. i .. ": non-string header")
      assert(not (k .. v):find("[\r\n%z]"), "request #" .. i .. ": CR, LF or NUL in header " .. k)
    end
  end
end

local function check(case, r)
  assert.is_nil(r.res, "expected a failure, got a result")
  if r.call == "config" then assert.is_nil(r.cfg, "dbxauth.config should have failed") end
  local err = r.err
  assert.is_true(errors.is(err), "expected an error object, got " .. type(err))
  assert.is_string(err.code)
  assert.is_string(err.message)
  assert.is_true(#err.message > 0)
  local codes = type(case.code) == "table" and case.code or { case.code }
  local ok = false
  for _, c in ipairs(codes) do ok = ok or c == err.code end
  assert(ok, "code " .. err.code .. ", expected " .. table.concat(codes, " or ") .. ": "
    .. err.message:sub(1, 300))
  if case.message then
    assert(err.message:find(case.message), "message does not match " .. case.message .. ": "
      .. err.message:sub(1, 300))
  end
  if case.message_max then
    assert(#err.message <= case.message_max, "message of " .. #err.message .. " bytes")
  end
  if case.message_not then
    assert(not err.message:find(case.message_not, 1, true), "message contains what it must not")
  end
  local limit = (case.seconds or 5) * TIME_SCALE
  assert(r.elapsed <= limit, string.format("took %.2f s (bound %g s)", r.elapsed, limit))
  check_secrets(r)
  check_requests(r)
  if case.sent_authorization then
    local last
    for _, req in ipairs(r.transport.calls) do
      if req.url:find("/api/2%.0/preview/scim/v2/Me$") or req.url:find(hostile.APP_URL, 1, true) == 1 then
        last = req
      end
    end
    assert(last, "no request reached the API")
    assert(last.headers.Authorization == case.sent_authorization, "unexpected Authorization header sent")
  end
end

---------------------------------------------------------------------------------------------

setup(function()
  ws = fake.start()
  drip = start_drip()
end)

teardown(function()
  stop_drip(drip)
  if ws then ws:stop() end
end)

describe("hostile input", function()
  it("has at least 60 cases with unique names in every group", function()
    local names, groups = {}, {}
    for _, c in ipairs(hostile.cases) do
      assert.is_nil(names[c.name], "duplicate case " .. c.name)
      names[c.name] = true
      groups[c.group] = (groups[c.group] or 0) + 1
    end
    assert.is_true(#hostile.cases >= 60)
    for g in pairs(GROUPS) do assert.is_true((groups[g] or 0) > 0, "no case in group " .. g) end
  end)

  for _, case in ipairs(hostile.cases) do
    it(case.name, function()
      local ok, r = pcall(run, case)
      assert(ok, "raised instead of returning an error: " .. tostring(r))
      check(case, r)
    end)
  end
end)

describe("hostile input that is still accepted", function()
  local function parse(body)
    return oauth.parse_token_response({ status = 200, headers = {}, body = body }, 1000)
  end

  it("reads a numeric-string expires_in as Go's oauth2 does", function()
    local tok = assert(parse('{"access_token":"a","expires_in":"3600"}'))
    assert.equal(4600, tok.expiry)
  end)

  it("caps an expires_in beyond int32 as Go's oauth2 does", function()
    local tok = assert(parse('{"access_token":"a","expires_in":99999999999}'))
    assert.equal(1000 + 2147483647, tok.expiry)
  end)

  it("treats expires_in 0 and null as absent", function()
    assert.is_nil(assert(parse('{"access_token":"a","expires_in":0}')).expiry)
    assert.is_nil(assert(parse('{"access_token":"a","expires_in":null}')).expiry)
  end)

  it("ignores a JWT exp that is not a finite positive time", function()
    for _, exp in ipairs { "1e999", "-5", "0", '"soon"' } do
      local jwt = core.b64url_encode('{"alg":"none"}') .. "." .. core.b64url_encode('{"exp":' .. exp .. "}") .. ".s"
      local tok = assert(parse('{"access_token":"' .. jwt .. '"}'))
      assert.is_nil(tok.expiry, exp)
    end
  end)

  it("keeps the request head intact whatever the token is: the C core refuses CR/LF in headers", function()
    local t = require("dbxauth.transport.curl").new {}
    local res, err = t:send { method = "GET", url = "http://127.0.0.1:1/",
                              headers = { Authorization = "Bearer " .. hostile.ACCESS .. "\r\nX-Injected: 1" } }
    assert.is_nil(res)
    assert.equal("invalid_header", err.code)
    assert.is_nil(leakcheck.find(tostring(err)))
  end)
end)
