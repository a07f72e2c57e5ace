-- Which transport a configuration uses when the caller did not hand it one.
-- opts: { ca_file, skip_verify, max_body }
local _M = {}

function _M.default(opts)
  return require("dbxauth.transport.curl").new(opts)
end

return _M
