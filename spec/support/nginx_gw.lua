-- A gateway nginx for the nginx specs and the gateway benchmark: Debian's nginx + ngx_lua from
-- a temp prefix, 2 workers by default, loading dbxauth from this checkout (lua/ and the LuaJIT
-- build build/jit/dbxauth/core.so), trusting the fake workspace's CA.
--
--   local gw = require("spec.support.nginx_gw").start{ ws = ws, server = "location ... { ... }" }
--   gw.url .. "/fast"; gw:stop(); gw:error_log()
--
-- start options:
--   ws            the fake workspace (spec.support.fake); its CA is lua_ssl_trusted_certificate and
--                 ${WS_PORT} / ${CA} / ${APP_HOST:<name>} are available to the snippets below
--   workers (2), log_level ("info"), env = { NAME = value } (passed to nginx, with `env` lines),
--   init_worker = "Lua code", http = "directives", server = "locations", trusted_ca (override),
--   vars = { NAME = value } (more ${NAME} for the snippets)
-- Fixed locations: /fast (plain 200), /t/... (test handlers, below; /t/batch runs cfg:request_all).
--
-- Loaded inside nginx (the `ngx` global exists) the same module serves the /t/ handlers.
local M = {}

if rawget(_G, "ngx") and ngx.get_phase then
  -- ---------------------------------------------------------------- inside nginx
  local cjson = require "cjson.safe"

  -- Results of checks run where cosockets are not available (init_worker, log).
  function M.record_phase_check(what)
    local ok, t = pcall(function()
      return require("dbxauth.transport").default({})
    end)
    local res, err
    if ok then
      res, err = t:send { method = "GET", url = "https://localhost:1/" }
    else
      err = t
    end
    local d = ngx.shared.gwtest
    d:set("phase:" .. what, cjson.encode { ok = res ~= nil, code = err and err.code, message = tostring(err),
                                           transport = ok and tostring(t) or nil })
  end

  -- GET /t/send?url=&method=&timeout=&max_body=&header=name:value&body=&resolve=&repeat=
  -- sends through the cosocket transport; answers JSON { res = {...} | err = {...} }
  function M.send()
    local args = ngx.req.get_uri_args()
    local headers = {}
    local h = args.header
    if type(h) == "string" then h = { h } end
    for _, v in ipairs(h or {}) do
      local name, value = v:match("^([^:]+):(.*)$")
      headers[name] = value
    end
    local resolve = args.resolve
    if type(resolve) == "string" then resolve = { resolve } end
    local t = require("dbxauth.transport.ngx").new { resolve = resolve, skip_verify = args.skip_verify == "1" }
    local out = {}
    for i = 1, tonumber(args["repeat"] or 1) do
      local res, err = t:send { method = args.method or "GET", url = args.url, headers = headers, body = args.body,
                                timeout = tonumber(args.timeout), max_body = tonumber(args.max_body) }
      if res then
        out[i] = { status = res.status, headers = res.headers, body = res.body, reused = res.reused }
      else
        local e = {}
        for k, v in pairs(err) do if type(v) ~= "table" then e[k] = v end end
        out[i] = { err = e }
      end
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode(out))
  end

  -- Raw responses, written byte for byte on the downstream socket: /t/raw?case=name[&linger=s]
  -- just over and just within dbxauth.http1's limits (256 KiB of header block, 1000 fields)
  local big = string.rep("x", 257 * 1024)
  local near = string.rep("x", 200 * 1024)
  local RAW = {
    chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer-Field: x\r\n\r\n",
    close = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    -- keep-alive by the protocol, but nginx closes the connection after the raw handler
    pooled = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    continue = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    http10 = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
    te_and_cl = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    folded = "HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\nContent-Length: 0\r\n\r\n",
    ctl = "HTTP/1.1 200 OK\r\nX-A: a\1b\r\nContent-Length: 0\r\n\r\n",
    bad_status = "HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
    not_http = "SSH-2.0-OpenSSH_9.2\r\n\r\n",
    bad_name = "HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n",
    cl_mismatch = "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
    cl_negative = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    bad_chunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    huge_chunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\nhello\r\n0\r\n\r\n",
    chunk_no_crlf = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    gzip_te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    huge_headers = "HTTP/1.1 200 OK\r\nX-Big: " .. big .. "\r\nContent-Length: 0\r\n\r\n",
    many_headers = "HTTP/1.1 200 OK\r\n" .. string.rep("X-M: 1\r\n", 1000) .. "Content-Length: 0\r\n\r\n",
    near_limits = "HTTP/1.1 200 OK\r\nX-Big: " .. near .. "\r\n" .. string.rep("X-M: 1\r\n", 998)
      .. "Content-Length: 2\r\n\r\nok",
    short_body = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
    big_cl = "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
    big_chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. string.rep("ea60\r\n" .. string.rep("z", 60000) .. "\r\n", 2) .. "0\r\n\r\n",
    big_close = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" .. string.rep("y", 200 * 1024),
    switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    no_reason = "HTTP/1.1 204\r\n\r\n",
    many_continue = string.rep("HTTP/1.1 100 Continue\r\n\r\n", 6) .. "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
  }

  function M.raw()
    local case = ngx.var.arg_case
    local payload = RAW[case]
    if not payload then return ngx.exit(404) end
    local sock = assert(ngx.req.socket(true))
    sock:send(payload)
    -- &linger=s: keep the connection open a while, so the client pools it and reuses it
    local linger = tonumber(ngx.var.arg_linger)
    if linger then ngx.sleep(linger) end
    -- the handler ends without a response of nginx's own: the raw socket wrote it, and nginx
    -- closes the connection
    ngx.exit(ngx.OK)
  end

  function M.phases()
    local d = ngx.shared.gwtest
    local out = {}
    for _, k in ipairs(d:get_keys(0)) do
      if k:match("^phase:") then out[k:sub(7)] = cjson.decode(d:get(k)) end
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode(out))
  end

  function M.status()
    local args = ngx.req.get_uri_args()
    local o = cjson.decode(args.opts or "{}")
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode(require("dbxauth.nginx").status(o)))
  end

  -- GET /t/refresh?opts=<json>: dbxauth.nginx.refresh in this request; JSON { status } | { err }
  function M.refresh()
    local args = ngx.req.get_uri_args()
    local o = cjson.decode(args.opts or "{}")
    local st, err = require("dbxauth.nginx").refresh(o)
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode(st and { status = st, pid = ngx.worker.pid() } or { err = { code = err.code } }))
  end

  local function start_time(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "rb")
    if not f then return nil end
    local st = f:read("*a")
    f:close()
    local i = 0
    for field in (st:match(".*%) (.*)$") or ""):gmatch("%S+") do
      i = i + 1
      if i == 20 then return field end
    end
  end

  -- Worker 0 stops nginx when the controlling test process is gone (killed runner: no __gc).
  function M.watch(pid, started)
    if not pid or ngx.worker.id() ~= 0 then return end
    local ffi = require "ffi"
    pcall(ffi.cdef, "int kill(int pid, int sig); int getppid(void);")
    ngx.timer.every(1, function(premature)
      if not premature and start_time(pid) ~= started then
        ffi.C.kill(ffi.C.getppid(), 3)   -- SIGQUIT to the master
      end
    end)
  end

  -- GET /t/batch?profile=&n=&path=&concurrency=&timeout=: cfg:request_all in this request over n
  -- GETs of path?i=<k>; JSON { took, failed, results = { { status, http_version, i } | { err } } }
  function M.batch()
    local args = ngx.req.get_uri_args()
    local cfg = assert(require("dbxauth").config { profile = args.profile })
    local list = {}
    for i = 1, tonumber(args.n or 8) do list[i] = { path = args.path, query = { i = tostring(i) } } end
    ngx.update_time()
    local t0 = ngx.now()
    local responses, errs, failed = cfg:request_all(list, { concurrency = tonumber(args.concurrency),
                                                            timeout = tonumber(args.timeout) })
    ngx.update_time()
    local out = { took = ngx.now() - t0, failed = failed, results = {} }
    for i = 1, #list do
      local res = responses[i]
      local body = res and cjson.decode(res.body)
      out.results[i] = res and { status = res.status, http_version = res.http_version,
                                 i = body and body.args and body.args.i }
        or { err = { code = errs[i].code, reason = errs[i].reason, message = errs[i].message } }
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode(out))
  end

  -- Deletes every entry of the dbxauth dict (a fresh start without restarting nginx).
  function M.flush()
    ngx.shared.dbxauth:flush_all()
    ngx.say("flushed")
  end

  return M
