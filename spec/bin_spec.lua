-- The dbxauth command, run as users run it: `lua5.4 bin/dbxauth ...` in a clean environment
-- (env -i) with HOME in a temp dir. Logins go through the fake workspace, with a "browser"
-- that follows the authorize URL with curl.
local cjson = require "cjson"
local tokencache = require "dbxauth.tokencache"
local profiles = require "dbxauth.profiles"
local core = require "dbxauth.core"
local fake = require "spec.support.fake"
local files = require "spec.support.files"

local q = files.q

local function pwd()
  local p = assert(io.popen("pwd"))
  local d = p:read("*l")
  p:close()
  return d
end
local ROOT = pwd()
local LUA54 = (function()
  local p = assert(io.popen("command -v lua5.4"))
  local path = p:read("*l")
  p:close()
  return assert(path, "lua5.4 not found")
end)()
local LUA_ENV = {
  LUA_PATH_5_4 = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;",
  LUA_CPATH_5_4 = ROOT .. "/build/5.4/?.so;;",
  PATH = os.getenv("PATH") or "/usr/bin:/bin",
}

-- Every output of every run, for the secrets check at the end.
local outputs = {}

-- run(home, args, env) -> { code, out, err }: `args` is a list (each one shell-quoted).
local function run(home, args, env)
  local assign = { "HOME=" .. q(home) }
  for k, v in pairs(LUA_ENV) do assign[#assign + 1] = k .. "=" .. q(v) end
  for k, v in pairs(env or {}) do assign[#assign + 1] = k .. "=" .. q(v) end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  local out_file, err_file = os.tmpname(), os.tmpname()
  local cmd = "cd " .. q(ROOT) .. " && env -i " .. table.concat(assign, " ") .. " " .. q(LUA54) .. " bin/dbxauth "
    .. table.concat(quoted, " ") .. " >" .. q(out_file) .. " 2>" .. q(err_file) .. " </dev/null; echo $?"
  local p = assert(io.popen(cmd))
  local code = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  local r = { code = code, out = files.read(out_file) or "", err = files.read(err_file) or "", args = args,
              home = home }
  os.remove(out_file)
  os.remove(err_file)
  outputs[#outputs + 1] = r
  return r
end

local function ok(r)
  assert.equal(0, r.code, "exit status " .. tostring(r.code) .. "; stderr: " .. r.err)
  return r
end

local function failed(r)
  assert.equal(1, r.code, "expected exit status 1; stdout: " .. r.out)
  assert.equal("", r.out)
  return r
end

local function decode(s)
  local v = cjson.decode(s)
  assert.is_table(v)
  return v
end

local RFC3339 = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[.%d]*Z$"
local CACHE = "/.databricks/token-cache.json"

local function cache(home)
  return decode(files.read(home .. CACHE))
end

local function write_cache(home, tokens)
  files.write(home .. CACHE, tokencache.encode { version = 1, tokens = tokens })
end

local function find(s, needle) return s:find(needle, 1, true) ~= nil end

---------------------------------------------------------------------------------------------

describe("dbxauth usage", function()
  local home = files.tmpdir()

  it("prints help at the top level and for every command, on stdout, exit 0", function()
    for _, args in ipairs { { "--help" }, { "-h" }, { "help" }, {} } do
      local r = ok(run(home, args))
      assert.matches("\nUsage:\n  dbxauth %[command%]\n", r.out)
      assert.equal("", r.err)
    end
    for _, cmd in ipairs { "login", "token", "profiles", "describe", "env", "logout", "switch" } do
      local r = ok(run(home, { cmd, "--help" }))
      assert.matches("\nUsage:\n  dbxauth " .. cmd, r.out)
      assert.equal("", r.err)
      assert.equal(r.out, ok(run(home, { "help", cmd })).out)
      assert.equal(r.out, ok(run(home, { cmd, "-h" })).out)
    end
    assert.equal("dbxauth v" .. require("dbxauth").VERSION .. "\n", ok(run(home, { "--version" })).out)
  end)

  it("answers mistakes as Cobra does: Error: on stderr, exit 1", function()
    local r = failed(run(home, { "logon" }))
    assert.equal('Error: unknown command "logon" for "dbxauth"\nRun \'dbxauth --help\' for usage.\n', r.err)
    r = failed(run(home, { "token", "--bogus" }))
    assert.equal("Error: unknown flag: --bogus\n", r.err)
    r = failed(run(home, { "login", "--host" }))
    assert.equal("Error: flag needs an argument: --host\n", r.err)
    r = failed(run(home, { "profiles", "extra" }))
    assert.equal('Error: unknown command "extra" for "dbxauth profiles"\n', r.err)
    r = failed(run(home, { "token", "--force-refresh=yes" }))
    assert.matches('^Error: invalid argument "yes" for "%-%-force%-refresh" flag', r.err)
    r = failed(run(home, { "describe", "-x" }))
    assert.equal("Error: unknown shorthand flag: 'x' in -x\n", r.err)
    r = failed(run(home, { "token", "a", "b" }))
    assert.equal("Error: accepts at most 1 arg(s), received 2\n", r.err)
    r = failed(run(home, { "profiles", "-o", "yaml" }))
    assert.equal('Error: invalid argument "yaml" for "-o, --output" flag: accepted arguments are json and text\n',
      r.err)
  end)
end)

---------------------------------------------------------------------------------------------

local PAT = fake.CREDS.pat
local SECRET = fake.CREDS.client_secret
local CFG = table.concat({
  "; my Databricks profiles",
  "[DEFAULT]",
  "host = https://dflt.cloud.databricks.com",
  "token = " .. PAT,
  "",
  "# service principal",
  "[sp]",
  "host = https://sp.cloud.databricks.com",
  "client_id = sp-id",
  "client_secret = " .. SECRET,
  "",
  "[nohost]",
  "token = " .. PAT,
  "",
  "[cli]",
  "host = https://cli.cloud.databricks.com",
  "auth_type = databricks-cli",
  "",
  "[acc]",
  "host = https://accounts.cloud.databricks.com",
  "account_id = acc-1",
  "auth_type = databricks-cli",
  "",
  "[browser]",
  "host = https://browser.cloud.databricks.com",
  "auth_type = external-browser",
  "",
}, "\n")

-- profiles, describe, env, logout, switch: spec/cmd_spec.lua (in process, against the fake).

---------------------------------------------------------------------------------------------

describe("dbxauth token (from the cache)", function()
  local now = os.time()

  local function setup_home()
    local home = files.home(CFG .. "[__settings__]\n")
    write_cache(home, {
      cli = { access_token = "cli-access", token_type = "Bearer", refresh_token = "cli-refresh",
        expiry = tokencache.format_time(now + 3000), expires_in = 3600 },
      ["https://cli.cloud.databricks.com"] = { access_token = "cli-host-access", token_type = "Bearer",
        refresh_token = "cli-host-refresh", expiry = tokencache.format_time(now + 3000) },
      ["https://accounts.cloud.databricks.com/oidc/accounts/acc-1"] = { access_token = "acc-access",
        token_type = "Bearer", expiry = tokencache.format_time(now + 3000) },
      ["https://other.cloud.databricks.com"] = { access_token = "other-access", token_type = "Bearer",
        expiry = tokencache.format_time(now + 3000) },
    })
    return home
  end

  it("prints exactly what `databricks auth token` prints", function()
    local home = setup_home()
    local r = ok(run(home, { "token", "--profile", "cli" }))
    assert.equal("", r.err)
    local expiry = tokencache.format_time(now + 3000)
    -- keys in the CLI's order, two-space indent, no trailing newline, never the refresh token
    assert.equal('{\n  "access_token": "cli-access",\n  "token_type": "Bearer",\n  "expiry": "'
      .. expiry .. '"\n}', r.out)
    assert.matches(RFC3339, decode(r.out).expiry)
    assert.is_false(find(r.out, "refresh"))
  end)

  it("takes a positional profile or host, and maps a host to its one profile", function()
    local home = setup_home()
    assert.equal("cli-access", decode(ok(run(home, { "token", "cli" })).out).access_token)
    assert.equal("cli-access", decode(ok(run(home, { "token", "--host", "cli.cloud.databricks.com/" })).out)
      .access_token)
    assert.equal("other-access", decode(ok(run(home, { "token", "https://other.cloud.databricks.com" })).out)
      .access_token)
    assert.equal("acc-access", decode(ok(run(home, { "token", "--host", "https://accounts.cloud.databricks.com",
      "--account-id", "acc-1" })).out).access_token)
    assert.equal("acc-access", decode(ok(run(home, { "token", "--profile", "acc" })).out).access_token)
  end)

  it("follows the CLI's order without flags: DATABRICKS_HOST, DATABRICKS_CONFIG_PROFILE, default_profile", function()
    local home = setup_home()
    -- [DEFAULT] has a host but is a PAT profile: the fallback to it ends there
    local r = failed(run(home, { "token" }))
    assert.matches('^Error: profile "DEFAULT" uses a personal access token', r.err)
    r = ok(run(home, { "token" }, { DATABRICKS_HOST = "https://other.cloud.databricks.com",
      DATABRICKS_CONFIG_PROFILE = "cli" }))
    assert.equal("cli-access", decode(r.out).access_token)         -- the profile variable first
    r = ok(run(home, { "token" }, { DATABRICKS_HOST = "https://other.cloud.databricks.com" }))
    assert.equal("other-access", decode(r.out).access_token)
    r = ok(run(home, { "token" }, { DATABRICKS_CONFIG_PROFILE = "cli" }))
    assert.equal("cli-access", decode(r.out).access_token)
    files.write(home .. "/.databrickscfg", CFG .. "[__settings__]\ndefault_profile = acc\n")
    assert.equal("acc-access", decode(ok(run(home, { "token" })).out).access_token)
    files.write(home .. "/.databrickscfg",
      "[a]\nhost = https://a.cloud.databricks.com\n[b]\nhost = https://b.example\n")
    r = failed(run(home, { "token" }))
    assert.equal("Error: no profile specified. Use --profile <name> to specify which profile to use\n", r.err)
    r = failed(run(files.tmpdir(), { "token" }))
    assert.matches("^Error: no profiles configured%. Run 'databricks auth login' to create a profile\nhint: ", r.err)
  end)

  it("never prints a user login for a profile of another identity (a PAT profile of the same host)", function()
    local home = files.home(CFG .. "[patprof]\nhost = https://cli.cloud.databricks.com\ntoken = " .. PAT
      .. "\n\n[typed]\nhost = https://cli.cloud.databricks.com\nauth_type = pat\n\n[__settings__]\n")
    write_cache(home, {
      ["https://cli.cloud.databricks.com"] = { access_token = "cli-host-access", token_type = "Bearer",
        refresh_token = "cli-host-refresh", expiry = tokencache.format_time(now + 3000) },
    })
    local r = failed(run(home, { "token", "--profile", "patprof" }))
    assert.matches('^Error: profile "patprof" uses a personal access token %(token%); `dbxauth token` serves only '
      .. "user logins", r.err)
    assert.is_false(find(r.err, "cli-host-access"))
    assert.is_false(find(r.err, PAT))
    r = failed(run(home, { "token", "--profile", "typed" }))
    assert.matches('^Error: profile "typed" uses auth_type = pat;', r.err)
  end)

  it("says how to log in when there is no cached login", function()
    local home = setup_home()
    local r = failed(run(home, { "token", "--host", "https://nologin.cloud.databricks.com" }))
    assert.equal("Error: cache: databricks OAuth is not configured for this host. no cached credentials; "
      .. "run `databricks auth login` to sign in\n"
      .. "hint: or log in with dbxauth: dbxauth login --host https://nologin.cloud.databricks.com\n", r.err)
    r = failed(run(home, { "token", "--profile", "browser" }))
    assert.matches("hint: or log in with dbxauth: dbxauth login %-%-profile browser\n$", r.err)
    r = failed(run(home, { "token", "--profile", "sp" }))
    assert.matches('^Error: profile "sp" uses M2M authentication', r.err)
    assert.is_false(find(r.err, SECRET))
    r = failed(run(home, { "token", "--profile", "nope" }))
    assert.matches("has no nope profile configured", r.err, 1, true)
    r = failed(run(home, { "token", "--profile", "cli", "x" }))
    assert.equal("Error: providing both a profile and host is not supported\n", r.err)
  end)
end)

---------------------------------------------------------------------------------------------

describe("dbxauth login (fake workspace)", function()
  local ws

  setup(function() ws = fake.start() end)
  teardown(function() if ws then ws:stop() end end)
  before_each(function() ws:reset() end)

  -- An ephemeral port that was free a moment ago: logins listen there (other runs of these
  -- specs on this machine may hold 8020), except where 8020 is the point.
  local function free_port()
    local l = assert(core.listen { ports = { 0 } })
    local p = l:port()
    l:close()
    return tostring(p)
  end

  local function env(extra)
    local e = { SSL_CERT_FILE = ws.ca_file, DATABRICKS_OAUTH_CALLBACK_PORT = free_port(),
                BROWSER = "curl -s -L --max-time 20 --cacert " .. q(ws.ca_file) .. " -o /dev/null %s" }
    for k, v in pairs(extra or {}) do e[k] = v or nil end
    return e
  end

  local EXISTING = table.concat({
    "; keep this comment",
    "[DEFAULT]",
    "host = https://dflt.cloud.databricks.com",
    "token = " .. PAT,
    "",
    "# the dev workspace",
    "[dev]",
    "# old PAT setup",
    "host = HOST",
    "token = " .. PAT,
    "cluster_id = 0101-abc",
    "",
    "[other]",
    "host = https://other.cloud.databricks.com ; inline comment",
    "",
  }, "\n")

  it("logs in, updates the profile in place and serves the token", function()
    local home = files.home((EXISTING:gsub("HOST", ws.url)))
    local r = ok(run(home, { "login", "--profile", "dev", "--timeout", "30s", "-o", "json" }, env()))
    assert.same({ profile = "dev", host = ws.url }, decode(r.out))
    assert.matches('^{\n  "profile": "dev",\n  "host": ', r.out)
    assert.matches("Profile dev was successfully saved\n$", r.err)
    -- the file: [dev] rewritten where it was, comments and other profiles byte for byte
    local text = files.read(home .. "/.databrickscfg")
    assert.equal(EXISTING:gsub("HOST", ws.url):gsub("host = " .. ws.url:gsub("%p", "%%%0") .. "\ntoken = [^\n]*\n",
      "host = " .. ws.url .. "\nauth_type = databricks-cli\n"), text)   -- not the first profile with a host:
    assert.is_nil(profiles.default_profile(home .. "/.databrickscfg"))  -- no default_profile
    assert.equal(tonumber("600", 8), core.stat(home .. "/.databrickscfg").mode)
    assert.equal(EXISTING:gsub("HOST", ws.url), files.read(home .. "/.databrickscfg.bak"))
    -- the cache: under the profile and the host, as the CLI keys it
    local doc = cache(home)
    local access = doc.tokens.dev.access_token
    assert.truthy(doc.tokens.dev.refresh_token)
    assert.equal(access, doc.tokens[ws.url].access_token)
    -- token prints it
    r = ok(run(home, { "token", "--profile", "dev" }, env()))
    local tok = decode(r.out)
    assert.equal(access, tok.access_token)
    assert.equal("Bearer", tok.token_type)
    assert.matches(RFC3339, tok.expiry)
    assert.is_nil(tok.refresh_token)
    assert.equal(access .. "\n", ok(run(home, { "token", "dev", "-o", "text" }, env())).out)
    -- the profile authenticates through the databricks-cli auth type (the cache, no CLI installed)
    r = ok(run(home, { "profiles", "-o", "json" }, env()))
    local by = {}
    for _, p in ipairs(decode(r.out).profiles) do by[p.name] = p end
    assert.is_true(by.dev.valid)
    assert.equal("databricks-cli", by.dev.auth_type)
    r = ok(run(home, { "describe", "--profile", "dev", "-o", "json" }, env()))
    local d = decode(r.out)
    assert.equal("success", d.status)
    assert.equal("databricks-cli", d.details.auth_type)
    assert.equal("user@example.com", d.username)       -- the fake's U2M user (fake/oauth.lua)
    assert.same({ value = "0101-abc", auth_type_mismatch = false,
      source = { type = "config file", name = home .. "/.databrickscfg" } }, d.details.configuration.cluster_id)
  end)

  it("refreshes an expired login on `token`, and on --force-refresh", function()
    local home = files.tmpdir()
    ok(run(home, { "login", "--host", ws.url, "--profile", "p" }, env()))
    local doc = cache(home)
    local first = doc.tokens.p.access_token
    doc.tokens.p.expiry = tokencache.format_time(os.time() - 60)
    files.write(home .. CACHE, tokencache.encode(doc))
    local r = ok(run(home, { "token", "--profile", "p" }, env()))
    local tok = decode(r.out)
    assert.not_equal(first, tok.access_token)
    assert.equal(3600, tok.expires_in)           -- known after a refresh
    assert.matches('"expiry": "[^"]+",\n  "expires_in": 3600\n}$', r.out)
    assert.equal(tok.access_token, cache(home).tokens.p.access_token)
    local second = tok.access_token
    tok = decode(ok(run(home, { "token", "--profile", "p", "--force-refresh" }, env())).out)
    assert.not_equal(second, tok.access_token)
    assert.equal(3, ws:counters()["POST /oidc/v1/token"])   -- one code exchange, two refreshes
  end)

  it("without a terminal to ask for a name, caches the login under the host only (as the CLI)", function()
    local home = files.tmpdir()
    local r = ok(run(home, { "login", ws.url, "--scopes", "sql files", "-o", "json" }, env()))
    assert.same({ host = ws.url }, decode(r.out))
    assert.is_nil(files.read(home .. "/.databrickscfg"))
    assert.same({ ws.url }, (function() local k = {} for n in pairs(cache(home).tokens) do k[#k + 1] = n end
      return k end)())
    assert.equal("", ok(run(home, { "login", ws.url }, env())).out)   -- text: nothing on stdout
    ok(run(home, { "login", "--host", ws.url, "--profile", "sc", "--scopes", "sql files" }, env()))
    assert.same({ host = ws.url, auth_type = "databricks-cli", scopes = "files,sql" },
      profiles.get(home .. "/.databrickscfg", "sc"))
  end)

  it("logs in to an account console as ACCOUNT-<id>", function()
    local home = files.tmpdir()
    local A = fake.CREDS.account_id
    local r = ok(run(home, { "login", "--host", ws.account_url, "--account-id", A, "-p", "ACCOUNT-" .. A,
      "-o", "json" }, env()))
    assert.same({ profile = "ACCOUNT-" .. A, host = ws.account_url }, decode(r.out))
    assert.same({ host = ws.account_url, account_id = A, auth_type = "databricks-cli" },
      profiles.get(home .. "/.databrickscfg", "ACCOUNT-" .. A))
    local doc = cache(home)
    assert.truthy(doc.tokens["ACCOUNT-" .. A])
    assert.truthy(doc.tokens[ws.account_url .. "/oidc/accounts/" .. A])
    r = failed(run(home, { "login", "--host", ws.account_url }, env()))
    assert.equal("Error: the command is being run in a non-interactive environment, please specify an account ID "
      .. "using --account-id\n", r.err)
  end)

  it("fails cleanly when the login does not complete", function()
    local home = files.tmpdir()
    local e = env { BROWSER = "true %s" }
    local r = failed(run(home, { "login", "--host", ws.url, "--timeout", "1" }, e))
    assert.matches("^Please continue the authentication process in your browser:\nhttps://[^\n]+\n"
      .. "Waiting up to 1 s for the browser to come back to http://localhost:" .. e.DATABRICKS_OAUTH_CALLBACK_PORT
      .. " %(press Ctrl%-C to cancel%)\n"
      .. "Error: no browser login arrived in time %(waited 1 s%)\nhint: [^\n]*dbxauth login %-%-timeout 10m\n$", r.err)
    assert.is_nil(files.read(home .. "/.databrickscfg"))
    ws:set { authorize_error = "access_denied", authorize_error_description = "the user said no" }
    r = failed(run(home, { "login", "--host", ws.url }, env()))
    assert.matches("\nError: access_denied: the user said no", r.err)
    r = failed(run(home, { "login" }, env()))
    assert.equal("Error: the command is being run in a non-interactive environment, please specify a host using "
      .. "--host\n", r.err)
    r = failed(run(home, { "login", "--host", ws.url, "--timeout", "soon" }, env()))
    assert.equal('Error: invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"\n', r.err)
    r = failed(run(home, { "login", "--host", ws.url, "--configure-cluster" }, env()))
    assert.matches("^Error: %-%-configure%-cluster is not supported by dbxauth", r.err)
    r = failed(run(home, { "login", "--host", ws.url, "--configure-cluster", "--configure-serverless" }, env()))
    assert.equal("Error: please either configure serverless or cluster, not both\n", r.err)
    r = failed(run(home, { "login", "nosuchprofile" }, env()))
    assert.equal('Error: no matching profile found: "nosuchprofile"\n', r.err)
    r = failed(run(home, { "login", ws.url, "--host", ws.url }, env()))
    assert.matches('^Error: argument "[^"]+" cannot be combined with %-%-host or %-%-profile', r.err)
    for k in pairs(ws:counters()) do assert.not_matches("token", k) end   -- none got as far as a login
  end)

  it("prints the URL on stderr (for a browser on another machine)", function()
    local home = files.tmpdir()
    local r = failed(run(home, { "login", "--host", ws.url, "--timeout", "1" },
      env { BROWSER = false, PATH = "/nonexistent" }))
    assert.matches("Please continue the authentication process in your browser:\n"
      .. "https://localhost:%d+/oidc/v1/authorize%?", r.err)
  end)

  it("fails within 2 seconds with port_in_use when 8020 is busy", function()
    local home = files.tmpdir()
    local l
    local deadline = core.now() + 20                  -- another run of these specs may hold it
    repeat
      l = core.listen { ports = { 8020 } }
      if not l then core.sleep(0.2) end
    until l or core.now() > deadline
    assert(l, "port 8020 stayed busy for 20 s")
    local t0 = core.now()
    local r = failed(run(home, { "login", "--host", ws.url, "--timeout", "30" },
      env { DATABRICKS_OAUTH_CALLBACK_PORT = false }))
    local dt = core.now() - t0
    l:close()
    assert.is_true(dt < 2, string.format("took %.2f s", dt))
    assert.matches("^Error: failed to listen on localhost:8020: address already in use; [^\n]*\n"
      .. "hint: the databricks%-cli OAuth client accepts only the redirect URL http://localhost:8020[^\n]*\n$", r.err)
    assert.is_nil(files.read(home .. "/.databrickscfg"))
    for k in pairs(ws:counters()) do assert.not_matches("/oidc/", k) end   -- no browser, no authorize
  end)

  it("ends at once on Ctrl-C while it waits for the browser", function()
    local home = files.tmpdir()
    local e = env { BROWSER = "true %s" }
    local dir = files.tmpdir()
    local assign = { "HOME=" .. q(home) }
    for k, v in pairs(LUA_ENV) do assign[#assign + 1] = k .. "=" .. q(v) end
    for k, v in pairs(e) do assign[#assign + 1] = k .. "=" .. q(v) end
    -- sh writes its pid and becomes the command (exec), so the pid is the interpreter's
    os.execute("(cd " .. q(ROOT) .. " && sh -c " .. q("echo $$ > " .. q(dir .. "/pid") .. "; exec env -i "
      .. table.concat(assign, " ") .. " " .. q(LUA54) .. " bin/dbxauth login --host " .. q(ws.url)
      .. " --timeout 60") .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err") .. " </dev/null; echo $? > "
      .. q(dir .. "/rc") .. ") >/dev/null 2>&1 &")
    local deadline = core.now() + 10
    while not (files.read(dir .. "/err") or ""):find("Ctrl-C", 1, true) and core.now() < deadline do
      core.sleep(0.05)
    end
    local pid = assert((files.read(dir .. "/pid") or ""):match("%d+"), "no pid")
    local t0 = core.now()
    os.execute("kill -INT " .. pid)
    while not files.read(dir .. "/rc") and core.now() < t0 + 10 do core.sleep(0.05) end
    local dt = core.now() - t0
    assert.is_true(dt < 2, string.format("took %.2f s", dt))
    assert.equal("130", (files.read(dir .. "/rc") or ""):match("%d+"))
    local err = files.read(dir .. "/err")
    assert.matches("\nWaiting up to 60 s for the browser to come back to http://localhost:"
      .. e.DATABRICKS_OAUTH_CALLBACK_PORT .. " %(press Ctrl%-C to cancel%)\nError: interrupted\n$", err)
    assert.equal("", files.read(dir .. "/out"))
    -- the port is free again
    assert(core.listen { ports = { tonumber(e.DATABRICKS_OAUTH_CALLBACK_PORT) } }):close()
  end)
end)

---------------------------------------------------------------------------------------------
-- In process (so under LuaJIT too): cli.main with an injected environment, and the profile
-- editor's edge cases.

describe("cli.main in process", function()
  local cli = require "dbxauth.cli"

  local function main(args, env, home)
    local out, err = {}, {}
    local code = cli.main(args, { getenv = function(k) return env[k] end, home = home,
      stdout = function(s) out[#out + 1] = s end, stderr = function(s) err[#err + 1] = s end })
    return code, table.concat(out), table.concat(err)
  end

  it("runs the commands with the given environment and home", function()
    local home = files.home(CFG)
    local code, out, err = main({ "profiles", "--skip-validate", "-o", "json" }, {}, home)
    assert.equal(0, code)
    assert.equal("", err)
    assert.equal(5, #decode(out).profiles)                 -- [nohost] has neither host nor account id
    code, out = main({ "describe", "-o", "json" }, { DATABRICKS_CONFIG_PROFILE = "sp" }, home)
    assert.equal(0, code)
    local d = decode(out)
    assert.same({ value = "sp", auth_type_mismatch = false,
      source = { type = "environment variable", name = "DATABRICKS_CONFIG_PROFILE" } }, d.details.configuration.profile)
    assert.is_false(find(out, SECRET))
    code, out, err = main({ "token", "--profile", "cli" }, {}, home)
    assert.equal(1, code)
    assert.equal("", out)
    assert.matches("^Error: cache: databricks OAuth is not configured", err)
  end)

  it("encodes JSON in the order given", function()
    assert.equal('{\n  "b": 1,\n  "a": [\n    true,\n    "x/y"\n  ],\n  "c": {},\n  "d": []\n}',
      cli.json(cli.obj("b", 1, "z", nil, "a", { true, "x/y" }, "c", cli.obj(), "d", {})))
  end)
end)

describe("profiles.edit", function()
  local ini = require "dbxauth.ini"
  local E = { { "host", "https://h" }, { "auth_type", "databricks-cli" } }

  local function edit(text, name, entries)
    return assert(profiles.edit(text, name, entries or E))
  end

  it("creates the file's first profile", function()
    assert.equal("[dev]\nhost = https://h\nauth_type = databricks-cli\n", edit("", "dev"))
  end)

  it("appends a new profile after a blank line, the rest untouched", function()
    local text = "; c\n[a]\nk = v # inline\n"
    assert.equal(text .. "\n[dev]\nhost = https://h\nauth_type = databricks-cli\n", edit(text, "dev"))
    assert.equal("[a]\nk=v\n\n[dev]\nhost = https://h\nauth_type = databricks-cli\n", edit("[a]\nk=v", "dev"))
  end)

  it("drops multi-line values and merges duplicate sections as go-ini reads them", function()
    local text = '[dev]\npassword = """multi\nline"""\nk = a\\\n  b\n# kept\n[x]\ny = 1\n[dev]\ntoken = t\n'
    local new = edit(text, "dev")
    assert.equal("[dev]\nhost = https://h\nauth_type = databricks-cli\n# kept\n[x]\ny = 1\n[dev]\n", new)
    local sections = assert(ini.parse(new))
    assert.same({ host = "https://h", auth_type = "databricks-cli" }, sections.dev)
  end)

  it("edits keys before the first header as DEFAULT", function()
    assert.equal("host = https://h\nauth_type = databricks-cli\n[x]\na=1\n",
      edit("host = top\ntoken = t\n[x]\na=1", "DEFAULT"))
  end)

  it("puts the keys after a section's comments when it has no keys", function()
    assert.equal("[dev]\n# note\nhost = https://h\nauth_type = databricks-cli\n\n[b]\nk=v\n",
      edit("[dev]\n# note\n\n[b]\nk=v\n", "dev"))
  end)

  it("writes values that would not read back plainly as raw values", function()
    local new = edit("", "p", { { "scopes", "sql, x # y" }, { "v", " lead" }, { "w", "a\\" }, { "q", "'x'" } })
    assert.same({ scopes = "sql, x # y", v = " lead", w = "a\\", q = "'x'" }, assert(ini.parse(new)).p)
    local _, err = profiles.edit("", "p", { { "k", "two\nlines" } })
    assert.equal("value of k contains a line break", err.message)
  end)

  it("refuses reserved and malformed profile names", function()
    for _, name in ipairs { "__settings__", "", " x", "a\nb" } do
      local new, err = profiles.edit("", name, E)
      assert.is_nil(new)
      assert.equal("config", err.code)
    end
  end)

  it("saves atomically with mode 0600 and keeps a backup", function()
    local dir = files.tmpdir()
    local path = dir .. "/sub/cfg"
    assert(profiles.save(path, "a", E))
    assert.equal(tonumber("600", 8), core.stat(path).mode)
    assert.is_nil(files.read(path .. ".bak"))
    assert(profiles.save(path, "b", E))
    assert.equal("[a]\nhost = https://h\nauth_type = databricks-cli\n", files.read(path .. ".bak"))
    files.write(path, "[a]\nbroken line\n")
    local ok_, err = profiles.save(path, "a", E)
    assert.is_nil(ok_)
    assert.matches("^cannot parse config file: ", err.message)
    assert.equal("[a]\nbroken line\n", files.read(path))
  end)
end)

---------------------------------------------------------------------------------------------

describe("dbxauth output hygiene", function()
  it("never prints a secret, and access tokens only on the stdout of `token`", function()
    local secrets = { PAT, SECRET, fake.CREDS.password }
    local access = {}
    -- every token the runs above left in a cache
    local seen = {}
    for _, r in ipairs(outputs) do
      if not seen[r.home] then
        seen[r.home] = true
        local doc = cjson.decode(files.read(r.home .. CACHE) or "null")
        for _, e in pairs(type(doc) == "table" and doc.tokens or {}) do
          if e.refresh_token then secrets[#secrets + 1] = e.refresh_token end
          access[#access + 1] = e.access_token
        end
      end
    end
    assert.is_true(#outputs > 40)
    assert.is_true(#access > 10)
    for _, r in ipairs(outputs) do
      local what = table.concat(r.args, " ")
      for _, s in ipairs(secrets) do
        assert.is_false(find(r.out, s), "secret in stdout of " .. what)
        assert.is_false(find(r.err, s), "secret in stderr of " .. what)
      end
      for _, tok in ipairs(access) do
        assert.is_false(find(r.err, tok), "access token in stderr of " .. what)
        if r.args[1] ~= "token" then assert.is_false(find(r.out, tok), "access token in stdout of " .. what) end
      end
    end
  end)
end)
