local tokensource = require "dbxauth.tokensource"

describe("tokensource", function()
  local now, fetches, fail
  local function new()
    return tokensource.new {
      now = function() return now end,
      fetch = function()
        fetches = fetches + 1
        if fail then return nil, "boom" end
        return { access_token = "t" .. fetches, expiry = now + 3600 }
      end,
    }
  end
  before_each(function() now, fetches, fail = 1000, 0, false end)

  it("fetches once and reuses the token until it goes stale", function()
    local s = new()
    assert.equal("t1", s:token().access_token)
    for _ = 1, 100 do s:token() end
    now = now + 2399          -- stale at expiry - min(1800, 1200) = +2400
    assert.equal("t1", s:token().access_token)
    assert.equal(1, fetches)
  end)

  it("refreshes ahead once in the stale window", function()
    local s = new()
    s:token()
    now = now + 2400
    assert.equal("t2", s:token().access_token)
    assert.equal("t2", s:token().access_token)
    assert.equal(2, fetches)
  end)

  it("keeps the valid token when a refresh ahead fails, and waits 60 s before trying again", function()
    local s = new()
    s:token()
    now = now + 2500
    fail = true
    assert.equal("t1", s:token().access_token)
    assert.equal(2, fetches)
    now = now + 30
    assert.equal("t1", s:token().access_token)
    assert.equal(2, fetches)
    now = now + 31
    s:token()
    assert.equal(3, fetches)
  end)

  it("treats a token as expired 40 s before its expiry and fails when the refresh fails", function()
    local s = new()
    s:token()
    now = now + 3560
    fail = true
    local tok, err = s:token()
    assert.is_nil(tok)
    assert.equal("boom", err)
    fail = false
    assert.equal("t3", s:token().access_token)   -- no cooldown for a blocking refresh
  end)

  it("never refreshes a token without expiry", function()
    local s = tokensource.new { now = function() return now end,
      fetch = function() fetches = fetches + 1; return { access_token = "pat" } end }
    s:token(); now = now + 1e9; s:token()
    assert.equal(1, fetches)
  end)

  it("short tokens go stale at half their life", function()
    local s = tokensource.new { now = function() return now end,
      fetch = function() fetches = fetches + 1; return { access_token = "x", expiry = now + 600 } end }
    s:token()
    now = now + 299; s:token(); assert.equal(1, fetches)
    now = now + 1; s:token(); assert.equal(2, fetches)
  end)

  it("hides the token in tostring", function()
    local s = new(); s:token()
    assert.not_matches("t1", tostring(s))
  end)
end)

describe("tokensource with short-lived tokens", function()
  it("reuses a 4-second token instead of treating it as already expired", function()
    local now, fetches = 0, 0
    local s = tokensource.new { now = function() return now end,
      fetch = function() fetches = fetches + 1; return { access_token = "t", expiry = now + 4 } end }
    s:token(); now = 1; s:token()
    assert.equal(1, fetches)
    now = 3.3; s:token()   -- within the last fifth of its life
    assert.equal(2, fetches)
  end)
end)
