-- HTTP/1.1 without I/O, for the nginx transport (the h11 idea: bytes in, events out). No ngx,
-- no sockets, no clock, no globals; runs in Lua 5.1/LuaJIT and 5.4, so it is tested in plain Lua.
-- The caller owns the connection, timeouts and retries.
--
-- Responses:
--   local p = http1.response{ max_body = 16 * 1024 * 1024, head = (method == "HEAD"),
--                             max_header_bytes = http1.MAX_HEADER_BYTES, max_headers = http1.MAX_HEADERS }
--   p:feed(bytes)     bytes as they arrive, split anywhere ("" is ignored)
--   p:feed_eof()      the peer closed the connection
--   p:next()          -> event | "need_data" | "done" | nil, err
--   p:buffered()      -> bytes fed and not consumed (after "end": bytes beyond the response)
-- Events, in this order:
--   { type = "response", status = 200, minor = 0|1, headers = { ["lower-case name"] = "value" } }
--       repeated fields are joined with ", " (empty ones add nothing); 1xx interim responses are
--       skipped, at most MAX_INTERIM of them; 101 is an error
--   { type = "data", data = "..." }        zero or more: the body as it arrives, never buffered whole
--   { type = "end", keep_alive = bool }    then "done" for ever
-- err = { code = "invalid_response" | "too_large" | "incomplete", message = "...", limit = ... }
--   invalid_response: the peer broke the protocol; too_large: a limit below was exceeded (limit =
--   "header_bytes" | "headers" | "chunk_line" | "body"); incomplete: feed_eof before the response
--   was complete. Messages never quote a header value or body bytes. After an error the parser is
--   in a terminal state: next() returns the same err again and fed bytes are dropped.
--   Misuse (feed after feed_eof, a non-string, bad options) raises.
--
-- Framing: no body for HEAD, 204 and 304; else Transfer-Encoding: chunked (size in hex, at most
-- 8 digits, `;extensions` ignored, CRLF after every chunk checked, trailers read and ignored);
-- else Content-Length ("5" or "5, 5"; anything else, such as "5, 6" or "-1", is an error); else
-- the body runs until EOF. Both Transfer-Encoding and Content-Length, or a Transfer-Encoding other
-- than chunked, is an error. keep_alive is false for HTTP/1.0, `Connection: close` and bodies
-- delimited by EOF. Lines end with CRLF; obs-fold, control characters in the status line or a
-- header value, and lines that are not `token: value` are errors.
--
-- Limits (the curl transport's, csrc/dbx_http.h): a header block (status line to the empty
-- line, CRLFs included) of at most MAX_HEADER_BYTES and MAX_HEADERS fields; chunked trailers
-- count against the same budget as the header block before them (as with libcurl, which hands
-- trailers to the header callback); chunk-size lines of at most MAX_CHUNK_LINE bytes; a body of
-- at most max_body bytes (Content-Length is checked before the body, chunk sizes before the
-- chunk; an EOF-delimited body is delivered up to max_body bytes, then fails).
-- Work is linear in the input however it is split: each byte is scanned and copied a bounded
-- number of times (a buffer and an offset, partial lines kept as pieces, never re-searched).
--
-- Requests:
--   http1.request(method, target, host, headers, body) -> bytes | nil, err
--   err.code "invalid_request" | "invalid_header". The transport sets Host, Content-Length (when
--   there is a body, or for POST, PUT and PATCH) and framing; callers cannot (RESERVED).
local hdr = require "dbxauth.headers"

local concat, sort = table.concat, table.sort
local find, sub, byte, lower, match = string.find, string.sub, string.byte, string.lower, string.match
local format, gmatch = string.format, string.gmatch
local type, tonumber, tostring, setmetatable, pairs, error = type, tonumber, tostring, setmetatable, pairs, error

local _M = {}

