-- The default transport for scripts: one libcurl handle per transport, so connections are
-- reused (keep-alive) for every request a configuration makes, over HTTP/1.1; and for batches a
-- libcurl multi handle (created on first use), HTTP/2 multiplexed where the server offers it.
-- It blocks: inside nginx request handlers use the cosocket transport instead.
--
-- Interface shared by every transport:
--   t:send(req) -> res | nil, err
--     req = { method, url, headers = { name = value }, body, timeout (s), max_body (bytes) }
--     res = { status, headers = { lower-case name = value }, body, reused, time, http_version }
--   t:send_all(reqs, opts) -> responses, errs   (optional: batch.lua falls back to send)
--     opts = { concurrency = 8 (requests in flight at most), timeout = s (the whole batch) }
--     responses[i] = res | false, errs[i] = err | false: each request's outcome as send's,
--     in the order of reqs; one failing never fails another. Requests still unfinished when
--     the batch's timeout runs out fail with code "timeout" (reason "cancelled").
--   t:sleep(seconds), t:now() -> seconds (sub-second precision)
--   t.now_function (optional): t:now's clock as a plain function, for the hot paths (a cached
--     token's freshness is one clock read per call)
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local urls = require "dbxauth.url"

local byte, find = string.byte, string.find
local COLON = byte(":")

local _M = {}

