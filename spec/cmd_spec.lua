-- dbxauth profiles, describe, env, switch, logout and the help/README agreement, in process
-- against the fake workspace; outputs checked field by field against `databricks auth`'s.
local fake = require "spec.support.fake"
local files = require "spec.support.files"
local cmd = require "spec.support.cmd"
local core = require "dbxauth.core"
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"

local run, ok, failed, decode = cmd.run, cmd.ok, cmd.failed, cmd.decode
local PAT, SECRET, A = fake.CREDS.pat, fake.CREDS.client_secret, fake.CREDS.account_id
local BOGUS = "dapi-bogus-0000000000000000"

local ws
setup(function() ws = fake.start() end)
teardown(function() if ws then ws:stop() end end)
before_each(function() ws:reset(); require("dbxauth").clear_caches() end)

local function env(extra)
  local e = { SSL_CERT_FILE = ws.ca_file }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function cfg_text()
  return table.concat({
    "; my profiles",
    "[ws]",
    "host = " .. ws.url,
    "token = " .. PAT,
    "",
    "[bogus]",
    "host = " .. ws.url .. "/",
    "token = " .. BOGUS,
    "",
    "# the account",
    "[acct]",
    "host = " .. ws.account_url,
    "account_id = " .. A,
    "client_id = " .. fake.CREDS.client_id,
    "client_secret = " .. SECRET,
    "",
    "[nohost]",
    "token = " .. PAT,
    "",
    "[__settings__]",
    "default_profile = ws",
    "",
  }, "\n")
end

