-- `make install` writes a dbxauth command that runs under the interpreter of the tree it installs
-- into (lua5.4 for LUA_VERSION=5.4, luajit for 5.1) and loads that tree's modules, whatever
-- LUA_PATH says.
local files = require "spec.support.files"

local q = files.q

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

local TREES = {
  { version = "5.4", interp = "lua5.4", path_var = "LUA_PATH_5_4", cpath_var = "LUA_CPATH_5_4" },
  { version = "5.1", interp = "luajit", path_var = "LUA_PATH", cpath_var = "LUA_CPATH" },
}

local function install(prefix, version)
  local rc, out = sh("make -s install PREFIX=" .. q(prefix) .. " LUA_VERSION=" .. version)
  assert(rc == 0, "make install failed: " .. out)
end

-- The installed command in a clean environment; decoy modules first on LUA_PATH.
local function run_installed(prefix, tree, args, home)
  local decoy = files.tmpdir()
  files.write(decoy .. "/dbxauth/cli.lua", 'error("the decoy dbxauth was loaded")')
  local cmd = "env -i HOME=" .. q(home) .. " PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin") .. " "
    .. tree.path_var .. "=" .. q(decoy .. "/?.lua;;") .. " " .. tree.cpath_var .. "=" .. q(decoy .. "/?.so;;")
    .. " " .. q(prefix .. "/bin/dbxauth")
  for _, a in ipairs(args) do cmd = cmd .. " " .. q(a) end
  return sh(cmd .. " </dev/null")
end

describe("make install", function()
  for _, tree in ipairs(TREES) do
    it("LUA_VERSION=" .. tree.version .. ": the command runs under " .. tree.interp .. " from its own tree", function()
      local prefix = files.tmpdir()
      install(prefix, tree.version)
      local f = assert(io.open(prefix .. "/bin/dbxauth", "rb"))
      assert.equal("#!/usr/bin/env " .. tree.interp, f:read("*l"))
      f:close()
      local home = files.home("[p]\nhost = https://p.cloud.databricks.com\nauth_type = databricks-cli\n")
      local rc, out = run_installed(prefix, tree, { "--version" }, home)
      assert.equal(0, rc, out)
      assert.equal("dbxauth v" .. require("dbxauth").VERSION .. "\n", out)
      rc, out = run_installed(prefix, tree, { "profiles", "--skip-validate", "-o", "json" }, home)
      assert.equal(0, rc, out)
      assert.matches('"name": "p",\n      "host": "https://p.cloud.databricks.com"', out)
      -- the interpreter is the tree's: its core.so is the one loaded (another would not load)
      rc, out = sh(q(tree.interp) .. " -e " .. q("package.cpath = " .. string.format("%q", prefix .. "/lib/lua/"
        .. tree.version .. "/?.so") .. "; assert(require('dbxauth.core').now())"))
      assert.equal(0, rc, out)
    end)
  end

  it("bin/dbxauth in a checkout finds the checkout's modules, under either interpreter and from any directory",
    function()
      for _, tree in ipairs(TREES) do
        for _, how in ipairs { "bin/dbxauth", "cd bin && ./dbxauth", "cd spec && ../bin/dbxauth" } do
          local prog = how:gsub("dbxauth$", "")
          local rc, out = sh((how:match("^cd [^&]+&& ") or "") .. "env -i HOME=/nonexistent PATH="
            .. q(os.getenv("PATH") or "/usr/bin:/bin") .. " " .. tree.interp .. " "
            .. (how:match("([^ ]+)$")) .. " --version")
          assert.equal(0, rc, tree.interp .. " " .. prog .. ": " .. out)
          assert.matches("^dbxauth v", out)
        end
      end
    end)

  it("installing the other tree into the same prefix rewrites the command for its interpreter", function()
    local prefix = files.tmpdir()
    install(prefix, "5.4")
    install(prefix, "5.1")
    local f = assert(io.open(prefix .. "/bin/dbxauth", "rb"))
    assert.equal("#!/usr/bin/env luajit", f:read("*l"))
    f:close()
    local rc, out = run_installed(prefix, TREES[2], { "profiles", "--skip-validate" }, files.tmpdir())
    assert.equal(0, rc, out)
    assert.equal("Name  Host  Valid\n", out)
  end)
end)
