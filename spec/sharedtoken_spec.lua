-- dbxauth.sharedtoken in plain Lua: a fake ngx.shared.DICT, a fake clock, and two "workers"
-- sharing one dict, so the lock recipe's interleavings can be forced step by step.
local sharedtoken = require "dbxauth.sharedtoken"

-- ngx.shared.DICT's get/set/add/delete/incr with exptime, over a clock.
local function fake_dict(clock)
  local items = {}
  local d = { items = items }
  local function live(k)
    local it = items[k]
    if it and it.exp and clock.t >= it.exp then items[k] = nil; return nil end
    return it
  end
  function d:get(k) local it = live(k); return it and it.v end
  function d:set(k, v, exptime)
    items[k] = { v = v, exp = exptime and exptime > 0 and clock.t + exptime or nil }
    return true
  end
  function d:add(k, v, exptime)
    if live(k) then return false, "exists" end
    return self:set(k, v, exptime)
  end
  function d:delete(k) items[k] = nil end
  function d:expire(k, exptime)
    local it = live(k)
    if not it then return false, "not found" end
    it.exp = exptime > 0 and clock.t + exptime or nil
    return true
  end
  function d:incr(k, by, init)
    local it = live(k)
    local v = (it and it.v or init) + by
    items[k] = { v = v, exp = it and it.exp }
    return v
  end
  return d
end

local function worker(dict, clock, fetch, owner, timer)
  return sharedtoken.new { dict = dict, key = "k", owner = owner, now = function() return clock.t end,
                           fetch = fetch, lock_timeout = 130, backoff_max = 30, timer = timer }
end

