-- Every conformance case (spec/fixtures/conformance.lua: the SDKs' own configuration cases and
-- the notes' §11) through the public API: dbxauth.config, then cfg:authenticate(). HTTP is a
-- scripted transport (host metadata absent, OIDC endpoints present), as the cases assume.
local dbxauth = require "dbxauth"
local fake_transport = require "spec.support.fake_transport"
local cases = require "spec.fixtures.conformance"
local files = require "spec.support.files"

local cjson = require "cjson"
local UNSET = "<unset>"

local function transport(metadata)
  return fake_transport.new {
    { pattern = "/%.well%-known/databricks%-config$", respond = function()
      if metadata then return { status = 200, body = cjson.encode(metadata) } end
      return { status = 404, body = "" } end },
    { pattern = "/oidc/%.well%-known/oauth%-authorization%-server$", respond = function(req)
      local root = req.url:match("^(.-)/%.well%-known")
      return { status = 200, body = '{"authorization_endpoint":"' .. root .. '/v1/authorize",'
        .. '"token_endpoint":"' .. root .. '/v1/token"}' }
    end },
    { method = "POST", pattern = "/v1/token$", respond = function()
      return { status = 200, body = '{"access_token":"oauth-token","token_type":"Bearer","expires_in":3600}' }
    end },
    -- Entra ID and IMDS, for the Azure profiles
    { pattern = "^https://login%.microsoftonline%.com/[^/]+/oauth2/token$", respond = function()
      return { status = 200, body = '{"access_token":"entra-token","token_type":"Bearer","expires_in":"3599"}' }
    end },
    { pattern = "^http://169%.254%.169%.254/metadata/identity/oauth2/token%?", respond = function()
      return { status = 200, body = '{"access_token":"msi-token","token_type":"Bearer","expires_on":"1999999999"}' }
    end },
  }
end

local function run(case)
  local home, path = files.home(case.file)
  for rel, text in pairs(case.profile_files or {}) do files.write(home .. "/" .. rel, text) end
  local env = {}
  for k, v in pairs(case.env or {}) do env[k] = (v:gsub("<HOME>", home)) end
  local opts = { transport = transport(case.metadata) }
  for k, v in pairs(case.opts or {}) do opts[k] = v end
  local cfg, err = dbxauth.config(opts, { env = env, home = home })
  local headers
  if cfg then headers, err = cfg:authenticate() end
  return cfg, headers, err, path, home
end

local function subst(s, home, path)
  if type(s) ~= "string" then return s end
  return (s:gsub("<P>", (path:gsub("%%", "%%%%"))):gsub("<HOME>", (home:gsub("%%", "%%%%"))))
end

describe("conformance through the public API", function()
  local n = 0
  for _, case in ipairs(cases) do
    local want = case.want or {}
    if want.auth_type or want.error then
      n = n + 1
      it(case.name, function()
        local cfg, headers, err, path, home = run(case)
        if want.error then
          assert.is_nil(headers)
          assert.is_not_nil(err, "expected an error")
          assert.equal(subst(want.error, home, path), err.message)
          assert.equal(want.code or "config", err.code)
        else
          assert.is_not_nil(headers, err and err.message)
          assert.equal(want.auth_type, cfg.auth_type)
          if want.host then assert.equal(want.host, cfg.host) end
          for k, v in pairs(want.values or {}) do
            if v == UNSET then assert.is_nil(cfg:get(k), k) else assert.same(subst(v, home, path), cfg:get(k), k) end
          end
        end
      end)
    end
  end
  it("runs a real number of cases", function()
    assert.is_true(n >= 40, "only " .. n .. " cases")
  end)
end)
