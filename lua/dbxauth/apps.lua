-- Databricks Apps (seeds 000-002, notes §10, decision D22): look an app up, get a token the
-- app accepts, and call it. Each function takes the configuration's session (session.lua),
-- whose `apps` cache and `exchanges` table this module owns.
--   apps.app(s, name)                 GET /api/2.0/apps/{name}, cached for a short time
--   apps.exchange(s, {audience, scopes})  RFC 8693 exchange of the configuration's own token
--   apps.app_token(s, {app|audience, scopes})  the token app_request would send
--   apps.app_request(s, r)            the call itself, errors mapped to the docs' advice
local azure = require "dbxauth.azure"
local config = require "dbxauth.config"
local errors = require "dbxauth.errors"
local headers = require "dbxauth.headers"
local oauth = require "dbxauth.oauth"
local request = require "dbxauth.request"
local tokensource = require "dbxauth.tokensource"
local urls = require "dbxauth.url"

local _M = {}

local APP_NAME = "^[a-z0-9][a-z0-9-]*$"

-- Credentials whose tokens are Databricks OAuth tokens for the whole workspace: their
-- all-apis scope satisfies any app, so they are sent as they are.
local OAUTH_TYPES = {
  ["oauth-m2m"] = true, ["external-browser"] = true, ["databricks-cli"] = true,
  ["env-oidc"] = true, ["file-oidc"] = true, ["github-oidc"] = true, ["metadata-service"] = true,
  ["azure-devops-oidc"] = true,
}

local HINTS = {
  unauthenticated = "the app rejected the token: check that it is valid and not expired "
    .. "(`databricks auth token --profile <profile>`), that the profile is set up (`databricks auth login`), "
    .. "and that the token's scopes include every user-authorization scope of the app",
  permission_denied = "the caller needs CAN USE permission on the app; insufficient OAuth scopes "
    .. "can also cause a 403",
  not_found = "check the app name or URL and the workspace URL, that the app is deployed and running, "
    .. "and that the endpoint path exists in the app",
  network = "check that outbound HTTPS is allowed, that *.databricksapps.com is reachable from this "
    .. "network, and the proxy settings (HTTPS_PROXY, NO_PROXY)",
}

local function fail(code, message, fields)
  return nil, errors.new(code, message, fields)
end

