-- OAuth machine-to-machine: a service principal calls the workspace REST API.
--
-- Configuration comes from the environment, exactly as with the Databricks SDKs and CLI:
--   DATABRICKS_HOST, DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET
-- (or DATABRICKS_CONFIG_PROFILE naming a profile in ~/.databrickscfg).
--
--   lua5.4 examples/m2m.lua
local dbxauth = require "dbxauth"

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(1)
end

local cfg, err = dbxauth.config()
if not cfg then fail("configuration", err) end

local headers
headers, err = cfg:authenticate()
if not headers then fail("authentication", err) end

local tok = cfg:token()
local lifetime = "does not expire"
if tok and tok.expiry then lifetime = "expires in " .. math.floor(tok.expiry - os.time()) .. " s" end
print(("authenticated with %s on %s; the token %s"):format(cfg.auth_type, cfg.host, lifetime))

local res
res, err = cfg:request { path = "/api/2.0/preview/scim/v2/Me" }
if not res then fail("GET /api/2.0/preview/scim/v2/Me", err) end

local me = assert(res:json())
print(("current user: %s (%s)"):format(me.userName, me.displayName or "no display name"))