-- ngx.timer.at over the fake clock: timers fire, in order, when run_until moves the clock.
local function fake_timers(clock)
  local t = { pending = {} }
  function t.at(delay, fn)
    t.pending[#t.pending + 1] = { at = clock.t + delay, fn = fn }
    return true
  end
  function t.run_until(time)
    while true do
      table.sort(t.pending, function(x, y) return x.at < y.at end)
      local nxt = t.pending[1]
      if not nxt or nxt.at > time then break end
      table.remove(t.pending, 1)
      clock.t = nxt.at
      nxt.fn()
    end
    clock.t = time
  end
  return t
end

describe("sharedtoken", function()
  local clock, dict, fetches
  local function fetch()
    fetches = fetches + 1
    return { access_token = "tok-" .. fetches, token_type = "bearer", expiry = clock.t + 3600 }
  end
  before_each(function()
    clock = { t = 1000 }
    dict = fake_dict(clock)
    fetches = 0
  end)

  it("stores a token with the lifetime rules of tokensource and a canonical Bearer header", function()
    local a = worker(dict, clock, fetch, 1)
    local entry = assert(a:refresh())
    assert.equal("Bearer tok-1", entry.header)
    assert.equal(4600, entry.expiry)
    assert.equal(4600 - 40, entry.usable_until)
    assert.equal(4600 - 1200, entry.refresh_at)   -- min(TTL/2, 20 min) before expiry
    assert.is_false(a:due(entry, 1000))
    assert.is_true(a:due(entry, 3400))
    local st = a:status()
    assert.equal(1, st.refreshes)
    assert.equal(1, st.attempts)
    assert.is_false(st.refreshing)
    assert.is_nil(tostring(a):find("tok-", 1, true))
  end)

  it("double-checks under the lock: a worker that saw a due token uses the one refreshed meanwhile", function()
    local a, b = worker(dict, clock, fetch, 1), worker(dict, clock, fetch, 2)
    assert(a:refresh())
    clock.t = 3500                                -- due for both
    assert.is_true(b:due(b:get(), clock.t))       -- b looks: due
    assert.is_true(a:lock())                      -- a refreshes in the meantime
    assert(a:refresh_locked())
    assert.equal(2, fetches)
    assert.is_true(b:lock())                      -- b gets the lock only after a released it
    local entry, err, fetched = b:refresh_locked()
    assert.is_nil(err)
    assert.is_false(fetched)                      -- the second get saw a's token
    assert.equal(2, fetches)
    assert.equal("Bearer tok-2", entry.header)
    assert.is_nil(dict:get("k\0lock"))            -- and the lock is released
  end)

  it("fetches once when two workers race for a missing token", function()
    local a, b = worker(dict, clock, fetch, 1), worker(dict, clock, fetch, 2)
    assert.is_true(a:lock())
    local _, err, fetched = b:refresh()           -- lock busy: no fetch, no error
    assert.is_nil(err)
    assert.is_false(fetched)
    assert(a:refresh_locked())
    assert(b:refresh())                           -- now fresh: nothing to do
    assert.equal(1, fetches)
  end)

  it("releases the lock on every path, also when fetch raises", function()
    local a = worker(dict, clock, function() error("boom") end, 1)
    local entry, err = a:refresh()
    assert.is_nil(entry)
    assert.equal("internal", err.code)
    assert.is_nil(dict:get("k\0lock"))
    assert.equal(1, a:status().failures)
  end)

  it("backs off after a failure and reports 502 for errors retrying cannot fix", function()
    local errors = require "dbxauth.errors"
    local a = worker(dict, clock, function() return nil, errors.new("config", "bad secret") end, 1)
    local _, err = a:refresh()
    assert.equal("config", err.code)
    assert.is_true(a:in_backoff(clock.t))
    local status, code = a:failure()
    assert.equal(502, status)
    assert.equal("config", code)
    local _, again = a:refresh()
    assert.equal("unavailable", again.code)       -- backing off: no second attempt
    assert.equal(1, a:status().attempts)
    clock.t = clock.t + 2                         -- first backoff is at most 1 s
    assert.is_false(a:in_backoff(clock.t))
  end)

  it("without a timer, the lock lives lock_timeout: then a dead holder's refresh is free again", function()
    local a, b = worker(dict, clock, fetch, 1), worker(dict, clock, fetch, 2)
    assert.is_true(a:lock())                      -- a dies here
    assert.is_false(b:lock())
    clock.t = clock.t + 131
    assert.is_true(b:lock())
    assert(b:refresh_locked())
    assert.equal(1, fetches)
  end)

  it("a holder that dies stops renewing its lease: another worker refreshes within lock_lease", function()
    local timers_a = fake_timers(clock)
    local a = worker(dict, clock, fetch, 1, timers_a.at)
    local b = worker(dict, clock, fetch, 2, fake_timers(clock).at)
    assert.is_true(a:lock())
    assert.equal(1, b:status().refreshing)
    timers_a.run_until(clock.t + 2)               -- alive: renewed every second
    assert.is_false(b:lock())
    timers_a.pending = {}                         -- killed: its timers never fire
    clock.t = clock.t + 3.1
    assert.is_true(b:lock())
    assert(b:refresh_locked())
    assert.equal(1, fetches)
    assert.is_nil(dict:get("k\0lock"))
  end)

  it("a live holder keeps its lease while its refresh runs, up to lock_timeout", function()
    for _, with_expire in ipairs { true, false } do
      clock.t = 1000
      dict = fake_dict(clock)
      if not with_expire then dict.expire = nil end     -- renewed by set
      local timers_a = fake_timers(clock)
      local a = worker(dict, clock, fetch, 1, timers_a.at)
      local b = worker(dict, clock, fetch, 2)
      assert.is_true(a:lock())
      for t = 1001, 1120, 7 do                    -- a slow refresh: b never gets in
        timers_a.run_until(t)
        assert.is_false(b:lock(), "b took the lock at " .. t)
      end
      timers_a.run_until(1130)                    -- past lock_timeout: no more renewals
      timers_a.run_until(1134)
      assert.is_true(b:lock())
      a:unlock()                                  -- a's late unlock leaves b's lease alone
      assert.equal(2, b:status().refreshing)
      b:unlock()
      assert.is_false(b:status().refreshing)
    end
  end)

  it("keeps tokens without expiry and re-reads them hourly", function()
    local a = worker(dict, clock, function() return { access_token = "dapi-x" } end, 1)
    local entry = assert(a:refresh())
    assert.equal(0, entry.expiry)
    assert.is_nil(a:status().expiry)
    assert.is_false(a:due(entry, clock.t + 3599))
    assert.is_true(a:due(entry, clock.t + 3600))
  end)

  it("refuses tokens that cannot go into a header or have already expired", function()
    local a = worker(dict, clock, function() return { access_token = "a\r\nb" } end, 1)
    local _, err = a:refresh()
    assert.equal("invalid_response", err.code)
    local b = worker(fake_dict(clock), clock, function() return { access_token = "x", expiry = 999 } end, 1)
    _, err = b:refresh()
    assert.equal("invalid_response", err.code)
  end)
end)

describe("sharedtoken with a credential's other headers (Azure)", function()
  it("stores them beside Authorization and hands them to every worker", function()
    local clock = { t = 1000 }
    local dict = fake_dict(clock)
    local function fetch()
      return { access_token = "entra-1", token_type = "Bearer", expiry = clock.t + 3600,
               extra_headers = { "X-Databricks-Azure-SP-Management-Token: sm-1",
                                 "X-Databricks-Azure-Workspace-Resource-Id: /subscriptions/s/x" } }
    end
    local a, b = worker(dict, clock, fetch, 1), worker(dict, clock, fetch, 2)
    assert(a:refresh())
    local e = assert(b:get())
    assert.equal("Bearer entra-1", e.header)
    assert.same({ { "X-Databricks-Azure-SP-Management-Token", "sm-1" },
                  { "X-Databricks-Azure-Workspace-Resource-Id", "/subscriptions/s/x" } }, e.extra)
  end)

  it("refuses a header that cannot be sent", function()
    local clock = { t = 1000 }
    local st = worker(fake_dict(clock), clock, function()
      return { access_token = "entra-1", expiry = clock.t + 3600, extra_headers = { "X-Bad: a\rb" } }
    end, 1)
    local _, err = st:refresh()
    assert.equal("invalid_response", err.code)
  end)
end)
