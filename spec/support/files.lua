-- File and shell helpers shared by the specs and the fake workspace controller.
local _M = {}

function _M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function _M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Writes `data` to `path`, creating the parent directory.
function _M.write(path, data)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then assert(os.execute("mkdir -p " .. _M.q(dir))) end
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
end

-- A fresh empty directory.
function _M.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. _M.q(dir)))
  return dir
end

-- A fresh home directory, with `.databrickscfg` holding `cfg_text` when given.
function _M.home(cfg_text)
  local dir = _M.tmpdir()
  if cfg_text then _M.write(dir .. "/.databrickscfg", cfg_text) end
  return dir, dir .. "/.databrickscfg"
end

return _M
