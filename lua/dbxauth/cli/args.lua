-- Command-line parsing for the `dbxauth` command, with Cobra's habits (the Databricks CLI is
-- a Cobra program): flags anywhere among the arguments, `--flag value` and `--flag=value`,
-- shorthands `-p value`, `-pvalue` and `-p=value`, `--` ending the flags, and Cobra's error
-- texts. The global flags (`GLOBAL`) are accepted by every command, as the CLI's persistent
-- flags are.
--   local opts, pos = args.parse(spec, list)   opts[name] = value, opts.given[name] = true
local _M = {}

_M.GLOBAL = { profile = "string", host = "string", ["account-id"] = "string", output = "string",
              debug = "bool", help = "bool" }
_M.SHORT = { p = "profile", o = "output", h = "help" }

local function kind_of(spec, name)
  return (spec.flags and spec.flags[name]) or _M.GLOBAL[name]
end

local function set(opts, name, kind, value)
  if kind == "bool" then
    if value == nil or value == "true" then
      opts[name] = true
    elseif value == "false" then
      opts[name] = nil
    else
      return 'invalid argument "' .. value .. '" for "--' .. name .. '" flag: strconv.ParseBool: parsing "'
        .. value .. '": invalid syntax'
    end
  else
    opts[name] = value
  end
  opts.given[name] = true
end

-- One flag at args[i]; returns the index of the next argument | nil, message.
local function flag(spec, args, i, opts)
  local a = args[i]
  local name, value, label
  if a:sub(1, 2) == "--" then
    name, value = a:match("^%-%-([^=]+)=(.*)$")
    name = name or a:sub(3)
    label = "--" .. name
    if not kind_of(spec, name) then return nil, "unknown flag: --" .. name end
  else
    local short = a:sub(2, 2)
    name = _M.SHORT[short]
    if not name then return nil, "unknown shorthand flag: '" .. short .. "' in " .. a end
    label = "-" .. short
    local rest = a:sub(3)
    if rest ~= "" then value = rest:gsub("^=", "") end
  end
  local kind = kind_of(spec, name)
  if kind ~= "bool" and value == nil then
    i = i + 1
    value = args[i]
    if value == nil then return nil, "flag needs an argument: " .. label end
  end
  local bad = set(opts, name, kind, value)
  if bad then return nil, bad end
  return i + 1
end

-- opts, positionals | nil, message
function _M.parse(spec, args)
  local opts, pos = { given = {} }, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      local nxt, err = flag(spec, args, i, opts)
      if not nxt then return nil, err end
      i = nxt
    else
      pos[#pos + 1] = a
      i = i + 1
    end
  end
  if opts.help then return opts, pos end
  local max = spec.positional or 0
  if #pos > max then
    if max == 0 then return nil, 'unknown command "' .. pos[1] .. '" for "dbxauth ' .. spec.name .. '"' end
    return nil, "accepts at most " .. max .. " arg(s), received " .. #pos
  end
  if opts.output then
    local o = opts.output:lower()
    if o ~= "text" and o ~= "json" then
      return nil, 'invalid argument "' .. opts.output .. '" for "-o, --output" flag: accepted arguments are '
        .. "json and text"
    end
    opts.output = o
  end
  return opts, pos
end

-- Seconds from a Go duration ("90s", "5m", "1h30m", "1.5h", "500ms") or plain seconds ("90").
local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600 }
function _M.duration(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%d+%.?%d*$") then
    local n = tonumber(s)
    return n and n > 0 and n or nil
  end
  local total, rest = 0, s
  while rest ~= "" do
    local n, unit, tail = rest:match("^(%d+%.?%d*)(m?[smh])(.*)$")
    if not n or not UNITS[unit] then return nil end
    total = total + tonumber(n) * UNITS[unit]
    rest = tail
  end
  if total <= 0 then return nil end
  return total
end

return _M