end

-- ------------------------------------------------------------------ controller (busted side)
local files = require "spec.support.files"
local q = files.q

local NGINX = os.getenv("FAKE_NGINX") or (io.open("/usr/sbin/nginx", "rb") and "/usr/sbin/nginx") or "nginx"

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc) or -1
end

local function root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = run("pwd"):gsub("%s+$", "") .. "/" .. dir end
  dir = dir:gsub("/%./", "/"):gsub("/%.$", "")
  return assert(dir:match("^(.*)/spec/support$"), "nginx_gw: cannot locate the repository")
end

-- pid and start time of this process (the watched controller)
local function self_identity()
  local st = files.read("/proc/self/stat")
  if not st then return "nil", "" end
  local i, start = 0, ""
  for field in (st:match(".*%) (.*)$") or ""):gmatch("%S+") do
    i = i + 1
    if i == 20 then start = field; break end
  end
  return st:match("^(%d+)"), start
end

local function free_port()
  local used = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local s = files.read(f) or ""
    for port in s:gmatch("\n%s*%d+: %x+:(%x+) ") do used[tonumber(port, 16)] = true end
  end
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(2)
  f:close()
  local p = 32001 + (b:byte(1) * 256 + b:byte(2)) % 8000
  while used[p] do p = p + 1 end
  return p