describe("dbxauth profiles", function()
  it("checks each profile with an API call: SCIM Me on workspaces, the workspace list on accounts", function()
    local home = files.home(cfg_text())
    local r = ok(run({ "profiles", "-o", "json" }, { env = env { DATABRICKS_TOKEN = BOGUS }, home = home }))
    assert.equal("", r.err)
    local want = '{\n  "profiles": [\n'
      .. '    {\n      "name": "ws",\n      "host": "' .. ws.url .. '",\n      "cloud": "aws",\n'
      .. '      "auth_type": "pat",\n      "valid": true,\n      "default": true\n    },\n'
      .. '    {\n      "name": "bogus",\n      "host": "' .. ws.url .. '",\n      "cloud": "aws",\n'
      .. '      "auth_type": "pat",\n      "valid": false\n    },\n'
      .. '    {\n      "name": "acct",\n      "host": "' .. ws.account_url .. '",\n      "account_id": "' .. A
      .. '",\n      "cloud": "aws",\n      "auth_type": "oauth-m2m",\n      "valid": true\n    }\n  ]\n}\n'
    assert.equal(want, r.out)                       -- DATABRICKS_TOKEN did not leak into [ws]
    local c = ws:counters()
    assert.equal(2, c["GET /api/2.0/preview/scim/v2/Me"])
    assert.equal(1, c["GET /api/2.0/accounts/" .. A .. "/workspaces"])
  end)

  it("prints the CLI's table by default", function()
    local home = files.home(cfg_text())
    local r = ok(run({ "profiles" }, { env = env(), home = home }))
    local w = #"bogus" + 0
    w = math.max(#"ws (Default)", w, #"acct", #"Name")
    local function row(a, b, c)
      return a .. string.rep(" ", w - #a + 2) .. b .. string.rep(" ", #ws.account_url - #b + 2) .. c .. "\n"
    end
    assert.equal(row("Name", "Host", "Valid") .. row("ws (Default)", ws.url, "YES") .. row("bogus", ws.url, "NO")
      .. row("acct", ws.account_url, "YES"), r.out)
  end)

  it("--skip-validate makes no request at all", function()
    local home = files.home(cfg_text() .. "[typed]\nhost = " .. ws.url .. "\nauth_type = pat\n")
    local r = ok(run({ "profiles", "--skip-validate", "-o", "json" }, { env = env(), home = home }))
    assert.is_nil(ws:counters().total ~= 0 and ws:counters().total or nil)
    local list = decode(r.out).profiles
    assert.equal(4, #list)
    for _, p in ipairs(list) do assert.is_false(p.valid) end
    assert.equal("", list[1].auth_type)
    assert.equal("pat", list[4].auth_type)
    assert.equal(ws.url, list[2].host)               -- canonical: the trailing / is gone
  end)

  it("gives up on a profile after 5 s", function()
    local home = files.home("[slow]\nhost = " .. ws.url .. "\ntoken = " .. PAT .. "\n")
    ws:fault { path = "/api/2.0/preview/scim/v2/Me", kind = "pass", delay = 30, count = -1 }
    local t0 = core.now()
    local r = ok(run({ "profiles", "-o", "json" }, { env = env(), home = home }))
    local dt = core.now() - t0
    assert.is_false(decode(r.out).profiles[1].valid)
    assert.is_true(dt < 15, string.format("took %.1f s", dt))
  end)

  it("lists nothing as null without a config file, and reports one it cannot parse", function()
    local r = ok(run({ "profiles", "-o", "json" }, { env = env(), home = files.tmpdir() }))
    assert.equal('{\n  "profiles": null\n}\n', r.out)
    assert.equal("Name  Host  Valid\n", ok(run({ "profiles" }, { env = env(), home = files.tmpdir() })).out)
    r = failed(run({ "profiles" }, { env = env(), home = files.home("[a]\nnot a key value line\n") }))
    assert.matches("^Error: cannot parse config file: ", r.err)
  end)

  it("takes the output format from DATABRICKS_OUTPUT_FORMAT", function()
    local home = files.home(cfg_text())
    local r = ok(run({ "profiles", "--skip-validate" },
      { env = env { DATABRICKS_OUTPUT_FORMAT = "JSON" }, home = home }))
    assert.equal(3, #decode(r.out).profiles)
    r = ok(run({ "-o", "text", "profiles", "--skip-validate" }, { env = env { DATABRICKS_OUTPUT_FORMAT = "json" },
      home = home }))
    assert.matches("^Name ", r.out)
  end)
end)

describe("dbxauth describe", function()
  it("prints the user, the auth type and each attribute's source as text", function()
    ws:set { metadata = false }                       -- no attributes from host metadata
    local home = files.home(cfg_text())
    local r = ok(run({ "describe" }, { env = env { DATABRICKS_HOST = ws.url, DATABRICKS_TOKEN = PAT,
      DATABRICKS_WAREHOUSE_ID = "wh-1" }, home = home }))
    assert.equal("Host: " .. ws.url .. "\nUser: user@example.com\nAuthenticated with: pat\n-----\n"
      .. "Current configuration:\n"
      .. "  ✓ host: " .. ws.url .. " (from DATABRICKS_HOST environment variable)\n"
      .. "  ✓ warehouse_id: wh-1 (from DATABRICKS_WAREHOUSE_ID environment variable)\n"
      .. "  ✓ token: ******** (from DATABRICKS_TOKEN environment variable)\n"
      .. "  ✓ profile: default\n"
      .. "  ✓ auth_type: pat\n", r.out)
    assert.equal("", r.err)
  end)

  it("prints the CLI's JSON, secrets only with --sensitive", function()
    local home = files.home(cfg_text())
    local r = ok(run({ "describe", "-p", "acct", "-o", "json" }, { env = env(), home = home }))
    local cfgfile = home .. "/.databrickscfg"
    local d = decode(r.out)
    assert.equal("success", d.status)
    assert.equal(A, d.account_id)
    assert.is_nil(d.error)
    assert.equal("oauth-m2m", d.details.auth_type)
    assert.equal(ws.account_url, d.details.host)
    local function file_src() return { type = "config file", name = cfgfile } end
    assert.same({ value = "********", source = file_src(), auth_type_mismatch = false },
      d.details.configuration.client_secret)
    assert.same({ value = "acct", source = { type = "flag", name = "--profile" }, auth_type_mismatch = false },
      d.details.configuration.profile)
    assert.same({ value = A, source = file_src(), auth_type_mismatch = false }, d.details.configuration.account_id)
    assert.matches('^{\n  "status": "success",\n  "account_id": ', r.out)
    assert.matches('\n  "details": {\n    "auth_type": "oauth%-m2m",\n    "host": ', r.out)
    assert.not_matches("\n$", r.out)
    assert.is_nil(r.out:find(SECRET, 1, true))
    r = ok(run({ "describe", "-p", "acct", "-o", "json", "--sensitive" }, { env = env(), home = home }))
    assert.equal(SECRET, decode(r.out).details.configuration.client_secret.value)
  end)

  it("exits 0 and says why when authentication fails; marks attributes the auth type does not use", function()
    local home = files.home(cfg_text())
    local r = ok(run({ "describe", "--profile", "bogus" }, { env = env(), home = home }))
    assert.matches("^Unable to authenticate: [^\n]+\n%-%-%-%-%-\nCurrent configuration:\n", r.out)
    assert.is_nil(r.out:find(BOGUS, 1, true))
    local d = decode(ok(run({ "describe", "--profile", "bogus", "-o", "json" }, { env = env(), home = home })).out)
    assert.equal("error", d.status)
    assert.is_string(d.error.message)
    assert.is_nil(d.username)
    r = ok(run({ "describe", "-p", "ws" }, { env = env { DATABRICKS_CLIENT_ID = "cid", DATABRICKS_AUTH_TYPE = "pat" },
      home = home }))
    assert.matches("\n  ~ client_id: cid %(from DATABRICKS_CLIENT_ID environment variable, not used for auth type "
      .. "pat%)\n", r.out)
    r = ok(run({ "describe", "-p", "missing" }, { env = env(), home = home }))
    assert.matches("^Unable to authenticate: [^\n]*missing profile", r.out)
  end)

  it("maps --host to its one profile (or the default among several), as the CLI", function()
    local home = files.home(cfg_text())
    assert.equal("ws", decode(ok(run({ "describe", "--host", ws.url, "-o", "json" }, { env = env(), home = home })).out)
      .details.configuration.profile.value)
    home = files.home((cfg_text():gsub("default_profile = ws\n", "")))
    local d = decode(ok(run({ "describe", "--host", ws.account_url, "-o", "json" }, { env = env(), home = home })).out)
    assert.same({ value = "acct", source = { type = "dynamic configuration" }, auth_type_mismatch = false },
      d.details.configuration.profile)
    assert.same({ type = "flag", name = "--host" }, d.details.configuration.host.source)
    local r = failed(run({ "describe", "--host", ws.url }, { env = env(), home = home }))
    assert.equal('Error: multiple profiles found matching host "' .. ws.url .. '": ws, bogus. Please specify the '
      .. "profile name directly\n", r.err)
    r = failed(run({ "describe", "--host", "https://nowhere.example" }, { env = env(), home = home }))
    assert.equal('Error: no profile found matching host "https://nowhere.example". Available profiles: ws, bogus, '
      .. "acct\n", r.err)
  end)
end)

describe("external-browser profiles", function()
  it("are checked against the cached login only: profiles and describe never open a browser", function()
    local home = files.home("[eb]\nhost = " .. ws.url .. "\nauth_type = external-browser\n")
    local opened = home .. "/browser-opened"
    local e = env { BROWSER = "touch " .. opened .. " %s" }
    local r = ok(run({ "profiles", "-o", "json" }, { env = e, home = home }))
    assert.is_false(decode(r.out).profiles[1].valid)
    r = ok(run({ "describe", "-p", "eb" }, { env = e, home = home }))
    assert.matches("^Unable to authenticate: external%-browser auth: no cached login", r.out)
    assert.is_nil(files.read(opened))
    assert.is_nil(ws:counters()["GET /api/2.0/preview/scim/v2/Me"])
  end)
end)

describe("dbxauth env", function()
  it("prints the profile's variables as {\"env\": {...}}, sorted, with a deprecation warning", function()
    ws:set { metadata = false }
    local home = files.home(cfg_text())
    local r = ok(run({ "env", "--profile", "ws" }, { env = env(), home = home }))
    assert.equal("Warning: 'databricks auth env' is deprecated and will be removed in a future release.\n", r.err)
    assert.equal('{\n  "env": {\n    "DATABRICKS_AUTH_TYPE": "pat",\n    "DATABRICKS_CONFIG_PROFILE": "ws",\n'
      .. '    "DATABRICKS_HOST": "' .. ws.url .. '",\n    "DATABRICKS_TOKEN": "' .. PAT .. '"\n  }\n}', r.out)
    r = ok(run({ "env", "--host", ws.account_url }, { env = env(), home = home }))
    assert.equal(SECRET, decode(r.out).env.DATABRICKS_CLIENT_SECRET)
    r = failed(run({ "env", "--host", ws.url }, { env = env(), home = home }))
    assert.equal("Error: ws and bogus match " .. ws.url .. " in " .. home .. "/.databrickscfg\n",
      r.err:gsub("^Warning: [^\n]*\n", ""))
    r = failed(run({ "env", "-p", "nohost" }, { env = env(), home = home }))   -- cannot authenticate
    assert.matches("\nError: ", r.err)
    assert.is_nil(r.err:find(PAT, 1, true))
  end)
end)

describe("dbxauth switch", function()
  it("sets [__settings__] default_profile, keeping the rest of the file", function()
    local home = files.home(cfg_text():gsub("default_profile = ws\n", "auth_storage = plaintext\n"))
    local path = home .. "/.databrickscfg"
    local r = ok(run({ "switch", "--profile", "acct" }, { env = env(), home = home }))
    assert.equal('Default profile set to "acct".\n', r.err)
    assert.equal("", r.out)
    assert.equal(cfg_text():gsub("default_profile = ws\n", "auth_storage = plaintext\ndefault_profile = acct\n"),
      files.read(path))
    assert.equal("acct", profiles.default_profile(path))
    failed(run({ "switch", "-p", "nope" }, { env = env(), home = home }))
    assert.equal('Error: profile "nope" not found\n', cmd.runs[#cmd.runs].err)
    r = failed(run({ "switch" }, { env = env(), home = home }))
    assert.equal("Error: the command is being run in a non-interactive environment, please specify a profile using "
      .. "--profile\n", r.err)
    r = ok(run({ "switch" }, { env = env(), home = home, tty = true, input = { "ws" } }))
    assert.matches("^Current default: acct%. Select a new default", r.err)
    assert.equal("ws", profiles.default_profile(path))
    r = failed(run({ "switch", "ws" }, { env = env(), home = home }))
    assert.equal('Error: unknown command "ws" for "dbxauth switch"\n', r.err)
    local fresh = files.tmpdir()
    failed(run({ "switch", "-p", "x" }, { env = env(), home = fresh }))
  end)
end)

describe("dbxauth logout", function()
  local function entry(tok)
    return { access_token = tok, token_type = "Bearer", refresh_token = tok .. "-refresh",
             expiry = tokencache.format_time(os.time() + 3000) }
  end

  local CFG = table.concat({
    "; logins", "[a]", "host = https://a.cloud.databricks.com", "auth_type = databricks-cli", "",
    "# b shares a's host", "[b]", "host = https://a.cloud.databricks.com/", "auth_type = databricks-cli", "",
    "[c]", "host = https://c.cloud.databricks.com", "auth_type = databricks-cli", "",
    "[pat]", "host = https://c.cloud.databricks.com", "token = " .. PAT, "",
    "[__settings__]", "default_profile = c", "",
  }, "\n")

  local function setup_home()
    local home = files.home(CFG)
    files.write(home .. "/.databricks/token-cache.json", tokencache.encode { version = 1, tokens = {
      a = entry("tok-a"), b = entry("tok-b"), c = entry("tok-c"),
      ["https://a.cloud.databricks.com"] = entry("tok-ha"), ["https://c.cloud.databricks.com"] = entry("tok-hc"),
    } })
    return home
  end

  local function keys(home)
    local doc = assert(tokencache.read(home .. "/.databricks/token-cache.json"))
    local out = {}
    for k in pairs(doc.tokens) do out[#out + 1] = k end
    table.sort(out)
    return out
  end

  it("removes the profile's tokens, and its host's unless another profile logs in there", function()
    local home = setup_home()
    local r = ok(run({ "logout", "a", "--auto-approve" }, { env = env(), home = home }))
    assert.equal('Logged out of profile "a". Use --delete to also remove it from the config file.\n', r.err)
    assert.same({ "b", "c", "https://a.cloud.databricks.com", "https://c.cloud.databricks.com" }, keys(home))
    ok(run({ "logout", "--profile", "c", "--auto-approve" }, { env = env(), home = home }))
    assert.same({ "b", "https://a.cloud.databricks.com" }, keys(home))
    assert.equal(CFG, files.read(home .. "/.databrickscfg"))          -- the file untouched
    r = ok(run({ "logout", "c", "--auto-approve" }, { env = env(), home = home }))
    assert.equal('No tokens to clear for profile "c". Use --delete to remove it from the config file.\n', r.err)
  end)

  it("--delete drops the profile (and the default pointing at it), comments and the rest kept", function()
    local home = setup_home()
    local r = ok(run({ "logout", "c", "--auto-approve", "--delete" }, { env = env(), home = home }))
    assert.equal('Logged out of and deleted profile "c".\n', r.err)
    local want = CFG:gsub("%[c%]\nhost = https://c%.cloud%.databricks%.com\nauth_type = databricks%-cli\n\n", "")
      :gsub("default_profile = c\n", "")
    assert.equal(want, files.read(home .. "/.databrickscfg"))
    r = ok(run({ "logout", "pat", "--auto-approve", "--delete" }, { env = env(), home = home }))
    assert.equal('Deleted profile "pat" with no tokens to clear.\n', r.err)
    assert.is_nil(profiles.get(home .. "/.databrickscfg", "pat"))
    assert.truthy(tokencache.read(home .. "/.databricks/token-cache.json").tokens.a)
  end)

  it("asks on a terminal, needs --auto-approve elsewhere, and names what it cannot find", function()
    local home = setup_home()
    local r = failed(run({ "logout", "a" }, { env = env(), home = home }))
    assert.equal("Error: please specify --auto-approve to skip confirmation in non-interactive mode\n", r.err)
    r = ok(run({ "logout", "a", "--delete" }, { env = env(), home = home, tty = true, input = { "n" } }))
    assert.equal("Warning: This will log out of and delete profile a.\n\nThe following changes will be made:\n"
      .. "  - Delete any cached OAuth tokens for this profile\n  - Remove profile a from " .. home
      .. "/.databrickscfg\n\nYou will need to run databricks auth login to re-authenticate.\n\n", r.out)
    assert.matches("Are you sure%? %[y/N%]: Aborting logout%.%.%. No changes were made%.\n$", r.err)
    assert.equal(CFG, files.read(home .. "/.databrickscfg"))
    ok(run({ "logout", "a" }, { env = env(), home = home, tty = true, input = { "YES" } }))
    assert.is_nil(tokencache.read(home .. "/.databricks/token-cache.json").tokens.a)
    r = failed(run({ "logout" }, { env = env(), home = home }))
    assert.equal("Error: the command is being run in a non-interactive environment, please specify a profile using "
      .. "the PROFILE argument or --profile flag\n", r.err)
    r = failed(run({ "logout", "zz", "--auto-approve" }, { env = env(), home = home }))
    assert.equal('Error: profile "zz" not found. Available profiles: a, b, c, pat\n', r.err)
    r = failed(run({ "logout", "a", "-p", "b" }, { env = env(), home = home }))
    assert.equal('Error: argument "a" cannot be combined with --profile. Use the --profile flag instead\n', r.err)
    ok(run({ "logout", "https://c.cloud.databricks.com", "--auto-approve" }, { env = env(), home = home }))
  end)
end)

describe("dbxauth help and the README", function()
  it("agree on the commands and what each does", function()
    local commands = require "dbxauth.cli.commands"
    local readme = assert(files.read("README.md"))
    local section = assert(readme:match("\n### The `dbxauth` command\n(.-)\n## "))
    local rows = {}
    for name, desc in section:gmatch("\n| `dbxauth (%a+)[^`]*` | ([^|]-) |") do rows[name] = desc end
    local top = ok(run({ "--help" }, {})).out
    for _, name in ipairs(commands.ORDER) do
      local c = commands.COMMANDS[name]
      assert.equal(c.short, rows[name], "README row for " .. name)
      assert.truthy(top:find("\n  " .. name .. string.rep(" ", 11 - #name) .. c.short .. "\n", 1, true))
      rows[name] = nil
      local usage = ok(run({ name, "--help" }, {})).out
      assert.truthy(section:find("`" .. c.use:gsub(" %[flags%]$", ""), 1, true), "README shows " .. c.use)
      for flag in c.flag_help:gmatch("%-%-([%w-]+)") do
        assert.truthy(usage:find("--" .. flag, 1, true))
        assert.truthy(c.flags[flag], "--" .. flag .. " is documented but not accepted")
      end
    end
    assert.same({}, rows)
  end)
end)

describe("dbxauth output hygiene (in process)", function()
  it("never prints a secret except where the command is for printing it", function()
    cmd.no_secrets({ PAT, SECRET, BOGUS, fake.CREDS.password }, function(r)
      return r.args[1] == "env" or (r.args[1] == "describe" and table.concat(r.args, " "):find("--sensitive"))
    end)
    assert.is_true(#cmd.runs > 30)
  end)
end)
