-- The one shape of a token dbxauth hands out (cfg:token, cfg:app_token, cfg:exchange), whatever
-- the auth type: a dbxauth.token with access_token, token_type, expiry (absent: does not
-- expire), scopes (absent: unknown) and nothing else - no refresh token, no bookkeeping - and a
-- tostring without the token. check() fails naming the field that is off, never a value.
local M = {}

local FIELDS = { access_token = "string", token_type = "string", expiry = "number", scopes = "table" }

function M.check(tok, what)
  assert(type(tok) == "table", what .. ": expected a token, got " .. type(tok))
  local mt = getmetatable(tok)
  assert(type(mt) == "table" and mt.__name == "dbxauth.token", what .. ": not a dbxauth.token")
  for k, v in pairs(tok) do
    assert(FIELDS[k], what .. ": unexpected field " .. tostring(k))
    assert(type(v) == FIELDS[k], what .. ": field " .. k .. " is a " .. type(v))
  end
  assert(tok.access_token ~= nil and tok.access_token ~= "", what .. ": no access_token")
  assert(tok.token_type == "Bearer", what .. ": token_type is not Bearer")
  if tok.scopes then
    assert(#tok.scopes > 0, what .. ": an empty scopes list (absent means unknown)")
    for _, s in ipairs(tok.scopes) do assert(type(s) == "string", what .. ": a scope is not a string") end
  end
  assert(not tostring(tok):find(tok.access_token, 1, true), what .. ": tostring shows the access token")
  return tok
end

return M