end

local TEMPLATE = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
${USER_LINE}
worker_processes ${WORKERS};
daemon on;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log ${LOG_LEVEL};
worker_rlimit_nofile 8192;
${ENV_LINES}
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path temp/body;
    proxy_temp_path       temp/proxy;
    fastcgi_temp_path     temp/fastcgi;
    uwsgi_temp_path       temp/uwsgi;
    scgi_temp_path        temp/scgi;
    keepalive_requests 1000000;

    lua_package_path  "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${ROOT}/?.lua;;";
    lua_package_cpath "${ROOT}/build/jit/?.so;;";
    lua_shared_dict dbxauth 1m;
    lua_shared_dict gwtest 1m;
    lua_ssl_trusted_certificate ${CA};
    lua_ssl_verify_depth 3;
    lua_socket_log_errors off;

    init_by_lua_block {
        require "dbxauth"
        require "dbxauth.nginx"
    }
    init_worker_by_lua_block {
        require("spec.support.nginx_gw").record_phase_check("init_worker")
        require("spec.support.nginx_gw").watch(${WATCH_PID}, "${WATCH_START}")
        ${INIT_WORKER}
    }

    upstream fake {
        server 127.0.0.1:${WS_PORT};
        keepalive 64;
    }

    ${HTTP}

    server {
        listen 127.0.0.1:${PORT} backlog=4096 reuseport;
        default_type text/plain;

        location = /fast { return 200 "fast $pid\n"; }
        location = /t/send { content_by_lua_block { require("spec.support.nginx_gw").send() } }
        location = /t/raw { content_by_lua_block { require("spec.support.nginx_gw").raw() } }
        location = /t/phases { content_by_lua_block { require("spec.support.nginx_gw").phases() } }
        location = /t/status { content_by_lua_block { require("spec.support.nginx_gw").status() } }
        location = /t/refresh { content_by_lua_block { require("spec.support.nginx_gw").refresh() } }
        location = /t/flush { content_by_lua_block { require("spec.support.nginx_gw").flush() } }
        location = /t/batch { content_by_lua_block { require("spec.support.nginx_gw").batch() } }
        location = /t/log {
            return 200 "log";
            log_by_lua_block { require("spec.support.nginx_gw").record_phase_check("log") }
        }

        ${SERVER}
    }
}
]]

