-- A provider context (lua/dbxauth/context.lua) made of plain functions, for unit specs of the
-- credential providers and the U2M helpers: no configuration, no network.
--
--   local ctx = fake_context.new{ attrs = { host = "https://h", ... }, sources = { scopes = "file" },
--     env = { NAME = value }, home = dir, account = false, cloud = "Azure" | nil (from host),
--     secrets = { ... } (what ctx.redact masks),
--     token = function(req, what, n) return oauth.token{...} | nil, err end,   -- token_request
--     send = function(req, n) return res | nil, err end,                       -- send, send_token
--     host_type = "workspace" | "account" | "unified" | nil (from account) }
--   ctx.token_calls, ctx.send_calls: every request made, in order; ctx.clock.t: the time
local oauth = require "dbxauth.oauth"

local _M = {}

_M.ENDPOINTS = { token_endpoint = "https://h.example.com/oidc/v1/token",
                 authorization_endpoint = "https://h.example.com/oidc/v1/authorize" }

function _M.new(o)
  o = o or {}
  local attrs, sources, env = o.attrs or {}, o.sources or {}, o.env or {}
  local clock = { t = o.now or 1000 }
  local ctx = { token_calls = {}, send_calls = {}, clock = clock }
  ctx.get = function(name) return attrs[name] end
  ctx.source = function(name) return sources[name] or (attrs[name] ~= nil and "explicit" or nil) end
  ctx.getenv = function(name) return env[name] end
  ctx.environ = function() return env end
  ctx.home = o.home
  ctx.now = function() return clock.t end
  ctx.is_account = function() return o.account or false end
  ctx.host_type = function() return o.host_type or (o.account and "account" or "workspace") end
  ctx.cloud = function() return o.cloud or require("dbxauth.host").cloud(attrs.host) end
  ctx.scopes = function() return attrs.scopes or { "all-apis" } end
  ctx.endpoints = function()
    if o.endpoints_error then return nil, o.endpoints_error end
    return _M.ENDPOINTS
  end
  ctx.token_request = function(req, what, parse)
    local n = #ctx.token_calls + 1
    ctx.token_calls[n] = { req = req, what = what, parse = parse }
    if o.token then return o.token(req, what, n) end
    return oauth.token { access_token = "at-" .. n, token_type = "Bearer", expiry = clock.t + 3600 }
  end
  ctx.send = function(req)
    local n = #ctx.send_calls + 1
    ctx.send_calls[n] = req
    if o.send then return o.send(req, n) end
    return nil, require("dbxauth.errors").new("network", "no network in this spec")
  end
  ctx.send_token = ctx.send
  ctx.redact = o.redact or function(text) return require("dbxauth.redact").text(text, o.secrets or {}) end
  ctx.prepare = function() return true end
  ctx.set_host = function(url) attrs.host = url; return true end
  ctx.redact = function(text) return text end
  return ctx
end

-- The form fields of a urlencoded body.
function _M.form(body)
  local core = require "dbxauth.core"
  return core.parse_query((body:gsub("%+", "%%20")))
end

return _M
