-- Fake Databricks workspace for tests, the demo and benchmarks.
--
--   local fake = require "spec.support.fake"
--   local ws = fake.start{ workers = 1 }   -- raises with nginx's error log excerpt on failure
--
-- Fields: ws.url ("https://localhost:<port>"), ws.account_url ("https://accounts.localhost:<port>",
-- same server, chosen by Host), ws.http_url ("http://127.0.0.1:<port2>", same API over plain HTTP),
-- ws.port, ws.http_port, ws.app_port (where the localhost_app setting's app answers as
-- https://localhost:<app_port>), ws.resolve (CURLOPT_RESOLVE entries "host:port:127.0.0.1" for
-- accounts.localhost, localhost and every app host; ws:app appends new apps' hosts to this same
-- table), ws.ca_file (CA of the server cert; SANs localhost, accounts.localhost, *.apps.localhost,
-- 127.0.0.1), ws.other_ca_file (unrelated CA), ws.dir (nginx prefix; logs/error.log), ws.pid
-- (nginx master), ws.creds (M.CREDS plus actions_request_url = ws.url .. "/__idp/github/token?
-- api-version=2.0", the GitHub Actions ID-token endpoint; use it with creds.actions_request_token),
-- ws.metadata_url (a metadata service over plain HTTP on 127.0.0.1, fake/metadata_service.lua),
-- ws.ado_collection (an Azure DevOps collection URI for SYSTEM_TEAMFOUNDATIONCOLLECTIONURI, used
-- with creds.ado_access_token as SYSTEM_ACCESSTOKEN; fake/ado.lua).
--
-- What the fake serves (Host decides: localhost / 127.0.0.1 = workspace, accounts.localhost =
-- account, <app>-<workspace id>.apps.localhost = an app):
--   GET  /.well-known/databricks-config     host metadata (+ token_federation_default_oidc_audiences:
--                                           workspace [<base>/oidc/v1/token], account [<account id>])
--   GET  /oidc/.well-known/oauth-authorization-server, /oidc/accounts/{A}/.well-known/...
--   GET  /oidc/v1/authorize, /oidc/accounts/{A}/v1/authorize   U2M, auto-approved: 302 to
--        redirect_uri?code=&state=. client_id databricks-cli or creds.client_id; redirect_uri
--        http://localhost:<port>[/path] or http://127.0.0.1:<port>[/path] (else 400 HTML page);
--        response_type=code, scope, code_challenge + code_challenge_method=S256 required (else a
--        redirect with error=unsupported_response_type / invalid_request / invalid_scope)
--   POST /oidc/v1/token, /oidc/accounts/{A}/v1/token            grants:
--        client_credentials (Basic or body); authorization_code (code single use, 60 s;
--        redirect_uri and client_id as at authorize; code_verifier checked against the S256
--        challenge; refresh_token only when offline_access was authorized; scope = the authorized
--        scope); refresh_token (rotates: the old one stops working; errors are exactly
--        invalid_grant "Refresh token is invalid"); token exchange
--        (urn:ietf:params:oauth:grant-type:token-exchange; subject_token_type PAT URN = the fake
--        PAT, workspace only; or JWT URN = a token this fake issued for the same endpoint or an
--        ID token from ws:idp_token / the GitHub endpoint whose aud is the endpoint's default
--        audience or the setting federation_audience; client_id = creds.client_id makes the
--        identity the service principal, none makes it "federated:<sub>"; audience = an app's
--        oauth2_app_client_id makes the token valid on that app only; its scope must include the
--        app's user_api_scopes or all-apis, else 400 invalid_scope). U2M identity is
--        user@example.com. Counters "refresh", "exchange", "exchange <audience|workspace|account>".
--   GET  /api/2.0/preview/scim/v2/Me, /api/2.0/clusters/list, ANY /api/2.0/fake/echo,
--        GET /api/2.0/accounts/{A}/workspaces, GET /api/2.0/apps/{name}   (PAT, Basic, OAuth;
--        the Apps API answers an OAuth token without the apps or all-apis scope 403
--        PERMISSION_DENIED "Provided OAuth token does not have required scopes: apps").
--        Apps carry effective_user_api_scopes = user_api_scopes plus iam.access-control:read
--        and iam.current-user:read, as the real API adds them (ws:app recomputes it when
--        user_api_scopes is given without it).
--   GET  /__idp/github/token?api-version=2.0[&audience=]   {"value":"<jwt>"}; needs
--        Authorization: Bearer <creds.actions_request_token>; default aud <base>/oidc/v1/token
--   app hosts (ws:app_url(name)): GET /api/hello, ANY /api/echo, GET /api/redirect?to=<url> (302).
--        Checked in order: unknown app 404, token 401 (OAuth tokens of the workspace or tokens
--        exchanged for this app's audience; not PATs), CAN USE 403 permission_denied, scopes 403
--        insufficient_scope (token scopes must include user_api_scopes, or all-apis; the iam.*
--        scopes of effective_user_api_scopes are implicit),
--        not running 404 (app_status RUNNING and compute_status ACTIVE needed), unknown path 404.
--        Errors are JSON {"error","message"}. Counted as "APP <name> <METHOD> <path>".
-- Azure (fake/entra.lua): Entra ID at ws.creds.azure_authority, IMDS at ws.creds.imds_url, App Service
-- identity at ws.creds.identity_endpoint, GET /aad/auth; Entra tokens for the login app pass the
-- workspace API (not apps), checked against creds.azure_resource_id and, with the setting
-- azure_require_sm, a management token.
-- Default apps (restored by reset): my-app (scopes sql), scoped-app (dashboards.genie file.files
-- sql), plain-app (no user_api_scopes), stopped-app (UNAVAILABLE / STOPPED).
--
-- start options: workers (1), log_level ("warn"), keep_dir (keep ws.dir after stop; also env
-- FAKE_KEEP_DIR), detach (not stopped when this Lua state closes or this process dies),
-- watch = false (no watcher of this process inside nginx), http2 = false (HTTP/1.1 only).
--
-- Methods:
--   ws:reset()        settings to defaults, faults cleared, counters, tokens, last requests forgotten
--   ws:set{...}       merge settings, returns the effective ones: metadata (true), discovery (true),
--                     token_lifetime (3600 s; 0 = issued already expired), token_type ("Bearer");
--                     unset unless given: authorize_error (e.g. "access_denied": authorize redirects
--                     with that error), authorize_error_description, authorize_state (authorize
--                     redirects carry this state), federation_audience (string or list: ID-token
--                     audiences accepted besides the default), github_sub (sub of GitHub ID tokens),
--                     default_audiences (host metadata's token_federation_default_oidc_audiences;
--                     {} leaves it out); metadata_service_* and ado_* (fake/metadata_service.lua, ado.lua)
--   ws:fault{...}     path (exact, no query), method (any), host (any; "workspace", "account" or
--                     an app name), status, retry_after (string), count
--                     (1; -1 = until reset), delay (seconds before answering), kind:
--                       "json" (default; {"error_code","message"} by status, default 500; error_code=
--                       and message= override), "oauth" ({"error","error_description"}, default 400;
--                       error= and error_description= override), "garbage" (non-JSON, 200 unless
--                       status), "html" (HTML page with <pre>message</pre>, default 502),
--                       "oversize" (200, `size` bytes, default 20 MiB, chunked: no Content-Length),
--                       "close" (drop the connection, no response), "body" (`body` verbatim with
--                       `content_type`, default 200), "pass" (only the delay, then the normal answer)
--   ws:clear_faults() remove faults only
--   ws:counters()     { ["METHOD /path"] = n, total = n }; admin calls not counted; zeros absent
--   ws:last(path)     { method, path, query, headers (lowercased; repeats joined by ", "), body,
--                     protocol ("HTTP/1.1", "HTTP/2.0": nginx's $server_protocol),
--                     app (app name when it went to an app host) } | nil
--   ws:concurrency()  { now = requests in flight, max = most in flight at once since reset }; counted
--                     only while the setting count_concurrency = true (ws:set), admin calls excluded
--   ws:app(name[, fields])  add an app (defaults as plain-app) or merge top-level fields into it;
--                     a field set to fake.NULL is removed; fields = fake.NULL deletes the app.
--                     Returns the app (nil when deleted). The new app's host is added to ws.resolve.
--   ws:app_permission(name, identities|nil)  only these identities (token sub: "user@example.com",
--                     creds.client_id, "federated:<sub>") have CAN USE; nil = everyone (default)
--   ws:app_url(name)  "https://<name>-<workspace id>.apps.localhost:<port>"
--   ws:resolve_for(url)  the CURLOPT_RESOLVE entry "host:port:127.0.0.1" for any URL's host:port
--   ws:idp_token{ sub =, aud =, ttl =, iss = }  JWT from the fake IdP (header RS256/kid "fake", no
--                     real signature; remembered until reset). Defaults: sub
--                     "repo:acme/widgets:ref:refs/heads/main", aud ws.url .. "/oidc/v1/token",
--                     ttl 300 (<= 0: already expired), iss ws.url .. "/__idp"
--   ws:revoke_refresh_tokens()  every refresh token issued so far becomes invalid
--   ws:stop()         graceful stop (QUIT, then TERM); idempotent; also done when the Lua state
--                     closes, and by nginx itself within ~1 s if this process dies.
--
-- The TLS listeners (ws.port, ws.app_port) offer HTTP/2 by ALPN besides HTTP/1.1 (nginx `http2`),
-- as Databricks does, unless started with http2 = false; the plain-HTTP port speaks HTTP/1.x only.
--
-- Runs Debian's nginx + ngx_lua from a temp prefix (handlers in spec/support/fake/). Works under
-- Lua 5.4 and LuaJIT; needs only the nginx, openssl and curl binaries and lua-cjson. The admin
-- API (/__fake/..., see fake/admin.lua) is called over the plain-HTTP port with the curl CLI.
local cjson = require "cjson.safe"
local files = require "spec.support.files"

local M = {}

-- Field value for ws:app that removes the field (JSON null).
M.NULL = cjson.null

-- Apps present after start and after every reset.
M.APPS = { "my-app", "scoped-app", "plain-app", "stopped-app" }

M.CREDS = {
  pat = "dapi-fake-pat-0123456789abcdef",
  username = "admin@example.com",
  password = "fake-password-123",
  client_id = "fake-client-id",
  client_secret = "fake-client-secret-xyz",
  account_id = "fake-account-0001",
  workspace_id = "1234567890",
  actions_request_token = "fake-actions-request-token",
  ado_access_token = "fake-ado-system-accesstoken-9876",
  azure_client_id = "fake-azure-client-id",
  azure_client_secret = "fake-azure-secret-0123",
  azure_tenant_id = "fake-tenant-0001",
  azure_resource_id = "/subscriptions/fake-sub/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws",
  identity_header = "fake-identity-header-secret",
}

-- /usr/sbin is often not on a non-root user's PATH
local NGINX = os.getenv("FAKE_NGINX") or (io.open("/usr/sbin/nginx", "rb") and "/usr/sbin/nginx") or "nginx"
local MODULES = "/usr/lib/nginx/modules"

-- ------------------------------------------------------------------ shell helpers

local q = files.q

-- Run a shell command; returns its stdout+stderr and exit status (works in 5.1 and 5.4,
-- whose popen():close() results differ).
local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc) or -1
end

local function must(cmd, what)
  local out, rc = run(cmd)
  if rc ~= 0 then error("fake: " .. what .. " failed (" .. rc .. "): " .. out, 3) end
  return out
end

local read_file, write_file = files.read, files.write

local function tail(path, n)
  local s = read_file(path)
  if not s or s == "" then return "(empty error log)" end
  local lines = {}
  for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
  local from = #lines - n + 1
  if from < 1 then from = 1 end
  local out = {}
  for i = from, #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n")
end

-- cjson in Lua 5.4 decodes every number as a float; give integral values back as integers.
local tointeger = math.tointeger
local function normalize(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = normalize(x) end
  elseif type(v) == "number" and tointeger then
    return tointeger(v) or v
  end
  return v
end

-- ------------------------------------------------------------------ process-wide setup

-- Random integer in [lo, hi] from /dev/urandom (leaves the global math.random state alone).
local function random(lo, hi)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(4)
  f:close()
  local n = 0
  for i = 1, #s do n = n * 256 + s:byte(i) end
  return lo + n % (hi - lo + 1)
end

local ROOT          -- repository root (absolute), the directory that holds spec/
local function root()
  if ROOT then return ROOT end
  local src = debug.getinfo(1, "S").source
  src = src:sub(1, 1) == "@" and src:sub(2) or src
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    dir = must("pwd", "pwd"):gsub("%s+$", "") .. "/" .. dir
  end
  dir = dir:gsub("/%./", "/"):gsub("/%.$", "")
  ROOT = assert(dir:match("^(.*)/spec/support$"), "fake: cannot locate the repository from " .. dir)
  return ROOT
end

local CERTS         -- { dir, ca, other_ca, cert, key }, generated once per process
local function certs()
  if CERTS then return CERTS end
  local dir = must("mktemp -d -t dbxauth-fake-certs.XXXXXX", "mktemp"):gsub("%s+$", "")
  local d = q(dir)
  local newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local ca_ext = "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
  write_file(dir .. "/server.ext", table.concat({
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=DNS:localhost,DNS:accounts.localhost,DNS:*.apps.localhost,IP:127.0.0.1",
    "",
  }, "\n"))
  must(table.concat({
    "cd " .. d,
    "openssl req -x509 -new " .. newkey .. " -keyout ca.key -out ca.crt -days 3650"
      .. " -subj '/CN=dbxauth fake test CA' " .. ca_ext,
    "openssl req -x509 -new " .. newkey .. " -keyout other-ca.key -out other-ca.crt -days 3650"
      .. " -subj '/CN=dbxauth unrelated test CA' " .. ca_ext,
    "openssl req -new " .. newkey .. " -keyout server.key -out server.csr -subj /CN=localhost",
    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt"
      .. " -days 825 -sha256 -extfile server.ext",
    "openssl verify -CAfile ca.crt server.crt",
    "chmod 0644 *.crt *.key",
  }, " && "), "generating test certificates")
  CERTS = { dir = dir, ca = dir .. "/ca.crt", other_ca = dir .. "/other-ca.crt",
            cert = dir .. "/server.crt", key = dir .. "/server.key" }
  return CERTS
end

local IS_ROOT
local function is_root()
  if IS_ROOT == nil then IS_ROOT = must("id -u", "id -u"):match("^%s*0%s*$") ~= nil end
  return IS_ROOT
end

-- pid and start time of this Lua process, watched by the nginx worker (see app.init_worker).
local function self_identity()
  local s = read_file("/proc/self/stat")
  if not s then return nil end
  local pid = tonumber(s:match("^(%d+)"))
  local rest = s:match(".*%) (.*)$")
  local i, start = 0, nil
  for field in (rest or ""):gmatch("%S+") do
    i = i + 1
    if i == 20 then start = field; break end
  end
  return pid, start
end

-- Local TCP ports currently in use (any state), from /proc/net/tcp{,6}.
local function used_ports()
  local used = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local s = read_file(f) or ""
    for port in s:gmatch("\n%s*%d+: %x+:(%x+) ") do used[tonumber(port, 16)] = true end
  end
  return used
end

-- Two distinct free ports below the ephemeral range.
local function pick_ports()
  local used = used_ports()
  local a, b, c
  repeat a = random(20000, 32000) until not used[a]
  repeat b = random(20000, 32000) until not used[b] and b ~= a
  repeat c = random(20000, 32000) until not used[c] and c ~= a and c ~= b
  return a, b, c
end

local function render(template, vars)
  return (template:gsub("%${([%w_]+)}", function(name)
    local v = vars[name]
    if v == nil then error("fake: template variable ${" .. name .. "} is not set") end
    return tostring(v)
  end))
end

-- ------------------------------------------------------------------ the server object

local WS = {}
WS.__index = WS

local running = {}   -- every server started and not yet stopped (stopped when the state closes)
local detached = 0   -- servers that outlive this state (their certificates must stay)

-- bash, when present, talks HTTP/1.0 to the admin port through /dev/tcp: about twice as fast
-- as starting curl, whose startup (~20 ms) dominated specs that call the admin API per test.
-- The request goes out in one write (a second small write would wait for a delayed ACK), so
-- bodies larger than that go through curl.
local BASH = io.open("/bin/bash", "rb") and "/bin/bash" or nil
local BASH_MAX = 3000

-- One admin request over plain HTTP; returns status code (string) and body, or nil and an error.
local function admin_request(ws, method, path, body)
  if BASH and #(body or "") <= BASH_MAX then
    local req = method .. " /__fake/" .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
    if body then req = req .. "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n" end
    req = req .. "\r\n" .. (body or "")
    local script = "exec 3<>/dev/tcp/127.0.0.1/" .. ws.http_port .. " && printf %s " .. q(req)
      .. " >&3 && cat <&3; echo \"__rc=$?\""
    local p = assert(io.popen(BASH .. " -c " .. q(script) .. " 2>&1", "r"))
    local out = p:read("*a")
    p:close()
    local resp, rc = out:match("^(.-)__rc=(%d+)%s*$")
    if rc ~= "0" then return nil, "bash /dev/tcp: " .. out end
    local code, rbody = resp:match("^HTTP/%d%.%d (%d+)[^\n]*\n.-\r?\n\r?\n(.*)$")
    if not code then return nil, "bad response: " .. resp end
    return code, rbody
  end
  local cmd = { "curl -sS --max-time 30 -X", method, "-w '\\n%{http_code}'" }
  if body then
    local file = ws.dir .. "/admin-request.json"
    write_file(file, body)
    cmd[#cmd + 1] = "-H 'Content-Type: application/json' --data-binary @" .. q(file)
  end
  cmd[#cmd + 1] = q(ws.http_url .. "/__fake/" .. path)
  local out, rc = run(table.concat(cmd, " "))
  if rc ~= 0 then return nil, "curl exit " .. rc .. ": " .. out end
  local rbody, code = out:match("^(.*)\n(%d+)$")
  return code, rbody
end

-- Call the admin API over plain HTTP. Returns the decoded JSON answer.
function WS:_admin(method, path, body)
  if self._stopped then error("fake: server is stopped", 3) end
  local code, resp = admin_request(self, method, path, body ~= nil and assert(cjson.encode(body)) or nil)
  if not code then error("fake: admin " .. method .. " " .. path .. ": " .. resp, 3) end
  if code ~= "200" then
    error("fake: admin " .. method .. " " .. path .. " -> " .. tostring(code) .. ": " .. tostring(resp), 3)
  end
  local v, err = cjson.decode(resp)
  if v == nil then error("fake: admin " .. path .. ": bad JSON (" .. tostring(err) .. "): " .. resp, 3) end
  return normalize(v)
end

-- Settings to defaults, faults cleared, counters zeroed, issued tokens and last requests forgotten.
function WS:reset()
  self:_admin("POST", "reset", {})
  return self
end

-- Merge settings: metadata (bool), discovery (bool), token_lifetime (seconds), token_type (string).
-- Unknown keys are stored too. Returns the effective settings.
function WS:set(settings)
  assert(type(settings) == "table", "ws:set expects a table")
  return self:_admin("POST", "settings", settings)
end

local FAULT_KINDS = { json = true, oauth = true, garbage = true, html = true, oversize = true,
                      close = true, body = true, pass = true }

-- Inject a fault: see the README at the top of this file / the brief. count = -1: every match.
function WS:fault(f)
  assert(type(f) == "table" and type(f.path) == "string", "ws:fault expects { path = ... }")
  if f.kind ~= nil and not FAULT_KINDS[f.kind] then error("fake: unknown fault kind " .. tostring(f.kind), 2) end
  local copy = {}
  for k, v in pairs(f) do copy[k] = v end
  if copy.retry_after ~= nil then copy.retry_after = tostring(copy.retry_after) end
  if copy.method then copy.method = copy.method:upper() end
  self:_admin("POST", "faults", copy)
  return self
end

-- CURLOPT_RESOLVE entry for any URL's host:port ("host:port:127.0.0.1").
function WS:resolve_for(url)
  local scheme, host, port = tostring(url):match("^(%a[%w+.-]*)://([^/:?#]+):?(%d*)")
  if not host then error("fake: resolve_for: cannot parse URL " .. tostring(url), 2) end
  if port == "" then port = scheme:lower() == "http" and "80" or "443" end
  return host:lower() .. ":" .. port .. ":127.0.0.1"
end

function WS:app_url(name)
  return "https://" .. name .. "-" .. self.creds.workspace_id .. ".apps.localhost:" .. self.port
end

local function add_resolve(ws, url)
  local entry = ws:resolve_for(url)
  for _, e in ipairs(ws.resolve) do if e == entry then return end end
  ws.resolve[#ws.resolve + 1] = entry
end

-- Add an app or merge fields into it (fake.NULL removes a field; fields = fake.NULL deletes the
-- app). Without fields: the app as it is. Returns the app or nil.
function WS:app(name, fields)
  assert(type(name) == "string", "ws:app expects a name")
  assert(fields == nil or fields == M.NULL or type(fields) == "table", "ws:app: fields must be a table")
  local app = self:_admin("POST", "apps", { name = name, fields = fields }).app
  if app then add_resolve(self, self:app_url(name)) end
  return app
end

-- Restrict CAN USE on an app to a list of identities; nil = everyone.
function WS:app_permission(name, identities)
  assert(type(name) == "string", "ws:app_permission expects a name")
  assert(identities == nil or type(identities) == "table", "ws:app_permission: identities must be a list or nil")
  self:_admin("POST", "app_permission", { name = name, identities = identities })
  return self
end

-- A JWT from the fake identity provider: { sub =, aud =, ttl =, iss = } (see the header).
function WS:idp_token(claims)
  claims = claims or {}
  local body = {}
  for k, v in pairs(claims) do body[k] = v end
  body.aud = body.aud or (self.url .. "/oidc/v1/token")
  body.iss = body.iss or (self.url .. "/__idp")
  return self:_admin("POST", "idp_token", body).token
end

-- Invalidate every refresh token issued so far.
function WS:revoke_refresh_tokens()
  self:_admin("POST", "revoke_refresh_tokens", {})
  return self
end

-- Remove all faults (counters and tokens are kept).
function WS:clear_faults()
  self:_admin("DELETE", "faults")
  return self
end

-- { ["METHOD path"] = n, ..., total = n }. Absent means zero: after reset this is {}.
function WS:counters()
  return self:_admin("GET", "counters").counters
end

-- { now, max }: requests in flight and the most at once since reset (setting count_concurrency).
function WS:concurrency()
  return self:_admin("GET", "concurrency")
end

-- Last request to path (without query): { method, path, query, headers, body, protocol } or nil.
function WS:last(path)
  local enc = path:gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end)
  return self:_admin("GET", "last?path=" .. enc).request
end

-- Shell test "pid is running": /proc/<pid> exists and is not a zombie. (The daemonized master
-- is reparented to pid 1, which may take a second to reap it.)
local function sh_alive(pid)
  return "{ st=$(sed 's/.*) \\(.\\).*/\\1/' /proc/" .. pid .. "/stat 2>/dev/null); "
    .. "[ -n \"$st\" ] && [ \"$st\" != Z ]; }"
end

local function process_alive(pid)
  local _, rc = run(sh_alive(pid))
  return rc == 0
end

-- Wait up to `secs` (wall clock) for pid to exit, polling in one shell.
local function wait_exit(pid, secs)
  local _, rc = run("timeout " .. secs .. " sh -c " .. q("while " .. sh_alive(pid) .. "; do sleep 0.01; done"))
  return rc == 0
end

-- Graceful stop (QUIT, then TERM, then KILL of the master and its workers). Idempotent.
function WS:stop()
  if self._stopped then return end
  self._stopped = true
  running[self] = nil
  local pid = tonumber(read_file(self.dir .. "/logs/nginx.pid") or "") or self.pid
  if pid and process_alive(pid) then
    run("kill -QUIT " .. pid)
    if not wait_exit(pid, 2) then          -- e.g. a client still waiting on a long delay fault
      run("kill -TERM " .. pid)
      if not wait_exit(pid, 2) then
        run("pkill -KILL -P " .. pid .. "; kill -KILL " .. pid)
      end
    end
  end
  if not self.keep_dir then run("rm -rf " .. q(self.dir)) end
end

local function start_once(ws, opts)
  local c = certs()
  local port, http_port, app_port = pick_ports()
  local pid, start = self_identity()
  local config = {}
  for k, v in pairs(M.CREDS) do config[k] = v end
  config.port, config.http_port, config.app_port = port, http_port, app_port
  if opts.watch ~= false and not opts.detach then
    config.watch_pid, config.watch_start = pid, start
    -- what the watcher deletes after the controller died without stopping the server
    if not ws.keep_dir then config.watch_cleanup = { ws.dir, c.dir } end
  end
  write_file(ws.dir .. "/conf/fake.json", assert(cjson.encode(config)))
  local template = assert(read_file(root() .. "/spec/support/fake/nginx.conf"), "fake: nginx.conf template missing")
  write_file(ws.dir .. "/conf/nginx.conf", render(template, {
    USER_LINE = is_root() and "user root root;" or "",
    WORKERS = tonumber(opts.workers) or 1,
    LOG_LEVEL = opts.log_level or "warn",
    HTTP2 = opts.http2 == false and "" or " http2",
    ROOT = root(),
    PREFIX = ws.dir .. "/",
    PORT = port,
    HTTP_PORT = http_port,
    APP_PORT = app_port,
    CERT = c.cert,
    KEY = c.key,
  }))
  write_file(ws.dir .. "/logs/error.log", "")
  local out, rc = run(q(NGINX) .. " -p " .. q(ws.dir .. "/") .. " -c conf/nginx.conf -e logs/error.log")
  return rc == 0, out, port, http_port, app_port
end

local function wait_ready(ws)
  local url = q(ws.http_url .. "/__fake/ping")
  local out, rc = run("for i in $(seq 1 100); do curl -s --max-time 2 -o /dev/null -w '%{http_code}' " .. url ..
    " | grep -q 200 && exit 0; sleep 0.05; done; exit 1")
  return rc == 0, out
end

-- Start a fake workspace. opts: workers (default 1), log_level ("warn"), keep_dir (don't delete
-- the prefix on stop), detach (not stopped when this Lua state closes or this process dies).
function M.start(opts)
  opts = opts or {}
  for _, mod in ipairs { "ndk_http_module.so", "ngx_http_lua_module.so" } do
    if not read_file(MODULES .. "/" .. mod) then
      error("fake: " .. MODULES .. "/" .. mod .. " missing (apt-get install libnginx-mod-http-lua)", 2)
    end
  end
  local ws = setmetatable({}, WS)
  ws.dir = must("mktemp -d -t dbxauth-fake.XXXXXX", "mktemp"):gsub("%s+$", "")
  ws.keep_dir = opts.keep_dir or os.getenv("FAKE_KEEP_DIR") ~= nil
  must("mkdir -p " .. q(ws.dir .. "/conf") .. " " .. q(ws.dir .. "/logs") .. " " .. q(ws.dir .. "/temp")
    .. " && chmod 0755 " .. q(ws.dir), "mkdir")

  local ok, out, port, http_port, app_port
  for _ = 1, 8 do
    ok, out, port, http_port, app_port = start_once(ws, opts)
    if ok then break end
    local log = read_file(ws.dir .. "/logs/error.log") or ""
    if not (out .. log):find("Address already in use", 1, true) then break end
  end
  if not ok then
    local msg = "fake: nginx failed to start: " .. out .. "\n" .. tail(ws.dir .. "/logs/error.log", 20)
    run("rm -rf " .. q(ws.dir))
    error(msg, 2)
  end

  ws.port, ws.http_port, ws.app_port = port, http_port, app_port
  ws.url = "https://localhost:" .. port
  ws.account_url = "https://accounts.localhost:" .. port
  ws.http_url = "http://127.0.0.1:" .. http_port
  ws.resolve = { "accounts.localhost:" .. port .. ":127.0.0.1", "localhost:" .. port .. ":127.0.0.1" }
  ws.ca_file = CERTS.ca
  ws.other_ca_file = CERTS.other_ca
  ws.creds = {}
  for k, v in pairs(M.CREDS) do ws.creds[k] = v end
  ws.creds.actions_request_url = ws.url .. "/__idp/github/token?api-version=2.0"
  ws.metadata_url = ws.http_url .. "/__metadata/token"     -- fake/metadata_service.lua
  ws.ado_collection = ws.url .. "/__ado/fake-org/"         -- fake/ado.lua
  ws.creds.azure_authority = ws.url .. "/__entra/"      -- AZURE_AUTHORITY_HOST (fake/entra.lua)
  ws.creds.imds_url = ws.http_url                      -- AZURE_POD_IDENTITY_AUTHORITY_HOST
  ws.creds.identity_endpoint = ws.http_url .. "/__appservice/msi/token"   -- IDENTITY_ENDPOINT
  for _, name in ipairs(M.APPS) do add_resolve(ws, ws:app_url(name)) end
  ws.pid = tonumber(read_file(ws.dir .. "/logs/nginx.pid") or "")
  if opts.detach then detached = detached + 1 else running[ws] = true end

  local ready = wait_ready(ws)
  if not ready then
    local msg = "fake: nginx started but does not answer:\n" .. tail(ws.dir .. "/logs/error.log", 20)
    ws.keep_dir = true
    ws:stop()
    run("rm -rf " .. q(ws.dir))
    error(msg, 2)
  end
  return ws
end

-- ------------------------------------------------------------------ cleanup on state close

local function stop_all()
  for ws in pairs(running) do pcall(ws.stop, ws) end
  if CERTS and detached == 0 then run("rm -rf " .. q(CERTS.dir)); CERTS = nil end
end

if newproxy then                          -- LuaJIT / 5.1: userdata finalizer
  M._sentinel = newproxy(true)
  getmetatable(M._sentinel).__gc = stop_all
else                                      -- 5.2+: table finalizer
  M._sentinel = setmetatable({}, { __gc = stop_all })
end

return M
