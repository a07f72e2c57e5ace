-- The README's attribute table is complete: every attribute of lua/dbxauth/attributes.lua has a
-- row, with exactly its environment variables, and the table names nothing that is not an
-- attribute. (spec/facade_spec.lua does the same for the troubleshooting table.)
local files = require "spec.support.files"
local attributes = require "dbxauth.attributes"

-- { { names = { ... }, envs = { ... }, line = "..." }, ... } of the table under "## Configuration"
local function attribute_rows()
  local readme = assert(files.read("README.md"))
  local section = assert(readme:match("\n## Configuration\n(.-)\n## "), "README has a Configuration section")
  local table_text = assert(section:match("\n(| attribute | environment variable | notes |\n.-)\n\n"),
    "the Configuration section has the attribute table")
  local rows = {}
  for line in table_text:gmatch("[^\n]+") do
    local c1, c2 = line:match("^| ([^|]*) | ([^|]*) |")
    if c1 and c1 ~= "attribute" and not c1:match("^%-") then
      local row = { names = {}, envs = {}, line = line }
      -- "(alias `x`)" names another spelling of the attribute before it, not a second attribute
      for name in c1:gsub("%(alias [^)]*%)", ""):gmatch("`([%w_]+)`") do row.names[#row.names + 1] = name end
      for env in c2:gmatch("`([%w_]+)`") do row.envs[#row.envs + 1] = env end
      rows[#rows + 1] = row
    end
  end
  return rows
end

local function set(list)
  local t = {}
  for _, v in ipairs(list) do t[v] = true end
  return t
end

describe("the README's attribute table", function()
  local rows = attribute_rows()

  it("has rows", function()
    assert.is_true(#rows > 10)
  end)

  it("has a row for every attribute, with each of its environment variables", function()
    local missing = {}
    for _, a in ipairs(attributes.LIST) do
      local row
      for _, r in ipairs(rows) do
        if set(r.names)[a.name] then row = r end
      end
      if not row then
        missing[#missing + 1] = a.name .. " (no row)"
      else
        local envs = set(row.envs)
        for _, e in ipairs(a.env) do
          if not envs[e] then missing[#missing + 1] = a.name .. ": " .. e end
        end
      end
    end
    assert.same({}, missing)
  end)

  it("names only attributes, and only their own environment variables", function()
    local wrong = {}
    for _, r in ipairs(rows) do
      local own = {}
      for _, name in ipairs(r.names) do
        local a = attributes.BY_NAME[name]
        if not a or a.name ~= name then
          wrong[#wrong + 1] = name .. " is not an attribute"
        else
          for _, e in ipairs(a.env) do own[e] = true end
        end
      end
      for _, e in ipairs(r.envs) do
        if not own[e] then wrong[#wrong + 1] = e .. " is no variable of " .. table.concat(r.names, ", ") end
      end
    end
    assert.same({}, wrong)
  end)

  it("lists each attribute once", function()
    local seen, twice = {}, {}
    for _, r in ipairs(rows) do
      for _, name in ipairs(r.names) do
        if seen[name] then twice[#twice + 1] = name end
        seen[name] = true
      end
    end
    assert.same({}, twice)
  end)
end)

-- The command table and `dbxauth --help` agree: every command has a row, every row is a
-- command, and every flag a command's --help lists is in the README's section on the command.
describe("the README's command table", function()
  local is_jit = type(rawget(_G, "jit")) == "table"
  local function help(args)
    local env = is_jit and "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/jit/?.so;;' luajit"
      or "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' lua5.4"
    local p = assert(io.popen(env .. " bin/dbxauth " .. args .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
  end
  local readme = assert(files.read("README.md"))
  local section = assert(readme:match("\n### The `dbxauth` command\n(.-)\n## "), "README has the command section")

  local commands = {}
  for name in (help("--help"):match("\nAvailable Commands:\n(.-)\n\n") or ""):gmatch("\n?  ([%w-]+)  ") do
    commands[#commands + 1] = name
  end

  it("lists the commands of `dbxauth --help`", function()
    assert.is_true(#commands >= 4, help("--help"))
    local rows = {}
    for name in section:gmatch("\n| `dbxauth ([%w-]+)") do rows[name] = true end
    local want = set(commands)
    assert.same(want, rows)
  end)

  it("names every flag of every command's --help", function()
    local missing = {}
    for _, name in ipairs(commands) do
      for flag in help(name .. " --help"):gmatch("\n%s+%-?%w?,? ?(%-%-[%w-]+)") do
        if flag ~= "--help" and not section:find(flag, 1, true) then
          missing[#missing + 1] = name .. " " .. flag
        end
      end
    end
    assert.same({}, missing)
  end)
end)
