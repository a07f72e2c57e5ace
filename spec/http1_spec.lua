-- dbxauth.http1, the nginx transport's HTTP/1.1 parser, in plain Lua: no nginx, no sockets.
-- Every response case is a row of data; each is fed whole, split at every byte boundary, one byte
-- at a time and in odd-sized pieces, and must give the same events every time.
local http1 = require "dbxauth.http1"

local rep, concat = string.rep, table.concat

-- ------------------------------------------------------------------ the runner

-- Feeds `pieces` (a list of strings) to a new parser, either when it asks for data or all at once
-- (`queued`), then EOF (unless eof == false). Returns the outcome with adjacent data events
-- merged: { trace = "response data end", status, minor, headers, body, keep_alive, code, message }.
local function run(pieces, opts, queued, eof)
  local p = http1.response(opts)
  local out, trace, body = {}, {}, {}
  local i = 1
  if queued then
    for _, s in ipairs(pieces) do p:feed(s) end
    i = #pieces + 1
  end
  local last, eof_fed
  while true do
    local ev, err = p:next()
    if ev == "need_data" then
      if i <= #pieces then
        p:feed(pieces[i])
        i = i + 1
      elseif eof ~= false and not eof_fed then
        p:feed_eof()
        eof_fed = true
      else
        trace[#trace + 1] = "need_data"
        break
      end
    elseif ev == "done" then
      break
    elseif ev == nil then
      trace[#trace + 1] = "error"
      out.code, out.message, out.limit = err.code, err.message, err.limit
      break
    else
      assert.is_table(ev)
      if ev.type ~= "data" or last ~= "data" then trace[#trace + 1] = ev.type end
      last = ev.type
      if ev.type == "response" then
        out.status, out.minor, out.headers = ev.status, ev.minor, ev.headers
      elseif ev.type == "data" then
        assert.is_true(#ev.data > 0, "empty data event")
        body[#body + 1] = ev.data
      else
        assert.equal("end", ev.type)
        out.keep_alive = ev.keep_alive
      end
    end
  end
  out.trace = concat(trace, " ")
  if out.status then out.body = concat(body) end
  return out, p
end

local function pieces_of(s, size)
  local t = {}
  for i = 1, #s, size do t[#t + 1] = s:sub(i, i + size - 1) end
  return t
end

-- Every way of feeding `input` that the cases are checked with.
local function feedings(input)
  local list = { { "whole", { input } }, { "whole, queued", { input }, true },
                 { "one byte at a time", pieces_of(input, 1) },
                 { "one byte at a time, queued", pieces_of(input, 1), true } }
  for _, size in ipairs { 2, 3, 7, 64, 1000 } do
    if size < #input then list[#list + 1] = { size .. "-byte pieces", pieces_of(input, size) } end
  end
  if #input <= 4096 then
    for k = 1, #input - 1 do
      list[#list + 1] = { "split at " .. k, { input:sub(1, k), input:sub(k + 1) } }
      list[#list + 1] = { "split at " .. k .. ", queued", { input:sub(1, k), input:sub(k + 1) }, true }
    end
  end
  return list
end

-- want: the outcome's fields that must match (trace always); headers compared whole when given.
local function check(case)
  local first
  for _, f in ipairs(feedings(case.input)) do
    local got = run(f[2], case.opts, f[3], case.eof)
    if not first then
      first = got
      for k, v in pairs(case.want) do
        assert.same(v, got[k], case.name .. ": " .. k .. " (" .. f[1] .. ")")
      end
    else
      assert.same(first, got, case.name .. ": " .. f[1] .. " differs from whole")
    end
  end
end

local function ok(name, input, want, opts)
  if want.trace == nil and want.body ~= nil then
    want.trace = want.body == "" and "response end" or "response data end"
  end
  return { name = name, input = input, want = want, opts = opts }
end

local function bad(name, input, code, message, opts, extra)
  local want = extra or {}
  want.code, want.message = code, message
  want.trace = want.trace or (want.status and "response error" or "error")
  return { name = name, input = input, want = want, opts = opts }
end

local H = "HTTP/1.1 200 OK\r\n"
local CHUNKED = H .. "Transfer-Encoding: chunked\r\n\r\n"

-- ------------------------------------------------------------------ cases

local FRAMING = {
  ok("Content-Length", H .. "Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    { status = 200, minor = 1, body = "hello", keep_alive = true,
      headers = { ["content-length"] = "5", ["content-type"] = "text/plain" } }),
  ok("Content-Length 0", H .. "Content-Length: 0\r\n\r\n", { status = 200, body = "", keep_alive = true }),
  ok('Content-Length "5, 5"', H .. "Content-Length: 5, 5\r\n\r\nhello", { body = "hello", keep_alive = true }),
  ok("Content-Length sent twice with one value", H .. "Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
    { body = "hello", headers = { ["content-length"] = "5, 5" } }),
  ok("Content-Length with leading zeros", H .. "Content-Length: 005\r\n\r\nhello", { body = "hello" }),
  ok("chunked with extensions and trailers",
    H .. "Transfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer-Field: x\r\n\r\n",
    { status = 200, body = "hello, world", keep_alive = true,
      headers = { ["transfer-encoding"] = "chunked", ["x-a"] = "1, 2" } }),
  ok("chunked, no trailers", CHUNKED .. "3\r\nabc\r\n0\r\n\r\n", { body = "abc", keep_alive = true }),
  ok("chunked, only the last chunk", CHUNKED .. "0\r\n\r\n", { body = "", keep_alive = true }),
  ok("chunked: upper-case hex, leading zeros, blanks and quoted extensions",
    H .. "Transfer-Encoding: Chunked\r\n\r\n"
      .. "000A \t;name=\"v;x\";other\r\n0123456789\r\n1;x\r\n!\r\n0;last=1\r\nA: 1\r\nB: 2\r\n\r\n",
    { body = "0123456789!" }),
  ok("chunked: CRLF and hex digits inside the chunk data",
    CHUNKED .. "7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n", { body = "\r\n0\r\n\r\n" }),
  ok("chunked: trailer lines are not parsed", CHUNKED .. "1\r\nx\r\n0\r\nnot a header\1\r\n\r\n", { body = "x" }),
  ok("close-delimited (Connection: close)", H .. "Connection: close\r\n\r\nuntil the end",
    { body = "until the end", keep_alive = false }),
  ok("close-delimited (no framing at all)", H .. "Content-Type: text/plain\r\n\r\nbody\r\n\r\nmore",
    { body = "body\r\n\r\nmore", keep_alive = false }),
  ok("close-delimited, empty", H .. "\r\n", { body = "", keep_alive = false }),
  ok("HTTP/1.0 with Content-Length", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
    { minor = 0, body = "old", keep_alive = false }),
  ok("HTTP/1.0 asking for keep-alive still closes",
    "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold", { keep_alive = false }),
  ok("Connection: close among other tokens, any case",
    H .. "Connection: Upgrade, CLOSE\r\nContent-Length: 2\r\n\r\nok", { body = "ok", keep_alive = false }),
  ok("Connection: keep-alive", H .. "Connection: keep-alive\r\nContent-Length: 2\r\n\r\nok", { keep_alive = true }),
  ok("204 has no body", "HTTP/1.1 204\r\n\r\n", { status = 204, body = "", keep_alive = true }),
  ok("204 ignores Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
    { status = 204, body = "" }),
  ok("304 ignores Transfer-Encoding", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    { status = 304, body = "", keep_alive = true }),
  ok("HEAD: Content-Length without a body", H .. "Content-Length: 100\r\n\r\n",
    { body = "", keep_alive = true }, { head = true }),
  ok("HEAD: larger than max_body is fine", H .. "Content-Length: 100\r\n\r\n", { body = "" },
    { head = true, max_body = 10 }),
  ok("HEAD: chunked without a body", CHUNKED, { body = "" }, { head = true }),
  ok("HEAD: no framing is still no body", H .. "Connection: close\r\n\r\n", { body = "", keep_alive = false },
    { head = true }),
  ok("100 Continue is skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    { status = 201, body = "ok" }),
  ok("103 Early Hints with headers, then the response",
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nX-B: b\r\nContent-Length: 0\r\n\r\n",
    { headers = { ["x-b"] = "b", ["content-length"] = "0" }, body = "" }),
  ok("five 1xx responses are skipped",
    rep("HTTP/1.1 100 Continue\r\n\r\n", 5) .. H .. "Content-Length: 0\r\n\r\n", { status = 200, body = "" }),
  ok("no reason phrase, a reason with obs-text and HT",
    "HTTP/1.1 200 \tD\195\169j\195\160 vu\r\nContent-Length: 0\r\n\r\n", { status = 200 }),
  ok("status codes above 599", "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", { status = 999 }),
  ok("header values: trimmed, empty ones add nothing when joined, names lower-cased",
    H .. "X-Pad: \t spaced  value \t \r\nX-Empty:\r\nX-J: 1\r\nx-j:\r\nX-J:  2\r\nX-E2:\r\nX-E2: e\r\n"
      .. "Content-Length: 0\r\n\r\n",
    { headers = { ["x-pad"] = "spaced  value", ["x-empty"] = "", ["x-j"] = "1, 2", ["x-e2"] = "e",
                  ["content-length"] = "0" } }),
  ok("header values may hold obs-text, quotes and colons",
    H .. "X-V: \"a:b\" \200\255\r\nContent-Length: 0\r\n\r\n",
    { headers = { ["x-v"] = "\"a:b\" \200\255", ["content-length"] = "0" } }),
  ok("every token character in a name", H .. "!#$%&'*+-.^_`|~09azAZ: v\r\nContent-Length: 0\r\n\r\n",
    { headers = { ["!#$%&'*+-.^_`|~09azaz"] = "v", ["content-length"] = "0" } }),
}

local MALFORMED = {
  bad("Transfer-Encoding and Content-Length",
    H .. "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "invalid_response", "both Transfer-Encoding and Content-Length"),
  bad("Transfer-Encoding gzip", H .. "Transfer-Encoding: gzip\r\n\r\n", "invalid_response",
    "unsupported Transfer-Encoding"),
  bad("Transfer-Encoding gzip, chunked", H .. "Transfer-Encoding: gzip, chunked\r\n\r\n", "invalid_response",
    "unsupported Transfer-Encoding"),
  bad("Transfer-Encoding chunked twice", H .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "invalid_response", "unsupported Transfer-Encoding"),
  bad("obs-fold (SP)", H .. "X-A: 1\r\n continued\r\nContent-Length: 0\r\n\r\n", "invalid_response",
    "folded header line"),
  bad("obs-fold (HT)", H .. "X-A: 1\r\n\tcontinued\r\nContent-Length: 0\r\n\r\n", "invalid_response",
    "folded header line"),
  bad("control character in a value", H .. "X-A: a\1b\r\nContent-Length: 0\r\n\r\n", "invalid_response",
    "control character in a header value"),
  bad("NUL in a value", H .. "X-A: a\0b\r\n\r\n", "invalid_response", "control character in a header value"),
  bad("DEL in a value", H .. "X-A: a\127\r\n\r\n", "invalid_response", "control character in a header value"),
  bad("bare CR in a value", H .. "X-A: a\rb\r\n\r\n", "invalid_response", "control character in a header value"),
  bad("bare LF in a value", H .. "X-A: a\nX-B: b\r\n\r\n", "invalid_response",
    "control character in a header value"),
  bad("a line ended by LF alone runs on to the next CRLF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "invalid_response", "control character in the status line"),
  bad("control character in the status line", "HTTP/1.1 200 O\1K\r\n\r\n", "invalid_response",
    "control character in the status line"),
  bad("HTTP/2", "HTTP/2 200\r\nContent-Length: 0\r\n\r\n", "invalid_response", "malformed status line"),
  bad("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("lower-case http", "http/1.1 200 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("no space after the status", "HTTP/1.1 200OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("status below 100", "HTTP/1.1 099 Odd\r\n\r\n", "invalid_response", "malformed status line"),
  bad("two spaces before the status", "HTTP/1.1  200 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid_response", "malformed status line"),
  bad("empty status line", "\r\nHTTP/1.1 200 OK\r\n\r\n", "invalid_response", "malformed status line"),
  bad("space in a name", H .. "X A: 1\r\nContent-Length: 0\r\n\r\n", "invalid_response", "malformed header line"),
  bad("space before the colon", H .. "X-A : 1\r\n\r\n", "invalid_response", "malformed header line"),
  bad("empty name", H .. ": value\r\n\r\n", "invalid_response", "malformed header line"),
  bad("no colon", H .. "NoColon\r\n\r\n", "invalid_response", "malformed header line"),
  bad("separator in a name", H .. "X(A): 1\r\n\r\n", "invalid_response", "malformed header line"),
  bad("Content-Length 5, 6", H .. "Content-Length: 5, 6\r\n\r\nhello", "invalid_response",
    "malformed Content-Length"),
  bad("Content-Length sent twice, different", H .. "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "invalid_response", "malformed Content-Length"),
  bad("Content-Length -1", H .. "Content-Length: -1\r\n\r\n", "invalid_response", "malformed Content-Length"),
  bad("Content-Length +5", H .. "Content-Length: +5\r\n\r\n", "invalid_response", "malformed Content-Length"),
  bad("Content-Length empty", H .. "Content-Length:\r\n\r\n", "invalid_response", "malformed Content-Length"),
  bad("Content-Length hex", H .. "Content-Length: 0x10\r\n\r\n", "invalid_response", "malformed Content-Length"),
  bad("Content-Length 1e3", H .. "Content-Length: 1e3\r\n\r\n", "invalid_response", "malformed Content-Length"),
  bad("Content-Length of 16 digits", H .. "Content-Length: 1000000000000000\r\n\r\n", "invalid_response",
    "malformed Content-Length"),
  bad("chunk size not hex", CHUNKED .. "zz\r\nhello\r\n0\r\n\r\n", "invalid_response", "malformed chunk size",
    nil, { status = 200 }),
  bad("chunk size of 9 digits", CHUNKED .. "fffffffff\r\nhello\r\n0\r\n\r\n", "invalid_response",
    "malformed chunk size", nil, { status = 200 }),
  bad("empty chunk size line", CHUNKED .. "\r\n", "invalid_response", "malformed chunk size", nil,
    { status = 200 }),
  bad("negative chunk size", CHUNKED .. "-5\r\nhello\r\n0\r\n\r\n", "invalid_response", "malformed chunk size",
    nil, { status = 200 }),
  bad("junk after the chunk size", CHUNKED .. "5 x\r\nhello\r\n0\r\n\r\n", "invalid_response",
    "malformed chunk size", nil, { status = 200 }),
  bad("blank before the chunk size", CHUNKED .. " 5\r\nhello\r\n0\r\n\r\n", "invalid_response",
    "malformed chunk size", nil, { status = 200 }),
  bad("chunk not followed by CRLF", CHUNKED .. "5\r\nhelloXX0\r\n\r\n", "invalid_response",
    "chunk not followed by CRLF", nil, { status = 200, trace = "response data error", body = "hello" }),
  bad("chunk followed by LF only", CHUNKED .. "5\r\nhello\n0\r\n\r\n", "invalid_response",
    "chunk not followed by CRLF", nil, { status = 200, trace = "response data error", body = "hello" }),
  bad("chunk followed by CR only", CHUNKED .. "5\r\nhello\r0\r\n\r\n", "invalid_response",
    "chunk not followed by CRLF", nil, { status = 200, trace = "response data error", body = "hello" }),
  bad("101 Switching Protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "invalid_response",
    "unexpected protocol switch (101)"),
  bad("six 1xx responses", rep("HTTP/1.1 100 Continue\r\n\r\n", 6) .. H .. "Content-Length: 0\r\n\r\n",
    "invalid_response", "too many 1xx responses"),
  bad("a malformed 1xx", "HTTP/1.1 100 Continue\r\nX A: 1\r\n\r\n" .. H .. "Content-Length: 0\r\n\r\n",
    "invalid_response", "malformed header line"),
}

local INCOMPLETE = {
  bad("nothing at all", "", "incomplete", "connection closed before any response arrived"),
  bad("EOF in the status line", "HTTP/1.1 20", "incomplete",
    "connection closed before the end of the response headers"),
  bad("lines ended by LF alone never end", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", "incomplete",
    "connection closed before the end of the response headers"),
  bad("EOF in the headers", H .. "Content-Length: 5\r\n", "incomplete",
    "connection closed before the end of the response headers"),
  bad("EOF after a 1xx", "HTTP/1.1 100 Continue\r\n\r\n", "incomplete",
    "connection closed before the end of the response headers"),
  bad("EOF in a Content-Length body", H .. "Content-Length: 100\r\n\r\nonly this", "incomplete",
    "connection closed before the end of the response body", nil,
    { status = 200, body = "only this", trace = "response data error" }),
  bad("EOF before a Content-Length body", H .. "Content-Length: 1\r\n\r\n", "incomplete",
    "connection closed before the end of the response body", nil, { status = 200 }),
  bad("EOF in a chunk size line", CHUNKED .. "5", "incomplete",
    "connection closed before the end of the response body", nil, { status = 200 }),
  bad("EOF in chunk data", CHUNKED .. "5\r\nhel", "incomplete",
    "connection closed before the end of the response body", nil,
    { status = 200, body = "hel", trace = "response data error" }),
  bad("EOF before the chunk's CRLF", CHUNKED .. "5\r\nhello\r", "incomplete",
    "connection closed before the end of the response body", nil,
    { status = 200, body = "hello", trace = "response data error" }),
  bad("EOF before the last chunk", CHUNKED .. "5\r\nhello\r\n", "incomplete",
    "connection closed before the end of the response body", nil,
    { status = 200, body = "hello", trace = "response data error" }),
  bad("EOF in the trailers", CHUNKED .. "0\r\nX-T: 1\r\n", "incomplete",
    "connection closed before the end of the response body", nil, { status = 200 }),
}

-- Limits, small enough here that every split is tried.
local SMALL = { max_header_bytes = 64, max_headers = 3, max_body = 10 }
local LIMITS = {
  ok("header block of exactly max_header_bytes", H .. "X: " .. rep("a", 64 - 17 - 7) .. "\r\n\r\n",
    { body = "", keep_alive = false }, SMALL),
  bad("header block one byte over", H .. "X: " .. rep("a", 64 - 17 - 6) .. "\r\n\r\n", "too_large",
    "response headers larger than 64 bytes", SMALL, { limit = "header_bytes" }),
  bad("header block over, without a single CRLF", rep("x", 200), "too_large",
    "response headers larger than 64 bytes", SMALL),
  bad("header block over, ending in CR", rep("x", 63) .. "\r", "too_large",
    "response headers larger than 64 bytes", SMALL),
  ok("max_headers fields", H .. "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", { body = "" }, SMALL),
  bad("one field more", H .. "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", "too_large", "more than 3 header fields",
    SMALL, { limit = "headers" }),
  bad("repeated fields count one by one", H .. "A: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\n\r\n", "too_large",
    "more than 3 header fields", SMALL),
  ok("each 1xx block has its own budget",
    "HTTP/1.1 103 Hints\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n" .. H .. "A: 1\r\nB: 2\r\nC: 3\r\n\r\n",
    { body = "" }, SMALL),
  ok("Content-Length of exactly max_body", H .. "Content-Length: 10\r\n\r\n0123456789",
    { body = "0123456789" }, SMALL),
  bad("Content-Length over max_body (before the body)", H .. "Content-Length: 11\r\n\r\n0123456789x",
    "too_large", "response body of 11 bytes is larger than 10 bytes", SMALL, { limit = "body" }),
  ok("chunked body of exactly max_body", CHUNKED .. "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
    { body = "0123456789" }, SMALL),
  bad("chunked body over max_body (before the chunk)", CHUNKED .. "5\r\n01234\r\n6\r\n56789x\r\n0\r\n\r\n",
    "too_large", "response body larger than 10 bytes", SMALL,
    { status = 200, body = "01234", trace = "response data error", limit = "body" }),
  ok("close-delimited body of exactly max_body", H .. "\r\n0123456789", { body = "0123456789" }, SMALL),
  bad("close-delimited body over max_body: delivered up to max_body, then an error", H .. "\r\n0123456789xyz",
    "too_large", "response body larger than 10 bytes", SMALL,
    { status = 200, body = "0123456789", trace = "response data error", limit = "body" }),
  -- 47 bytes of header block, 8 of trailers
  ok("trailers within the header block's budget",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n\r\n", { body = "" },
    { max_header_bytes = 55, max_headers = 2 }),
  bad("trailers beyond the header block's byte budget",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 12\r\n\r\n", "too_large",
    "response headers larger than 55 bytes", { max_header_bytes = 55 }, { status = 200 }),
  bad("trailers beyond the header block's field budget",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n", "too_large",
    "more than 2 header fields", { max_headers = 2 }, { status = 200 }),
  ok("chunk size line of MAX_CHUNK_LINE bytes", CHUNKED .. "1;" .. rep("e", http1.MAX_CHUNK_LINE - 2)
    .. "\r\nx\r\n0\r\n\r\n", { body = "x" }),
  bad("chunk size line one byte longer", CHUNKED .. "1;" .. rep("e", http1.MAX_CHUNK_LINE - 1)
    .. "\r\nx\r\n0\r\n\r\n", "too_large", "chunk size line longer than 4096 bytes", nil,
    { status = 200, limit = "chunk_line" }),
  ok("max_body 0 allows an empty body", H .. "Content-Length: 0\r\n\r\n", { body = "" }, { max_body = 0 }),
}

local function sections()
  return { { "framing", FRAMING }, { "malformed", MALFORMED }, { "incomplete", INCOMPLETE },
           { "limits", LIMITS } }
end

describe("http1.response", function()
  for _, section in ipairs(sections()) do
    describe(section[1], function()
      for _, case in ipairs(section[2]) do
        it(case.name, function() check(case) end)
      end
    end)
  end

  describe("the curl transport's limits", function()
    it("are exported", function()
      assert.equal(256 * 1024, http1.MAX_HEADER_BYTES)
      assert.equal(1000, http1.MAX_HEADERS)
      assert.equal(4096, http1.MAX_CHUNK_LINE)
      assert.equal(5, http1.MAX_INTERIM)
      assert.equal(16 * 1024 * 1024, http1.DEFAULT_MAX_BODY)
    end)

    -- a header block of exactly `size` bytes: status line, X-Big, N small fields, empty line
    local function block(size, fields)
      local small = rep("A: 1\r\n", fields - 1)
      local fixed = #H + #"X-Big: \r\n" + #small + 2
      return H .. "X-Big: " .. rep("b", size - fixed) .. "\r\n" .. small .. "\r\n"
    end

    local function check_large(name, input, want, opts)
      local whole = run({ input }, opts)
      for k, v in pairs(want) do assert.same(v, whole[k], name .. ": " .. k) end
      for _, size in ipairs { 1, 7, 4096, 65536 } do
        assert.same(whole, run(pieces_of(input, size), opts), name .. ": " .. size .. "-byte pieces")
      end
    end

    it("256 KiB of header block and 1000 fields pass, one byte or one field more does not", function()
      local max, n = http1.MAX_HEADER_BYTES, http1.MAX_HEADERS
      check_large("at the limits", block(max, n), { trace = "response end", body = "" })
      check_large("one byte over", block(max + 1, n),
        { trace = "error", code = "too_large", message = "response headers larger than 262144 bytes" })
      check_large("one field over", block(max, n + 1),
        { trace = "error", code = "too_large", message = "more than 1000 header fields" })
    end)

    it("the default max_body is 16 MiB", function()
      local n = http1.DEFAULT_MAX_BODY
      local out = run({ H .. "Content-Length: " .. (n + 1) .. "\r\n\r\n" })
      assert.equal("too_large", out.code)
      assert.equal("response body of 16777217 bytes is larger than 16777216 bytes", out.message)
      out = run({ H .. "Content-Length: " .. n .. "\r\n\r\n", rep("x", n) })
      assert.equal("response data end", out.trace)
      assert.equal(n, #out.body)
    end)
  end)

  describe("state", function()
    it("an error is terminal: next() returns the same error, fed bytes are dropped", function()
      local p = http1.response()
      p:feed("HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n")
      local ev, err = p:next()
      assert.is_nil(ev)
      assert.equal("invalid_response", err.code)
      assert.equal("malformed header line", tostring(err))
      p:feed(H .. "Content-Length: 0\r\n\r\n")
      assert.equal(0, p:buffered())
      for _ = 1, 3 do
        local ev2, err2 = p:next()
        assert.is_nil(ev2)
        assert.equal(err, err2)
      end
      p:feed_eof()
      assert.equal(err, select(2, p:next()))
    end)

    it("after the end: 'done' for ever, and the bytes beyond the response stay buffered", function()
      for _, size in ipairs { 1, 3, 1000 } do
        local p = http1.response()
        for _, s in ipairs(pieces_of(H .. "Content-Length: 2\r\n\r\nokEXTRA", size)) do p:feed(s) end
        assert.equal("response", p:next().type)
        local body = {}
        local ev = p:next()
        while ev.type == "data" do body[#body + 1] = ev.data; ev = p:next() end
        assert.equal("ok", concat(body))
        assert.same({ type = "end", keep_alive = true }, ev)
        assert.equal(5, p:buffered())
        assert.equal("done", p:next())
        p:feed("more")
        assert.equal(9, p:buffered())
        p:feed_eof()
        assert.equal("done", p:next())
      end
    end)

    it("asks for data until there is enough, and delivers the body as it arrives", function()
      local p = http1.response()
      assert.equal("need_data", p:next())
      p:feed(H .. "Content-Length: 6\r\n\r")
      assert.equal("need_data", p:next())
      p:feed("\nabc")
      assert.equal(200, p:next().status)
      assert.same({ type = "data", data = "abc" }, p:next())
      assert.equal("need_data", p:next())
      assert.equal("need_data", p:next())
      p:feed("def")
      assert.same({ type = "data", data = "def" }, p:next())
      assert.same({ type = "end", keep_alive = true }, p:next())
    end)

    it("raises on misuse, never on what the peer sends", function()
      assert.has_error(function() http1.response("x") end,
        "bad argument #1 to 'http1.response' (table expected, got string)")
      assert.has_error(function() http1.response { max_body = -1 } end)
      assert.has_error(function() http1.response { max_headers = "10" } end)
      local p = http1.response()
      assert.has_error(function() p:feed(nil) end, "bad argument #1 to 'feed' (string expected, got nil)")
      p:feed_eof()
      assert.has_error(function() p:feed("x") end, "http1: feed after feed_eof")
    end)
  end)

  -- Each byte is touched a bounded number of times however the input is split. Counted, not
  -- timed: every call of a string function the parser makes is charged the bytes it may scan or
  -- copy (find: up to the match, sub/concat/lower: the result, match/gmatch: from the start).
  describe("linear work", function()
    -- a private copy of the module whose `string` and `table` charge every call to `cost`
    local function counting_parser()
      local cost = { bytes = 0 }
      local function charge(n) cost.bytes = cost.bytes + n end
      local S, T = string, table
      local str = setmetatable({
        find = function(s, pat, init, plain)
          local a, b = S.find(s, pat, init, plain)
          init = init or 1
          if init < 0 then init = #s + init + 1 end
          charge((b or #s) - init + 1)
          return a, b
        end,
        sub = function(...) local r = S.sub(...); charge(#r); return r end,
        match = function(s, ...) charge(#s); return S.match(s, ...) end,
        gmatch = function(s, ...) charge(#s); return S.gmatch(s, ...) end,
        lower = function(s) charge(#s); return S.lower(s) end,
        byte = function(s, i, j)
          i = i or 1
          charge(1 + math.max(0, (j or i) - i))
          return S.byte(s, i, j)
        end,
      }, { __index = S })
      local tab = setmetatable({
        concat = function(...) local r = T.concat(...); charge(#r); return r end,
      }, { __index = T })
      local env = setmetatable({ string = str, table = tab }, { __index = _G })
      local path = assert(package.searchpath("dbxauth.http1", package.path))
      local f = assert(io.open(path, "rb"))
      local src = f:read("*a")
      f:close()
      local chunk
      if setfenv then
        chunk = assert(loadstring(src, "=http1"))
        setfenv(chunk, env)
      else
        chunk = assert(load(src, "=http1", "t", env))
      end
      return chunk(), cost
    end

    local function drive(mod, input, size)
      local p = mod.response()
      local i, events = 1, 0
      while true do
        local ev, err = p:next()
        assert(ev, err and err.message)
        if ev == "done" then break end
        if ev == "need_data" then
          if i > #input then p:feed_eof() else p:feed(input:sub(i, i + size - 1)); i = i + size end
        else
          events = events + 1
        end
      end
      return events
    end

    -- ~200 KB of header block: one 100 KB field, 900 short ones, then a 50 KB chunked body
    local input = H .. "X-Big: " .. rep("v", 100 * 1024) .. "\r\n" .. rep("X-Field: some value\r\n", 900)
      .. "Transfer-Encoding: chunked\r\n\r\n" .. rep("400\r\n" .. rep("d", 1024) .. "\r\n", 50) .. "0\r\n\r\n"

    for _, size in ipairs { 1, 5, 1024, #input } do
      it("a 200 KB header block fed in " .. size .. "-byte pieces", function()
        local mod, cost = counting_parser()
        local events = drive(mod, input, size)
        assert.is_true(events >= 3)
        -- linear: a few string-function bytes per input byte (quadratic would be ~10^10)
        assert.is_true(cost.bytes < 12 * #input, cost.bytes .. " bytes of work for " .. #input .. " bytes")
      end)
    end
  end)
end)

describe("http1.request", function()
  it("serialises a request: Host first, headers sorted, Content-Length for bodies", function()
    assert.equal("GET /a?b=c HTTP/1.1\r\nHost: h.example\r\nAccept: */*\r\nX-Z: z\r\n\r\n",
      http1.request("GET", "/a?b=c", "h.example", { ["X-Z"] = "z", Accept = "*/*" }))
    assert.equal("POST /t HTTP/1.1\r\nHost: h:8443\r\nContent-Length: 3\r\n\r\na=b",
      http1.request("POST", "/t", "h:8443", nil, "a=b"))
    assert.equal("POST /t HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", http1.request("POST", "/t", "h"))
    assert.equal("PUT /t HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", http1.request("PUT", "/t", "h", {}))
    assert.equal("DELETE /t HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
      http1.request("DELETE", "/t", "h", {}, "x"))
    assert.equal("GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-E: \r\n\r\n",
      http1.request("GET", "/", "[::1]:80", { ["X-E"] = "" }))
  end)

  local REFUSED = {
    { "lower-case method", { "get", "/", "h" }, "invalid_request", "invalid method" },
    { "method with a space", { "GET /x", "/", "h" }, "invalid_request", "invalid method" },
    { "no method", { nil, "/", "h" }, "invalid_request", "invalid method" },
    { "target with a space", { "GET", "/a b", "h" }, "invalid_request", "invalid request target" },
    { "target with CRLF", { "GET", "/a\r\nX: 1", "h" }, "invalid_request", "invalid request target" },
    { "empty target", { "GET", "", "h" }, "invalid_request", "invalid request target" },
    { "Host with CRLF", { "GET", "/", "h\r\nX: 1" }, "invalid_request", "invalid Host" },
    { "body not a string", { "POST", "/", "h", nil, 5 }, "invalid_request", "body must be a string" },
    { "headers not a table", { "GET", "/", "h", "X: 1" }, "invalid_header", "headers must be a table" },
    { "name with a space", { "GET", "/", "h", { ["X A"] = "1" } }, "invalid_header", "invalid header name" },
    { "name with a colon", { "GET", "/", "h", { ["X:"] = "1" } }, "invalid_header", "invalid header name" },
    { "empty name", { "GET", "/", "h", { [""] = "1" } }, "invalid_header", "invalid header name" },
    { "numeric name", { "GET", "/", "h", { "v" } }, "invalid_header", "invalid header name" },
    { "value not a string", { "GET", "/", "h", { X = 1 } }, "invalid_header", 'header "X" must be a string' },
    { "CR LF in a value", { "GET", "/", "h", { X = "a\r\nY: b" } }, "invalid_header",
      'header "X" contains CR, LF or NUL' },
    { "LF in a value", { "GET", "/", "h", { X = "a\nb" } }, "invalid_header", 'header "X" contains CR, LF or NUL' },
    { "NUL in a value", { "GET", "/", "h", { X = "a\0b" } }, "invalid_header", 'header "X" contains CR, LF or NUL' },
  }
  for _, name in ipairs { "Host", "content-length", "Transfer-Encoding", "CONNECTION", "TE", "Upgrade", "Trailer" } do
    REFUSED[#REFUSED + 1] = { name, { "GET", "/", "h", { [name] = "x" } }, "invalid_header",
                              'header "' .. name .. '" is set by the transport' }
  end

  for _, row in ipairs(REFUSED) do
    it("refuses: " .. row[1], function()
      local a = row[2]
      local out, err = http1.request(a[1], a[2], a[3], a[4], a[5])
      assert.is_nil(out)
      assert.equal(row[3], err.code)
      assert.equal(row[4], err.message)
    end)
  end
end)
