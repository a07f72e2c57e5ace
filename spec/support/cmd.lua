-- Running the dbxauth command in process (so under Lua 5.4 and LuaJIT alike): cli.main with an
-- injected environment, home, terminal and stdin, its output captured.
--   local cmd = require "spec.support.cmd"
--   local r = cmd.run(args, { env = {...}, home = dir, tty = false, input = { "line", ... } })
--   r.code, r.out, r.err, r.prompts (what was asked, in order)
local cjson = require "cjson"
local cli = require "dbxauth.cli"

local _M = {}

_M.runs = {}   -- every run, for the secrets checks

function _M.run(args, o)
  o = o or {}
  local env = o.env or {}
  local out, err = {}, {}
  local input = o.input or {}
  local n = 0
  local r = { args = args, home = o.home }
  local code = cli.main(args, {
    getenv = function(k) return env[k] end,
    home = o.home,
    stdout = function(s) out[#out + 1] = s end,
    stderr = function(s) err[#err + 1] = s end,
    tty = function() return o.tty == true end,
    read_line = function()
      n = n + 1
      local v = input[n]
      if type(v) == "function" then v = v(table.concat(err)) end
      return v
    end,
  })
  r.code, r.out, r.err, r.reads = code, table.concat(out), table.concat(err), n
  _M.runs[#_M.runs + 1] = r
  return r
end

function _M.ok(r)
  assert(r.code == 0, "exit status " .. tostring(r.code) .. "; stderr: " .. r.err)
  return r
end

function _M.failed(r)
  assert(r.code == 1, "expected exit status 1, got " .. tostring(r.code) .. "; stdout: " .. r.out)
  assert(r.out == "", "stdout of a failed run: " .. r.out)
  return r
end

function _M.decode(s)
  local v = cjson.decode(s)
  assert(type(v) == "table", "not a JSON object: " .. s)
  return v
end

-- Nothing of `secrets` in any run's output (runs for which allowed(r) is true may print them
-- on stdout: `env`, `describe --sensitive`, `token`).
function _M.no_secrets(secrets, allowed)
  for _, r in ipairs(_M.runs) do
    for _, s in ipairs(secrets) do
      local what = table.concat(r.args, " ")
      assert(not r.err:find(s, 1, true), "secret in stderr of " .. what)
      if not (allowed and allowed(r)) then assert(not r.out:find(s, 1, true), "secret in stdout of " .. what) end
    end
  end
end

return _M
