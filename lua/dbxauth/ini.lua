-- .databrickscfg parser in the Go SDK's dialect (go-ini v1.67 with SpaceBeforeInlineComment),
-- decision D4 of the notes. The Go SDK and CLI write and read these files, so matching their
-- reader means a profile behaves the same in dbxauth as in the tools that created it.
--
--   local sections, err = ini.parse(text, path)
--   sections["my-profile"].host                 -- values are plain strings
--   sections.__order                            -- section names in file order
--
-- Error messages name the line, never its content: a line of a credentials file may hold a secret.
local _M = {}

local DEFAULT_SECTION = "DEFAULT"
local ORDER_KEY = "__order"
local BOM = "\239\187\191"

local texts = require "dbxauth.text"
local trim, ltrim = texts.trim, texts.ltrim

-- Plain-text last occurrence of needle in s (nil when absent).
local function last_index(s, needle)
  local last
  local from = 1
  while true do
    local i = s:find(needle, from, true)
    if not i then return last end
    last, from = i, i + 1
  end
end

local function split_lines(text)
  local lines = {}
  local from = 1
  while from <= #text do
    local nl = text:find("\n", from, true)
    if not nl then
      lines[#lines + 1] = text:sub(from)
      break
    end
    lines[#lines + 1] = text:sub(from, nl - 1)
    from = nl + 1
  end
  return lines
end

-- Parser state: the lines, the index of the line being read and the error prefix.
local Parser = {}
Parser.__index = Parser

function Parser:fail(msg, lineno)
  local where = "line " .. (lineno or self.i) .. ": "
  if self.path then where = self.path .. ": " .. where end
  return nil, where .. msg
end

-- Next raw line, or nil at end of input.
function Parser:next_line()
  self.i = self.i + 1
  return self.lines[self.i]
end

-- Returns the section table for name, creating and ordering it on first sight. Duplicate
-- section headers therefore merge, as in go-ini. "__order" cannot be a section because the
-- result table uses that key for the order list; its keys go to a throwaway table.
function Parser:section(name)
  if name == ORDER_KEY then return {} end
  local s = self.sections[name]
  if not s then
    s = {}
    self.sections[name] = s
    local order = self.sections[ORDER_KEY]
    order[#order + 1] = name
  end
  return s
end

-- `[name]`: everything up to the LAST `]` is the name, untrimmed (go-ini does not trim it).
function Parser:read_section_header(line)
  local close = last_index(line, "]")
  if not close then return self:fail("unclosed section header") end
  local name = line:sub(2, close - 1)
  if name == "" then return self:fail("empty section name") end
  self.current = self:section(name)
  return true
end

-- Key name and the rest of the line after the delimiter. go-ini also accepts key names wrapped
-- in `"`, `"""` or backticks, so a key may contain `=` or `:`.
function Parser:read_key(line)
  local quote
  if line:sub(1, 3) == '"""' and #line > 6 then
    quote = '"""'
  elseif line:sub(1, 1) == '"' or line:sub(1, 1) == "`" then
    quote = line:sub(1, 1)
  end
  if quote then
    local close = line:find(quote, #quote + 1, true)
    if not close then return self:fail("missing closing key quote") end
    local delim = line:find("[=:]", close + #quote)
    if not delim then return self:fail("key-value delimiter not found") end
    return trim(line:sub(#quote + 1, close - 1)), line:sub(delim + 1)
  end
  local delim = line:find("[=:]")
  if not delim then return self:fail("key-value delimiter not found") end
  if delim == 1 then return self:fail("empty key name") end
  return trim(line:sub(1, delim - 1)), line:sub(delim + 1)
end

-- `"""…"""` and backtick values are raw and may span lines; the text after the closing quote is
-- dropped (it can only be a comment).
function Parser:read_raw_value(v, quote)
  local body = v:sub(#quote + 1)
  local close = last_index(body, quote)
  if close then return body:sub(1, close - 1) end
  local start = self.i
  local parts = { body }
  while true do
    local nxt = self:next_line()
    if not nxt then
      return self:fail("missing closing " .. quote .. " value quote", start)
    end
    close = last_index(nxt, quote)
    if close then
      parts[#parts + 1] = nxt:sub(1, close - 1)
      return table.concat(parts, "\n")
    end
    parts[#parts + 1] = nxt
  end
end

-- A trailing backslash joins the next (trimmed) lines until one does not end in `\` or a
-- blank line is met. As in go-ini, the joined value gets no comment or quote processing.
function Parser:read_continuation(v)
  -- parts, joined once: appending line by line is quadratic in a long run of continuations
  local parts = { v:sub(1, -2) }
  while true do
    local nxt = self:next_line()
    nxt = nxt and trim(nxt) or ""
    if nxt == "" then return table.concat(parts) end
    if nxt:sub(-1) ~= "\\" then
      parts[#parts + 1] = nxt
      return table.concat(parts)
    end
    parts[#parts + 1] = nxt:sub(1, -2)
  end
end

-- go-ini's hasSurroundedQuote: wrapped in q and no other q inside.
local function surrounded(s, q)
  return #s >= 2 and s:sub(1, 1) == q and s:sub(-1) == q and not s:sub(2, -2):find(q, 1, true)
end

-- Inline comments need a space before them so that `#` and `;` inside secrets survive
-- (databricks-sdk-go issue 594). Quotes are stripped only after the comment is gone, exactly
-- as go-ini does: `password = "%Y#X$Z" # comment` gives %Y#X$Z.
local function plain_value(v)
  local cut = v:find(" #", 1, true) or v:find(" ;", 1, true)
  if cut then
    -- go-ini keeps the whitespace left before the comment; the notes' "value trimmed" rule
    -- wins here because a trailing blank in a token or host is never intended.
    v = trim(v:sub(1, cut - 1))
  end
  if surrounded(v, '"') or surrounded(v, "'") then v = v:sub(2, -2) end
  return v
end

function Parser:read_value(rest)
  local v = ltrim(rest)
  if v == "" then return "" end
  if #v > 3 and v:sub(1, 3) == '"""' then return self:read_raw_value(v, '"""') end
  if v:sub(1, 1) == "`" then return self:read_raw_value(v, "`") end
  v = trim(v)
  if v:sub(-1) == "\\" then return self:read_continuation(v) end
  return plain_value(v)
end

function Parser:read_key_value(line)
  local key, rest = self:read_key(line)
  if not key then return nil, rest end
  local value, err = self:read_value(rest)
  if not value then return nil, err end
  -- Keys before any header land in DEFAULT (created lazily so an empty file has no sections).
  self.current = self.current or self:section(DEFAULT_SECTION)
  self.current[key] = value -- last duplicate wins
  return true
end

function Parser:read_line(raw)
  local line = ltrim(raw)
  local first = line:sub(1, 1)
  if line == "" or first == "#" or first == ";" then return true end
  if first == "[" then return self:read_section_header(line) end
  return self:read_key_value(line)
end

-- text: file contents; path (optional): used only to prefix error messages.
-- Returns sections | nil, message.
function _M.parse(text, path)
  if type(text) ~= "string" then
    error("bad argument #1 to 'parse' (string expected, got " .. type(text) .. ")", 2)
  end
  if text:sub(1, 3) == BOM then text = text:sub(4) end
  local p = setmetatable({
    lines = split_lines(text), i = 0, path = path, current = nil,
    sections = { [ORDER_KEY] = {} },
  }, Parser)
  while true do
    local raw = p:next_line()
    if not raw then break end
    local ok, err = p:read_line(raw)
    if not ok then return nil, err end
  end
  return p.sections
end

_M.DEFAULT_SECTION = DEFAULT_SECTION
return _M
