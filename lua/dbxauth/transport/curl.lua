-- The default transport for scripts: one libcurl handle per transport, so connections are
-- reused (keep-alive) for every request a configuration makes. It blocks: inside nginx
-- request handlers use the cosocket transport instead.
--
-- Interface shared by every transport:
--   t:send(req) -> res | nil, err
--     req = { method, url, headers = { name = value }, body, timeout (s), max_body (bytes) }
--     res = { status, headers = { lower-case name = value }, body, reused, time, http_version }
--   t:sleep(seconds), t:now() -> seconds (sub-second precision)
local core = require "dbxauth.core"
local errors = require "dbxauth.errors"
local urls = require "dbxauth.url"

local find = string.find

local _M = {}
local Transport = {}
Transport.__index = Transport
Transport.__name = "dbxauth.transport.curl"

local DEFAULT_MAX_BODY = 16 * 1024 * 1024

local HINTS = {
  tls = "the server's TLS certificate could not be verified; point ca_file (or SSL_CERT_FILE) at the CA "
    .. "bundle that signed it. skip_verify = true turns verification off and is only for testing",
  timeout = "the request took longer than http_timeout_seconds; check the network path to the host "
    .. "or raise http_timeout_seconds",
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
  local hint = HINTS[code]
  if (code == "recv" or code == "network") and plain_http(req.url) then
    hint = "the server closed the connection or answered with something other than HTTP: if it speaks "
      .. "TLS, use https:// instead of http://"
  end
  return errors.new(CODES[code] or code, msg, {
    reason = code,
    hint = hint,
    -- a refused or broken connection before the request left us is safe to repeat
    retryable = (code == "connect" or code == "send") or nil,
  })
end

function Transport:send(req)
  local res, code, msg = self.client:request(req, direct(req.url) and self.direct or self.options)
  if res then return res end
  return nil, failure(req, code, msg)
end

function Transport:sleep(seconds)
  if seconds > 0 then core.sleep(seconds) end
end

function Transport:now()
  if self.clock then return self.clock() end
  return core.now()
end

function Transport:close()
  self.client:close()
end

Transport.__tostring = function(t)
  return "dbxauth.transport.curl (" .. (t.skip_verify and "TLS verification OFF" or "TLS verified") .. ")"
end

return _M
