-- A service principal (OAuth M2M) calls a Databricks App's API: seed 001's "external
-- applications" in Lua. OAuth tokens carry all-apis, which satisfies any app, so no exchange
-- is needed.
--
--   DATABRICKS_HOST=https://<workspace> DATABRICKS_CLIENT_ID=... DATABRICKS_CLIENT_SECRET=... \
--     lua5.4 examples/app_call.lua [app-name] [path]
local dbxauth = require "dbxauth"

local app_name = arg[1] or os.getenv("APP_NAME") or "my-app"
local path = arg[2] or "/api/hello"

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(1)
end

local cfg, err = dbxauth.config()
if not cfg then fail("configuration", err) end

local res
res, err = cfg:app_request { app = app_name, path = path }
if not res then fail("calling app " .. app_name, err) end
print(("%s %s -> HTTP %d (auth type %s)"):format(app_name, path, res.status, cfg.auth_type))
print(res.body)
