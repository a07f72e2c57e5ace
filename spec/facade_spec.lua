-- The facade shows the whole API: init.lua defines every public method and module function,
-- the README's API section lists the same ones, and no module writes onto the user's object.
local files = require "spec.support.files"

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("the facade", function()
  local init = assert(files.read("lua/dbxauth/init.lua"))
  local readme = assert(files.read("README.md"))
  local api = assert(readme:match("\n## API\n(.-)\n## "), "README has an API section")

  it("init.lua and the README's API section list the same configuration methods", function()
    local defined, listed = {}, {}
    for name in init:gmatch("\nfunction methods:([%w_]+)%(") do defined[name] = true end
    for name in api:gmatch("cfg:([%w_]+)") do listed[name] = true end
    assert.is_true(next(defined) ~= nil)
    assert.same(sorted(defined), sorted(listed))
  end)

  it("init.lua and the README list the same module functions", function()
    local defined, listed = {}, {}
    for name in init:gmatch("\nfunction _M%.([%w_]+)%(") do defined[name] = true end
    for name in init:gmatch("\n_M%.([%w_]+) = ") do defined[name] = true end
    for name in init:gmatch("local _M = { ([%u_]+) = ") do defined[name] = true end
    for name in api:gmatch("dbxauth%.([%w_]+)") do listed[name] = true end
    assert.same(sorted(defined), sorted(listed))
  end)

  it("every method of a configuration object is one that init.lua defines", function()
    local dbxauth = require "dbxauth"
    local cfg = assert(dbxauth.config({ host = "https://h.example.com", token = "dapi-facade" }, { env = {} }))
    local defined = {}
    for name in init:gmatch("\nfunction methods:([%w_]+)%(") do defined[name] = true end
    for name in pairs(defined) do assert.is_function(cfg[name], name) end
    assert.is_nil(next(cfg))                       -- the object has no fields of its own
    assert.has_error(function() cfg.host = "x" end)
  end)

  it("no module calls another's underscore methods or writes onto the configuration object", function()
    local offenders = {}
    local p = io.popen("find lua bin -type f")
    for path in p:lines() do
      local text = files.read(path) or ""
      for line in text:gmatch("[^\n]+") do
        if line:find("[%w_%)%]]:_[%a]") or line:find("rawset%(") then
          offenders[#offenders + 1] = path .. ": " .. line
        end
      end
    end
    p:close()
    assert.same({}, offenders)
  end)

  it("every Lua and C file of the library is under 500 lines", function()
    local long = {}
    local p = io.popen("find lua bin csrc -type f")
    for path in p:lines() do
      local n = select(2, (files.read(path) or ""):gsub("\n", "\n"))
      if n >= 500 then long[#long + 1] = path .. " (" .. n .. ")" end
    end
    p:close()
    assert.same({}, long)
  end)

end)

describe("the README's troubleshooting table", function()
  -- codes that are reasons (err.reason) or internal placeholders, not err.code values
  local NOT_CODES = { resolve = true, recv = true, connect = true, send = true, error = true }

  it("has a row for every error code the library creates", function()
    local readme = assert(files.read("README.md"))
    local documented = {}
    for row in readme:gmatch("\n| (`[^\n]-)|") do
      for code in row:gmatch("`([%w_]+)`") do documented[code] = true end
    end
    local missing = {}
    local p = io.popen("grep -rhoE 'errors\\.new\\(\"[a-z_]+\"|fail\\(\"[a-z_]+\"' lua")
    for line in p:lines() do
      local code = line:match('"([a-z_]+)"')
      if not NOT_CODES[code] and not documented[code] then missing[code] = true end
    end
    p:close()
    assert.same({}, missing)
  end)
end)