-- core.now as LuaJIT can compile it into a trace: clock_gettime through the FFI (64-bit Linux;
-- the same reading as core.now's), else nil. The symbol is declared under a name of our own so
-- that no other module's declaration of clock_gettime can clash with it.
local function jit_clock()
  if type(rawget(_G, "jit")) ~= "table" then return nil end
  local ok, ffi = pcall(require, "ffi")
  if not ok or ffi.os ~= "Linux" or not ffi.abi("64bit") then return nil end
  if not pcall(function() return ffi.C.dbxauth_clock_gettime end) then
    ok = pcall(ffi.cdef, 'int dbxauth_clock_gettime(int clk, long *ts) __asm__("clock_gettime");')
    if not ok then return nil end
  end
  local C, ts = ffi.C, ffi.new("long[2]")
  local REALTIME = 0
  return function()
    if C.dbxauth_clock_gettime(REALTIME, ts) ~= 0 then return core.now() end
    return tonumber(ts[0]) + tonumber(ts[1]) / 1e9
  end
end
local clock_function = jit_clock() or core.now
_M.now_function = clock_function   -- the clock of every transport made without opts.clock

local Transport = {}
Transport.__index = Transport
Transport.__name = "dbxauth.transport.curl"

local DEFAULT_MAX_BODY = 16 * 1024 * 1024

local HINTS = {
  tls = "the server's TLS certificate could not be verified; point ca_file (or SSL_CERT_FILE) at the CA "
    .. "bundle that signed it. skip_verify = true turns verification off and is only for testing",
  timeout = "the request took longer than http_timeout_seconds; check the network path to the host "
    .. "or raise http_timeout_seconds",
  cancelled = "the batch took longer than its timeout (opts.timeout); raise it, or send fewer requests "
    .. "or more at once (opts.concurrency)",
  connect = "nothing accepted the connection; check the host and port, and the proxy settings "
    .. "(HTTPS_PROXY, NO_PROXY)",
  resolve = "the host name could not be resolved; check the host (for example "
    .. "https://<workspace>.cloud.databricks.com) and your DNS or proxy settings",
  send = "the connection broke while sending; check outbound HTTPS connectivity and proxy settings",
  recv = "the connection closed before a complete response arrived; check outbound HTTPS "
    .. "connectivity and proxy settings",
  network = "check outbound HTTPS connectivity and proxy settings",
  too_large = "the response is larger than max_response_bytes allows",
}

-- curl's codes name the failure precisely; users see them grouped the way they fix them.
local CODES = {
  connect = "network", resolve = "network", send = "network", recv = "network", network = "network",
}

-- opts: ca_file, skip_verify, resolve (list of "host:port:addr"), max_body, clock
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'transport.curl.new' (table expected, got " .. type(opts) .. ")", 2)
  end
  local skip_verify = opts.skip_verify and true or false
  local max_body = opts.max_body or DEFAULT_MAX_BODY
  -- The options every request of this transport carries, made once: the C client takes the
  -- request as it is plus one of these (core.http's request(req, opts)), so a request costs no
  -- table of its own. `direct` adds no_proxy for plain-http loopback URLs.
  local function options(no_proxy)
    return { ca_file = opts.ca_file, skip_verify = skip_verify, resolve = opts.resolve, max_body = max_body,
             no_proxy = no_proxy }
  end
  return setmetatable({
    client = core.http(),
    ca_file = opts.ca_file,
    skip_verify = skip_verify,
    resolve = opts.resolve,
    max_body = max_body,
    clock = opts.clock,
    now_function = opts.clock or clock_function,
    options = options(false),
    direct = options(true),
  }, Transport)
end

-- A configured http_proxy may be remote: plain-http loopback traffic (credentials in clear text,
-- allowed only because it never leaves the machine) never goes through it.
local function plain_http(url)
  return type(url) == "string" and find(url, "http://", 1, true) == 1
end

local function direct(url)
  return plain_http(url) and urls.is_loopback_url(url)
end

-- The error object for the C client's code and message.
local function failure(req, code, msg)
  local reason = code
  if code == "timeout" and find(msg, "the batch's timeout", 1, true) == 1 then reason = "cancelled" end
  local hint = HINTS[reason]
  if (code == "recv" or code == "network") and plain_http(req.url) then
    hint = "the server closed the connection or answered with something other than HTTP: if it speaks "
      .. "TLS, use https:// instead of http://"
  end
  return errors.new(CODES[code] or code, msg, {
    reason = reason,
    hint = hint,
    -- a refused or broken connection before the request left us is safe to repeat
    retryable = (code == "connect" or code == "send") or nil,
  })
end

function Transport:send(req)
  local url, opts = req.url, self.options
  -- "https:..." has no colon at 5: the common case costs one look at the URL
  if type(url) == "string" and byte(url, 5) == COLON and direct(url) then opts = self.direct end
  local res, code, msg = self.client:request(req, opts)
  if res then return res end
  return nil, failure(req, code, msg)
end

-- Plain-http loopback requests skip the proxy here too: they go as copies that say so.
local function direct_copies(reqs)
  local list = reqs
  for i = 1, #reqs do
    local req = reqs[i]
    local url = type(req) == "table" and req.url
    if type(url) == "string" and byte(url, 5) == COLON and direct(url) then
      if list == reqs then
        list = {}
        for k = 1, #reqs do list[k] = reqs[k] end
      end
      local copy = {}
      for k, v in pairs(req) do copy[k] = v end
      copy.no_proxy = true
      list[i] = copy
    end
  end
  return list
end

function Transport:send_all(reqs, opts)
  opts = opts or {}
  local multi = self.multi
  if not multi then
    multi = core.multi()
    self.multi = multi
  end
  local responses, codes, msgs = multi:perform(direct_copies(reqs), {
    concurrency = opts.concurrency, timeout = opts.timeout,
    ca_file = self.ca_file, skip_verify = self.skip_verify, resolve = self.resolve, max_body = self.max_body,
  })
  local errs = codes
  for i = 1, #reqs do
    if not responses[i] then errs[i] = failure(reqs[i], codes[i], msgs[i]) end
  end
  return responses, errs
end

function Transport:sleep(seconds)
  if seconds > 0 then core.sleep(seconds) end
end

function Transport:now()
  if self.clock then return self.clock() end
  return clock_function()
end

function Transport:close()
  self.client:close()
  if self.multi then self.multi:close() end
end

Transport.__tostring = function(t)
  return "dbxauth.transport.curl (" .. (t.skip_verify and "TLS verification OFF" or "TLS verified") .. ")"
end

return _M
