-- The nginx transport: HTTP/1.1 over ngx.socket.tcp cosockets, so a token request yields to
-- the event loop instead of blocking the worker. Same interface as transport/curl.lua:
--   t:send(req) -> res | nil, err
--     req = { method, url, headers = { name = value }, body, timeout (s), max_body (bytes) }
--     res = { status, headers = { lower-case name = value }, body, reused, time, http_version }
--   t:send_all(reqs, opts) -> responses, errs   (light threads, each on its own cosocket)
--   t:sleep(seconds), t:now() -> seconds (sub-second precision)
--
-- What it does:
--   * TLS with SNI and certificate verification against the host name. Cosockets trust only
--     the CAs in nginx's `lua_ssl_trusted_certificate` (one file; the system bundle is
--     /etc/ssl/certs/ca-certificates.crt) and check at most `lua_ssl_verify_depth` levels;
--     the ca_file option of a configuration cannot change that, so it is ignored here.
--   * Connections are kept in nginx's per-worker pool (setkeepalive), keyed by scheme, host,
--     port and verification, and reused by later requests to the same host.
--   * Names: IP literals as they are; then `resolve` entries ("host:port:addr", as curl's
--     CURLOPT_RESOLVE); then /etc/hosts, read once per worker; then nginx's `resolver`, which is
--     a DNS client only. Without a `resolver` directive the error says so.
--   * HTTP/1.1 itself is dbxauth.http1 (no I/O, tested in plain Lua): Content-Length, chunked
--     and read-until-close bodies of at most max_body bytes, header blocks of at most 256 KiB and
--     1000 fields, as in the curl transport; anything malformed is an error. This file only
--     moves bytes between a cosocket and that parser.
--   * Cosockets exist only in rewrite, access, content, timer and the ssl_* phases. Elsewhere
--     (init, init_worker, set, log, header/body filters, balancer) send fails at once with a
--     clear error; nothing ever blocks the worker.
--
-- Errors are dbxauth.errors objects with the curl transport's codes: tls, timeout,
-- network (reason connect|resolve|send|recv), too_large, invalid_header, invalid_response,
-- invalid_request, unavailable. Messages name the host and port, never a header or body.
local errors = require "dbxauth.errors"
local urls = require "dbxauth.url"
local http1 = require "dbxauth.http1"

local ngx = ngx
local tcp = ngx.socket.tcp
local concat, find, lower = table.concat, string.find, string.lower
local match, gmatch, format = string.match, string.gmatch, string.format
local tostring, type = tostring, type

local _M = {}
local Transport = {}
Transport.__index = Transport
Transport.__name = "dbxauth.transport.ngx"

local DEFAULT_MAX_BODY = http1.DEFAULT_MAX_BODY
local READ_CHUNK = 64 * 1024     -- most bytes one receiveany() hands to the parser
local DEFAULT_POOL_SIZE = 16
local DEFAULT_KEEPALIVE = 60     -- seconds an idle pooled connection is kept

-- Phases in which ngx.socket.tcp works (ngx_lua docs, "cosocket" context lists).
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}
_M.COSOCKET_PHASES = COSOCKET_PHASES

local HINTS = {
  tls = "the server's TLS certificate could not be verified; point nginx's lua_ssl_trusted_certificate "
    .. "at the CA bundle that signed it (for public hosts /etc/ssl/certs/ca-certificates.crt) and set "
    .. "lua_ssl_verify_depth (e.g. 3)",
  timeout = "the request took longer than http_timeout_seconds; check the network path to the host "
    .. "or raise http_timeout_seconds",
  connect = "nothing accepted the connection; check the host and port",
  resolve = "the host name could not be resolved; check the host and nginx's `resolver` directive",
  no_resolver = "nginx resolves names only through a `resolver` directive (it does not read "
    .. "/etc/resolv.conf); add one to the http block, e.g. `resolver 127.0.0.53 ipv6=off;` or your DNS server",
  send = "the connection broke while sending; check outbound HTTPS connectivity",
  recv = "the connection closed before a complete response arrived; check outbound HTTPS connectivity",
  too_large = "the response is larger than max_response_bytes allows",
  too_large_head = "the response's header block or chunk framing exceeds dbxauth's fixed limits (256 KiB "
    .. "and 1000 header fields, as in the curl transport); check for a misbehaving server or proxy",
  cancelled = "the batch took longer than its timeout (opts.timeout); raise it, or send fewer requests "
    .. "or more at once (opts.concurrency)",
  unavailable = "run the call from access_by_lua*, content_by_lua* or rewrite_by_lua*, or defer it "
    .. "with ngx.timer.at(0, fn); dbxauth.nginx's gw.init/gw.access do this for you",
}

