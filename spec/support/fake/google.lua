-- Google stand-ins for the fake workspace (runs inside nginx): an OAuth token endpoint, the IAM
-- Credentials API and the GCE metadata server, and the workspace's check of Google ID tokens.
--
--   POST /__google/token   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=<jwt>:
--        the JWT must be RS256 with the kid of a registered key, signed by that key (verified
--        against its public half with dbxauth.core.rs256_verify, itself checked against the
--        openssl command in core_spec), iss = the key's client_email, aud = this endpoint's
--        URL, iat <= now + 60, exp > now, exp - iat <= 3600, and exactly one of
--        target_audience (answer {"id_token"}) or scope (answer {access_token, expires_in,
--        token_type}). Errors as Google's: 400 invalid_grant "Invalid JWT Signature.", ...
--        grant_type=refresh_token with google_user's client_id, client_secret, refresh_token:
--        an access token (cloud-platform) for google_user.email (gcloud's user login).
--   POST /__google/iam/v1/projects/-/serviceAccounts/<sa>:generateIdToken | :generateAccessToken
--        Authorization: Bearer <a Google access token issued here with cloud-platform scope>;
--        the caller's identity must be listed in google_impersonators[<sa>], else 403
--        PERMISSION_DENIED (Google's JSON error); generateIdToken needs audience (ID token for
--        it, email claim when includeEmail), generateAccessToken scope (list) and answers
--        {accessToken, expireTime}.
--   GET  /computeMetadata/v1/instance/service-accounts/default/token  (plain-HTTP port: set
--        GCE_METADATA_HOST=127.0.0.1:<ws.http_port>) needs Metadata-Flavor: Google (else 403)
--        and no X-Forwarded-For; an access token for google_metadata_email.
--
-- Settings (ws:set): google_keys = { [client_email] = { kid =, public_key = PEM } },
-- google_impersonators = { [sa] = { identity, ... } }, google_user = { client_id, client_secret,
-- refresh_token, email }, google_metadata_email (default M.METADATA_EMAIL), google_token_ttl
-- (3600), google_deny_access_tokens (scope grants answer 400 invalid_scope).
-- Counters: "google id_token", "google access_token <email>", "google iam <method>".
--
-- The workspace (M.authenticate, from api.authenticate) takes a Google ID token whose aud is
-- the base URL the request came to (https://localhost:<port>, https://accounts.localhost:<port>)
-- as the service account it names (kind "google"); on account hosts it also needs
-- X-Databricks-GCP-SA-Access-Token: an unexpired access token of the same service account with
-- the cloud-platform and compute scopes.
local common = require "spec.support.fake.common"

local ngx = ngx
local M = {}

M.METADATA_EMAIL = "vm-default@fake-project.iam.gserviceaccount.com"
local JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
local CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
local COMPUTE = "https://www.googleapis.com/auth/compute"

local core   -- dbxauth.core, loaded on first use (lua_package_cpath: build/jit)

local function count(key) common.counters:incr(key, 1, 0) end

local function ttl() return tonumber(common.settings().google_token_ttl) or 3600 end

local HEADER
local function issue_id_token(email, aud, include_email)
  HEADER = HEADER or common.b64url(common.encode { alg = "RS256", typ = "JWT", kid = "fake-google" })
  local now = math.floor(ngx.now())
  local claims = { iss = "https://accounts.google.com", aud = aud, sub = "1000" .. #email, azp = email,
                   iat = now, exp = now + ttl() }
  if include_email then claims.email, claims.email_verified = email, true end
  local jwt = HEADER .. "." .. common.b64url(common.encode(claims)) .. "."
    .. common.b64url("fake-google-signature:" .. common.random_hex())
  common.tokens:set("gid:" .. jwt, common.encode { email = email, aud = aud, exp = claims.exp }, ttl() + 60)
  count("google id_token")
  return jwt
end

local function issue_access_token(email, scopes)
  local tok = "ya29.fake-" .. common.random_hex() .. common.random_hex()
  local exp = math.floor(ngx.now()) + ttl()
  common.tokens:set("gat:" .. tok, common.encode { email = email, scopes = scopes, exp = exp }, ttl() + 60)
  count("google access_token " .. email)
  return tok, exp
end

local function lookup(prefix, tok)
  if type(tok) ~= "string" then return nil end
  local s = common.tokens:get(prefix .. tok)
  local t = s and common.decode(s)
  if t and t.exp > ngx.now() then return t end
  return nil
end

local function bearer()
  local h = ngx.var.http_authorization
  return h and h:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
end

local function has(list, want)
  for _, x in ipairs(type(list) == "table" and list or {}) do if x == want then return true end end
  return false
end

local function invalid_grant(desc) return common.oauth_error(400, "invalid_grant", desc) end

-- The assertion's claims, or nil and Google's error description.
local function check_assertion(jwt)
  local h64, p64, s64 = tostring(jwt):match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
  if not h64 then return nil, "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe" end
  local header = common.decode(common.b64url_decode(h64) or "")
  local claims = common.decode(common.b64url_decode(p64) or "")
  if type(header) ~= "table" or type(claims) ~= "table" then return nil, "Invalid JWT Signature." end
  if header.alg ~= "RS256" or header.typ ~= "JWT" then return nil, "Invalid JWT Signature." end
  local keys = common.settings().google_keys or {}
  local key = type(claims.iss) == "string" and keys[claims.iss]
  if not key then return nil, "Invalid grant: account not found" end
  if header.kid ~= key.kid then return nil, "Invalid JWT Signature." end
  core = core or require "dbxauth.core"
  local ok = core.rs256_verify(key.public_key, h64 .. "." .. p64, common.b64url_decode(s64) or "")
  if not ok then return nil, "Invalid JWT Signature." end
  local now = ngx.now()
  if claims.aud ~= common.base() .. ngx.var.uri then return nil, "Invalid JWT: Failed audience check." end
  if type(claims.iat) ~= "number" or type(claims.exp) ~= "number" or claims.iat > now + 60
    or claims.exp <= now or claims.exp - claims.iat > 3600 then
    return nil, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
      .. "Check your iat and exp values in the JWT claim."
  end
  if (claims.target_audience ~= nil) == (claims.scope ~= nil) then
    return nil, "Invalid JWT: exactly one of target_audience or scope"
  end
  return claims
end

local function access_token_response(email, scopes)
  local tok = issue_access_token(email, scopes)
  return common.json(200, { access_token = tok, expires_in = ttl() - 1, token_type = "Bearer" })
end

local function refresh_grant(args)
  local u = common.settings().google_user
  if type(u) ~= "table" or args.client_id ~= u.client_id or args.client_secret ~= u.client_secret then
    return common.oauth_error(401, "invalid_client", "The OAuth client was not found.")
  end
  if args.refresh_token ~= u.refresh_token then return invalid_grant("Bad Request") end
  return access_token_response(u.email, { CLOUD_PLATFORM })
end

function M.token()
  local args = ngx.req.get_post_args(100)
  if args.grant_type == "refresh_token" then return refresh_grant(args) end
  if args.grant_type ~= JWT_BEARER then
    return common.oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " .. tostring(args.grant_type))
  end
  local claims, why = check_assertion(args.assertion)
  if not claims then return invalid_grant(why) end
  if claims.target_audience then
    return common.json(200, { id_token = issue_id_token(claims.iss, claims.target_audience, false) })
  end
  if common.settings().google_deny_access_tokens then
    return common.oauth_error(400, "invalid_scope", "Access to the requested scopes was denied.")
  end
  local scopes = {}
  for sc in tostring(claims.scope):gmatch("%S+") do scopes[#scopes + 1] = sc end
  return access_token_response(claims.iss, scopes)
end

local function google_error(status, message, code)
  return common.json(status, { error = { code = status, message = message, status = code } })
end

function M.iam(account, method)
  count("google iam " .. method)
  local src = lookup("gat:", bearer())
  if not src or not has(src.scopes, CLOUD_PLATFORM) then
    return google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
      .. "login cookie or other valid authentication credential.", "UNAUTHENTICATED")
  end
  local allowed = (common.settings().google_impersonators or {})[account]
  local perm = method == "generateIdToken" and "iam.serviceAccounts.getOpenIdToken"
    or "iam.serviceAccounts.getAccessToken"
  if not has(allowed, src.email) then
    return google_error(403, "Permission '" .. perm .. "' denied on resource (or it may not exist).",
      "PERMISSION_DENIED")
  end
  local body = common.decode(common.body())
  if type(body) ~= "table" then return google_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT") end
  if method == "generateIdToken" then
    if type(body.audience) ~= "string" or body.audience == "" then
      return google_error(400, "Audience must be set.", "INVALID_ARGUMENT")
    end
    return common.json(200, { token = issue_id_token(account, body.audience, body.includeEmail == true) })
  elseif method == "generateAccessToken" then
    if type(body.scope) ~= "table" or #body.scope == 0 then
      return google_error(400, "Scope required.", "INVALID_ARGUMENT")
    end
    local tok, exp = issue_access_token(account, body.scope)
    return common.json(200, { accessToken = tok, expireTime = os.date("!%Y-%m-%dT%H:%M:%SZ", exp) })
  end
  return common.not_found()
end

function M.metadata_token()
  local h = ngx.req.get_headers()
  if h["metadata-flavor"] ~= "Google" or h["x-forwarded-for"] then
    return common.send(403, "Missing required header \"Metadata-Flavor\"", "text/html")
  end
  local email = common.settings().google_metadata_email or M.METADATA_EMAIL
  local tok = issue_access_token(email, { CLOUD_PLATFORM })
  return common.send(200, common.encode { access_token = tok, expires_in = ttl() - 1, token_type = "Bearer" },
    "application/json", { ["Metadata-Flavor"] = "Google" })
end

-- For api.authenticate: the caller, or nil (not a Google ID token), or false, message.
function M.authenticate(cred)
  local t = lookup("gid:", cred)
  if not t then return nil end
  if t.aud ~= common.base() then return false, "Invalid Google ID token audience." end
  if common.is_account_host() then
    local sa = lookup("gat:", ngx.var.http_x_databricks_gcp_sa_access_token)
    if not sa or sa.email ~= t.email or not has(sa.scopes, CLOUD_PLATFORM) or not has(sa.scopes, COMPUTE) then
      return false, "Missing or invalid X-Databricks-GCP-SA-Access-Token for account-level access."
    end
  end
  return { user = t.email, kind = "google" }
end

-- Registers the routes on the app's tables.
function M.install(routes, pattern_routes)
  routes["/__google/token"] = { POST = M.token }
  routes["/computeMetadata/v1/instance/service-accounts/default/token"] = { GET = M.metadata_token }
  pattern_routes[#pattern_routes + 1] = { "^/__google/iam/v1/projects/%-/serviceAccounts/([^/]+)$",
    { POST = function(cap)
      local account, method = cap:match("^(.+):(%a+)$")
      if not account then return common.not_found() end
      return M.iam(account, method)
    end } }
end

return M
