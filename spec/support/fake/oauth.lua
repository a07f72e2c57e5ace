-- Host metadata, OIDC discovery, the authorize and token endpoints of the fake workspace (runs
-- inside nginx). Grants are a table of handlers (M.grants): client_credentials, authorization_code
-- (PKCE S256), refresh_token (rotating) and RFC 8693 token exchange.
local common = require "spec.support.fake.common"
local idp = require "spec.support.fake.idp"

local ngx = ngx
local M = {}

-- ------------------------------------------------------------------ discovery documents

function M.host_metadata()
  if not common.settings().metadata then return common.not_found() end
  local cfg, base = common.config, common.base()
  -- setting default_audiences: the document's token_federation_default_oidc_audiences (a list;
  -- {} leaves the field out)
  local audiences = common.settings().default_audiences
  if type(audiences) == "table" and #audiences == 0 then audiences = nil
  elseif type(audiences) ~= "table" then audiences = false end
  if common.is_account_host() then
    return common.json(200, {
      oidc_endpoint = base .. "/oidc/accounts/{account_id}",
      cloud = common.settings().cloud or "AWS",
      host_type = "account",
      token_federation_default_oidc_audiences = audiences or (audiences == false and { cfg.account_id } or nil),
    })
  end
  return common.json(200, {
    oidc_endpoint = base .. "/oidc",
    account_id = cfg.account_id,
    workspace_id = cfg.workspace_id,
    cloud = common.settings().cloud or "AWS",
    host_type = "workspace",
    token_federation_default_oidc_audiences = audiences or (audiences == false and { base .. "/oidc/v1/token" } or nil),
  })
end

