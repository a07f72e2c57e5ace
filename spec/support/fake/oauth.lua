-- Host metadata, OIDC discovery and the token endpoint of the fake workspace (runs inside nginx).
-- Grants are a table of handlers (M.grants) so that later flows (authorization_code,
-- refresh_token, token exchange) plug in without touching the endpoint code.
local common = require "spec.support.fake.common"

local ngx = ngx
local M = {}

-- ------------------------------------------------------------------ discovery documents

function M.host_metadata()
  if not common.settings().metadata then return common.not_found() end
  local cfg, base = common.config, common.base()
  if common.is_account_host() then
    return common.json(200, {
      oidc_endpoint = base .. "/oidc/accounts/{account_id}",
      cloud = "AWS",
      host_type = "account",
    })
  end
  return common.json(200, {
    oidc_endpoint = base .. "/oidc",
    account_id = cfg.account_id,
    workspace_id = cfg.workspace_id,
    cloud = "AWS",
    host_type = "workspace",
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

local seq = 0

local function new_token()
  seq = seq + 1
  return "fake-at-" .. ngx.md5(ngx.worker.pid() .. ":" .. seq .. ":" .. ngx.now() .. ":" .. math.random())
end

-- Store a new access token. claims: { sub =, scope =, aud = "workspace" | <account id>, ... }
-- (any further fields are kept and returned by M.lookup). Returns token, lifetime.
function M.mint(claims)
  local lifetime = tonumber(common.settings().token_lifetime) or 3600
  local token = new_token()
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
