-- The request log for library users: a `logger` function given in the configuration context
-- (dbxauth.config(opts, { logger = fn })) receives one entry before every request goes out and
-- one when its response (or failure) comes back, for every request the configuration makes:
-- API calls, token requests, host metadata and OIDC discovery, app calls, request_all batches,
-- over either transport. It is a transport wrapper, installed by the session only when a logger
-- is set: without one, requests pay nothing at all.
--
-- What is logged follows the SDKs' round-trip logger (Go logger/httplog, Python RoundTrip):
-- headers only with debug_headers (DATABRICKS_DEBUG_HEADERS); bodies as re-indented JSON with
-- sorted keys, each string cut at debug_truncate_bytes (DATABRICKS_DEBUG_TRUNCATE_BYTES, 96),
-- arrays cut once about 1 KiB (or debug_truncate_bytes, if larger) was shown; other bodies cut
-- at debug_truncate_bytes, non-printable bytes as '.'. Secrets never reach the logger: the
-- credential headers (Authorization, cookies, anything naming a token, secret or password) print
-- as REDACTED; credential fields of JSON, form bodies and query strings (the SDKs' list plus the
-- OAuth grants' fields) as **REDACTED**; and every secret of the configuration and of the
-- request is masked wherever else it appears, before anything is cut.
--
--   entry = { type = "request" | "response", method, url, attempt (1 for the first try),
--             headers (debug_headers only), body (the dump, or nil), text (ready to print);
--             responses also: status, http_version, elapsed (s), or code and error (the failure) }
--
-- A logger that raises is ignored: logging never fails a request (as in the SDKs).
local cjson = require "cjson.safe"
local redact = require "dbxauth.redact"

local _M = {}

local DEFAULT_TRUNCATE = 96
local MAX_BYTES = 1024
local MASK = "**REDACTED**"
local HEADER_MASK = "REDACTED"

-- JSON keys, form fields and query parameters whose values are never shown: the Go SDK's and the
-- Python SDK's lists, and every credential field of the OAuth grants we send.
local SECRET_KEYS = {}
for _, k in ipairs { "string_value", "token_value", "bytes_value", "value", "content", "access_token",
  "refresh_token", "id_token", "token", "password", "client_secret", "code", "code_verifier",
  "subject_token", "actor_token", "client_assertion", "assertion", "device_code", "authorization" } do
  SECRET_KEYS[k] = true
end

local HEADER_NAMES = { authorization = true, ["proxy-authorization"] = true, cookie = true,
  ["set-cookie"] = true }

local REASONS = { [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [409] = "Conflict", [429] = "Too Many Requests", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout" }

local function secret_header(name)
  local n = name:lower()
  return HEADER_NAMES[n] or n:find("token", 1, true) or n:find("secret", 1, true)
    or n:find("password", 1, true) or n:find("api-key", 1, true) or n:find("apikey", 1, true)
end

local function only_n_bytes(s, n)
  local over = #s - n
  if over > 0 then return s:sub(1, n) .. "... (" .. over .. " more bytes)" end
  return s
end

-- CWE-117: a value must not start a line of its own.
local function one_line(s)
  return (s:gsub("[\r\n]", ""))
end

local function unescape(v)
  return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- k=v&... with the values of credential fields masked, and of any field that holds a secret
-- once decoded (query strings and form bodies).
local function mask_form(s, secrets, plus)
  return (s:gsub("([^&=]+)=([^&]*)", function(k, v)
    if plus then k, v = k:gsub("%+", " "), v:gsub("%+", " ") end
    local value = unescape(v)
    if SECRET_KEYS[unescape(k)] or redact.text(value, secrets) ~= value then return k .. "=" .. MASK end
    return nil
  end))
end

-- The URL as logged (still escaped, for entry.url) and as shown (unescaped, as the SDKs print
-- it): userinfo and credential query values masked, then every secret, in both forms.
local function show_url(url, secrets)
  url = url:gsub("^(%a[%w+.-]*://)[^/?#@]*@", "%1***@")
  local base, query = url:match("^([^?]*)%?(.*)$")
  if query then url = base .. "?" .. mask_form(query, secrets) end
  return one_line(redact.text(url, secrets)), one_line(redact.text(unescape(url), secrets))
end

---------------------------------------------------------------------------------------------
-- Bodies

local function json_string(s)
  return (cjson.encode(s):gsub("\\/", "/"))
end

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local marshal

local function marshal_object(t, budget, o)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    local raw = SECRET_KEYS[k] and json_string(MASK) or marshal(v, budget, o)
    parts[i] = json_string(o.redact(k)) .. ":" .. raw
    budget = budget - #raw        -- every key is shown, whatever is left of the budget
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function marshal_array(t, budget, o)
  local parts = {}
  for i = 1, #t do
    if i > 1 and budget <= 0 then   -- the first element is always shown
      parts[#parts + 1] = json_string("... (" .. (#t - #parts) .. " additional elements)")
      break
    end
    local raw = marshal(t[i], budget, o)
    parts[#parts + 1] = raw
    budget = budget - #raw
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

function marshal(v, budget, o)
  local t = type(v)
  if t == "table" then
    if is_array(v) then return marshal_array(v, budget, o) end
    return marshal_object(v, budget, o)
  elseif t == "string" then
    return json_string(only_n_bytes(o.redact(v), o.n))
  elseif t == "number" then
    return string.format("%.14g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- Go's json.Indent over compact JSON: two spaces a level, each line after the first prefixed.
local function indent(s, prefix)
  local out, depth, i, n = {}, 0, 1, #s
  local function newline() out[#out + 1] = "\n" .. prefix .. string.rep("  ", depth) end
  while i <= n do
    local c = s:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local k = s:find('["\\]', j)
        if not k then j = n break end
        if s:sub(k, k) == "\\" then j = k + 2 else j = k break end
      end
      out[#out + 1] = s:sub(i, j)
      i = j
    elseif c == "{" or c == "[" then
      local close = s:sub(i + 1, i + 1)
      if close == "}" or close == "]" then
        out[#out + 1] = c .. close
        i = i + 1
      else
        out[#out + 1] = c
        depth = depth + 1
        newline()
      end
    elseif c == "}" or c == "]" then
      depth = depth - 1
      newline()
      out[#out + 1] = c
    elseif c == "," then
      out[#out + 1] = ","
      newline()
    elseif c == ":" then
      out[#out + 1] = ": "
    else
      out[#out + 1] = c
    end
    i = i + 1
  end
  return prefix .. table.concat(out)
end

local function plain_dump(body, prefix, o)
  local cut = only_n_bytes(o.redact(body), o.n)
  local lines = {}
  for line in (cut .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r", ""):gsub("[^\t\32-\126]", ".")
    lines[#lines + 1] = prefix .. line
  end
  return table.concat(lines, "\n")
end

-- The body as the SDKs log it, or nil when there is none.
local function dump(body, prefix, o)
  if type(body) ~= "string" or body == "" then return nil end
  local first = body:match("^%s*(.)")
  if first == "{" or first == "[" then
    local doc = cjson.decode(body)
    if type(doc) == "table" then
      local budget = math.max(MAX_BYTES, o.n)
      return indent(marshal(doc, budget, o), prefix)
    end
  end
  if body:find("^[%w%%._~*+-]+=") and not body:find("[%s]") then body = mask_form(body, o.secrets, true) end
  return plain_dump(body, prefix, o)
end

---------------------------------------------------------------------------------------------
-- Entries

local function show_headers(h, prefix, o, lines)
  if not (o.headers and type(h) == "table") then return nil end
  local names, out = {}, {}
  for k in pairs(h) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = secret_header(k) and HEADER_MASK or one_line(only_n_bytes(o.redact(tostring(h[k])), o.n))
    out[k] = v
    lines[#lines + 1] = prefix .. "* " .. one_line(k) .. ": " .. v
  end
  return out
end

local function options(s, req)
  local v = s.values
  local n = v.debug_truncate_bytes
  if type(n) ~= "number" or n <= 0 then n = DEFAULT_TRUNCATE end
  local secrets = s:secrets(req)
  local url, shown = show_url(tostring(req.url), secrets)
  return { n = n, headers = v.debug_headers == true, url = url, shown = shown, secrets = secrets,
           redact = function(x) return redact.text(x, secrets) end }
end

local function request_entry(req, attempt, o)
  local method = req.method or "GET"
  local lines = { method .. " " .. o.shown .. (attempt > 1 and " (attempt " .. attempt .. ")" or "") }
  local e = { type = "request", method = method, url = o.url, attempt = attempt }
  e.headers = show_headers(req.headers, "> ", o, lines)
  e.body = dump(req.body, "> ", o)
  lines[#lines + 1] = e.body
  e.text = table.concat(lines, "\n")
  return e
end

local function response_entry(req, attempt, o, res, err, elapsed)
  local e = { type = "response", method = req.method or "GET", url = o.url, attempt = attempt, elapsed = elapsed }
  local took = string.format("%s %s, %.3f s", e.method, o.shown, elapsed)
  local lines
  if res then
    e.status, e.http_version = res.status, res.http_version
    local v = res.http_version and "HTTP/" .. res.http_version .. " " or ""
    lines = { "< " .. v .. tostring(res.status) .. (REASONS[res.status] and " " .. REASONS[res.status] or "")
      .. " (" .. took .. ")" }
    e.headers = show_headers(res.headers, "< ", o, lines)
    e.body = dump(res.body, "< ", o)
    lines[#lines + 1] = e.body
  else
    e.code = err and err.code
    e.error = one_line(o.redact(tostring(err and err.message or err)))
    lines = { "< Error: " .. e.error .. " (" .. took .. ")" }
  end
  e.text = table.concat(lines, "\n")
  return e
end

-- Building an entry or the logger itself failing must not fail the request.
local function emit(logger, build, ...)
  local ok, e = pcall(build, ...)
  if ok then pcall(logger, e) end
end

---------------------------------------------------------------------------------------------
-- The wrapper

local Logged = {}
Logged.__index = Logged
Logged.__name = "dbxauth.transport.logged"
Logged.__tostring = function(self) return "dbxauth.transport.logged(" .. tostring(self.inner) .. ")" end

function Logged:now() return self.inner:now() end
function Logged:sleep(seconds) return self.inner:sleep(seconds) end
function Logged:close()
  local t = self.inner
  if t.close then return t:close() end
end

-- The try number of req: http.send and batch.lua send the very same table again on a retry.
function Logged:attempt(req)
  local n = (self.attempts[req] or 0) + 1
  self.attempts[req] = n
  return n
end

-- The request's entry now; a function that logs its outcome.
function Logged:start(req)
  local attempt = self:attempt(req)
  local logger = self.logger
  local ok, o = pcall(options, self.session, req)
  if ok then emit(logger, request_entry, req, attempt, o) end
  local inner = self.inner
  local t0 = inner:now()
  return function(res, err)
    if not ok then return end
    local elapsed = res and type(res.time) == "number" and res.time or inner:now() - t0
    emit(logger, response_entry, req, attempt, o, res, err, elapsed)
  end
end

function Logged:send(req)
  local done = self:start(req)
  local res, err = self.inner:send(req)
  done(res, err)
  return res, err
end

local function send_all(self, reqs, opts)
  local done = {}
  for i = 1, #reqs do done[i] = self:start(reqs[i]) end
  local responses, errs = self.inner:send_all(reqs, opts)
  for i = 1, #reqs do done[i](responses[i] or nil, errs[i] or nil) end
  return responses, errs
end

-- t: any transport; s: the session (attributes and secrets); logger: fn(entry).
function _M.wrap(t, s, logger)
  local w = setmetatable({ inner = t, session = s, logger = logger,
                           attempts = setmetatable({}, { __mode = "k" }) }, Logged)
  if t.send_all then w.send_all = send_all end   -- batch.lua falls back to send without it
  return w
end

return _M
