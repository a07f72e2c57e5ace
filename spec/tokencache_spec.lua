local tokencache = require "dbxauth.tokencache"
local cjson = require "cjson"
local files = require "spec.support.files"

describe("tokencache time formats", function()
  it("reads the CLI's RFC 3339 and space-separated forms", function()
    local base = 1767366245   -- 2026-01-02T15:04:05Z
    assert.equal(base, tokencache.parse_time("2026-01-02T15:04:05Z"))
    assert.equal(base - 3600, tokencache.parse_time("2026-01-02T15:04:05+01:00"))
    assert.equal(base + 5400, tokencache.parse_time("2026-01-02T15:04:05-01:30"))
    assert.near(base + 0.123456789, tokencache.parse_time("2026-01-02T15:04:05.123456789Z"), 1e-6)
    assert.equal(base, tokencache.parse_time("2026-01-02 15:04:05"))
    assert.is_nil(tokencache.parse_time("yesterday"))
    assert.is_nil(tokencache.parse_time("2026-01-02T15:04:05+0100"))
    assert.is_nil(tokencache.parse_time(42))
  end)

  it("writes UTC RFC 3339 that reads back", function()
    assert.equal("2026-01-02T15:04:05Z", tokencache.format_time(1767366245))
    assert.equal("2026-01-02T15:04:05.5Z", tokencache.format_time(1767366245.5))
    assert.equal(1767366245, tokencache.parse_time(tokencache.format_time(1767366245)))
  end)
end)

describe("tokencache layout", function()
  it("pretty-prints with the CLI's field order and no escaped slashes", function()
    local text = tokencache.encode { version = 1, tokens = { ["https://h"] = {
      expires_in = 3600, expiry = "2026-01-02T15:04:05Z", refresh_token = "r", token_type = "Bearer",
      access_token = "a/b", zz = true } } }
    assert.equal([[
{
  "version": 1,
  "tokens": {
    "https://h": {
      "access_token": "a/b",
      "token_type": "Bearer",
      "refresh_token": "r",
      "expiry": "2026-01-02T15:04:05Z",
      "expires_in": 3600,
      "zz": true
    }
  }
}]], text)
    assert.same({ version = 1 }, { version = cjson.decode(text).version })
  end)

  it("creates the file on first put and round-trips entries", function()
    local path = files.tmpdir() .. "/.databricks/token-cache.json"
    assert(tokencache.put(path, { "p", "https://h" }, { access_token = "x", refresh_token = "y",
      token_type = "Bearer", expiry = 2000000000, issued_at = 1999996400 }, 0))
    local tok = tokencache.get(path, "https://h")
    assert.equal("x", tok.access_token)
    assert.equal("y", tok.refresh_token)
    assert.equal(2000000000, tok.expiry)
    assert.equal(3600, cjson.decode(files.read(path)).tokens.p.expires_in)
    assert.is_nil(tokencache.get(path, "missing"))
  end)
end)

describe("tokencache files and lock", function()
  local core = require "dbxauth.core"

  it("has no path without a home directory, and drops a trailing slash of one", function()
    for _, home in ipairs { false, "" } do
      local p, err = tokencache.path(home or nil)
      assert.is_nil(p)
      assert.equal("token_cache", err.code)
      assert.matches("$HOME is not defined", err.message, 1, true)
    end
    assert.equal("/h/.databricks/token-cache.json", tokencache.path("/h/"))
  end)

  it("runs fn under the lock, releases it when fn raises, and says when it is busy", function()
    local path = files.tmpdir() .. "/.databricks/token-cache.json"
    assert.same({ 1, "two" }, { tokencache.locked(path, function() return 1, "two" end) })
    assert.has_error(function() tokencache.locked(path, function() error("boom") end) end, "boom")
    local held = assert(core.lock(path .. ".lock", 0))   -- another holder (a second open file)
    local res, err = tokencache.locked(path, function() return true end, { wait = 0 })
    assert.is_nil(res)
    assert.equal("token_cache", err.code)
    assert.is_true(err.busy)
    assert.matches("another dbxauth is using the token cache", err.hint)
    held:unlock()
    assert.is_true(tokencache.locked(path, function() return true end, { wait = 0 }))
  end)
end)
