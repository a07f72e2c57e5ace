-- file-oidc (notes §6.6): the ID token is the content of oidc_token_filepath (at most 1 MiB,
-- trailing blanks removed), read again at every refresh.
local errors = require "dbxauth.errors"
local oidc = require "dbxauth.providers.oidc"

local MAX_ID_TOKEN = 1024 * 1024

local function read(path)
  local f, msg = io.open(path, "rb")
  if not f then
    if msg:find("No such file", 1, true) then
      return nil, errors.new("config", 'file "' .. path .. '" does not exist')
    end
    return nil, errors.new("config", 'file "' .. path .. '" cannot be read: ' .. msg)
  end
  local data = f:read(MAX_ID_TOKEN + 1) or ""
  f:close()
  if #data > MAX_ID_TOKEN then
    return nil, errors.new("config", 'file "' .. path .. '" is larger than an ID token can be')
  end
  data = oidc.trim_end(data)
  if data == "" then return nil, errors.new("config", 'file "' .. path .. '" is empty') end
  return data
end

return {
  name = "file-oidc",
  applies = function(ctx)
    return ctx.get("host") ~= nil and ctx.get("oidc_token_filepath") ~= nil
  end,
  configure = function(ctx)
    return oidc.credentials(ctx, function()
      local path = ctx.get("oidc_token_filepath")
      if not path then return nil, errors.new("config", "missing path") end
      return read(path)
    end)
  end,
}
