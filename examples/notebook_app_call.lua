-- Seed 001's notebook flow in Lua: a notebook (or personal access) token in DATABRICKS_TOKEN
-- is exchanged (RFC 8693) for a token scoped to one app, which then calls the app.
--
--   DATABRICKS_HOST=https://<workspace> DATABRICKS_TOKEN=<notebook token> \
--     lua5.4 examples/notebook_app_call.lua [app-name] [path]
local dbxauth = require "dbxauth"

local app_name = arg[1] or os.getenv("APP_NAME") or "my-app"
local path = arg[2] or "/api/hello"

local function fail(what, err)
  io.stderr:write(what, ": ", tostring(err), "\n")
  os.exit(1)
end

local cfg, err = dbxauth.config()
if not cfg then fail("configuration", err) end

-- 1. Look the app up: its URL and the OAuth client id that is the exchange's audience.
local app
app, err = cfg:app(app_name)
if not app then fail("looking up app " .. app_name, err) end
print(("app %s at %s (state %s), audience %s"):format(app.name, app.url, tostring(app.state),
  tostring(app.oauth2_app_client_id)))

-- 2. Exchange the notebook token for an app-scoped token (POST /oidc/v1/token).
local tok
tok, err = cfg:exchange { audience = app.oauth2_app_client_id, scopes = { "all-apis" } }
if not tok then fail("token exchange", err) end
print(("exchanged: %s"):format(tostring(tok)))   -- prints type, expiry and scopes, never the token

-- 3. Call the app. app_request reuses the exchanged token (cached per audience and scopes).
local res
res, err = cfg:app_request { app = app_name, path = path }
if not res then fail("calling " .. path, err) end
print(("%s -> HTTP %d"):format(path, res.status))
print(res.body)
