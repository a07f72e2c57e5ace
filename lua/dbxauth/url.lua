-- URLs, in one place: host handling, OAuth endpoint checks, Apps urls and both transports read
-- them through this module, so every part of dbxauth agrees on what a URL's host, port and
-- origin are.
--
--   url.split("https://h:1/p?q")  --> "https", "h:1", "/p?q"  (nil for text without "scheme://")
--   url.parse("https://H:8443/p") --> { scheme = "https", host = "h", port = 8443, v6 = false,
--                                       authority = "H:8443", target = "/p" } | nil, why
--   url.origin("https://H/x")     --> "https://h:443" | nil
--   url.is_loopback_host("127.0.0.1") --> true
--   url.plain_http_off_loopback("http://example.com") --> true
--
-- Messages never quote the input: it came from a config file, the environment or a server and
-- may be anything (a pasted secret, 10 KB, control characters).
local _M = {}

local MAX_NAME = 253   -- DNS limits (RFC 1035): a whole name, and one label
local MAX_LABEL = 63

local LOOPBACK = { localhost = true, ["127.0.0.1"] = true, ["::1"] = true }

-- scheme (lower-cased), authority, rest of an absolute "scheme://authority..." URL, or nil.
function _M.split(raw)
  if type(raw) ~= "string" then return nil end
  local scheme, authority, rest = raw:match("^(%a[%w+.%-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  return scheme:lower(), authority, rest
end

-- Go's url.Hostname(): the authority without a numeric ":port"; IPv6 literals lose their
-- brackets. (Userinfo must already be gone.)
function _M.hostname(authority)
  local v6 = authority:match("^%[(.-)%]")
  if v6 then return v6 end
  return (authority:gsub(":%d*$", ""))
end

-- Why `authority` (userinfo already removed) cannot be a host we send credentials to, or nil.
function _M.bad_authority(scheme, authority)
  if scheme ~= "https" and scheme ~= "http" then
    return "unsupported URL scheme (use https://)"
  end
  local name, port
  if authority:sub(1, 1) == "[" then
    local v6, rest = authority:match("^%[([^%]]*)%](.*)$")
    if not v6 then return "unterminated IPv6 literal (a \"[\" without \"]\")" end
    if v6 == "" or #v6 > 45 or v6:find("[^%x:.]") or not v6:find(":", 1, true) then
      return "malformed IPv6 literal"
    end
    if rest ~= "" and not rest:find("^:") then return "unexpected characters after the IPv6 literal" end
    port = rest:sub(2)
  else
    name, port = authority:match("^([^:]*):?(.*)$")
    if authority:find(":", 1, true) == nil then port = nil end
    if #name > MAX_NAME then return "host name longer than " .. MAX_NAME .. " characters" end
    if name:find("[^%w%-%._]") then
      return "host name with characters other than letters, digits, \"-\", \"_\" and \".\""
    end
    for label in name:gmatch("[^.]+") do
      if #label > MAX_LABEL then return "host name label longer than " .. MAX_LABEL .. " characters" end
    end
  end
  -- Go keeps an empty port ("h:"); anything else must be a TCP port number.
  if port and port ~= "" then
    local n = port:match("^%d+$") and #port <= 5 and tonumber(port)
    if not n or n < 1 or n > 65535 then return "invalid port (1-65535)" end
  end
  return nil
end

-- An absolute http(s) URL we may send a request to: no userinfo, no blanks or control
-- characters, a valid host and port. Returns its parts | nil, why.
function _M.parse(u)
  if type(u) ~= "string" then return nil, "url must be a string" end
  local scheme, authority, rest = _M.split(u)
  if not scheme then return nil, "not an absolute URL" end
  if scheme ~= "https" and scheme ~= "http" then return nil, "unsupported scheme " .. scheme end
  if authority:find("@", 1, true) then return nil, "user information in URLs is not supported" end
  if authority == "" then return nil, "invalid host" end
  local why = _M.bad_authority(scheme, authority)
  if why then return nil, "invalid host: " .. why end
  local v6 = authority:sub(1, 1) == "["
  local host = _M.hostname(authority)
  if host == "" then return nil, "invalid host" end
  local port = authority:match("%]:(%d+)$") or (not v6 and authority:match(":(%d+)$"))
  port = port and tonumber(port) or (scheme == "https" and 443 or 80)
  rest = rest:gsub("#.*$", "")
  if rest == "" then rest = "/" end
  if rest:sub(1, 1) == "?" then rest = "/" .. rest end
  if rest:find("[%z\1-\32\127]") then return nil, "the path contains spaces or control characters" end
  return { scheme = scheme, host = host:lower(), port = port, v6 = v6, authority = authority, target = rest }
end

-- "scheme://host:port" of an http(s) URL (host lower-cased, default port filled in), or nil
-- for anything else: other schemes, userinfo, blanks or control characters, bad hosts.
function _M.origin(u)
  if type(u) ~= "string" or u:find("[%c%s]") then return nil end
  local p = _M.parse(u)
  if not p then return nil end
  local name = p.v6 and ("[" .. p.host .. "]") or p.host
  return p.scheme .. "://" .. name .. ":" .. string.format("%d", p.port)
end

function _M.is_loopback_host(name)
  return LOOPBACK[name] == true
end

-- true for a URL whose host is localhost, 127.0.0.1 or [::1]
function _M.is_loopback_url(u)
  local scheme, authority = _M.split(u)
  if not scheme then return false end
  return LOOPBACK[_M.hostname(authority:gsub("^.*@", "")):lower()] == true
end

-- true for an http:// URL whose host is not loopback: credentials must not travel there.
function _M.plain_http_off_loopback(u)
  local scheme, authority = _M.split(u)
  if scheme ~= "http" then return false end
  return not LOOPBACK[_M.hostname(authority:gsub("^.*@", "")):lower()]
end

return _M
