-- dbxauth login --no-browser (the headless paste login) end to end against the fake workspace,
-- the login prompts, token's output modes and --debug; in process, so under both interpreters.
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local cmd = require "spec.support.cmd"
local core = require "dbxauth.core"
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"

local run, ok, failed, decode = cmd.run, cmd.ok, cmd.failed, cmd.decode
local q = files.q

local ws
setup(function() ws = fake.start() end)
teardown(function() if ws then ws:stop() end end)
before_each(function() ws:reset(); require("dbxauth").clear_caches() end)

local function free_port()
  local l = assert(core.listen { ports = { 0 } })
  local p = l:port()
  l:close()
  return p
end

-- The browser, on another machine: follows the authorize URL printed so far on stderr and
-- returns where the identity provider redirects to (what the user copies from the address bar).
local function browser(transform)
  return function(stderr)
    local url = assert(stderr:match("(https://%S+/authorize%?%S+)"), "no authorize URL on stderr: " .. stderr)
    local p = assert(io.popen("curl -s -o /dev/null --max-time 20 -w '%{redirect_url}' --cacert " .. q(ws.ca_file)
      .. " " .. q(url)))
    local location = p:read("*a")
    p:close()
    assert(location:find("^http://localhost:"), "no redirect: " .. location)
    return transform and transform(location) or location
  end
end

