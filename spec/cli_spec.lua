-- auth_type databricks-cli (notes §8.4, §11 cases 59-61, decision D12): the CLI's token cache
-- first, then `databricks auth token` run as a subprocess. The CLI here is a shell script the
-- spec writes (padded past 1 MiB so it passes for the Go CLI) that logs its arguments and
-- answers from files the spec controls.
local dbxauth = require "dbxauth"
local cjson = require "cjson"
local tokencache = require "dbxauth.tokencache"
local fake_transport = require "spec.support.fake_transport"
local files = require "spec.support.files"

local q = files.q
local HOST = "https://dbc-1234.cloud.databricks.com"
local ACCOUNTS = "https://accounts.cloud.databricks.com"
local ACCOUNT_ID = "abc-account"
local DOCS = "https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication"
local NO_CREDENTIALS = "default auth: cannot configure default credentials, please check " .. DOCS
  .. " to configure credentials for your preferred authentication method"
local T0 = 1800000000

-- A fake `databricks` in a fresh directory. Files in that directory steer it: version (printed
-- by `databricks version`; absent = the command fails), stdout, stderr, exit (for `auth token`).
-- Every call appends its arguments to argv.log and its HOME / DATABRICKS_CONFIG_FILE to env.log.
-- A file `sleep` makes `auth token` wait that many seconds first (its pid and its sleep's in pids).
local function fake_cli(opts)
  opts = opts or {}
  local dir = files.tmpdir()
  local path = dir .. "/" .. (opts.name or "databricks")
  local script = table.concat({
    "#!/bin/sh",
    "d=" .. q(dir),
    'echo "$*" >> "$d/argv.log"',
    'echo "HOME=$HOME CONFIG=$DATABRICKS_CONFIG_FILE" >> "$d/env.log"',
    'case "$1" in',
    '  version) [ -f "$d/version" ] || { echo "unknown command" >&2; exit 1; }; cat "$d/version"; exit 0 ;;',
    '  auth) if [ -f "$d/sleep" ]; then sleep "$(cat "$d/sleep")" & echo "$$ $!" > "$d/pids"; wait; fi',
    '        [ -f "$d/stderr" ] && cat "$d/stderr" >&2',
    '        [ -f "$d/stdout" ] && cat "$d/stdout"',
    '        exit "$(cat "$d/exit" 2>/dev/null || echo 0)" ;;',
    "esac",
    "exit 2",
    "",
  }, "\n")
  if not opts.small then
    local line = "# padding: the Go CLI is a large binary, the legacy Python CLI a small script\n"
    script = script .. line:rep(math.ceil(1100000 / #line))
  end
  files.write(path, script)
  assert(os.execute("chmod 755 " .. q(path)))
  local cli = { dir = dir, path = path }
  function cli.set(name, text)
    if text == nil then os.remove(dir .. "/" .. name) else files.write(dir .. "/" .. name, text) end
  end
  function cli.calls()
    local out = {}
    for l in (files.read(dir .. "/argv.log") or ""):gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end
  function cli.token_calls()
    local out = {}
    for _, l in ipairs(cli.calls()) do
      if l:find("^auth token") then out[#out + 1] = l end
    end
    return out
  end
  function cli.respond(tok)
    cli.set("stdout", cjson.encode(tok))
    cli.set("stderr", nil)
    cli.set("exit", nil)
  end
  if opts.version ~= false then cli.set("version", "Databricks CLI v" .. (opts.version or "0.296.0") .. "\n") end
  return cli
end

local function cli_json(access_token, expiry)
  return { access_token = access_token, token_type = "Bearer", expiry = tokencache.format_time(expiry) }
end

local clock_now
local function clock() return clock_now end

-- A configuration with the injected environment (PATH included) and a fresh home.
local function config(opts, env, home)
  home = home or files.tmpdir()
  opts.transport = opts.transport or fake_transport.new {}
  return dbxauth.config(opts, { env = env or {}, home = home, clock = clock }), home
end

local function cache_entry(home, keys, entry)
  local doc = { version = 1, tokens = {} }
  for _, k in ipairs(keys) do doc.tokens[k] = entry end
  files.write(home .. "/.databricks/token-cache.json", cjson.encode(doc))
end

before_each(function() clock_now = T0 end)

describe("databricks-cli: the token cache", function()
  it("serves a cached token without running the CLI", function()
    local cli = fake_cli()
    cli.respond(cli_json("from-cli", T0 + 3600))
    local home = files.tmpdir()
    cache_entry(home, { HOST }, { access_token = "from-cache", token_type = "Bearer",
      refresh_token = "rt-secret", expiry = tokencache.format_time(T0 + 3600) })
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }, home))
    assert.same({ Authorization = "Bearer from-cache" }, assert(cfg:authenticate()))
    assert.equal("databricks-cli", cfg.auth_type)
    assert.same({}, cli.calls())
  end)

  it("applies with a cache entry and no CLI at all, keyed by profile", function()
    local home = files.tmpdir()
    files.write(home .. "/.databrickscfg", "[dev]\nhost = " .. HOST .. "\nauth_type = databricks-cli\n")
    cache_entry(home, { "dev" }, { access_token = "profile-token", expiry = tokencache.format_time(T0 + 600) })
    local cfg = assert(config({ profile = "dev" }, {}, home))
    assert.same({ Authorization = "Bearer profile-token" }, assert(cfg:authenticate()))
  end)

  it("refreshes an expired cached token at the token endpoint, not through the CLI", function()
    local cli = fake_cli()
    local home = files.tmpdir()
    cache_entry(home, { HOST }, { access_token = "old", refresh_token = "rt-old",
      expiry = tokencache.format_time(T0 - 10) })
    local t = fake_transport.new {
      { pattern = "/oidc/%.well%-known/oauth%-authorization%-server$", respond = function()
        return { status = 200, body = cjson.encode { authorization_endpoint = HOST .. "/oidc/v1/authorize",
          token_endpoint = HOST .. "/oidc/v1/token" } } end },
      { method = "POST", url = HOST .. "/oidc/v1/token", respond = function(req)
        assert.matches("grant_type=refresh_token", req.body)
        return { status = 200, body = '{"access_token":"new","refresh_token":"rt-new","expires_in":3600}' }
      end },
    }
    local cfg = assert(config({ host = HOST, transport = t }, { PATH = cli.dir }, home))
    assert.same({ Authorization = "Bearer new" }, assert(cfg:authenticate()))
    assert.same({}, cli.token_calls())
    local doc = cjson.decode(files.read(home .. "/.databricks/token-cache.json"))
    assert.equal("new", doc.tokens[HOST].access_token)
  end)
end)

describe("databricks-cli: running the CLI", function()
  it("runs `auth token` once per token lifetime", function()
    local cli = fake_cli()
    cli.respond(cli_json("tok-1", T0 + 3600))
    local cfg, home = config({ host = HOST }, { PATH = "/nonexistent:" .. cli.dir })
    assert.same({ Authorization = "Bearer tok-1" }, assert(cfg:authenticate()))
    assert.equal("databricks-cli", cfg.auth_type)
    for _ = 1, 5 do assert(cfg:authenticate()) end
    clock_now = T0 + 1000
    assert(cfg:authenticate())
    assert.equal(1, #cli.token_calls())
    assert.same({ "version", "auth token --host " .. HOST }, cli.calls())   -- not forced: no --force-refresh
    -- the CLI shares the configuration's home
    assert.matches("HOME=" .. home:gsub("%p", "%%%0"), files.read(cli.dir .. "/env.log"))
    -- past expiry: one more run, the new token
    cli.respond(cli_json("tok-2", T0 + 7200))
    clock_now = T0 + 3590
    assert.same({ Authorization = "Bearer tok-2" }, assert(cfg:authenticate()))
    assert.equal(2, #cli.token_calls())
    assert(cfg:authenticate())
    assert.equal(2, #cli.token_calls())
    local tok = assert(cfg:token())
    assert.equal(T0 + 7200, tok.expiry)
    assert.not_matches("tok%-2", tostring(tok))
  end)

  it("asks the CLI again only when it would refresh (under 5 minutes left), whatever its version", function()
    for _, version in ipairs { "0.296.0", "0.250.0" } do
      local cli = fake_cli { version = version }
      cli.respond(cli_json("tok-1", T0 + 3600))
      clock_now = T0
      local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
      assert(cfg:authenticate())
      for t = T0 + 2500, T0 + 3200, 100 do         -- the refresh-ahead window: the CLI would hand back tok-1
        clock_now = t
        assert.same({ Authorization = "Bearer tok-1" }, assert(cfg:authenticate()))
      end
      assert.equal(1, #cli.token_calls(), version)
      cli.respond(cli_json("tok-2", T0 + 3400 + 3600))
      clock_now = T0 + 3400                         -- under 5 minutes left: the CLI refreshes by itself
      assert.same({ Authorization = "Bearer tok-2" }, assert(cfg:authenticate()))
      assert.same({ "auth token --host " .. HOST, "auth token --host " .. HOST }, cli.token_calls(), version)
    end
  end)

  it("forces a fresh token with cfg:token{force_refresh = true}: --force-refresh when the CLI has it", function()
    for version, flag in pairs { ["0.296.0"] = " --force-refresh", ["0.295.9"] = "" } do
      local cli = fake_cli { version = version }
      cli.respond(cli_json("tok-1", T0 + 3600))
      local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
      assert(cfg:authenticate())
      cli.respond(cli_json("tok-2", T0 + 3600))
      assert.equal("tok-2", assert(cfg:token { force_refresh = true }).access_token)
      assert.same({ Authorization = "Bearer tok-2" }, assert(cfg:authenticate()))
      assert.same({ "auth token --host " .. HOST, "auth token --host " .. HOST .. flag }, cli.token_calls())
    end
  end)

  it("stops a CLI that runs past databricks_cli_timeout_seconds, and says so", function()
    local cli = fake_cli()
    cli.respond(cli_json("tok-1", T0 + 3600))
    cli.set("sleep", "30")
    local cfg = assert(config({ host = HOST, databricks_cli_timeout_seconds = 1 }, { PATH = cli.dir }))
    local t0 = os.time()
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.is_true(os.time() - t0 < 15, "the CLI was not stopped")
    assert.equal("timeout", err.code)
    assert.matches("cannot get access token: `" .. cli.path:gsub("%p", "%%%0") .. " auth token %-%-host "
      .. HOST:gsub("%p", "%%%0") .. "` did not finish within 1 s and was stopped", err.message)
    assert.matches("databricks_cli_timeout_seconds", err.hint)
    -- the script and the sleep it started are gone (zombies count: init reaps them), within a
    -- moment of the signal
    local pids = assert(files.read(cli.dir .. "/pids"))
    for pid in pids:gmatch("%d+") do
      local deadline, stat = os.time() + 5
      repeat
        stat = files.read("/proc/" .. pid .. "/stat")
        if stat == nil or stat:match("^%d+ %b() (%a)") == "Z" then break end
        os.execute("sleep 0.05")
      until os.time() > deadline
      assert.is_true(stat == nil or stat:match("^%d+ %b() (%a)") == "Z", "process " .. pid .. " still runs")
    end
  end)

  it("gives the CLI 60 s by default", function()
    local cli = fake_cli()
    cli.respond(cli_json("tok-1", T0 + 3600))
    cli.set("sleep", "2")                           -- slow, but well within the default
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    assert.same({ Authorization = "Bearer tok-1" }, assert(cfg:authenticate()))
  end)

  it("parses token_type and expiry with an offset", function()
    local cli = fake_cli()
    cli.set("stdout", '{"access_token":"a","token_type":"Bearer","expiry":"2027-01-15T10:00:00.5+01:00"}')
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    local tok = assert(cfg:token())
    assert.equal(tokencache.parse_time("2027-01-15T09:00:00.5Z"), tok.expiry)
    assert.equal("Bearer", tok.token_type)
  end)

  describe("version-dependent arguments (case 61)", function()
    local function args_for(version, opts, cfgfile)
      local cli = fake_cli { version = version }
      cli.respond(cli_json("t", T0 + 3600))
      local home = files.tmpdir()
      if cfgfile then files.write(home .. "/.databrickscfg", cfgfile) end
      local cfg = assert(config(opts, { PATH = cli.dir }, home))
      assert(cfg:authenticate())
      return cli.token_calls()[1]
    end
    local PROFILE = "[my-profile]\nhost = " .. HOST .. "\n"

    it("0.296.0 with a profile: --profile (--force-refresh only when forced)", function()
      assert.equal("auth token --profile my-profile", args_for("0.296.0", { profile = "my-profile" }, PROFILE))
    end)
    it("0.207.1 with a profile: --profile", function()
      assert.equal("auth token --profile my-profile", args_for("0.207.1", { profile = "my-profile" }, PROFILE))
    end)
    it("0.207.0 with a profile: --host", function()
      assert.equal("auth token --host " .. HOST, args_for("0.207.0", { profile = "my-profile" }, PROFILE))
    end)
    it("0.200.0 with an account host: --host and --account-id", function()
      assert.equal("auth token --host " .. ACCOUNTS .. " --account-id " .. ACCOUNT_ID,
        args_for("0.200.0", { host = ACCOUNTS, account_id = ACCOUNT_ID }))
    end)
    it("unknown version: the --host form without --force-refresh", function()
      assert.equal("auth token --host " .. HOST, args_for(false, { profile = "my-profile" }, PROFILE))
    end)
    it("a dev build counts as old", function()
      assert.equal("auth token --host " .. HOST, args_for("0.0.0-dev+abc", { host = HOST }))
    end)
    it("quotes what it passes to the shell", function()
      local cli = fake_cli { version = "0.296.0" }
      cli.respond(cli_json("t", T0 + 3600))
      local home = files.tmpdir()
      files.write(home .. "/.databrickscfg", "[it's; rm -rf x]\nhost = " .. HOST .. "\n")
      local cfg = assert(config({ profile = "it's; rm -rf x" }, { PATH = cli.dir }, home))
      assert(cfg:authenticate())
      assert.equal("auth token --profile it's; rm -rf x", cli.token_calls()[1])
    end)
  end)

  it("honours DATABRICKS_CLI_PATH (a path) and databricks_cli_path (a name on PATH)", function()
    local cli = fake_cli { name = "my-databricks" }
    cli.respond(cli_json("by-path", T0 + 3600))
    local cfg = assert(config({ host = HOST }, { DATABRICKS_CLI_PATH = cli.path }))
    assert.same({ Authorization = "Bearer by-path" }, assert(cfg:authenticate()))
    cfg = assert(config({ host = HOST, databricks_cli_path = "my-databricks" }, { PATH = cli.dir }))
    assert.same({ Authorization = "Bearer by-path" }, assert(cfg:authenticate()))
    assert.equal(2, #cli.token_calls())
  end)
end)

describe("databricks-cli: errors", function()
  it("rejects explicit scopes (case 59) but takes scopes from the profile", function()
    local cli = fake_cli()
    cli.respond(cli_json("t", T0 + 3600))
    local cfg = assert(config({ host = HOST, auth_type = "databricks-cli", scopes = { "sql" } }, { PATH = cli.dir }))
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.equal("default auth: databricks-cli: custom scopes are not supported with databricks-cli auth; "
      .. "scopes are determined by what was last used when logging in with `databricks auth login`. "
      .. "Config: host=" .. HOST, err.message)
    assert.same({}, cli.calls())
    local home = files.tmpdir()
    files.write(home .. "/.databrickscfg", "[p]\nhost = " .. HOST .. "\nauth_type = databricks-cli\nscopes = sql\n")
    cfg = assert(config({ profile = "p" }, { PATH = cli.dir }, home))
    assert(cfg:authenticate())
  end)

  it("reports a missing CLI when auth_type asks for it, with a hint", function()
    local cfg = assert(config({ host = HOST, auth_type = "databricks-cli" }, { PATH = "/nonexistent" }))
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.equal("default auth: databricks-cli: databricks CLI not found. Config: host=" .. HOST, err.message)
    assert.matches("dbxauth login", err.hint)
    cfg = assert(config({ host = HOST, auth_type = "databricks-cli" },
      { DATABRICKS_CLI_PATH = "/nonexistent/databricks" }))
    h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.matches("databricks CLI not found", err.message)
  end)

  it("does not apply in the chain without a CLI or cache entry", function()
    local cfg = assert(config({ host = HOST }, { PATH = "/nonexistent" }))
    local _, err = cfg:authenticate()
    assert.equal(NO_CREDENTIALS .. ". Config: host=" .. HOST, err.message)
  end)

  it("detects the legacy (small) CLI", function()
    local cli = fake_cli { small = true }
    cli.respond(cli_json("t", T0 + 3600))
    local cfg = assert(config({ host = HOST, auth_type = "databricks-cli" }, { PATH = cli.dir }))
    local _, err = cfg:authenticate()
    assert.equal("default auth: databricks-cli: legacy databricks CLI detected; upgrade to >= 0.100.0. "
      .. "Config: host=" .. HOST, err.message)
    assert.matches("dbxauth login", err.hint)
    assert.same({}, cli.calls())
    -- in the chain it is skipped
    cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    _, err = cfg:authenticate()
    assert.equal(NO_CREDENTIALS .. ". Config: host=" .. HOST, err.message)
  end)

  it("reports output that is not JSON, without quoting it", function()
    local cli = fake_cli()
    cli.set("stdout", "secret-looking-output {")
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    local _, err = cfg:authenticate()
    assert.matches("^default auth: databricks%-cli: cannot parse CLI response: ", err.message)
    assert.not_matches("secret%-looking", err.message)
    cli.set("stdout", '{"token_type":"Bearer"}')
    cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    _, err = cfg:authenticate()
    assert.matches("cannot parse CLI response: no access_token", err.message, 1, true)
    cli.set("stdout", '{"access_token":"x","expiry":"tomorrow"}')
    cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    _, err = cfg:authenticate()
    assert.matches("cannot parse CLI response: expiry", err.message, 1, true)
  end)

  it("reports a failing CLI with its stderr and exit status", function()
    local cli = fake_cli()
    cli.set("stderr", "Error: refresh failed: token expired\n\n")
    cli.set("exit", "3")
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    local _, err = cfg:authenticate()
    assert.equal("default auth: databricks-cli: cannot get access token: Error: refresh failed: token expired: "
      .. "exit status 3. Config: host=" .. HOST, err.message)
    assert.matches("databricks auth login --host", err.hint, 1, true)
  end)

  it("falls through when the CLI says OAuth is not configured for the host", function()
    local cli = fake_cli()
    cli.set("stderr", "Error: cache: databricks OAuth is not configured for this host. no cached credentials; "
      .. "run `databricks auth login` to sign in\n")
    cli.set("exit", "1")
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    local _, err = cfg:authenticate()
    assert.equal(NO_CREDENTIALS .. ". Config: host=" .. HOST, err.message)
    assert.equal(1, #cli.token_calls())
    -- forced, the chain says the type is not configured
    cfg = assert(config({ host = HOST, auth_type = "databricks-cli" }, { PATH = cli.dir }))
    _, err = cfg:authenticate()
    assert.equal("databricks-cli auth: not configured. Config: host=" .. HOST, err.message)
  end)

  it("reports a refresh failure once the CLI stops working", function()
    local cli = fake_cli()
    cli.respond(cli_json("tok-1", T0 + 3600))
    local cfg = assert(config({ host = HOST }, { PATH = cli.dir }))
    assert(cfg:authenticate())
    cli.set("stderr", "Error: boom\n")
    cli.set("exit", "1")
    clock_now = T0 + 3600
    local h, err = cfg:authenticate()
    assert.is_nil(h)
    assert.equal("cannot get access token: Error: boom: exit status 1", err.message)
  end)
end)
