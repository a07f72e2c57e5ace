-- JSON with a fixed key order and two-space indent, as the Databricks CLI prints it.
--   local out = require "dbxauth.cli.output"
--   out.json(out.obj("profile", "dev", "host", "https://h"))
local cjson = require "cjson.safe"

local _M = {}


local Object = {}
Object.__index = Object

-- obj("k1", v1, "k2", v2, ...): nil values are left out.
local function obj(...)
  local o = setmetatable({ keys = {}, vals = {} }, Object)
  local n = select("#", ...)
  for i = 1, n, 2 do
    local k, v = select(i, ...)
    if v ~= nil then o:set(k, v) end
  end
  return o
end

function Object:set(k, v)
  if self.vals[k] == nil then self.keys[#self.keys + 1] = k end
  self.vals[k] = v
end

local function scalar(v)
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  local s = assert(cjson.encode(v))
  return (s:gsub("\\/", "/"))
end

local function encode(v, indent, out)
  local inner = indent .. "  "
  if getmetatable(v) == Object then
    if #v.keys == 0 then out[#out + 1] = "{}"; return end
    out[#out + 1] = "{"
    for i, k in ipairs(v.keys) do
      out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner .. scalar(k) .. ": "
      encode(v.vals[k], inner, out)
    end
    out[#out + 1] = "\n" .. indent .. "}"
  elseif type(v) == "table" then
    if #v == 0 then out[#out + 1] = "[]"; return end
    out[#out + 1] = "["
    for i, item in ipairs(v) do
      out[#out + 1] = (i > 1 and ",\n" or "\n") .. inner
      encode(item, inner, out)
    end
    out[#out + 1] = "\n" .. indent .. "]"
  else
    out[#out + 1] = scalar(v)
  end
end

local function json(v)
  local out = {}
  encode(v, "", out)
  return table.concat(out)
end
_M.json, _M.obj, _M.Object = json, obj, Object
_M.NULL = cjson.null

-- Rows as Go's tabwriter prints them with the CLI's settings (min width 0, padding 2, spaces):
-- every cell but the last of a row padded to its column's widest cell plus two.
function _M.table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i = 1, #row - 1 do
      widths[i] = math.max(widths[i] or 0, #row[i])
    end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and (cell .. string.rep(" ", widths[i] - #cell + 2)) or cell
    end
    out[#out + 1] = table.concat(cells) .. "\n"
  end
  return table.concat(out)
end

return _M