local function env(port, extra)
  local e = { SSL_CERT_FILE = ws.ca_file, DATABRICKS_OAUTH_CALLBACK_PORT = tostring(port),
              BROWSER = "false %s" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function cache(home)
  return assert(tokencache.read(home .. "/.databricks/token-cache.json")).tokens
end

describe("dbxauth login --no-browser", function()
  it("takes the pasted redirect URL, with no listener, and saves the login like the browser flow", function()
    local home = files.tmpdir()
    local port = free_port()
    -- the callback port is held by someone else all along: the headless login never binds it
    local squatter = assert(core.listen { ports = { port } })
    local r = run({ "login", "--no-browser", "--host", ws.url, "-p", "dev" },
      { env = env(port), home = home, input = { browser() } })
    squatter:close()
    ok(r)
    assert.equal("", r.out)
    assert.matches("^Open this URL in a browser %(on any machine%) and sign in:\n"
      .. "https://localhost:%d+/oidc/v1/authorize%?"
      .. "[^\n]+\nThe browser then goes to http://localhost:" .. port .. "/%?code=%.%.%. %(the page may not load%)%. "
      .. "Paste that whole URL from the address bar, or just its code, here:\nProfile dev was successfully saved\n$",
      r.err)
    local url = r.err:match("(https://%S+)")
    assert.matches("code_challenge_method=S256", url)
    assert.matches("redirect_uri=http%%3A%%2F%%2Flocalhost%%3A" .. port, url)
    local tokens = cache(home)
    assert.truthy(tokens.dev.refresh_token)
    assert.equal(tokens.dev.access_token, tokens[ws.url].access_token)
    local path = home .. "/.databrickscfg"
    assert.same({ host = ws.url, auth_type = "databricks-cli" }, profiles.get(path, "dev"))
    assert.equal("dev", profiles.default_profile(path))          -- the file's first profile with a host
    assert.equal(1, ws:counters()["POST /oidc/v1/token"])
    -- the login serves token and describe
    assert.equal(tokens.dev.access_token .. "\n",
      ok(run({ "token", "-o", "text" }, { env = env(port), home = home })).out)
    local d = decode(ok(run({ "describe", "-p", "dev", "-o", "json" }, { env = env(port), home = home })).out)
    assert.equal("success", d.status)
    assert.equal("databricks-cli", d.details.auth_type)
    assert.equal("user@example.com", d.username)
  end)

  it("saves serverless_compute_id = auto with --configure-serverless, and takes --skip-workspace", function()
    local home = files.home("[dev]\nhost = " .. ws.url .. "\ncluster_id = 0101-abc\n")
    local port = free_port()
    ok(run({ "login", "dev", "--no-browser", "--configure-serverless", "--skip-workspace", "--scopes", "sql,files" },
      { env = env(port), home = home, input = { browser() } }))
    assert.same({ host = ws.url, cluster_id = "0101-abc", serverless_compute_id = "auto", scopes = "files,sql",
      auth_type = "databricks-cli" }, profiles.get(home .. "/.databrickscfg", "dev"))
    -- the profile's scopes are those of the next login too
    local r = ok(run({ "login", "dev", "--no-browser" }, { env = env(port), home = home, input = { browser() } }))
    assert.matches("scope=offline_access%+files%+sql&", r.err)
  end)

  it("takes just the code too", function()
    local home = files.tmpdir()
    local port = free_port()
    local r = ok(run({ "login", "--no-browser", "--host", ws.url, "-p", "c" }, { env = env(port), home = home,
      input = { browser(function(loc) return "  " .. core.parse_query(loc:match("%?(.*)$")).code .. "  " end) } }))
    assert.matches("Profile c was successfully saved\n$", r.err)
    assert.truthy(cache(home).c.access_token)
  end)

  it("refuses a URL with another login's state, and sends no code exchange", function()
    local home = files.tmpdir()
    local port = free_port()
    ws:set { authorize_state = "someone-elses-state" }
    local r = failed(run({ "login", "--no-browser", "--host", ws.url, "-p", "x" },
      { env = env(port), home = home, input = { browser() } }))
    assert.matches("\nError: the pasted URL does not belong to this login %(its state does not match%)\nhint: ", r.err)
    assert.is_nil(ws:counters()["POST /oidc/v1/token"])
    assert.is_nil(files.read(home .. "/.databrickscfg"))
    assert.is_nil(files.read(home .. "/.databricks/token-cache.json"))
  end)

  it("reports the identity provider's error, an empty paste and a URL without a code", function()
    local home = files.tmpdir()
    local port = free_port()
    ws:set { authorize_error = "access_denied", authorize_error_description = "the user said no" }
    local r = failed(run({ "login", "--no-browser", "--host", ws.url, "-p", "x" },
      { env = env(port), home = home, input = { browser() } }))
    assert.matches("\nError: access_denied: the user said no\n$", r.err)
    ws:reset()
    r = failed(run({ "login", "--no-browser", "--host", ws.url, "-p", "x" }, { env = env(port), home = home }))
    assert.matches("\nError: no redirect URL or code was pasted\nhint: ", r.err)
    r = failed(run({ "login", "--no-browser", "--host", ws.url, "-p", "x" }, { env = env(port), home = home,
      input = { browser(function(loc) return (loc:gsub("code=[^&]*", "code=")) end) } }))
    assert.matches("\nError: the pasted text has no authorization code\n", r.err)
    r = failed(run({ "login", "--no-browser", "--host", ws.url, "-p", "x" }, { env = env(port), home = home,
      input = { browser(function(loc) return (loc:gsub("code=[^&]*", "code=not-the-code")) end) } }))
    assert.matches("\nError: [^\n]*invalid_grant", r.err)
    assert.is_nil(files.read(home .. "/.databrickscfg"))
  end)
end)

describe("dbxauth login prompts", function()
  it("asks for the host and the profile name on a terminal (the suggestion on Enter)", function()
    local home = files.tmpdir()
    local port = free_port()
    local r = ok(run({ "login", "--no-browser" }, { env = env(port), home = home, tty = true,
      input = { ws.url, "", browser() } }))
    local name = ws.url:gsub("^https://", "")           -- "localhost:<port>": the host's first label
    assert.matches("^Example: https://<databricks%-instance>%.cloud%.databricks%.com\nDatabricks host: "
      .. "Databricks profile name %[" .. name:gsub("%p", "%%%0") .. "%]: Open this URL", r.err)
    assert.same({ host = ws.url, auth_type = "databricks-cli" }, profiles.get(home .. "/.databrickscfg", name))
    r = ok(run({ "login", "--no-browser", "--host", ws.account_url }, { env = env(port), home = home, tty = true,
      input = { fake.CREDS.account_id, "", browser() } }))
    assert.matches("^Databricks account ID: Databricks profile name %[ACCOUNT%-"
      .. fake.CREDS.account_id:gsub("%p", "%%%0")
      .. "%]: ", r.err)
    assert.truthy(cache(home)["ACCOUNT-" .. fake.CREDS.account_id])
    assert.truthy(cache(home)[ws.account_url .. "/oidc/accounts/" .. fake.CREDS.account_id])
  end)

  it("asks nothing without a terminal (NO_COLOR counts as none), and refuses the reserved name", function()
    local home = files.tmpdir()
    local port = free_port()
    local r = failed(run({ "login", "--no-browser" }, { env = env(port, { NO_COLOR = "1" }), home = home, tty = true }))
    assert.equal("Error: the command is being run in a non-interactive environment, please specify a host using "
      .. "--host\n", r.err)
    assert.equal(0, r.reads)
    r = failed(run({ "login", "--host", ws.url, "-p", "__settings__" }, { env = env(port), home = home }))
    assert.equal('Error: profile name "__settings__" is reserved for internal use\n', r.err)
  end)
end)

describe("dbxauth token output", function()
  local function logged_in()
    local home = files.tmpdir()
    local port = free_port()
    ok(run({ "login", "--no-browser", "--host", ws.url, "-p", "t" }, { env = env(port), home = home,
      input = { browser() } }))
    return home, port
  end

  it("prints JSON unless -o text is on the command line (DATABRICKS_OUTPUT_FORMAT does not count)", function()
    local home, port = logged_in()
    local access = cache(home).t.access_token
    local r = ok(run({ "token", "t" }, { env = env(port, { DATABRICKS_OUTPUT_FORMAT = "text" }), home = home }))
    local tok = decode(r.out)
    assert.equal(access, tok.access_token)
    assert.matches('^{\n  "access_token": "[^"]+",\n  "token_type": "Bearer",\n  "expiry": "[^"]+"\n}$', r.out)
    assert.equal(access .. "\n",
      ok(run({ "token", "--output=TEXT", "--profile", "t" }, { env = env(port), home = home })).out)
    r = ok(run({ "token", "t", "--force-refresh", "--timeout", "30s" }, { env = env(port), home = home }))
    assert.not_equal(access, decode(r.out).access_token)
    assert.equal(3600, decode(r.out).expires_in)
    r = failed(run({ "token", "t", "--timeout", "forever" }, { env = env(port), home = home }))
    assert.equal('Error: invalid argument "forever" for "--timeout" flag: time: invalid duration "forever"\n', r.err)
    files.write(home .. "/.databrickscfg", files.read(home .. "/.databrickscfg") .. "\n[t2]\nhost = " .. ws.url
      .. "/\nauth_type = databricks-cli\n")
    r = failed(run({ "token", "--host", ws.url }, { env = env(port), home = home }))
    assert.equal("Error: t and t2 match " .. ws.url .. " in " .. home .. "/.databrickscfg. Use --profile to specify "
      .. "which profile to use\n", r.err)
    r = failed(run({ "token", "-p", "t", "--host", "https://elsewhere.example" }, { env = env(port), home = home }))
    assert.equal('Error: --profile "t" has host "' .. ws.url .. '", which conflicts with --host '
      .. '"https://elsewhere.example". Use --profile only to select a profile\n', r.err)
  end)

  it("accepts --debug on every command, and its log carries no secret", function()
    local home, port = logged_in()
    for _, args in ipairs { { "token", "t" }, { "describe", "-p", "t" }, { "profiles" } } do
      args[#args + 1] = "--debug"
      local r = ok(run(args, { env = env(port), home = home }))
      assert.matches("^%d%d:%d%d:%d%d Debug: start version=[^\n]+ command=" .. args[1] .. "\n", r.err)
      assert.matches("\n%d%d:%d%d:%d%d Debug: completed execution exit_code=0\n$", r.err)
      -- the library's request log in between: each round trip to the fake, as the SDKs print it
      if args[1] ~= "token" then   -- token answers from the cache, without a request
        assert.matches("\n%d%d:%d%d:%d%d Debug: GET " .. ws.url:gsub("%p", "%%%0") .. "/", r.err)
        assert.matches("\n%d%d:%d%d:%d%d Debug: < HTTP/%S+ 200 OK %(GET ", r.err)
      end
      for _, e in pairs(cache(home)) do
        assert.is_nil(r.err:find(e.access_token, 1, true))
        assert.is_nil(r.err:find(e.refresh_token, 1, true))
      end
    end
  end)
end)

describe("dbxauth login output hygiene", function()
  it("never prints a refresh token, and access tokens only on the stdout of token", function()
    local secrets = {}
    for _, r in ipairs(cmd.runs) do
      local doc = r.home and tokencache.read(r.home .. "/.databricks/token-cache.json")
      for _, e in pairs(doc and doc.tokens or {}) do
        secrets[#secrets + 1] = e.refresh_token
        secrets[#secrets + 1] = e.access_token
      end
    end
    assert.is_true(#secrets > 10)
    cmd.no_secrets(secrets, function(r) return r.args[1] == "token" end)
  end)
end)
