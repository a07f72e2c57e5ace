-- Test-only Google service-account keys: RSA key pairs made with the openssl command once per
-- process (nothing committed), as the JSON key files Google issues. The private keys and the
-- JSON are registered with the leak check.
--
--   local keys = require "spec.support.google_keys"
--   local k = keys.get("sa1")   -- { name, email, kid, private_key, public_key }
--   keys.json(k, token_uri [, overrides]) -> the key file's JSON text
--   keys.settings(list_of_keys) -> { [email] = { kid, public_key } } for ws:set{ google_keys = ... }
local cjson = require "cjson"
local files = require "spec.support.files"
local leakcheck = require "spec.support.leakcheck"

local M = {}

local made = {}

local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "google_keys: failed: " .. cmd)
end

-- Not files.tmpdir: the leak check searches those, and these files hold the keys by design.
local function keydir()
  local p = assert(io.popen("mktemp -d -t spec-google-keys.XXXXXX"))
  local d = p:read("*l")
  p:close()
  return assert(d)
end

function M.get(name)
  if made[name] then return made[name] end
  local dir = keydir()
  local priv, pub = dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".pub"
  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. files.q(priv))
  run("openssl pkey -in " .. files.q(priv) .. " -pubout -out " .. files.q(pub))
  local private_key, public_key = assert(files.read(priv)), assert(files.read(pub))
  os.remove(priv)
  os.remove(pub)
  os.remove(dir)
  local k = {
    name = name, email = name .. "@fake-project.iam.gserviceaccount.com",
    kid = ("%040x"):format(#name * 7919):sub(1, 32) .. name,
    private_key = private_key, public_key = public_key,
  }
  leakcheck.secret(k.private_key)
  -- the PEM's base64 lines too: a message quoting part of a key is a leak
  for line in k.private_key:gmatch("[^\n]+") do
    if not line:find("^%-%-%-%-%-") then leakcheck.secret(line) end
  end
  made[name] = k
  return k
end

function M.json(k, token_uri, overrides)
  local doc = {
    type = "service_account", project_id = "fake-project", private_key_id = k.kid,
    private_key = k.private_key, client_email = k.email, client_id = "1000" .. #k.email,
    auth_uri = "https://accounts.google.com/o/oauth2/auth", token_uri = token_uri,
    auth_provider_x509_cert_url = "https://www.googleapis.com/oauth2/v1/certs",
  }
  for key, v in pairs(overrides or {}) do
    if v == false then doc[key] = nil else doc[key] = v end
  end
  local text = cjson.encode(doc):gsub("\\/", "/")
  leakcheck.secret(text)
  return text
end

function M.settings(list)
  local out = {}
  for _, k in ipairs(list) do out[k.email] = { kid = k.kid, public_key = k.public_key } end
  return out
end

return M