-- Sorted names of the grants implemented below, so the document tracks the handlers.
local function grant_types()
  local out = {}
  for name in pairs(M.grants) do out[#out + 1] = name end
  table.sort(out)
  return out
end

local function discovery_document(root)
  return {
    issuer = root,
    authorization_endpoint = root .. "/v1/authorize",
    token_endpoint = root .. "/v1/token",
    jwks_uri = root .. "/jwks.json",
    response_types_supported = { "code", "id_token" },
    response_modes_supported = { "query" },
    grant_types_supported = grant_types(),
    code_challenge_methods_supported = { "S256" },
    token_endpoint_auth_methods_supported = { "client_secret_basic", "client_secret_post", "none" },
    subject_types_supported = { "public" },
    id_token_signing_alg_values_supported = { "RS256" },
    scopes_supported = { "all-apis", "offline_access", "openid", "email", "profile", "sql" },
  }
end

function M.discovery_workspace()
  if not common.settings().discovery then return common.not_found() end
  return common.json(200, discovery_document(common.base() .. "/oidc"))
end

local function unknown_account(account)
  return common.api_error(404, "RESOURCE_DOES_NOT_EXIST", "Account '" .. account .. "' does not exist")
end

function M.discovery_account(account)
  if not common.settings().discovery then return common.not_found() end
  if account ~= common.config.account_id then return unknown_account(account) end
  return common.json(200, discovery_document(common.base() .. "/oidc/accounts/" .. account))
end

-- ------------------------------------------------------------------ token store

-- Store a new access token. claims: { sub =, kind =, scope =, aud = "workspace" | <account id> |
-- "app:<oauth2_app_client_id>", ... } (any further fields are kept and returned by M.lookup).
-- Returns token, lifetime.
function M.mint(claims)
  local lifetime = tonumber(common.settings().token_lifetime) or 3600
  local token = "fake-at-" .. common.random_hex()
  local rec = {}
  for k, v in pairs(claims) do rec[k] = v end
  rec.exp = ngx.now() + lifetime
  -- the dict entry outlives the token a little so that expiry is decided by rec.exp
  common.tokens:set(token, common.encode(rec), lifetime > 0 and lifetime + 60 or 60)
  return token, lifetime
end

-- The stored claims of a token, or nil. Expiry is not checked here (callers compare .exp).
function M.lookup(token)
  local s = common.tokens:get(token)
  return s and common.decode(s) or nil
end

-- 200 token response. fields are added to the body (refresh_token, id_token, ...).
function M.token_response(token, lifetime, scope, fields)
  local body = {
    access_token = token,
    token_type = common.settings().token_type,
    expires_in = lifetime,
    scope = scope,
  }
  if fields then for k, v in pairs(fields) do body[k] = v end end
  return common.json(200, body, { ["Cache-Control"] = "no-store", ["Pragma"] = "no-cache" })
end

-- ------------------------------------------------------------------ helpers for grants

-- Form-URL-decode (application/x-www-form-urlencoded: "+" is a space).
local function form_decode(s)
  return ngx.unescape_uri((s:gsub("+", " ")))
end

-- Client credentials from HTTP Basic (parts form-URL-decoded after base64, RFC 6749 §2.3.1)
-- or from client_id/client_secret in the body. Returns id, secret (either may be nil).
function M.client_auth(args)
  local h = ngx.var.http_authorization
  if h then
    local cred = h:match("^[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
    local dec = cred and ngx.decode_base64(cred)
    local id, secret = (dec or ""):match("^([^:]*):(.*)$")
    if id then return form_decode(id), form_decode(secret) end
    return nil, nil
  end
  local id, secret = args.client_id, args.client_secret
  if type(id) ~= "string" then id = nil end
  if type(secret) ~= "string" then secret = nil end
  return id, secret
end

-- "a  b a" -> "a b": split on whitespace, de-duplicate, keep order. nil when empty.
function M.normalize_scope(scope)
  if type(scope) ~= "string" then return nil end
  local out, seen = {}, {}
  for s in scope:gmatch("%S+") do
    if not seen[s] then seen[s] = true; out[#out + 1] = s end
  end
  if #out == 0 then return nil end
  return table.concat(out, " ")
end

local function invalid_client()
  return common.oauth_error(401, "invalid_client", "Client authentication failed",
    { ["WWW-Authenticate"] = 'Basic realm="fake-databricks"' })
end
M.invalid_client = invalid_client

-- ------------------------------------------------------------------ grants
-- Each handler gets ctx = { args = decoded form, aud = "workspace" | account id,
-- account_id = account id or nil } and sends the response itself.

M.grants = {}

M.grants.client_credentials = function(ctx)
  local cfg = common.config
  local id, secret = M.client_auth(ctx.args)
  if id ~= cfg.client_id or secret ~= cfg.client_secret then return invalid_client() end
  local scope = M.normalize_scope(ctx.args.scope)
  if not scope then return common.oauth_error(400, "invalid_scope", "scope is required") end
  local token, lifetime = M.mint { sub = id, kind = "service_principal", aud = ctx.aud, scope = scope }
  return M.token_response(token, lifetime, scope)
end

local function has_scope(scope, want)
  for s in scope:gmatch("%S+") do
    if s == want then return true end
  end
  return false
end

local function invalid_grant(description)
  return common.oauth_error(400, "invalid_grant", description)
end

-- ------------------------------------------------------------------ refresh tokens
-- Stored as "rt:<token>" -> { sub, kind, aud, scope, client_id, gen }; gen must equal the current
-- generation ("rt_gen" in the fake dict), which ws:revoke_refresh_tokens() bumps. A used (rotated)
-- token is marked "rt_used:<token>".

local function rt_generation()
  return common.dict:get("rt_gen") or 0
end

function M.revoke_refresh_tokens()
  common.dict:incr("rt_gen", 1, 0)
end

local function mint_refresh(rec)
  local rt = "fake-rt-" .. common.random_hex()
  local copy = {}
  for k, v in pairs(rec) do copy[k] = v end
  copy.gen = rt_generation()
  common.tokens:set("rt:" .. rt, common.encode(copy))
  return rt
end

-- Access token (+ refresh token when offline_access was granted) for a user grant.
local function user_token_response(rec)
  local token, lifetime = M.mint { sub = rec.sub, kind = rec.kind, aud = rec.aud, scope = rec.scope }
  local extra
  if has_scope(rec.scope, "offline_access") then extra = { refresh_token = mint_refresh(rec) } end
  return M.token_response(token, lifetime, rec.scope, extra)
end

local U2M_USER = "user@example.com"

local function known_client(id)
  return id == "databricks-cli" or id == common.config.client_id
end

-- ------------------------------------------------------------------ authorize endpoint (U2M)
-- GET .../v1/authorize: validates the client and redirect_uri (400 HTML page when wrong), then
-- auto-approves: 302 to redirect_uri?code=..&state=.. (codes: "code:<code>" in fake_tokens, 60 s).
-- Settings: authorize_error (redirect with that error instead; authorize_error_description),
-- authorize_state (the redirect carries this state instead of the request's).

local function html_error(message)
  return common.send(400, "<html>\n<head><title>400 Bad Request</title></head>\n<body>\n" ..
    "<h1>Bad Request</h1>\n<p>" .. message .. "</p>\n</body>\n</html>\n", "text/html")
end

-- "a b" -> "a+b" (form encoding of a query component).
local function qenc(v)
  return (ngx.escape_uri(v):gsub("%%20", "+"))
end

local function redirect(redirect_uri, params)
  local q = {}
  for _, kv in ipairs(params) do
    if kv[2] ~= nil then q[#q + 1] = kv[1] .. "=" .. qenc(kv[2]) end
  end
  local loc = redirect_uri .. "?" .. table.concat(q, "&")
  return common.send(302, "", "text/html", { Location = loc, ["Cache-Control"] = "no-store" })
end

local function valid_redirect_uri(uri)
  if type(uri) ~= "string" then return false end
  local rest = uri:match("^http://localhost:%d+(.*)$") or uri:match("^http://127%.0%.0%.1:%d+(.*)$")
  return rest ~= nil and (rest == "" or rest:match("^/[^?#]*$") ~= nil)
end

local function authorize(aud)
  local args = ngx.req.get_uri_args(1000)
  local function arg(name)
    local v = args[name]
    if type(v) == "table" then v = v[1] end
    return type(v) == "string" and v or nil
  end
  local client_id, redirect_uri = arg("client_id"), arg("redirect_uri")
  if not known_client(client_id) then return html_error("Invalid client_id") end
  if not valid_redirect_uri(redirect_uri) then return html_error("Invalid redirect_uri") end
  local s = common.settings()
  local state = arg("state")
  if s.authorize_state ~= nil then state = tostring(s.authorize_state) end
  local function fail(err, description)
    return redirect(redirect_uri, { { "error", err }, { "error_description", description }, { "state", state } })
  end
  if arg("response_type") ~= "code" then
    return fail("unsupported_response_type", "response_type must be code")
  end
  local challenge = arg("code_challenge")
  if not challenge or challenge == "" or arg("code_challenge_method") ~= "S256" then
    return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
  end
  local scope = M.normalize_scope(arg("scope"))
  if not scope then return fail("invalid_scope", "scope is required") end
  if s.authorize_error then
    local e = tostring(s.authorize_error)
    return fail(e, s.authorize_error_description or
      (e == "access_denied" and "The user denied the request" or "Injected authorize error"))
  end
  local code = "fake-code-" .. common.random_hex()
  common.tokens:set("code:" .. code, common.encode {
    client_id = client_id, redirect_uri = redirect_uri, scope = scope, challenge = challenge, aud = aud,
  }, 60)
  return redirect(redirect_uri, { { "code", code }, { "state", state } })
end

function M.authorize_workspace()
  return authorize("workspace")
end

function M.authorize_account(account)
  if account ~= common.config.account_id then return unknown_account(account) end
  return authorize(account)
end

-- ------------------------------------------------------------------ user grants

M.grants.authorization_code = function(ctx)
  local a = ctx.args
  local code = type(a.code) == "string" and a.code or ""
  local rec = common.decode(common.tokens:get("code:" .. code) or "null")
  if type(rec) ~= "table" or rec.aud ~= ctx.aud then
    return invalid_grant("Authorization code is invalid or expired")
  end
  if not common.tokens:add("code_used:" .. code, true, 120) then
    return invalid_grant("Authorization code has already been used")
  end
  local id, secret = M.client_auth(a)
  if id ~= rec.client_id then return invalid_grant("client_id does not match the authorization request") end
  if id == common.config.client_id and secret ~= nil and secret ~= common.config.client_secret then
    return invalid_client()
  end
  if a.redirect_uri ~= rec.redirect_uri then
    return invalid_grant("redirect_uri does not match the authorization request")
  end
  local verifier = a.code_verifier
  if type(verifier) ~= "string" or common.b64url(common.sha256(verifier)) ~= rec.challenge then
    return invalid_grant("PKCE verification failed: code_verifier does not match code_challenge")
  end
  return user_token_response { sub = U2M_USER, kind = "user", aud = ctx.aud, scope = rec.scope,
                               client_id = rec.client_id }
end

M.grants.refresh_token = function(ctx)
  local a = ctx.args
  local rt = type(a.refresh_token) == "string" and a.refresh_token or ""
  local rec = common.decode(common.tokens:get("rt:" .. rt) or "null")
  local id = M.client_auth(a)
  if type(rec) ~= "table" or rec.aud ~= ctx.aud or rec.gen ~= rt_generation() or id ~= rec.client_id
    or not common.tokens:add("rt_used:" .. rt, true) then
    return invalid_grant("Refresh token is invalid")
  end
  common.counters:incr("refresh", 1, 0)
  rec.gen = nil
  return user_token_response(rec)
end

-- ------------------------------------------------------------------ token exchange (RFC 8693)

local TE = "urn:ietf:params:oauth:grant-type:token-exchange"
local TT_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
local TT_JWT = "urn:ietf:params:oauth:token-type:jwt"
local TT_PAT = "urn:databricks:params:oauth:token-type:personal-access-token"
local BAD_SUBJECT = "The subject token is invalid or expired"

-- The app's user_api_scopes that `scope` lacks, space-joined, or nil (all-apis covers them).
local function missing_app_scopes(scope, app)
  if has_scope(scope, "all-apis") or type(app.user_api_scopes) ~= "table" then return nil end
  local missing = {}
  for _, s in ipairs(app.user_api_scopes) do
    if not has_scope(scope, s) then missing[#missing + 1] = s end
  end
  if #missing == 0 then return nil end
  return table.concat(missing, " ")
end

M.grants[TE] = function(ctx)
  local a, cfg = ctx.args, common.config
  local rtt = a.requested_token_type
  if rtt ~= nil and rtt ~= TT_ACCESS then
    return common.oauth_error(400, "invalid_request", "Unsupported requested_token_type")
  end
  local subject, stype = a.subject_token, a.subject_token_type
  if type(subject) ~= "string" or subject == "" then
    return common.oauth_error(400, "invalid_request", "subject_token is required")
  end
  local scope = M.normalize_scope(a.scope)
  if not scope then return common.oauth_error(400, "invalid_scope", "scope is required") end
  local who
  if stype == TT_PAT and not ctx.account_id then
    if subject ~= cfg.pat then return invalid_grant(BAD_SUBJECT) end
    who = { sub = U2M_USER, kind = "user" }
  elseif stype == TT_JWT then
    local t = M.lookup(subject)
    if t then
      if t.aud ~= ctx.aud or t.exp <= ngx.now() then return invalid_grant(BAD_SUBJECT) end
      who = { sub = t.sub, kind = t.kind }
    else
      local p, err = idp.verify(subject, ctx.account_id or idp.workspace_audience())
      if not p then return invalid_grant(err) end
      local client_id = a.client_id
      if client_id == nil then
        who = { sub = "federated:" .. tostring(p.sub), kind = "federated" }
      elseif client_id == cfg.client_id then
        who = { sub = client_id, kind = "service_principal" }
      else
        return invalid_client()
      end
    end
  else
    return common.oauth_error(400, "invalid_request", "Unsupported subject_token_type")
  end
  local audience, aud = a.audience, ctx.aud
  if audience ~= nil then
    local app = not ctx.account_id and type(audience) == "string" and common.app_by_client_id(audience)
    if not app then
      return common.oauth_error(400, "invalid_target", "Unknown audience")
    end
    -- seed 001: the scope "must match or be a superset of the scopes configured for the app in
    -- user authorization"
    local missing = missing_app_scopes(scope, app)
    if missing then
      return common.oauth_error(400, "invalid_scope", "The requested scope does not include the scopes "
        .. "configured for the app in user authorization: " .. missing)
    end
    aud = "app:" .. audience
  end
  local token, lifetime = M.mint { sub = who.sub, kind = who.kind, aud = aud, scope = scope }
  local counters = common.counters
  counters:incr("exchange", 1, 0)
  counters:incr("exchange " .. (audience or (ctx.account_id and "account" or "workspace")), 1, 0)
  return M.token_response(token, lifetime, scope, { issued_token_type = TT_ACCESS })
end

-- ------------------------------------------------------------------ token endpoint

local function token_endpoint(aud, account_id)
  local ct = ngx.var.content_type
  if not ct or not ct:lower():find("^%s*application/x%-www%-form%-urlencoded") then
    return common.oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
  end
  local args = ngx.req.get_post_args(1000)
  if not args then return common.oauth_error(400, "invalid_request", "unreadable request body") end
  local grant = args.grant_type
  if type(grant) ~= "string" or grant == "" then
    return common.oauth_error(400, "invalid_request", "grant_type is required")
  end
  local handler = M.grants[grant]
  if not handler then
    return common.oauth_error(400, "unsupported_grant_type", "Grant type '" .. grant .. "' is not supported")
  end
  return handler { args = args, aud = aud, account_id = account_id }
end

function M.token_workspace()
  return token_endpoint("workspace", nil)
end

function M.token_account(account)
  if account ~= common.config.account_id then return unknown_account(account) end
  return token_endpoint(account, account)
end

return M
