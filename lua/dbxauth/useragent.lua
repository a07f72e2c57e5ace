-- User-Agent in the SDKs' shape (notes §9.1, decision D20):
--   dbxauth/<ver> lua/<ver> os/<os> auth/<auth_type> [upstream/..] [cicd/..] [runtime/..]
local _M = {}

local function sanitize(v)
  return (tostring(v):gsub("[^%w_.+-]", "-"))
end

local function lua_version()
  local v = _VERSION:match("(%d+%.%d+)") or "0"
  if type(jit) == "table" and jit.version then
    return v .. " luajit/" .. sanitize(jit.version:match("LuaJIT%s+(%S+)") or jit.version)
  end
  return v
end

local function os_name()
  if type(jit) == "table" and jit.os then return jit.os:lower() end
  if package.config:sub(1, 1) == "\\" then return "windows" end
  local f = io.open("/proc/version", "r")
  if f then f:close(); return "linux" end
  f = io.open("/System/Library/CoreServices/SystemVersion.plist", "r")
  if f then f:close(); return "darwin" end
  return "unix"
end

-- CI providers, detected from their environment variables like the SDKs do.
local CICD = {
  { "github", function(e) return e("GITHUB_ACTIONS") == "true" end },
  { "gitlab", function(e) return e("GITLAB_CI") == "true" end },
  { "jenkins", function(e) return e("JENKINS_URL") ~= nil end },
  { "azure-devops", function(e) return e("TF_BUILD") == "True" end },
  { "circle", function(e) return e("CIRCLECI") == "true" end },
  { "travis", function(e) return e("TRAVIS") == "true" end },
  { "bitbucket", function(e) return e("BITBUCKET_BUILD_NUMBER") ~= nil end },
  { "google-cloud-build", function(e)
    return e("PROJECT_ID") and e("BUILD_ID") and e("PROJECT_NUMBER") and e("LOCATION") and true end },
  { "aws-code-build", function(e) return e("CODEBUILD_BUILD_ARN") ~= nil end },
  { "tf-cloud", function(e) return e("TFC_RUN_ID") ~= nil end },
}

local BASE = nil

-- getenv(name) -> value or nil (empty values count as unset)
function _M.build(version, auth_type, getenv)
  local function env(n)
    local v = getenv(n)
    if v == "" then return nil end
    return v
  end
  BASE = BASE or ("dbxauth/" .. version .. " lua/" .. lua_version() .. " os/" .. os_name())
  local parts = { BASE }
  local up, upv = env("DATABRICKS_SDK_UPSTREAM"), env("DATABRICKS_SDK_UPSTREAM_VERSION")
  if up and upv then
    parts[#parts + 1] = "upstream/" .. sanitize(up) .. " upstream-version/" .. sanitize(upv)
  end
  parts[#parts + 1] = "auth/" .. sanitize(auth_type or "unknown")
  for _, c in ipairs(CICD) do
    if c[2](env) then parts[#parts + 1] = "cicd/" .. c[1]; break end
  end
  local rt = env("DATABRICKS_RUNTIME_VERSION")
  if rt then parts[#parts + 1] = "runtime/" .. sanitize(rt) end
  return table.concat(parts, " ")
end

return _M
