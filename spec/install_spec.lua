-- `make install PREFIX=...` for both trees: it prints the lines a prefix needs, and with exactly
-- those lines (nothing else of this checkout on the path) lua5.4, luajit and nginx load dbxauth
-- from the prefix. A prefix the interpreter searches already gets no lines.
local files = require "spec.support.files"

local q = files.q

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__rc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(rc)
end

local CLEAN = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4"

-- The `export NAME="value"` lines of make's output, as { NAME = value }.
local function exports(out)
  local t = {}
  for name, value in out:gmatch('\n  export ([%w_]+)="([^"\n]*)"') do t[name] = value end
  return t
end

local function env_of(vars)
  local parts = { CLEAN }
  for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. q(v) end
  return table.concat(parts, " ")
end

-- Where `require` finds dbxauth and its C core, and that a configuration can be made.
local PROBE = [[
local d = require "dbxauth"
assert(d.config({ host = "https://h.example.com", token = "t" }, { env = {} }))
print(package.searchpath("dbxauth", package.path))
print(package.searchpath("dbxauth.core", package.cpath))]]

describe("make install", function()
  local prefix
  before_each(function() prefix = run("mktemp -d -t dbxauth-install.XXXXXX"):gsub("%s+$", "") end)
  after_each(function() run("rm -rf " .. q(prefix)) end)

  local TREES = {
    { v = "5.4", lua = "lua5.4", path = "LUA_PATH_5_4", cpath = "LUA_CPATH_5_4" },
    { v = "5.1", lua = "luajit", path = "LUA_PATH", cpath = "LUA_CPATH" },
  }
  for _, tree in ipairs(TREES) do
    it("into a prefix of its own prints the " .. tree.path .. " lines " .. tree.lua .. " needs, and they work",
      function()
        local out, rc = run("make -s install PREFIX=" .. q(prefix) .. " LUA_VERSION=" .. tree.v)
        assert.equal(0, rc, out)
        assert.matches("is not on its default search path", out, 1, true)
        local vars = exports("\n" .. out)
        local share, lib = prefix .. "/share/lua/" .. tree.v, prefix .. "/lib/lua/" .. tree.v
        assert.same({
          [tree.path] = share .. "/?.lua;" .. share .. "/?/init.lua;;",
          [tree.cpath] = lib .. "/?.so;;",
        }, vars)
        -- from / so that nothing of this checkout (./?.lua, ./?.so) can be found instead
        local got, rc2 = run("cd / && " .. env_of(vars) .. " " .. tree.lua .. " -e " .. q(PROBE))
        assert.equal(0, rc2, got)
        assert.equal(share .. "/dbxauth/init.lua\n" .. lib .. "/dbxauth/core.so\n", got)
        -- without the lines the prefix is not found: they are needed
        local _, rc3 = run("cd / && " .. CLEAN .. " " .. tree.lua .. " -e 'require \"dbxauth\"'")
        assert.is_not.equal(0, rc3)
      end)
  end

  it("for LuaJIT also prints the nginx lines, and nginx loads dbxauth with them", function()
    local out, rc = run("make -s install PREFIX=" .. q(prefix) .. " LUA_VERSION=5.1")
    assert.equal(0, rc, out)
    local lpath = out:match('\n  (lua_package_path  "[^\n]*";)')
    local cpath = out:match('\n  (lua_package_cpath "[^\n]*";)')
    assert.is_truthy(lpath, out)
    assert.is_truthy(cpath, out)
    local ngx_dir = prefix .. "/ngx"
    assert(run("mkdir -p " .. q(ngx_dir .. "/logs")))
    files.write(ngx_dir .. "/nginx.conf", table.concat({
      "load_module /usr/lib/nginx/modules/ndk_http_module.so;",
      "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;",
      "pid logs/nginx.pid;",
      "error_log logs/error.log;",
      "events { }",
      "http {",
      "  access_log off;",
      "  " .. lpath, "  " .. cpath,
      "  init_by_lua_block {",
      "    require 'dbxauth.nginx'",
      "    local f = assert(io.open(ngx.config.prefix() .. 'found', 'w'))",
      "    f:write(package.searchpath('dbxauth', package.path), '\\n',",
      "            package.searchpath('dbxauth.core', package.cpath), '\\n')",
      "    f:close()",
      "  }",
      "}",
    }, "\n"))
    local started, rc2 = run("cd / && env -i PATH=\"$PATH\" nginx -p " .. q(ngx_dir .. "/")
      .. " -c nginx.conf -e logs/error.log")
    local pid = files.read(ngx_dir .. "/logs/nginx.pid")
    if pid then run("kill -QUIT " .. pid:match("%d+")) end
    assert.equal(0, rc2, started .. (files.read(ngx_dir .. "/logs/error.log") or ""))
    assert.equal(prefix .. "/share/lua/5.1/dbxauth/init.lua\n" .. prefix .. "/lib/lua/5.1/dbxauth/core.so\n",
      files.read(ngx_dir .. "/found"))
  end)

  it("into /usr/local (Debian's interpreters search it) says there is nothing to set", function()
    for _, v in ipairs { "5.4", "5.1" } do
      local out, rc = run("make -s install DESTDIR=" .. q(prefix) .. " PREFIX=/usr/local LUA_VERSION=" .. v)
      assert.equal(0, rc, out)
      assert.matches("in /usr/local: on its default search path, nothing to set.", out, 1, true)
      assert.same({}, exports("\n" .. out))
      assert.is_truthy(files.read(prefix .. "/usr/local/lib/lua/" .. v .. "/dbxauth/core.so"))
    end
  end)
end)
