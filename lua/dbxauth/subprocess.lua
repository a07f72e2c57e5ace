-- Running a local command for a credential provider (the databricks CLI, the Azure CLI):
-- shell quoting, Go's exec.LookPath, a bound on how long it may run, and its stdout, stderr and
-- exit status. One copy for both providers, so a fix to quoting or timeouts reaches both.
local core = require "dbxauth.core"

local _M = {}

local KILL_AFTER = 5   -- seconds between TERM and KILL

function _M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = _M.q

-- A regular file someone may execute (any x bit).
function _M.is_executable(path)
  local st = core.stat(path)
  if not st or st.type ~= "file" then return false end
  local m = st.mode
  return m % 2 == 1 or math.floor(m / 8) % 2 == 1 or math.floor(m / 64) % 2 == 1
end
local is_executable = _M.is_executable

-- Like exec.LookPath: the first executable regular file named `name` on PATH.
function _M.search_path(name, path_var)
  for dir in ((path_var or "") .. ":"):gmatch("([^:]*):") do
    if dir == "" then dir = "." end
    local candidate = dir .. "/" .. name
    if is_executable(candidate) then return candidate end
  end
  return nil
end

-- GNU timeout (coreutils; Homebrew installs it as gtimeout), looked up once per process on the
-- PATH the shell of io.popen uses. nil when there is none.
local timeout_tool
local function find_timeout()
  if timeout_tool == nil then
    timeout_tool = false
    for _, name in ipairs { "timeout", "gtimeout" } do
      local found = _M.search_path(name, os.getenv("PATH"))
        or (is_executable("/usr/bin/" .. name) and "/usr/bin/" .. name)
      if found then timeout_tool = found; break end
    end
  end
  return timeout_tool or nil
end

-- The shell words that bound what follows them to `secs` seconds ("" without a timeout tool).
function _M.bounded(secs)
  local tool = find_timeout()
  if not tool then return "" end
  return q(tool) .. " -k " .. KILL_AFTER .. " " .. secs .. " "
end

-- stdout, stderr, exit status of a shell command (stdin from /dev/null); nil when the shell
-- could not start. The status comes from `echo __rc=$?`: popen():close() reports it
-- differently in Lua 5.1 and 5.4.
function _M.run(cmd)
  local errfile = os.tmpname()
  local p = io.popen(cmd .. " </dev/null 2>" .. q(errfile) .. "; echo __rc=$?", "r")
  if not p then
    os.remove(errfile)
    return nil, nil, nil
  end
  local out = p:read("*a") or ""
  p:close()
  local f = io.open(errfile, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errfile)
  local body, rc = out:match("^(.*)__rc=(%d+)%s*$")
  return body or out, err, tonumber(rc)
end

return _M
