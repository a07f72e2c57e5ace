-- The provider context: everything a credential provider (and the U2M flows) may ask of the
-- configuration it serves, and nothing more. Providers never see the user's object or the
-- session behind it, so a provider can be unit-tested with a plain table of these functions
-- and no network (spec/providers_spec.lua does).
--
--   ctx.get(name)            resolved attribute value (typed; nil when unset)
--   ctx.source(name)         where it came from: "explicit" | "env" | "file" | "metadata" | nil
--   ctx.getenv(name)         the environment the configuration was created with
--   ctx.environ()            that environment as a table when it replaced the process's (the
--                            one a subprocess gets), else nil (the process's is inherited)
--   ctx.home                 the home directory (string | nil): token cache, CLI config
--   ctx.now()                seconds (the configuration's clock)
--   ctx.is_account()         account-level host?
--   ctx.host_type()          "workspace" | "account" | "unified" (host metadata, else the URL)
--   ctx.cloud()              "AWS" | "Azure" | "GCP": resource id, `cloud`, host metadata, DNS
--                            (the Go SDK's IsAzure/IsGcp gate for cloud providers)
--   ctx.scopes()             effective OAuth scopes (a fresh list)
--   ctx.endpoints()          { token_endpoint, authorization_endpoint } | nil, err (discovery)
--   ctx.token_request(req, what, parse)  a token request with the token retry policy; the
--                            parsed token (parse, default oauth.parse_token_response) | nil, err
--   ctx.send(req)            one request, one attempt, the response whatever its status | nil, err
--   ctx.send_token(req)      one request with the token retry policy (429/502/503/504 and
--                            refused connections, backoff, 60 s budget); the final response
--                            whatever its status | nil, err (token sources that are not OAuth
--                            token endpoints: a metadata service, a CI system's ID-token API)
--   ctx.prepare()            check the host and fetch host metadata (true | nil, err); the
--                            chain has done this before any provider runs
--   ctx.set_host(url)        fill an unset host (the Azure workspace of a resource id) and
--                            prepare it as the chain does a configured one (true | nil, err)
--   ctx.redact(text)         text with every secret of the configuration masked, for messages
--                            that quote outside text (a CLI's stderr)
--
-- A provider is { name, applies(ctx) -> bool, configure(ctx) -> creds | nil, err | false },
-- where creds = { headers() -> { Authorization = ... } | nil, err, token() -> token | nil, err,
-- source = tokensource?, force_refresh = fn? } (tokensource.credentials builds them), and
-- false means "does not apply after all".
local _M = {}

function _M.new(s)
  local values, sources = s.state.values, s.state.sources
  -- s:now() as one plain function where it can be (a cached token's freshness is one clock
  -- read): the configuration's clock, the given transport's own, or the default transport's.
  local now = s.clock
  if not now then
    local t = s.transport
    if t then
      now = t.now_function or function() return t:now() end
    else
      now = require("dbxauth.transport").default_now()
    end
  end
  return {
    get = function(name) return values[name] end,
    source = function(name) return sources[name] end,
    getenv = s.getenv,
    environ = function() return s.environ end,
    home = s.home,
    now = now,
    is_account = function() return s:is_account() end,
    host_type = function() return require("dbxauth.config").host_type(s.state, s.host_type) end,
    cloud = function() return require("dbxauth.config").cloud(s.state) end,
    scopes = function() return s:scopes() end,
    endpoints = function() return s:endpoints() end,
    token_request = function(req, what, parse) return s:token_request(req, what, parse) end,
    send = function(req) return s:send_once(req) end,
    send_token = function(req)
      req.headers = req.headers or {}
      return s:send(req, "token")
    end,
    prepare = function() return s:prepare() end,
    set_host = function(url) return s:set_host(url) end,
    redact = function(text) return require("dbxauth.redact").text(text, s:secrets()) end,
  }
end

return _M