local function fail(code, message, fields)
  fields = fields or {}
  fields.hint = fields.hint or HINTS[fields.reason or code]
  return nil, errors.new(code, message, fields)
end

local function net_fail(reason, message, retryable)
  return fail("network", message, { reason = reason, retryable = retryable or nil })
end

-- ------------------------------------------------------------------ name resolution

local hosts_cache, hosts_pid    -- name -> address, read once per worker (pid)
local HOSTS_FILE = "/etc/hosts"

local function is_ipv4(s)
  return match(s, "^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local function parse_hosts(text)
  local map = {}
  for line in gmatch(text, "[^\n]+") do
    line = line:gsub("#.*$", "")
    local addr, names = match(line, "^%s*(%S+)%s+(.-)%s*$")
    -- IPv4 only: connect() takes a bare IPv4 address; an IPv6 line (::1 localhost) must not
    -- shadow the IPv4 one for the same name.
    if addr and is_ipv4(addr) then
      for name in gmatch(names, "%S+") do
        name = lower(name)
        if not map[name] then map[name] = addr end
      end
    end
  end
  return map
end
_M._parse_hosts = parse_hosts

local function etc_hosts()
  local pid = ngx.worker and ngx.worker.pid and ngx.worker.pid() or 0
  if hosts_cache and hosts_pid == pid then return hosts_cache end
  local map = {}
  local f = io.open(HOSTS_FILE, "rb")
  if f then
    local text = f:read(1024 * 1024) or ""
    f:close()
    map = parse_hosts(text)
  end
  hosts_cache, hosts_pid = map, pid
  return map
end

-- "host:port:addr" list (curl's CURLOPT_RESOLVE form) -> { ["host:port"] = addr }
local function resolve_map(list)
  if list == nil then return nil end
  if type(list) ~= "table" then
    error("bad option 'resolve' to 'transport.ngx.new' (list of \"host:port:address\" expected)", 3)
  end
  local map = {}
  for _, entry in ipairs(list) do
    local h, p, a = match(tostring(entry), "^%+?([^:]+):(%d+):(.+)$")
    if not h then
      error("bad option 'resolve' to 'transport.ngx.new' (\"" .. tostring(entry)
        .. "\" is not host:port:address)", 3)
    end
    a = a:gsub("^%[(.*)%]$", "%1")
    map[lower(h) .. ":" .. p] = a
  end
  return map
end

-- ------------------------------------------------------------------ construction

-- opts: skip_verify, max_body, resolve, pool_size, keepalive (s), ca_file (ignored: see above)
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'transport.ngx.new' (table expected, got " .. type(opts) .. ")", 2)
  end
  return setmetatable({
    skip_verify = opts.skip_verify and true or false,
    max_body = opts.max_body or DEFAULT_MAX_BODY,
    resolve = resolve_map(opts.resolve),
    pool_size = opts.pool_size or DEFAULT_POOL_SIZE,
    keepalive_ms = math.floor((opts.keepalive or DEFAULT_KEEPALIVE) * 1000),
    clock = opts.clock,
    now_function = opts.clock or _M.now_function,   -- t:now's clock, a plain function (curl.lua)
  }, Transport)
end

-- ------------------------------------------------------------------ request building


local function build_request(req, u)
  local default_port = (u.scheme == "https" and u.port == 443) or (u.scheme == "http" and u.port == 80)
  local host_hdr = u.v6 and ("[" .. u.host .. "]") or u.host
  if not default_port then host_hdr = host_hdr .. ":" .. u.port end
  return http1.request(req.method or "GET", u.target, host_hdr, req.headers, req.body)
end

-- ------------------------------------------------------------------ sending

local function phase()
  local ok, p = pcall(ngx.get_phase)
  return ok and p or "unknown"
end

local function now()
  ngx.update_time()
  return ngx.now()
end
_M.now_function = now

-- One exchange on one connection: the request out, then bytes from the socket into an
-- http1 parser until it has the whole response. Returns res | nil, err, got_bytes (true once any
-- byte of the response arrived, so a stale pooled connection can be told apart from a real
-- failure). The caller closes the socket after a failure.
local function exchange(self, sock, payload, deadline, max_body, head_only, where)
  local got, res = false, nil
  local what = "sending the request"
  local function io_fail(err)
    if err == "timeout" then
      return nil, errors.new("timeout", format("%s %s: timed out", where, what), { hint = HINTS.timeout }), got
    end
    local reason = what == "sending the request" and "send" or "recv"
    local _, e = net_fail(reason, format("%s %s: %s", where, what, tostring(err)), reason == "send")
    return nil, e, got
  end
  local function set_timeout()
    local left = deadline - now()
    if left <= 0 then return false end
    sock:settimeout(math.max(1, math.floor(left * 1000)))
    return true
  end
  if not set_timeout() then return io_fail("timeout") end
  local ok, err = sock:send(payload)
  if not ok then return io_fail(err) end

  what = "reading the response"

  local p = http1.response { max_body = max_body, head = head_only }
  local parts, n = {}, 0
  while true do
    local ev, perr = p:next()
    if ev == "need_data" then
      if not set_timeout() then return io_fail("timeout") end
      local data, rerr = sock:receiveany(READ_CHUNK)
      if data then
        got = true
        p:feed(data)
      elseif rerr == "closed" then
        p:feed_eof()
      else
        return io_fail(rerr)
      end
    elseif ev == nil then
      if perr.code == "incomplete" then
        local _, e = net_fail("recv", format("%s: %s", where, perr.message))
        return nil, e, got
      end
      if perr.code == "too_large" then
        local _, e = fail("too_large", where .. ": " .. perr.message,
          { hint = perr.limit ~= "body" and HINTS.too_large_head or nil })
        return nil, e, true
      end
      return nil, errors.new("invalid_response", where .. ": " .. perr.message), true
    elseif ev.type == "response" then
      res = { status = ev.status, headers = ev.headers, http_version = ev.minor == 0 and "1.0" or "1.1" }
      what = "reading the response body"
    elseif ev.type == "data" then
      n = n + 1
      parts[n] = ev.data
    else
      res.body = concat(parts, "", 1, n)
      -- bytes beyond the response would be read as the start of the next one: not pooled
      if ev.keep_alive and p:buffered() == 0 then
        sock:setkeepalive(self.keepalive_ms, self.pool_size)
      else
        sock:close()
      end
      return res
    end
  end
end

local function connect(self, u, deadline, where)
  local addr
  if u.v6 or is_ipv4(u.host) then
    addr = u.host
  else
    addr = self.resolve and self.resolve[u.host .. ":" .. u.port] or etc_hosts()[u.host] or u.host
  end
  if u.v6 or find(addr, ":", 1, true) then
    return fail("network", where .. ": IPv6 addresses are not supported by the nginx transport",
      { reason = "connect" })
  end
  local sock = tcp()
  local left = deadline - now()
  if left <= 0 then return fail("timeout", where .. ": timed out before connecting") end
  sock:settimeout(math.max(1, math.floor(left * 1000)))
  local verify = not self.skip_verify
  local pool = u.scheme .. "://" .. u.host .. ":" .. u.port .. (verify and "" or " (unverified)")
  local ok, err = sock:connect(addr, u.port, { pool = pool, pool_size = self.pool_size })
  if not ok then
    err = tostring(err)
    if find(err, "no resolver defined", 1, true) then
      return fail("network", format('%s: cannot resolve "%s": nginx has no resolver configured', where, u.host),
        { reason = "resolve", hint = HINTS.no_resolver })
    end
    if find(err, "could not be resolved", 1, true) then
      return net_fail("resolve", format('%s: cannot resolve "%s": %s', where, u.host, err:match("%((.-)%)") or err))
    end
    if err == "timeout" then return fail("timeout", where .. ": timed out connecting") end
    return net_fail("connect", format("%s: connect failed: %s", where, err), true)
  end
  local reused = sock:getreusedtimes() or 0
  if u.scheme == "https" and reused == 0 then
    left = deadline - now()
    if left <= 0 then sock:close(); return fail("timeout", where .. ": timed out before the TLS handshake") end
    sock:settimeout(math.max(1, math.floor(left * 1000)))
    -- ngx_lua 0.10.23 with lua-resty-core 0.1.25 (Debian 12) mis-reports a failed certificate
    -- check: after a handshake that waited for the network, sslhandshake(false, ...) returns
    -- true (the socket is closed, the error lost), and with a session requested it either
    -- returns a NULL session or trips an assert inside resty.core. So: ask for the session,
    -- and count a raised error or a NULL session as the failure it is.
    local called, sess
    called, sess, err = pcall(sock.sslhandshake, sock, nil, u.host, verify)
    if not called then sess, err = nil, nil end
    if not sess or sess == nil then
      sock:close()
      if err == "timeout" then return fail("timeout", where .. ": timed out in the TLS handshake") end
      return fail("tls", format("%s: TLS handshake failed: %s", where,
        err and tostring(err) or "certificate verification failed (untrusted or wrong host name)"))
    end
  end
  return sock, reused
end

function Transport:send(req)
  local p = phase()
  if not COSOCKET_PHASES[p] then
    return fail("unavailable", "cosockets are not available in the " .. p
      .. " phase; call this from a request handler or ngx.timer.at")
  end
  local start = now()
  local u, uerr = urls.parse(req.url)   -- the one URL parser (url.lua)
  if not u then return fail("invalid_request", "invalid URL: " .. uerr) end
  local payload, berr = build_request(req, u)
  if not payload then return fail(berr.code, berr.message) end
  local where = u.host .. ":" .. u.port
  local deadline = start + (req.timeout or 60)
  local max_body = req.max_body or self.max_body
  local head_only = req.method == "HEAD"
  -- A pooled connection the server has meanwhile closed fails before any response byte
  -- arrives; that attempt is repeated once on a fresh connection.
  for attempt = 1, 2 do
    local sock, reused = connect(self, u, deadline, where)
    if not sock then return nil, reused end
    local res, err, got = exchange(self, sock, payload, deadline, max_body, head_only, where)
    if res then
      res.reused = reused > 0
      res.time = now() - start
      return res
    end
    sock:close()
    if not (reused > 0 and not got and attempt == 1 and err.code == "network") then
      return nil, err
    end
  end
end

local function batch_timeout(timeout, what)
  return errors.new("timeout", format("the batch's timeout (%g s) ran out before this request %s", timeout, what),
    { reason = "cancelled", hint = HINTS.cancelled })
end

-- t:send_all(reqs, opts) -> responses, errs (see transport/curl.lua): light threads
-- (ngx.thread.spawn), at most opts.concurrency of them, each taking the next request and sending
-- it with send over a cosocket, so the worker goes on serving while they wait. opts.timeout
-- bounds the whole batch: no request runs past it.
function Transport:send_all(reqs, opts)
  opts = opts or {}
  local n, responses, errs = #reqs, {}, {}
  local p = phase()
  if not COSOCKET_PHASES[p] then
    for i = 1, n do
      responses[i], errs[i] = false, select(2, self:send(reqs[i]))
    end
    return responses, errs
  end
  local timeout = opts.timeout
  local deadline = timeout and now() + timeout
  local taken = 0
  local function worker()
    while taken < n do
      taken = taken + 1
      local i, req = taken, reqs[taken]
      local left = deadline and deadline - now()
      local res, err
      if left and left <= 0 then
        err = batch_timeout(timeout, "was sent")
      else
        local cut = left and left < (req.timeout or 60)
        if cut then
          local copy = {}
          for k, v in pairs(req) do copy[k] = v end
          copy.timeout = left
          req = copy
        end
        res, err = self:send(req)
        if cut and err and err.code == "timeout" then err = batch_timeout(timeout, "finished") end
      end
      responses[i], errs[i] = res or false, err or false
    end
  end
  local threads = {}
  for k = 1, math.min(opts.concurrency or 8, n) do
    threads[k] = ngx.thread.spawn(worker)
  end
  for k = 1, #threads do
    local ok, err = ngx.thread.wait(threads[k])
    if not ok then error(err, 0) end      -- a bug in send, not an outcome
  end
  return responses, errs
end

function Transport:sleep(seconds)
  if seconds > 0 and COSOCKET_PHASES[phase()] then ngx.sleep(seconds) end
end

function Transport:now()
  if self.clock then return self.clock() end
  return now()
end

function Transport:close() end

Transport.__tostring = function(t)
  return "dbxauth.transport.ngx (" .. (t.skip_verify and "TLS verification OFF" or "TLS verified") .. ")"
end

return _M
