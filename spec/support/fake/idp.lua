-- Fake OIDC identity provider for federation tests (runs inside nginx).
-- JWTs look real (three base64url parts, RS256 header) but carry no real signature: the fake
-- remembers every JWT it issued (shared dict "fake_tokens", key "idp:<jwt>") and the token
-- endpoint accepts only those. Issued by ws:idp_token (admin API) and by the GitHub Actions
-- ID-token endpoint below.
local common = require "spec.support.fake.common"

local ngx = ngx
local M = {}

M.DEFAULT_SUB = "repo:acme/widgets:ref:refs/heads/main"

local HEADER -- base64url of the fixed JOSE header

-- Issue a JWT. claims: iss, sub, aud (string or list), ttl (seconds; <= 0: already expired).
-- Returns the JWT string.
function M.issue(claims)
  HEADER = HEADER or common.b64url(common.encode { alg = "RS256", typ = "JWT", kid = "fake" })
  local now = math.floor(ngx.now())
  local ttl = tonumber(claims.ttl) or 300
  local payload = {
    iss = claims.iss, sub = claims.sub or M.DEFAULT_SUB, aud = claims.aud,
    iat = now, nbf = now, exp = now + ttl, jti = common.random_hex(),
  }
  local jwt = HEADER .. "." .. common.b64url(common.encode(payload)) .. "." ..
    common.b64url("fake-signature:" .. common.random_hex())
  common.tokens:set("idp:" .. jwt, common.encode(payload), ttl > 0 and ttl + 60 or 60)
  return jwt
end

-- The payload of a JWT this fake issued, or nil. Expiry is not checked here.
function M.lookup(jwt)
  if type(jwt) ~= "string" then return nil end
  local s = common.tokens:get("idp:" .. jwt)
  return s and common.decode(s) or nil
end

-- Audience a workspace token endpoint expects by default (also in host metadata).
function M.workspace_audience()
  return common.base() .. "/oidc/v1/token"
end

-- Verify an ID token for the token endpoint whose default audience is `expected`; the settings
-- key federation_audience (string or list) names further accepted audiences.
-- Returns payload or nil, error description.
function M.verify(jwt, expected)
  local p = M.lookup(jwt)
  if not p or not (tonumber(p.exp) and p.exp > ngx.now()) then
    return nil, "The subject token is invalid or expired"
  end
  local accepted = { [expected] = true }
  local extra = common.settings().federation_audience
  if type(extra) == "string" then accepted[extra] = true
  elseif type(extra) == "table" then for _, a in ipairs(extra) do accepted[a] = true end end
  local auds = type(p.aud) == "table" and p.aud or { p.aud }
  for _, a in ipairs(auds) do
    if accepted[a] then return p end
  end
  return nil, "audience mismatch"
end

-- GET /__idp/github/token?api-version=2.0&audience=<aud>
-- (ACTIONS_ID_TOKEN_REQUEST_URL; needs Authorization: Bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN)
function M.github_token()
  local h = ngx.var.http_authorization
  local tok = h and h:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  if tok ~= common.config.actions_request_token then
    return common.json(401, { message = "Bad credentials" })
  end
  local aud = ngx.req.get_uri_args().audience
  if type(aud) ~= "string" or aud == "" then aud = M.workspace_audience() end
  local jwt = M.issue { iss = common.base() .. "/__idp",
                        sub = common.settings().github_sub or M.DEFAULT_SUB, aud = aud, ttl = 300 }
  return common.json(200, { value = jwt })
end

return M
