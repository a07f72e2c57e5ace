-- Trimming, linear in the length of the text: the usual gsub("%s+$", "") rescans a long run
-- of inner blanks from every position (quadratic), and config files, ID-token files and server
-- bodies are outside input.
local _M = {}

-- Both ends.
function _M.trim(s)
  local i = s:find("%S")
  if not i then return "" end
  return s:match(".*%S", i)
end

-- The start only.
function _M.ltrim(s)
  local i = s:find("%S")
  if not i then return "" end
  return s:sub(i)
end

-- The end only.
function _M.rtrim(s)
  local i = s:find("%S")
  if not i then return "" end
  return s:sub(1, i - 1) .. s:match(".*%S", i)
end

return _M