local function string_list(v)
  if type(v) ~= "table" then return nil end
  local out = {}
  for _, s in ipairs(v) do
    if type(s) == "string" then out[#out + 1] = s end
  end
  table.sort(out)
  return out
end

local function status_of(v)
  return type(v) == "table" and type(v.state) == "string" and v.state or nil,
    type(v) == "table" and type(v.message) == "string" and v.message or nil
end

-- The fields dbxauth relies on, checked: the Apps API's answer is outside input.
local function app_from(doc, name)
  if type(doc) ~= "table" then
    return fail("invalid_response", "the Apps API answered with something other than an app for " .. name)
  end
  local url = doc.url
  if type(url) ~= "string" or url == "" then
    return fail("invalid_response", "the Apps API returned no url for app " .. name, {
      hint = "the app may not be deployed yet: deploy it, or call it by url = ...",
    })
  end
  -- A token goes to this URL: only a plain https://host[:port] (no userinfo, a real port).
  if not url:match("^https://[^/?#]+") or not urls.origin(url) then
    return fail("invalid_response", "the Apps API returned a non-https or malformed url for app " .. name
      .. "; refusing to send a token to it")
  end
  local state, message = status_of(doc.app_status)
  local compute = status_of(doc.compute_status)
  return {
    name = type(doc.name) == "string" and doc.name or name,
    id = doc.id,
    url = url:match("^(https://[^/?#]+)"),
    oauth2_app_client_id = type(doc.oauth2_app_client_id) == "string" and doc.oauth2_app_client_id or nil,
    oauth2_app_integration_id = type(doc.oauth2_app_integration_id) == "string"
      and doc.oauth2_app_integration_id or nil,
    user_api_scopes = string_list(doc.user_api_scopes),
    effective_user_api_scopes = string_list(doc.effective_user_api_scopes),
    state = state,
    state_message = message,
    compute_state = compute,
  }
end

local function running(app)
  return (app.state == nil or app.state == "RUNNING")
    and (app.compute_state == nil or app.compute_state == "ACTIVE")
end

local function scope_key(scopes)
  return table.concat(scopes, " ")
end

-- Sorted union of two scope lists.
local function union(a, b)
  local out, seen = {}, {}
  for _, list in ipairs { a, b } do
    for _, x in ipairs(list) do
      if not seen[x] then seen[x] = true; out[#out + 1] = x end
    end
  end
  table.sort(out)
  return out
end

local function scopes_hint(scopes)
  return "request them: app_request{ ..., scopes = { \"" .. table.concat(scopes, "\", \"")
    .. "\" } } (a token must carry every scope configured for the app in user authorization; all-apis covers them)"
end

-- Missing scopes of `have` against `need` (all-apis covers everything); nil when satisfied.
function _M.missing_scopes(have, need)
  local set = {}
  for _, s in ipairs(have) do set[s] = true end
  if set["all-apis"] then return nil end
  local missing = {}
  for _, s in ipairs(need) do
    if not set[s] then missing[#missing + 1] = s end
  end
  if #missing == 0 then return nil end
  return missing
end

-- nil, or insufficient_scopes when `have` (the requested scopes, or a token's) does not cover the
-- app's user_api_scopes, the scopes "configured for the app in user authorization" (seed 001).
-- The iam.* scopes the Apps API adds to effective_user_api_scopes are granted implicitly, so
-- they are never demanded. requested: `have` is what the caller asked for (the hint adds the
-- missing ones to it), else a token's scopes (the hint names the app's).
local function scope_error(app, have, requested)
  local need = app and app.user_api_scopes
  local missing = need and #need > 0 and have and #have > 0 and _M.missing_scopes(have, need)
  if not missing then return nil end
  return errors.new("insufficient_scopes", (requested and "the requested scopes" or "the token's scopes")
    .. " do not include these scopes configured for app " .. app.name .. " in user authorization: "
    .. table.concat(missing, ", "), {
      hint = scopes_hint(requested and union(have, need) or need), missing_scopes = missing,
    })
end

-- The Apps API refuses an OAuth token without the `apps` scope: 403 "Provided OAuth token does
-- not have required scopes: apps". That is a scope problem of the login, with two ways out.
local function lookup_scopes(s, name, err)
  local list = err.message:match("does not have required scopes: ([%w%.:_, -]+)")
  if not list then return end
  local missing = config.parse_scopes(list)
  local want = table.concat(union(s:scopes(), missing), ",")
  local profile = s.values.profile
  err.code = "insufficient_scopes"
  err.missing_scopes = missing
  err.message = "the Apps API refused to look up app " .. name .. ": " .. err.message
  err.hint = "the login's token lacks the " .. table.concat(missing, ", ") .. " scope the Apps API needs: add it to "
    .. "the login's scopes (scopes = " .. want .. ", or `databricks auth login --scopes " .. want
    .. (profile and (" --profile " .. profile) or "") .. "`), or call the app by url = \"https://...\" "
    .. "(no lookup, no apps scope)"
end

_M.EXTRA_KEYS = { app = "string", url = "string", scopes = true, audience = "string" }

function _M.app(s, name)
  if not name:match(APP_NAME) then
    return fail("invalid_request", 'invalid app name "' .. name:sub(1, 80)
      .. '": app names are lowercase letters, digits and dashes')
  end
  local now = s:now()
  local hit = s.apps:get(name, now)
  if hit then return hit end
  local res, err = request.api(s, { path = "/api/2.0/apps/" .. name })
  if not res then
    if err.code == "not_found" then
      err.hint = "no app named " .. name .. " in " .. tostring(s.values.host)
        .. ": check the app name and that host is the app's workspace"
    elseif err.code == "permission_denied" then
      lookup_scopes(s, name, err)
    end
    return nil, err
  end
  local doc, jerr = res:json()
  if doc == nil then return nil, jerr end
  local app
  app, err = app_from(doc, name)
  if not app then return nil, err end
  s.apps:set(name, app, now)
  return app
end

local function exchange_once(s, audience, scopes)
  local creds, err = s:credentials()
  if not creds then return nil, err end
  local subject
  subject, err = creds.token()
  if not subject then return nil, err end
  local ep
  ep, err = s:endpoints()
  if not ep then return nil, err end
  local req = oauth.token_exchange_request {
    token_endpoint = ep.token_endpoint,
    subject_token = subject.access_token,
    subject_token_type = (s.values.auth_type == "pat" and not azure.is_entra_token(subject.access_token))
      and oauth.TYPE_PAT or oauth.TYPE_JWT,
    requested_token_type = oauth.TYPE_ACCESS_TOKEN,
    scopes = scopes,
    audience = audience,
  }
  return s:token_request(req, "token exchange")
end

-- A token endpoint's invalid_scope answer to an exchange is the same failure as the pre-flight's
-- (seed 001: the scope "must match or be a superset of the scopes configured for the app in user
-- authorization"), with the same code and advice.
local function scope_refused(err, app, scopes)
  if err.oauth_error ~= "invalid_scope" then return err end
  err.code = "insufficient_scopes"
  local need = app and app.user_api_scopes
  if need and #need > 0 then
    err.missing_scopes = _M.missing_scopes(scopes, need)
    err.hint = scopes_hint(union(scopes, need))
  else
    err.hint = "request scopes that include every scope configured for the app in user authorization "
      .. "(cfg:app(\"<name>\").user_api_scopes): app_request{ ..., scopes = { ... } }, or all-apis"
  end
  return err
end

-- Exchange the configuration's own token (decision D22): a PAT or notebook token as such,
-- an OAuth token as a JWT. Tokens are cached per (audience, scopes) and refreshed ahead.
-- app: the app the audience belongs to, when known (for the advice).
local function exchange_key(audience, scopes)
  return (audience or "") .. "\n" .. scope_key(scopes)
end

function _M.exchange(s, p, app)
  p = p or {}
  local scopes = config.parse_scopes(p.scopes)
  local key = exchange_key(p.audience, scopes)
  local source = s.exchanges[key]
  if not source then
    local audience = p.audience
    source = tokensource.new {
      now = s.ctx.now,
      fetch = function() return exchange_once(s, audience, scopes) end,
    }
    s.exchanges[key] = source
  end
  local tok, err = source:token()
  if not tok then return nil, scope_refused(err, app, scopes) end
  return oauth.public_token(tok)
end

-- The token app_request sends to an app: OAuth tokens as they are, a PAT exchanged for the
-- app's audience; exchanged for exactly the requested scopes when `scopes` is given, and for
-- the given audience when `audience` is (whatever the credential). app_request's cached_call
-- mirrors the two plain cases: keep them in step.
function _M.app_token(s, p)
  local audience = p.audience
  local app, err
  if p.app ~= nil then
    app, err = _M.app(s, p.app)
    if not app then return nil, err end
    local own = app.oauth2_app_client_id
    if audience ~= nil and own and audience ~= own then
      return fail("invalid_request", 'audience "' .. audience:sub(1, 80) .. '" is not the oauth2_app_client_id of app '
        .. app.name .. ": the app would reject a token exchanged for it", {
          hint = 'drop audience: app = "' .. app.name .. '" exchanges for the app\'s own (' .. own .. ")",
        })
    end
    audience = audience or own
  end
  if p.scopes ~= nil then
    -- before any token request: scopes that cannot satisfy the app are not worth exchanging for
    err = scope_error(app, config.parse_scopes(p.scopes), true)
    if err then return nil, err end
  end
  local creds
  creds, err = s:credentials()
  if not creds then return nil, err end
  local kind = s.values.auth_type
  -- An OAuth token goes as it is, unless the caller asks for particular scopes or for a token
  -- of the app's audience (seeds 001/002: "scoped to the specific app", so the app never holds
  -- a token good for every workspace API): then it is exchanged like a PAT.
  if p.scopes == nil and p.audience == nil and OAUTH_TYPES[kind] then
    local tok
    tok, err = creds.token()
    if not tok then return nil, err end
    return oauth.public_token(tok)
  end
  if kind == "basic" then
    return fail("unsupported", "Databricks Apps accept OAuth tokens only; basic auth cannot call an app", {
      hint = "use OAuth (client_id/client_secret or `databricks auth login`) or a personal access token",
    })
  end
  if app and not audience then
    return fail("invalid_response", "the Apps API returned no oauth2_app_client_id for app " .. app.name
      .. ", so a token cannot be exchanged for it")
  end
  if not audience and kind == "pat" and not azure.is_entra_token(s.values.token) then
    return fail("invalid_request", "a personal access token must be exchanged for the app's audience, "
      .. "and the app is unknown", { hint = "pass app = \"<name>\" (or audience = <oauth2_app_client_id>)" })
  end
  return _M.exchange(s, { audience = audience, scopes = p.scopes }, app)
end

local function not_running(app)
  return fail("app_not_running", "app " .. app.name .. " is not running (state "
    .. tostring(app.state or "?") .. ", compute " .. tostring(app.compute_state or "?")
    .. (app.state_message and ("): " .. app.state_message) or ")"), {
    hint = "start the app (databricks apps start " .. app.name .. ") and wait until it is RUNNING",
  })
end

-- The app's origin (and the app, when called by name) | nil, err
local function target(s, r)
  if r.app then
    local app, err = _M.app(s, r.app)
    if not app then return nil, err end
    if not running(app) then return not_running(app) end
    return app.url, app
  end
  local base = r.url:match("^(https://[^/?#]+)/?$")
  if not base or not urls.origin(base) then
    return fail("invalid_request", "app url must be https://<host> (got " .. r.url:sub(1, 80) .. ")")
  end
  return base
end

-- The app behind a url = call, when its host names it (https://<name>-<workspace id>.<region>.
-- databricksapps.com) and the Apps API knows it at that url: app, name | nil, name | nil. A
-- failed lookup (no apps scope, say) only makes the advice less precise.
local function app_at(s, base)
  local label = base:match("^https://([^./:]+)")
  local name = label and label:lower():match("^(.-)%-%d+$")
  if not name or not name:match(APP_NAME) then return nil end
  local app = _M.app(s, name)
  if app and app.url:lower() == base:lower() then return app, name end
  return nil, name
end

-- An Entra ID credential (an Azure auth type, or an Entra token given as `token`): its tokens
-- reach an app only exchanged, so a 401 means the app refused what the exchange gave.
local ENTRA_HINT = "Databricks Apps refuse Entra ID tokens: an Entra token must be exchanged for a Databricks "
  .. "OAuth token (RFC 8693, which app_request does for Azure credentials); the app refused the exchanged "
  .. "token: check that the workspace accepts the identity and that the scopes cover the app's user authorization"
local function entra(s)
  local kind = s.values.auth_type
  if azure.TYPES[kind] then return true end
  return kind == "pat" and azure.is_entra_token(s.values.token)
end

-- The error for a non-2xx answer of an app, with the docs' advice for its status. Called by
-- url, a 404 or 5xx may mean a stopped app: the Apps API is asked, as app = would have been.
local function app_error(s, res, r, app, base)
  local status = res.status
  local err = request.status_error(res, (r.method or "GET"):upper(), r.path)
  if status >= 300 and status <= 399 then
    err.code = "redirect"
    err.message = "the app answered " .. status .. " (redirect); not followed, so the token stays "
      .. "with the app"
    return err
  end
  local name = app and app.name
  if not app and (status == 404 or status >= 500) then
    app, name = app_at(s, base)
    if app and not running(app) then
      local _, stopped = not_running(app)
      stopped.status, stopped.response = status, res
      return stopped
    end
  end
  if status >= 500 then
    err.hint = "the app itself failed (HTTP " .. status .. "): check its logs (the Logs tab of "
      .. (name and ("app " .. name) or "the app") .. " in the workspace, or " .. base .. "/logz)"
  elseif err.code == "not_found" and not app then
    err.hint = HINTS.not_found .. "; a stopped app answers 404 too: start it (databricks apps start "
      .. (name or "<name>") .. ")"
  elseif status == 401 and entra(s) then
    err.hint = ENTRA_HINT
  else
    err.hint = HINTS[err.code] or err.hint
  end
  err.app = name
  return err
end

-- app_request{ app = name } without scopes or audience, the common call: what it needs is kept
-- per app name (s.app_calls) once a call has worked it out, so that a call with a cached token
-- and a current app lookup does one lookup, no scope parsing and no string building. It
-- mirrors app_token's two plain cases (an OAuth token as it is; a PAT exchanged for the app's
-- audience with the default scopes); anything else always takes the full path.
local MAX_APP_CALLS = 64

local function remember(s, r, app)
  if r.app == nil or r.scopes ~= nil or r.audience ~= nil then return end
  local kind = s.values.auth_type
  local creds = s.creds
  local m = { app = app, raw = nil, auth = nil }
  if OAUTH_TYPES[kind] then
    m.token = creds.token
  elseif kind == "pat" and app.oauth2_app_client_id then
    local scopes = config.parse_scopes(nil)
    local source = s.exchanges[exchange_key(app.oauth2_app_client_id, scopes)]
    if not source then return end
    m.token = function() return source:token() end
    m.exchanged = scopes
  else
    return
  end
  local calls = s.app_calls
  if calls.n >= MAX_APP_CALLS then
    calls = { n = 0 }
    s.app_calls = calls
  end
  if not calls[r.app] then calls.n = calls.n + 1 end
  calls[r.app] = m
end

-- true, authorization, app | false, err (what the full path would answer) | nil: take it
local function cached_call(s, r)
  local name = r.app
  if name == nil or r.scopes ~= nil or r.audience ~= nil then return nil end
  local m = s.app_calls[name]
  if not m then return nil end
  local app = s.apps:get(name, s:now())
  if app ~= m.app or not running(app) then return nil end
  local tok, err = m.token()
  if not tok then
    if m.exchanged then return false, scope_refused(err, app, m.exchanged) end
    return false, err
  end
  if tok ~= m.raw then
    local public = oauth.public_token(tok)
    err = scope_error(app, public.scopes)
    if err then return false, err end
    m.raw, m.auth = tok, headers.authorization(public)
  end
  return true, m.auth, app
end

-- r: a request table (request.lua) plus app = name | url = origin, scopes, audience (request.call
-- reads only its own fields). json: r.json encoded (request.check's second result).
function _M.app_request(s, r, json)
  local ok, auth, app = cached_call(s, r)
  if ok == false then return nil, auth end
  local base, err
  if ok then
    base = app.url
  else
    base, app = target(s, r)
    if not base then return nil, app end
    local tok
    tok, err = _M.app_token(s, { app = r.app, audience = r.audience, scopes = r.scopes })
    if not tok then return nil, err end
    err = scope_error(app, tok.scopes)
    if err then return nil, err end
    auth = headers.authorization(tok)
    remember(s, r, app)
  end
  local res
  res, err = request.call(s, base, r, auth, nil, json)
  if not res then
    if err.code == "network" then err.hint = HINTS.network end
    return nil, err
  end
  if res.status >= 200 and res.status <= 299 then return res end
  return nil, s:redact(app_error(s, res, r, app, base), { headers = { Authorization = auth } })
end

-- For batch.lua (cfg:app_request_all), which takes app_request's steps for each of its items.
_M.target = target
_M.scope_error = scope_error
_M.app_error = app_error
_M.NETWORK_HINT = HINTS.network

return _M