local function render(template, vars)
  return (template:gsub("%${([%w_]+):?([%w_-]*)}", function(name, arg)
    local v = vars[name]
    if type(v) == "function" then return v(arg) end
    if v == nil then error("nginx_gw: template variable ${" .. name .. "} is not set") end
    return tostring(v)
  end))
end
M.render = render

M.free_port = free_port

local GW = {}
GW.__index = GW

local running = {}   -- gateways started and not yet stopped

function GW:error_log()
  return files.read(self.dir .. "/logs/error.log") or ""
end

function GW:stop()
  if self.stopped then return end
  self.stopped = true
  running[self] = nil
  local pid = tonumber(files.read(self.dir .. "/logs/nginx.pid") or "")
  if pid then
    run("kill -QUIT " .. pid .. "; for i in $(seq 1 100); do kill -0 " .. pid
      .. " 2>/dev/null || exit 0; sleep 0.02; done; kill -KILL " .. pid)
  end
  if not os.getenv("GW_KEEP_DIR") then run("rm -rf " .. q(self.dir)) end
end


function M.start(opts)
  local ws = opts.ws
  local gw = setmetatable({}, GW)
  gw.dir = run("mktemp -d -t dbxauth-gw.XXXXXX"):gsub("%s+$", "")
  assert(run("mkdir -p " .. q(gw.dir .. "/conf") .. " " .. q(gw.dir .. "/logs") .. " " .. q(gw.dir .. "/temp")))
  local env_lines, env_assign = {}, { "env -i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin") }
  local names = {}
  for k in pairs(opts.env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    env_lines[#env_lines + 1] = "env " .. k .. ";"
    env_assign[#env_assign + 1] = k .. "=" .. q(opts.env[k])
  end
  local is_root = run("id -u"):match("^%s*0%s*$") ~= nil
  local vars = {
    USER_LINE = is_root and "user root root;" or "",
    WORKERS = opts.workers or 2,
    LOG_LEVEL = opts.log_level or "info",
    ENV_LINES = table.concat(env_lines, "\n"),
    ROOT = root(),
    CA = opts.trusted_ca or (ws and ws.ca_file) or "/etc/ssl/certs/ca-certificates.crt",
    WS_PORT = ws and ws.port or 1,
    APP_HOST = function(name) return name .. "-" .. ws.creds.workspace_id .. ".apps.localhost" end,
    INIT_WORKER = opts.init_worker or "",
  }
  vars.WATCH_PID, vars.WATCH_START = self_identity()
  for k, v in pairs(opts.vars or {}) do vars[k] = v end
  vars.HTTP = render(opts.http or "", vars)
  vars.SERVER = render(opts.server or "", vars)
  local out, rc
  for _ = 1, 5 do
    gw.port = free_port()
    vars.PORT = gw.port
    files.write(gw.dir .. "/conf/nginx.conf", render(TEMPLATE, vars))
    files.write(gw.dir .. "/logs/error.log", "")
    out, rc = run(table.concat(env_assign, " ") .. " " .. q(NGINX) .. " -p " .. q(gw.dir .. "/")
      .. " -c conf/nginx.conf -e logs/error.log")
    if rc == 0 then break end
    if not (out .. gw:error_log()):find("Address already in use", 1, true) then break end
  end
  if rc ~= 0 then
    local msg = "nginx_gw: nginx failed to start: " .. out .. "\n" .. gw:error_log()
    run("rm -rf " .. q(gw.dir))
    error(msg, 2)
  end
  gw.url = "http://127.0.0.1:" .. gw.port
  local _, ready = run("for i in $(seq 1 100); do curl -s -o /dev/null --max-time 1 " .. q(gw.url .. "/fast")
    .. " && exit 0; sleep 0.05; done; exit 1")
  running[gw] = true
  if ready ~= 0 then
    gw:stop()
    error("nginx_gw: nginx does not answer", 2)
  end
  return gw
end

-- Stop every gateway still running when this Lua state closes.
local function stop_all()
  for gw in pairs(running) do pcall(gw.stop, gw) end
end
if newproxy then
  M._sentinel = newproxy(true)
  getmetatable(M._sentinel).__gc = stop_all
else
  M._sentinel = setmetatable({}, { __gc = stop_all })
end

return M
