-- The pieces under the dbxauth command: Cobra-style flag parsing, Go durations, the tabwriter
-- table, config-file edits for logout and switch, token-cache removal.
local args = require "dbxauth.cli.args"
local output = require "dbxauth.cli.output"
local profiles = require "dbxauth.profiles"
local tokencache = require "dbxauth.tokencache"
local files = require "spec.support.files"

local SPEC = { name = "token", positional = 1, flags = { timeout = "string", ["force-refresh"] = "bool" } }

describe("cli.args", function()
  it("takes flags anywhere, long and short, with = or a separate value", function()
    local o, pos = args.parse(SPEC, { "-p", "dev", "x", "--timeout=5m", "-ojson", "--force-refresh", "--host", "h" })
    assert.same({ "x" }, pos)
    assert.equal("dev", o.profile)
    assert.equal("5m", o.timeout)
    assert.equal("json", o.output)
    assert.is_true(o["force-refresh"])
    assert.equal("h", o.host)
    assert.same({ profile = true, timeout = true, output = true, ["force-refresh"] = true, host = true }, o.given)
    o = args.parse(SPEC, { "-p=dev", "--force-refresh=false", "-o", "TEXT" })
    assert.equal("dev", o.profile)
    assert.is_nil(o["force-refresh"])
    assert.equal("text", o.output)
    o, pos = args.parse(SPEC, { "--", "-p" })
    assert.same({ "-p" }, pos)
    assert.is_nil(o.profile)
  end)

  it("answers mistakes with Cobra's words", function()
    local function err(list, spec) return select(2, args.parse(spec or SPEC, list)) end
    assert.equal("unknown flag: --nope", err { "--nope" })
    assert.equal("unknown shorthand flag: 'z' in -z", err { "-z" })
    assert.equal("flag needs an argument: -p", err { "-p" })
    assert.equal("flag needs an argument: --timeout", err { "--timeout" })
    assert.equal("accepts at most 1 arg(s), received 2", err { "a", "b" })
    assert.equal('unknown command "a" for "dbxauth switch"', err({ "a" }, { name = "switch", positional = 0 }))
    assert.equal('invalid argument "yaml" for "-o, --output" flag: accepted arguments are json and text',
      err { "-o", "yaml" })
    assert.matches('^invalid argument "maybe" for "%-%-force%-refresh" flag', err { "--force-refresh=maybe" })
    assert.is_true(args.parse(SPEC, { "a", "b", "--help" }).help)       -- help wins over the count
  end)

  it("reads Go durations and plain seconds", function()
    assert.equal(90, args.duration("90"))
    assert.equal(90, args.duration("90s"))
    assert.equal(300, args.duration("5m"))
    assert.equal(3600, args.duration("1h0m0s"))
    assert.equal(5400, args.duration("1h30m"))
    assert.equal(0.5, args.duration("500ms"))
    assert.equal(5400, args.duration("1.5h"))
    for _, bad in ipairs { "", "0", "0s", "soon", "5x", "-5s", "5 m", "m" } do
      assert.is_nil(args.duration(bad), bad)
    end
  end)
end)

describe("cli.output.table", function()
  it("pads every column but the last to its widest cell plus two, as Go's tabwriter", function()
    assert.equal("Name      Host  Valid\nlongname  h     YES\n",
      output.table { { "Name", "Host", "Valid" }, { "longname", "h", "YES" } })
    assert.equal("a  b\n", output.table { { "a", "b" } })
  end)
end)

describe("profiles: removing a section and setting a key", function()
  it("drops every section of the name, keeping comments that head the next one", function()
    local text = "; top\n[a]\nx = 1\n\n# about b\n[b]\n# inside b\ny = 2\nz = a\\\n  b\n\n[c]\nw = 3\n[b]\nq = 4\n"
    assert.equal("; top\n[a]\nx = 1\n\n# about b\n\n[c]\nw = 3\n", profiles.without(text, "b"))
    assert.equal("; top\n\n# about b\n[b]\n# inside b\ny = 2\nz = a\\\n  b\n\n[c]\nw = 3\n[b]\nq = 4\n",
      profiles.without(text, "a"))
    assert.equal(text, profiles.without(text, "nope"))
    assert.equal("[x]\n", profiles.without("host = h\n[x]\n", "DEFAULT"))
  end)

  it("sets, replaces and removes a key of a section, creating it when missing", function()
    local S = "__settings__"
    assert.equal("[a]\nk = v\n\n[__settings__]\ndefault_profile = a\n",
      profiles.with_key("[a]\nk = v\n", S, "default_profile", "a"))
    assert.equal("[__settings__]\nauth_storage = plaintext\ndefault_profile = b\n\n[a]\n",
      profiles.with_key("[__settings__]\nauth_storage = plaintext\ndefault_profile = a\n\n[a]\n", S,
        "default_profile", "b"))
    assert.equal("[__settings__]\nauth_storage = plaintext\n",
      profiles.with_key("[__settings__]\nauth_storage = plaintext\ndefault_profile = a\n", S, "default_profile", nil))
    assert.equal("[__settings__]\ndefault_profile = x\n", profiles.with_key("", S, "default_profile", "x"))
    assert.equal("", profiles.with_key("", S, "default_profile", nil))
  end)

  it("writes with a backup, refuses values that would break the file", function()
    local dir = files.tmpdir()
    local path = dir .. "/cfg"
    files.write(path, "[a]\nhost = h\n")
    assert(profiles.set_setting(path, "default_profile", "a"))
    assert.equal("[a]\nhost = h\n", files.read(path .. ".bak"))
    assert.equal("a", profiles.default_profile(path))
    local okv, err = profiles.set_setting(path, "default_profile", "a\nb = c")
    assert.is_nil(okv)
    assert.equal("config", err.code)
    assert(profiles.remove(path, "a"))
    assert.is_nil(profiles.get(path, "a"))
    files.write(path, "[a]\nbroken\n")
    okv, err = profiles.remove(path, "a")
    assert.is_nil(okv)
    assert.matches("^cannot parse config file", err.message)
  end)
end)

describe("tokencache.remove", function()
  it("deletes the named entries and keeps the others", function()
    local dir = files.tmpdir()
    local path = dir .. "/.databricks/token-cache.json"
    assert.equal(0, tokencache.remove(path, { "a" }))               -- no file: nothing to do
    assert(tokencache.put(path, { "a", "https://h" }, { access_token = "t1", expiry = os.time() + 60 }, os.time()))
    assert(tokencache.put(path, { "b" }, { access_token = "t2", expiry = os.time() + 60 }, os.time()))
    assert.equal(2, tokencache.remove(path, { "a", "https://h", "zz" }))
    local doc = assert(tokencache.read(path))
    assert.is_nil(doc.tokens.a)
    assert.equal("t2", doc.tokens.b.access_token)
    files.write(path, "not json")
    local n, err = tokencache.remove(path, { "b" })
    assert.is_nil(n)
    assert.equal("token_cache", err.code)
  end)
end)
