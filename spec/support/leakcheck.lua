-- busted helper (see .busted): every error object any spec creates, in every file, is kept,
-- and when the suite ends all of them - message, hint and every other string field, as
-- they are by then - are searched for the secrets the specs use. A leak fails the run.
local busted = require "busted"
local errors = require "dbxauth.errors"
local core = require "dbxauth.core"

local created = {}
local new = errors.new
errors.new = function(...)
  local e = new(...)
  created[#created + 1] = e
  return e
end

-- The fake workspace's credentials, and the credential values of the conformance data.
local SECRETS = {
  "dapi-fake-pat-0123456789abcdef", "fake-password-123", "fake-client-secret-xyz",
  core.b64_encode("admin@example.com:fake-password-123"),
  core.b64_encode("fake-client-id:fake-client-secret-xyz"),
  "PT0+IC9kZXYvdXJhbmRvbSA8PT0KYFZ", "dapiXYZ", "dapiOLD", "dapiOTHER", "dapiDEFAULT",
}

local function strings_of(v, out, seen)
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    if errors.is(v) then
      out[#out + 1] = tostring(v)
      for k, x in pairs(v) do
        if k == "response" then out[#out + 1] = tostring(x) else strings_of(x, out, seen) end
      end
    end
  end
  return out
end

busted.subscribe({ "suite", "end" }, function()
  local texts = strings_of(created, {}, {})
  local leaks = 0
  for _, e in ipairs(created) do strings_of(e, texts, {}) end
  for _, s in ipairs(texts) do
    for i, secret in ipairs(SECRETS) do
      if s:find(secret, 1, true) then
        leaks = leaks + 1
        io.stderr:write("leakcheck: secret #" .. i .. " appears in an error's text\n")
      end
    end
  end
  io.stdout:write(string.format("\nleakcheck: %d error objects searched for %d secrets: %d leaks\n",
    #created, #SECRETS, leaks))
  if leaks > 0 then os.exit(1) end
  return nil, true
end, { priority = 1 })