local MAX_HEADER_BYTES = 256 * 1024   -- DBX_HTTP_MAX_HEADER_BYTES
local MAX_HEADERS = 1000              -- DBX_HTTP_MAX_HEADER_LINES
local MAX_CHUNK_LINE = 4096           -- chunk-size line with extensions, CRLF not counted
local MAX_INTERIM = 5                 -- 1xx responses skipped before the real one
local DEFAULT_MAX_BODY = 16 * 1024 * 1024
_M.MAX_HEADER_BYTES, _M.MAX_HEADERS, _M.MAX_CHUNK_LINE = MAX_HEADER_BYTES, MAX_HEADERS, MAX_CHUNK_LINE
_M.MAX_INTERIM, _M.DEFAULT_MAX_BODY = MAX_INTERIM, DEFAULT_MAX_BODY

local TOKEN = hdr.TOKEN
local CTL = "[%z\1-\8\10-\31\127]"    -- control characters but HT
local CR, LF, SP, HT = 13, 10, 32, 9

-- ------------------------------------------------------------------ errors

local Err = { __name = "dbxauth.http1.error" }
Err.__index = Err
Err.__tostring = function(e) return e.message end

local function new_err(code, message, limit)
  return setmetatable({ code = code, message = message, limit = limit }, Err)
end

-- ------------------------------------------------------------------ input

local Parser = {}
Parser.__index = Parser
Parser.__name = "dbxauth.http1.response"

