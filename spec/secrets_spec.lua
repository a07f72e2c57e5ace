-- No secret may reach an error, a tostring() or a printed value. This spec drives every kind
-- of failure it can think of with known secrets in play, collects every string the API hands
-- back, and looks for the secrets (and their Basic-encoded forms) in all of them.
local dbxauth = require "dbxauth"
local core = require "dbxauth.core"
local curl = require "dbxauth.transport.curl"
local fake = require "spec.support.fake"

local ws
local collected = {}

local errors = require "dbxauth.errors"

-- What a user sees of a value: its tostring, and for error objects every field.
local function collect(v, seen)
  seen = seen or {}
  local t = type(v)
  if t == "string" then
    collected[#collected + 1] = v
  elseif t == "table" and not seen[v] then
    seen[v] = true
    collected[#collected + 1] = tostring(v)
    if errors.is(v) then
      collected[#collected + 1] = "x" .. v
      for k, x in pairs(v) do
        -- err.response is the server's reply: its tostring is checked, its body is the server's text
        if k == "response" then collected[#collected + 1] = tostring(x) else collect(k, seen); collect(x, seen) end
      end
    end
  elseif t ~= "nil" then
    collected[#collected + 1] = tostring(v)
  end
end

local function keep(...)
  for i = 1, select("#", ...) do collect((select(i, ...))) end
  return ...
end

local secrets = {}
local function secret(s)
  secrets[#secrets + 1] = s
  return s
end

local tmp_home = require("spec.support.files").home

setup(function()
  ws = fake.start()
  local c = ws.creds
  secret(c.pat); secret(c.password); secret(c.client_secret)
  secret(core.b64_encode(c.username .. ":" .. c.password))
  secret(core.b64_encode(c.client_id .. ":" .. c.client_secret))
  secret("dapi-explicit-secret-1"); secret("env-secret-password-2"); secret("file-secret-token-3")
  secret("file-client-secret-4"); secret("wrong-client-secret-5"); secret("header-secret-6")
end)

teardown(function()
  if ws then ws:stop() end
end)

describe("secrets never leak", function()
  it("through configuration errors", function()
    local home = tmp_home()
    keep(dbxauth.config({ token = "dapi-explicit-secret-1", password = "env-secret-password-2", username = "u" },
      { env = {}, home = home }))
    keep(dbxauth.config({}, { env = { DATABRICKS_TOKEN = "dapi-explicit-secret-1",
      DATABRICKS_CLIENT_SECRET = "file-client-secret-4", DATABRICKS_CLIENT_ID = "id" }, home = home }))
    keep(dbxauth.config({}, { env = { DATABRICKS_PASSWORD = "env-secret-password-2",
      DATABRICKS_DEBUG_HEADERS = "maybe" }, home = home }))
    local file = "[p]\nhost = https://h\ntoken = file-secret-token-3\nclient_secret = file-client-secret-4\n"
      .. "client_id = x\n[q]\ntoken = file-secret-token-3\nhttp_timeout_seconds = 1.5\n"
      .. "[r]\ntoken file-secret-token-3\n"
    for _, p in ipairs { "p", "q", "nope" } do
      keep(dbxauth.config({ profile = p }, { env = {}, home = tmp_home(file) }))
    end
    keep(dbxauth.config({}, { env = {}, home = tmp_home("[DEFAULT]\ntoken file-secret-token-3\n") }))
    local cfg = keep(dbxauth.config({ token = "dapi-explicit-secret-1" }, { env = {}, home = home }))
    keep(cfg:authenticate())
    cfg = keep(dbxauth.config({ host = "https://h", token = "dapi-explicit-secret-1", auth_type = "basic" },
      { env = {}, home = home }))
    keep(cfg:authenticate())
    keep(tostring(cfg))
    cfg = keep(dbxauth.config({ host = "https://h", password = "env-secret-password-2", auth_type = "azure-cli" },
      { env = {}, home = home }))
    keep(cfg:authenticate())
    cfg = keep(dbxauth.config({ host = "http://example.com", token = "dapi-explicit-secret-1" },
      { env = {}, home = home }))
    keep(cfg:request { path = "/api/2.0/x" })
  end)

  it("through authentication and request failures", function()
    local c = ws.creds
    local ctx = { env = {}, home = tmp_home() }
    local function cfg(opts)
      opts.ca_file = opts.ca_file or ws.ca_file
      return keep(dbxauth.config(opts, ctx))
    end
    local pat = cfg { host = ws.url, token = c.pat }
    keep(pat:authenticate()); keep(pat:token())
    keep(pat:request { path = "/api/2.0/preview/scim/v2/Me" })
    keep(pat:request { path = "/nope" })
    keep(pat:request { path = "/api/2.0/fake/echo", headers = { ["X-Leak"] = "header-secret-6\r\nX: y" } })
    keep(pat:request { path = "/api/2.0/fake/echo", headers = { ["X-Leak\n"] = "header-secret-6" } })
    keep(cfg { host = ws.url, token = c.pat, ca_file = ws.other_ca_file }:request { path = "/x" })
    keep(cfg { host = ws.url, token = "file-secret-token-3" }:request { path = "/api/2.0/preview/scim/v2/Me" })
    keep(cfg { host = ws.url, username = c.username, password = c.password }:token())
    keep(cfg { host = ws.url, username = c.username, password = "env-secret-password-2" }
      :request { path = "/api/2.0/preview/scim/v2/Me" })

    local m2m = cfg { host = ws.url, client_id = c.client_id, client_secret = c.client_secret }
    local tok = keep(m2m:token())
    secret(tok.access_token)
    keep(tostring(tok))
    keep(m2m:request { path = "/api/2.0/preview/scim/v2/Me" })
    keep(cfg { host = ws.url, client_id = c.client_id, client_secret = "wrong-client-secret-5" }:authenticate())
    for _, kind in ipairs { "garbage", "html", "oauth", "json" } do
      ws:fault { path = "/oidc/v1/token", kind = kind, status = 400 }
      keep(cfg { host = ws.url, client_id = c.client_id, client_secret = c.client_secret }:token())
    end
    local t = curl.new { ca_file = ws.ca_file }
    keep(tostring(t))
    keep(t:send { method = "GET", url = ws.url .. "/x", headers = { Authorization = "Bearer " .. c.pat .. "\n" } })
  end)

  it("in anything collected above", function()
    assert.is_true(#collected > 50)
    for i, s in ipairs(collected) do
      for j, sec in ipairs(secrets) do
        if s:find(sec, 1, true) then
          -- do not print the secret itself: say where it was
          error("secret #" .. j .. " appeared in collected string #" .. i .. " (length " .. #s .. ")", 0)
        end
      end
    end
  end)
end)
