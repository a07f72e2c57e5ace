-- `make demo`: start the bundled fake workspace, run an example against it with the
-- configuration in the environment (as a user would), stop the server.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local fake = require "spec.support.fake"

local examples = { ... }
if #examples == 0 then examples = { "examples/m2m.lua" } end
local ws = fake.start()
-- my-app answers at https://localhost:<port>, a name this machine resolves without help
ws:set { localhost_app = "my-app" }
print("fake workspace listening on " .. ws.url)

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local env = {
  "DATABRICKS_HOST=" .. q(ws.url),
  "DATABRICKS_CLIENT_ID=" .. q(ws.creds.client_id),
  "DATABRICKS_CLIENT_SECRET=" .. q(ws.creds.client_secret),
  "SSL_CERT_FILE=" .. q(ws.ca_file),   -- the fake's CA, generated at start
  "HOME=" .. q(ws.dir),                -- no ~/.databrickscfg of yours gets in the way
  "LUA_PATH_5_4='lua/?.lua;lua/?/init.lua;;'",
  "LUA_CPATH_5_4='build/5.4/?.so;;'",
}
local failed
for _, example in ipairs(examples) do
  local cmd = "env -u DATABRICKS_CONFIG_PROFILE -u DATABRICKS_TOKEN " .. table.concat(env, " ")
    .. " lua5.4 " .. q(example)
  print("\n$ DATABRICKS_HOST=... DATABRICKS_CLIENT_ID=... DATABRICKS_CLIENT_SECRET=*** lua5.4 " .. example)
  local ok, how, code = os.execute(cmd)
  if ok ~= true and ok ~= 0 then
    failed = example .. " (" .. tostring(how) .. " " .. tostring(code) .. ")"
    break
  end
end
ws:stop()
if failed then
  io.stderr:write("demo failed: " .. failed .. "\n")
  os.exit(1)
end
