-- discovery: results shared by configurations in one TLS scope only, cleared in one call.
local discovery = require "dbxauth.discovery"
local dbxauth = require "dbxauth"

local HOST = "https://h.example.com"

local function io_for(scope, log)
  return {
    scope = scope,
    now = function() return 1000 end,
    send = function(req)
      log[#log + 1] = scope .. " " .. req.url
      if req.url:find("databricks-config", 1, true) then
        return { status = 200, headers = {}, body = '{"oidc_endpoint":"' .. HOST .. '/oidc","workspace_id":"1"}' }
      end
      return { status = 200, headers = {}, body = '{"token_endpoint":"' .. HOST .. '/oidc/v1/token"}' }
    end,
  }
end

describe("discovery", function()
  before_each(function() dbxauth.clear_caches() end)

  it("shares host metadata within a TLS scope, never across scopes", function()
    local log = {}
    assert(discovery.metadata(io_for("ca=a verify=true", log), HOST))
    assert(discovery.metadata(io_for("ca=a verify=true", log), HOST))
    assert(discovery.metadata(io_for("ca= verify=false", log), HOST))
    assert.equal(2, #log)
    dbxauth.clear_caches()
    assert(discovery.metadata(io_for("ca=a verify=true", log), HOST))
    assert.equal(3, #log)
  end)

  it("keys discovery documents by scope and URL", function()
    local log = {}
    local p = { host = HOST, is_account = false }
    assert(discovery.endpoints(io_for("s1", log), p))
    assert(discovery.endpoints(io_for("s1", log), p))
    assert(discovery.endpoints(io_for("s2", log), p))
    assert.equal(2, #log)
    assert(discovery.endpoints(io_for("s1", log), { host = HOST, discovery_url = HOST .. "/other" }))
    assert.equal(3, #log)
  end)

  it("gives configurations with other TLS settings their own scope", function()
    local seen = {}
    local function transport(name)
      return { name = name, now = function() return 1000 end, sleep = function() end,
        send = function(_, req)
          seen[#seen + 1] = name .. " " .. req.url
          return { status = 404, headers = {}, body = "" }
        end }
    end
    local t1, t2 = transport("t1"), transport("t2")
    for _, t in ipairs { t1, t1, t2 } do
      local cfg = assert(dbxauth.config({ host = HOST, token = "dapi-discovery", transport = t }, { env = {} }))
      assert(cfg:authenticate())
    end
    assert.same({ "t1 " .. HOST .. "/.well-known/databricks-config",
                  "t2 " .. HOST .. "/.well-known/databricks-config" }, seen)
  end)
end)