local function opt_limit(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v < 0 or v ~= v then
    error("bad option '" .. name .. "' to 'http1.response' (non-negative number expected, got "
      .. tostring(v) .. ")", 3)
  end
  return v
end

-- A new header block: hbytes and hcount count its bytes and fields, extra collects repeats.
local function start_block(self)
  self.state, self.hbytes, self.hcount, self.headers, self.extra = "status", 0, 0, {}, nil
end

function _M.response(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("bad argument #1 to 'http1.response' (table expected, got " .. type(opts) .. ")", 2)
  end
  local p = setmetatable({
    max_header_bytes = opt_limit(opts, "max_header_bytes", MAX_HEADER_BYTES),
    max_headers = opt_limit(opts, "max_headers", MAX_HEADERS),
    max_body = opt_limit(opts, "max_body", DEFAULT_MAX_BODY),
    head = opts.head and true or false,
    q = {}, qh = 1, qt = 0,       -- chunks fed and not yet started
    qbytes = 0,                   -- their total size
    buf = "", pos = 1,            -- the chunk being consumed, and the next byte in it
    eof = false, started = false,
    parts = {}, nparts = 0, plen = 0,   -- the line being assembled across chunks
    state = "status",
    interim = 0,
    total = 0,                    -- body bytes so far
  }, Parser)
  start_block(p)
  return p
end

function Parser:feed(data)
  if type(data) ~= "string" then
    error("bad argument #1 to 'feed' (string expected, got " .. type(data) .. ")", 2)
  end
  if self.eof then error("http1: feed after feed_eof", 2) end
  if data == "" or self.state == "error" then return end
  self.started = true
  local t = self.qt + 1
  self.q[t], self.qt, self.qbytes = data, t, self.qbytes + #data
end

function Parser:feed_eof()
  self.eof = true
end

function Parser:buffered()
  return #self.buf - self.pos + 1 + self.qbytes
end

-- true when self.buf has an unconsumed byte at self.pos (taking the next queued chunk if needed)
local function avail(self)
  if self.pos <= #self.buf then return true end
  local h = self.qh
  if h > self.qt then return false end
  local data = self.q[h]
  self.q[h] = nil
  self.buf, self.pos, self.qbytes = data, 1, self.qbytes - #data
  if h == self.qt then self.qh, self.qt = 1, 0 else self.qh = h + 1 end
  return true
end

-- Up to n bytes of the current chunk (n >= 1), or nil when nothing is buffered.
local function take(self, n)
  if not avail(self) then return nil end
  local buf, pos = self.buf, self.pos
  local left = #buf - pos + 1
  if n >= left then
    self.pos = #buf + 1
    return pos == 1 and buf or sub(buf, pos)
  end
  self.pos = pos + n
  return sub(buf, pos, pos + n - 1)
end

-- The next CRLF-terminated line without its CRLF, and its size with the CRLF. nil when more
-- input is needed; false when the line with its CRLF is (or will be) longer than `limit`.
-- A bare LF is part of the line. Pieces of an unfinished line are kept and joined once.
local function read_line(self, limit)
  while avail(self) do
    local buf, pos = self.buf, self.pos
    local lf = find(buf, "\n", pos, true)
    local piece = sub(buf, pos, lf or #buf)
    self.pos = (lf or #buf) + 1
    local size = self.plen + #piece
    if lf then
      local cr
      if lf > pos then
        cr = byte(buf, lf - 1) == CR
      else
        cr = self.nparts > 0 and byte(self.parts[self.nparts], -1) == CR
      end
      if cr then
        if size > limit then return false end
        local line = piece
        if self.nparts > 0 then
          self.parts[self.nparts + 1] = piece
          line = concat(self.parts, "", 1, self.nparts + 1)
          self.parts, self.nparts = {}, 0
        end
        self.plen = 0
        return sub(line, 1, -3), size
      end
    end
    self.nparts = self.nparts + 1
    self.parts[self.nparts], self.plen = piece, size
    if size + 1 > limit then return false end   -- at least the LF is still to come
  end
  return nil
end

-- ------------------------------------------------------------------ head parsing

-- "HTTP/1.x NNN[ reason]" -> status, minor | nil, message
local function parse_status(line)
  local minor, status, rest = match(line, "^HTTP/1%.([01]) ([1-9]%d%d)(.*)$")
  if not minor or (rest ~= "" and byte(rest, 1) ~= SP) then return nil, "malformed status line" end
  if find(line, CTL) then return nil, "control character in the status line" end
  return tonumber(status), tonumber(minor)
end

-- "Name: value" -> lower-case name, trimmed value | nil, message
local function parse_field(line)
  local c = byte(line, 1)
  if c == SP or c == HT then return nil, "folded header line" end
  local colon = find(line, ":", 1, true)
  if not colon or not find(sub(line, 1, colon - 1), TOKEN) then return nil, "malformed header line" end
  local value = ""
  local s = find(line, "[^ \t]", colon + 1)
  if s then
    local e = #line
    while true do
      local b = byte(line, e)
      if b ~= SP and b ~= HT then break end
      e = e - 1
    end
    value = sub(line, s, e)
  end
  if find(value, CTL) then return nil, "control character in a header value" end
  return lower(sub(line, 1, colon - 1)), value
end

-- "5" or "5, 5" -> 5; anything else -> nil
local function content_length(v)
  local n
  for item in gmatch(v, "[^,]+") do
    local d = match(item, "^[ \t]*(%d+)[ \t]*$")
    if not d or #d > 15 then return nil end
    d = tonumber(d)
    if n and n ~= d then return nil end
    n = d
  end
  return n
end

-- ------------------------------------------------------------------ the state machine

local function fail(self, code, message, limit)
  self.err = new_err(code, message, limit)
  self.state = "error"
  self.buf, self.pos, self.q, self.qh, self.qt, self.qbytes = "", 1, {}, 1, 0, 0
  self.parts, self.nparts = {}, 0
  return nil, self.err
end

local function too_many_fields(self)
  return fail(self, "too_large", "more than " .. self.max_headers .. " header fields", "headers")
end

-- One header field into the current block; repeated names are collected and joined at the end.
local function add_field(self, name, value)
  local headers = self.headers
  local prev = headers[name]
  if prev == nil then headers[name] = value; return end
  if value == "" then return end
  if prev == "" then headers[name] = value; return end
  local extra = self.extra or {}
  self.extra = extra
  local list = extra[name]
  if not list then list = { prev }; extra[name] = list end
  list[#list + 1] = value
end

-- The empty line after the headers: skip a 1xx, or choose the framing and emit the response.
local function end_of_head(self)
  if self.extra then
    for name, list in pairs(self.extra) do self.headers[name] = concat(list, ", ") end
    self.extra = nil
  end
  local status, headers = self.status, self.headers
  if status < 200 then
    if status == 101 then return fail(self, "invalid_response", "unexpected protocol switch (101)") end
    self.interim = self.interim + 1
    if self.interim > MAX_INTERIM then return fail(self, "invalid_response", "too many 1xx responses") end
    start_block(self)
    return false
  end
  local keep = self.minor == 1
  local conn = headers.connection
  if conn and find(lower(conn), "close", 1, true) then keep = false end
  local te, cl = headers["transfer-encoding"], headers["content-length"]
  if self.head or status == 204 or status == 304 then
    self.state = "finish"
  elseif te then
    if cl then return fail(self, "invalid_response", "both Transfer-Encoding and Content-Length") end
    if lower(te) ~= "chunked" then return fail(self, "invalid_response", "unsupported Transfer-Encoding") end
    self.state = "chunk_size"
  elseif cl then
    local n = content_length(cl)
    if not n then return fail(self, "invalid_response", "malformed Content-Length") end
    if n > self.max_body then
      return fail(self, "too_large", format("response body of %d bytes is larger than %d bytes", n, self.max_body),
        "body")
    end
    self.remaining = n
    self.state = n == 0 and "finish" or "body"
  else
    keep = false                          -- the body ends when the server closes the connection
    self.state = "close"
  end
  self.keep = keep
  return { type = "response", status = status, minor = self.minor, headers = headers }
end

local function header_line(self)
  local line, size = read_line(self, self.max_header_bytes - self.hbytes)
  if line == false then
    return fail(self, "too_large", "response headers larger than " .. self.max_header_bytes .. " bytes",
      "header_bytes")
  end
  if line then self.hbytes = self.hbytes + size end
  return line
end

local function incomplete(self)
  local what = (self.state == "status" or self.state == "headers") and "headers" or "body"
  if not self.started then
    return fail(self, "incomplete", "connection closed before any response arrived")
  end
  return fail(self, "incomplete", "connection closed before the end of the response " .. what)
end

-- Each step returns an event, nil to wait for input, false to go on, or nil, err.
local STEP = {}

function STEP.status(self)
  local line, err = header_line(self)
  if not line then return nil, err end
  local status, minor = parse_status(line)
  if not status then return fail(self, "invalid_response", minor) end
  self.status, self.minor, self.state = status, minor, "headers"
  return false
end

function STEP.headers(self)
  local line, err = header_line(self)
  if not line then return nil, err end
  if line == "" then return end_of_head(self) end
  local name, value = parse_field(line)
  if not name then return fail(self, "invalid_response", value) end
  self.hcount = self.hcount + 1
  if self.hcount > self.max_headers then return too_many_fields(self) end
  add_field(self, name, value)
  return false
end

function STEP.body(self)
  local data = take(self, self.remaining)
  if not data then return nil end
  self.remaining = self.remaining - #data
  if self.remaining == 0 then self.state = "finish" end
  return { type = "data", data = data }
end

function STEP.close(self)
  if not avail(self) then
    if self.eof then self.keep, self.state = false, "finish"; return false end
    return nil
  end
  local room = self.max_body - self.total
  if room < 1 then
    return fail(self, "too_large", format("response body larger than %d bytes", self.max_body), "body")
  end
  local data = take(self, room)
  self.total = self.total + #data
  return { type = "data", data = data }
end

function STEP.chunk_size(self)
  local line = read_line(self, MAX_CHUNK_LINE + 2)
  if line == false then
    return fail(self, "too_large", "chunk size line longer than " .. MAX_CHUNK_LINE .. " bytes", "chunk_line")
  end
  if not line then return nil end
  local hex = match(line, "^(%x+)[ \t]*$") or match(line, "^(%x+)[ \t]*;")
  if not hex or #hex > 8 then return fail(self, "invalid_response", "malformed chunk size") end
  local size = tonumber(hex, 16)
  if size == 0 then self.state = "trailer"; return false end
  self.total = self.total + size
  if self.total > self.max_body then
    return fail(self, "too_large", format("response body larger than %d bytes", self.max_body), "body")
  end
  self.remaining, self.state = size, "chunk_data"
  return false
end

function STEP.chunk_data(self)
  local data = take(self, self.remaining)
  if not data then return nil end
  self.remaining = self.remaining - #data
  if self.remaining == 0 then self.state, self.crlf = "chunk_crlf", CR end
  return { type = "data", data = data }
end

function STEP.chunk_crlf(self)
  if not avail(self) then return nil end
  if byte(self.buf, self.pos) ~= self.crlf then
    return fail(self, "invalid_response", "chunk not followed by CRLF")
  end
  self.pos = self.pos + 1
  if self.crlf == CR then self.crlf = LF else self.state = "chunk_size" end
  return false
end

-- Trailer fields: counted against the header block's budget, their content ignored.
function STEP.trailer(self)
  local line, err = header_line(self)
  if not line then return nil, err end
  if line == "" then self.state = "finish"; return false end
  self.hcount = self.hcount + 1
  if self.hcount > self.max_headers then return too_many_fields(self) end
  return false
end

function STEP.finish(self)
  self.state = "done"
  return { type = "end", keep_alive = self.keep }
end

function Parser:next()
  while true do
    local state = self.state
    if state == "error" then return nil, self.err end
    if state == "done" then return "done" end
    local ev, err = STEP[state](self)
    if ev then return ev end
    if err then return nil, err end
    if ev == nil then
      if not self.eof then return "need_data" end
      return incomplete(self)
    end
  end
end

-- ------------------------------------------------------------------ requests

-- Set by the transport itself; a caller's value would desynchronise framing or pooling.
local RESERVED = { host = true, ["content-length"] = true, ["transfer-encoding"] = true,
                   connection = true, te = true, upgrade = true, trailer = true }
_M.RESERVED = RESERVED

local function req_fail(code, message)
  return nil, new_err(code, message)
end

-- method "GET", target "/path?query" (origin form), host "example.com[:port]",
-- headers { name = value } (sent sorted by name), body string | nil
function _M.request(method, target, host, headers, body)
  if type(method) ~= "string" or not find(method, "^[A-Z]+$") then
    return req_fail("invalid_request", "invalid method")
  end
  if type(target) ~= "string" or target == "" or find(target, "[%z\1-\32\127]") then
    return req_fail("invalid_request", "invalid request target")
  end
  if type(host) ~= "string" or host == "" or find(host, "[%z\1-\32\127]") then
    return req_fail("invalid_request", "invalid Host")
  end
  if body ~= nil and type(body) ~= "string" then return req_fail("invalid_request", "body must be a string") end
  local names = {}
  if headers ~= nil then
    if type(headers) ~= "table" then return req_fail("invalid_header", "headers must be a table") end
    for name, value in pairs(headers) do
      local bad = hdr.check(name, value)
      if bad then return req_fail("invalid_header", bad) end
      if RESERVED[lower(name)] then
        return req_fail("invalid_header", 'header "' .. name .. '" is set by the transport')
      end
      names[#names + 1] = name
    end
    sort(names)
  end
  local out = { method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n" }
  local n = #out
  for i = 1, #names do
    local name = names[i]
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = name, ": ", headers[name], "\r\n"
    n = n + 4
  end
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    out[n + 1] = "Content-Length: " .. #(body or "") .. "\r\n"
    n = n + 1
  end
  out[n + 1] = "\r\n"
  out[n + 2] = body
  return concat(out)
end

return _M
